//! Users and settings survive a restart (the embedded store), against the real binary: a
//! SIGTERM restart, SIGKILL while an administrator pipelines additions (every user whose
//! `00` the client received is there afterwards, and the store opens cleanly), and no clear
//! password in the store file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socks5d_core::admin::msg::{AdminRequest, Modify, Query};
use socks5d_core::state::MAX_USERS;

use socks5d_tests::free_port;

struct Server {
    child: Child,
    admin: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, extra: &[&str]) -> Server {
    let (socks, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_socks5d"))
        .arg("--state-dir")
        .arg(dir)
        .args(["-p", &socks.to_string(), "-P", &admin.to_string()])
        .args(["--admin-transport", "tcp", "--log-level", "warn"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let mut child = child;
    while TcpStream::connect(("127.0.0.1", admin)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("socks5d exited at start-up ({status}): the store did not open");
        }
        assert!(Instant::now() < until, "socks5d did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, admin }
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("socks5d-store-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn login(admin: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut auth = vec![0x01, 4];
    auth.extend_from_slice(b"root");
    auth.push(6);
    auth.extend_from_slice(b"rootpw");
    s.write_all(&auth).unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).unwrap();
    assert_eq!(r, [0x01, 0x00], "root logs in");
    s
}

fn encode(reqs: &[AdminRequest]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for r in reqs {
        r.encode(&mut b);
    }
    b.to_vec()
}

fn add(name: &str, password: &str) -> AdminRequest {
    AdminRequest::Modify(Modify::AddUser {
        name: Bytes::copy_from_slice(name.as_bytes()),
        password: Bytes::copy_from_slice(password.as_bytes()),
        privilege: 0,
    })
}

/// The user names the server lists (draft dialect: `00 00 N (ULEN UNAME)*`).
fn list_users(admin: u16) -> Vec<String> {
    let mut s = login(admin);
    s.write_all(&encode(&[AdminRequest::Query(Query::ListUsers)]))
        .unwrap();
    let mut head = [0u8; 3];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head[..2], [0x00, 0x00]);
    (0..head[2])
        .map(|_| {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).unwrap();
            let mut name = vec![0u8; usize::from(len[0])];
            s.read_exact(&mut name).unwrap();
            String::from_utf8(name).unwrap()
        })
        .collect()
}

#[test]
fn users_and_settings_survive_a_sigterm_restart() {
    let d = dir("restart");
    let srv = start(&d, &["-a", "root:rootpw", "-u", "alice:alicepw-clear"]);
    let mut s = login(srv.admin);
    let reqs = [
        add("bob", "bobpw-clear"),
        AdminRequest::Modify(Modify::SetBufferSize(4096)),
        AdminRequest::Modify(Modify::SetSelectorTimeout(7)),
    ];
    s.write_all(&encode(&reqs)).unwrap();
    let mut answers = [0u8; 9];
    s.read_exact(&mut answers).unwrap();
    for a in answers.chunks(3) {
        assert_eq!((a[0], a[2]), (0x01, 0x00), "applied: {answers:?}");
    }
    drop(s);
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    drop(srv);
    // Started again without -u: alice and bob come from the store, and the settings too.
    let srv = start(&d, &[]);
    let users = list_users(srv.admin);
    for u in ["root", "alice", "bob"] {
        assert!(users.contains(&u.to_string()), "{u} missing from {users:?}");
    }
    let mut s = login(srv.admin);
    s.write_all(&encode(&[
        AdminRequest::Query(Query::BufferSize),
        AdminRequest::Query(Query::SelectorTimeout),
    ]))
    .unwrap();
    let mut b = [0u8; 6 + 3];
    s.read_exact(&mut b).unwrap();
    assert_eq!(
        &b[..6],
        [0x00, 0x08, 0x00, 0x00, 0x10, 0x00],
        "buffer size 4096"
    );
    assert_eq!(&b[6..], [0x00, 0x09, 7], "selector timeout 7");
    // No clear password in the store.
    for f in std::fs::read_dir(&d).unwrap() {
        let text = std::fs::read(f.unwrap().path()).unwrap();
        for pw in ["rootpw", "alicepw-clear", "bobpw-clear"] {
            assert!(
                !text.windows(pw.len()).any(|w| w == pw.as_bytes()),
                "{pw} in the store"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A small deterministic generator (xorshift64*), so that a failing run can be replayed from
/// the seed it printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `lo..=hi` for picking kill points.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The seed: `SOCKS5D_SIGKILL_SEED` to replay a run, else the clock.
fn seed() -> u64 {
    let s = std::env::var("SOCKS5D_SIGKILL_SEED").ok().map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().expect("SOCKS5D_SIGKILL_SEED: a u64"),
    );
    s.max(1) // xorshift stays at 0 forever
}

/// Requests pipelined per run, as the issue says.
const PIPELINED: usize = 1000;
/// Runs, each ended by SIGKILL.
const RUNS: usize = 20;
/// Users stored before the first run (one argon2id hash shared by all): the store then fills up
/// (255 users) after about eight runs and the later runs see "too many users" answers, which
/// the test checks too, without reading hundreds of answers.
const PREFILLED: usize = 150;
/// Most answers read before the kill. Each Add User costs an argon2id hash (~25 ms, even when
/// the store is full: the hash comes before the check), so a run cannot wait for all 1 000.
const MOST_READ: u64 = 24;

/// SIGKILL while an administrator pipelines 1 000 Add User requests, 20 times on one state
/// directory (holding [`PREFILLED`] users to begin with): after each restart the store opens cleanly (the server starts and answers), every
/// user whose `00` was received is there, no user refused with `FF` is, and no name that was
/// never asked for appears. Users are answered `00` exactly while the store holds fewer than
/// `MAX_USERS` (255), then `FF` (the draft dialect's "255 users already").
///
/// What this can and cannot catch. SIGKILL kills the process, not the kernel: data handed to
/// `write` before the kill reaches the file even without `fsync`, so a store that acknowledged
/// after `write` + `rename` but before `fsync` passes here (only a power cut, or a block
/// device that drops unflushed writes, shows that; the fsync order is the store's unit tests'
/// and `store/tests/crash.rs`'s business). What fails here: a server that answers `00` before
/// the change is handed to the kernel at all (answer, then write on a background task or
/// batched later: the users acknowledged just before the kill are missing after the restart;
/// tried on 2026-12-02 by answering before a delayed `Persist::persist` in `Shared::modify`:
/// "run 1: acknowledged u0x10 lost" within a second),
/// a store that rewrites its file in place (a kill mid-write leaves a torn file that the next
/// start refuses: "did not start"), one that applies a change that it then fails to store (a
/// user answered `FF` is present), and one that does not count users against the limit.
#[test]
fn sigkill_while_adding_loses_no_acknowledged_user() {
    use std::collections::BTreeSet;
    let seed = seed();
    println!("seed {seed} (replay: SOCKS5D_SIGKILL_SEED={seed})");
    let mut rng = Rng(seed);
    let d = dir("kill");
    let mut asked: BTreeSet<String> = BTreeSet::from(["root".to_string()]);
    let prefilled: Vec<String> = (0..PREFILLED).map(|i| format!("pre{i}")).collect();
    {
        let store = socks5d_store::Store::open(&d).unwrap();
        let hash = socks5d_store::hash_password(b"prefilled").unwrap();
        let users = prefilled
            .iter()
            .map(|n| socks5d_store::StoredUser {
                name: n.clone().into_bytes(),
                hash: hash.clone(),
                privilege: 0,
            })
            .collect();
        store
            .commit(&socks5d_store::Change::Replace {
                users,
                settings: socks5d_store::StoredSettings::default(),
            })
            .unwrap();
    }
    asked.extend(prefilled.iter().cloned());
    // The stored users count as acknowledged: they must survive every kill too.
    let mut acknowledged: BTreeSet<String> = prefilled.into_iter().collect();
    let mut refused: BTreeSet<String> = BTreeSet::new();
    let mut saw_full = false;
    let check = |run: usize,
                 users: &[String],
                 ack: &BTreeSet<String>,
                 refused: &BTreeSet<String>,
                 asked: &BTreeSet<String>| {
        for u in ack {
            assert!(
                users.contains(u),
                "seed {seed} run {run}: acknowledged {u} lost"
            );
        }
        for u in users {
            assert!(
                !refused.contains(u),
                "seed {seed} run {run}: {u} was refused yet is stored"
            );
            assert!(
                asked.contains(u),
                "seed {seed} run {run}: {u} was never added"
            );
        }
    };
    for run in 0..RUNS {
        let srv = start(&d, &["-a", "root:rootpw"]);
        let users = list_users(srv.admin);
        check(run, &users, &acknowledged, &refused, &asked);
        let present = users.len();
        let mut s = login(srv.admin);
        let batch: Vec<String> = (0..PIPELINED).map(|i| format!("u{run}x{i}")).collect();
        asked.extend(batch.iter().cloned());
        let reqs: Vec<AdminRequest> = batch.iter().map(|n| add(n, "pw")).collect();
        // Written by a thread of its own: 1 000 requests may not fit the socket buffers while
        // the server is busy hashing, and the kill ends the write with an error.
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&encode(&reqs));
        });
        let read = rng.range(1, MOST_READ) as usize;
        for (i, name) in batch.iter().take(read).enumerate() {
            let mut a = [0u8; 3];
            s.read_exact(&mut a).unwrap();
            if present + i < MAX_USERS {
                assert_eq!(a, [0x01, 0x00, 0x00], "seed {seed} run {run}: {name} added");
                acknowledged.insert(name.clone());
            } else {
                assert_eq!(
                    a,
                    [0x01, 0x00, 0xFF],
                    "seed {seed} run {run}: {name}: 255 users already"
                );
                refused.insert(name.clone());
                saw_full = true;
            }
        }
        // Somewhere in the next request's hash or commit.
        std::thread::sleep(Duration::from_millis(rng.range(0, 30)));
        let pid = srv.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success());
        drop(srv);
        drop(s);
        writer.join().unwrap();
    }
    let srv = start(&d, &["-a", "root:rootpw"]);
    let users = list_users(srv.admin);
    check(RUNS, &users, &acknowledged, &refused, &asked);
    assert!(
        saw_full,
        "seed {seed}: the store never filled up: the limit went untested"
    );
    println!(
        "{} acknowledged users survived {RUNS} SIGKILLs ({PREFILLED} stored before), {} refused (store full)",
        acknowledged.len() - PREFILLED,
        refused.len()
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&d);
}

//! Users and settings survive a restart (the embedded store), against the real binary: a
//! SIGTERM restart, SIGKILL while an administrator pipelines additions (every user whose
//! `00` the client received is there afterwards, and the store opens cleanly), and no clear
//! password in the store file.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socks5d_core::admin::msg::{AdminRequest, Modify, Query};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    while TcpStream::connect(("127.0.0.1", admin)).is_err() {
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

#[test]
fn sigkill_while_adding_loses_no_acknowledged_user() {
    let d = dir("kill");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for run in 0..20 {
        let srv = start(&d, &["-a", "root:rootpw"]);
        // The store opened cleanly and holds every user acknowledged before.
        let users = list_users(srv.admin);
        for u in &acknowledged {
            assert!(
                users.contains(u),
                "run {run}: acknowledged {u} lost: {users:?}"
            );
        }
        let mut s = login(srv.admin);
        let batch: Vec<String> = (0..12).map(|i| format!("u{run}x{i}")).collect();
        let reqs: Vec<AdminRequest> = batch.iter().map(|n| add(n, "pw")).collect();
        s.write_all(&encode(&reqs)).unwrap();
        // Kill after a pseudo-random number of answers (0 to 11), mid-batch.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let read = (seed % 12) as usize;
        for name in batch.iter().take(read) {
            let mut a = [0u8; 3];
            s.read_exact(&mut a).unwrap();
            assert_eq!(a, [0x01, 0x00, 0x00], "{name} added");
            acknowledged.push(name.clone());
        }
        let pid = srv.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success());
        drop(srv);
    }
    let srv = start(&d, &["-a", "root:rootpw"]);
    let users = list_users(srv.admin);
    for u in &acknowledged {
        assert!(users.contains(u), "acknowledged {u} lost: {users:?}");
    }
    println!(
        "{} acknowledged users survived 20 SIGKILLs",
        acknowledged.len()
    );
    let _ = std::fs::remove_dir_all(&d);
}

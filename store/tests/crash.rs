//! Crash safety: a child process commits in a loop and is SIGKILLed at a random moment, 20
//! times. Every commit acknowledged before the kill must be there, at most one more, and the
//! store must open cleanly. (`harness = false`: the binary re-executes itself as the child.)

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use socks5d_store::{apply_change, Change, Setting, Snapshot, Store};

const CHILD_DIR: &str = "SOCKS5D_STORE_CRASH_DIR";
const CHILD_HASH: &str = "SOCKS5D_STORE_CRASH_HASH";
const ROUNDS: usize = 20;

/// The change that takes the store from version `k` to `k + 1`.
fn change(k: u64, hash: &str) -> Change {
    match k % 3 {
        0 => Change::AddUser {
            name: format!("u{k}").into(),
            hash: hash.into(),
            privilege: (k % 2) as u8,
        },
        1 => Change::SetSetting(Setting::BufferSize(50 + (k % 100_000) as u32)),
        _ => Change::RemoveUser {
            name: format!("u{}", k - 2).into(),
        },
    }
}

/// What the store must hold at `version`.
fn expected(version: u64, hash: &str) -> Snapshot {
    let mut s = Snapshot::default();
    for k in 0..version {
        s = apply_change(&s, &change(k, hash)).expect("the sequence is valid");
    }
    s.version = version;
    s
}

fn child(dir: &Path, hash: &str) -> ! {
    let store = Store::open(dir).unwrap_or_else(|e| {
        eprintln!("child: {e}");
        std::process::exit(2)
    });
    let mut out = std::io::stdout().lock();
    let mut k = store.load().version;
    loop {
        match store.commit(&change(k, hash)) {
            Ok(v) => {
                // Written only after commit returned: an acknowledgement.
                writeln!(out, "ack {v}")
                    .and_then(|()| out.flush())
                    .unwrap_or_else(|_| std::process::exit(3));
            }
            Err(e) => {
                eprintln!("child: commit {k}: {e}");
                std::process::exit(2)
            }
        }
        k += 1;
    }
}

/// Random enough for a kill point: std's hasher keys are seeded from the OS once per thread and
/// change with every `RandomState`.
fn random_below(n: u8) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::hash::RandomState::new().build_hasher().finish() % u64::from(n)
}

fn main() {
    if let (Some(dir), Some(hash)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_HASH).ok()) {
        child(Path::new(&dir), &hash);
    }
    let tmp = tempfile::tempdir().unwrap();
    let hash = common::cheap_hash(b"crash-test");
    let mut version = 0;
    let mut acked_total = 0;
    for round in 0..ROUNDS {
        let mut proc = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_DIR, tmp.path())
            .env(CHILD_HASH, &hash)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = proc.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: u64 = line
                    .strip_prefix("ack ")
                    .and_then(|v| v.parse().ok())
                    .expect("ack line");
                acks.push(v);
                let _ = tx.send(v);
            }
            acks
        });
        // Odd rounds: kill at a random moment from the start (maybe inside `open`); even
        // rounds: a random moment after the first acknowledgement.
        if round % 2 == 0 {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("child acknowledges a commit");
        }
        std::thread::sleep(Duration::from_millis(random_below(40)));
        assert!(
            proc.try_wait().unwrap().is_none(),
            "the child stopped by itself"
        );
        proc.kill().unwrap(); // SIGKILL
        proc.wait().unwrap();
        let acks = reader.join().unwrap();
        acked_total += acks.len();
        let floor = acks.last().copied().unwrap_or(version);
        assert!(floor >= version);

        let store = Store::open(tmp.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let snap = store.load();
        assert!(
            snap.version == floor || snap.version == floor + 1,
            "round {round}: store at version {}, last acknowledged {floor}",
            snap.version
        );
        assert_eq!(snap, expected(snap.version, &hash), "round {round}");
        version = snap.version;
        drop(store);
    }
    assert!(acked_total > 0);
    println!("crash: {ROUNDS} SIGKILLs, {acked_total} acknowledged commits, store at version {version}, all present");
    println!("1 passed, 0 failed");
}

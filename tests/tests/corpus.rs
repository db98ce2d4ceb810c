//! Replays every file of `fuzz/corpus/<target>/` through `socks5d_core::fuzzing::<target>`,
//! so that CI checks the fuzz invariants on the committed corpora with a stable toolchain,
//! and keeps the seed files in step with the golden vectors they are generated from.
//!
//! Regenerate the seeds after changing [`seeds`]:
//! `SOCKS5D_WRITE_SEEDS=1 cargo test -p socks5d-tests --test corpus seeds_are_committed`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use socks5d_core::fuzzing::{self, Script, Step};

/// A fuzz body.
type Body = fn(&[u8]);

/// Every fuzz target and its body. A corpus directory without an entry here fails the replay.
const TARGETS: &[(&str, Body)] = &[
    ("socks5_greeting", fuzzing::socks5_greeting),
    ("socks5_userpass", fuzzing::socks5_userpass),
    ("socks5_request", fuzzing::socks5_request),
    ("socks5_session", fuzzing::socks5_session),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn step(len: u16, tick_ms: u16, action: u8) -> Step {
    Step {
        len,
        tick_ms,
        action,
    }
}

fn script(options: u8, steps: &[Step], stream: &[u8]) -> Vec<u8> {
    Script {
        options,
        steps: steps.to_vec(),
        stream: stream.to_vec(),
    }
    .to_fuzz_input()
}

// Golden vectors (RFC 1928 §3-§6, RFC 1929 §2).
const V4_TARGET: &[u8] = b"\x01\x7f\x00\x00\x01\x00\x50"; // 127.0.0.1:80
const V6_TARGET: &[u8] =
    b"\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\xbb"; // [2001:db8::1]:443
const NAME_TARGET: &[u8] = b"\x03\x0bexample.com\x00\x50"; // example.com:80
const GREET_UP: &[u8] = b"\x05\x01\x02";
const GREET_ANON: &[u8] = b"\x05\x01\x00";
const AUTH_BOB: &[u8] = b"\x01\x03bob\x07hunter2";
const AUTH_WRONG: &[u8] = b"\x01\x03bob\x07hunter3";
const HTTP_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

fn connect(target: &[u8]) -> Vec<u8> {
    cat(&[b"\x05\x01\x00", target])
}

/// The seed files: target -> (file name -> contents).
fn seeds() -> BTreeMap<&'static str, BTreeMap<&'static str, Vec<u8>>> {
    let mut m: BTreeMap<&str, BTreeMap<&str, Vec<u8>>> = BTreeMap::new();
    let mut add = |t: &'static str, name: &'static str, bytes: Vec<u8>| {
        assert!(m.entry(t).or_default().insert(name, bytes).is_none());
    };

    // Parsers: client messages and server messages of each exchange.
    add("socks5_greeting", "userpass", GREET_UP.to_vec());
    add(
        "socks5_greeting",
        "noauth-userpass",
        b"\x05\x02\x00\x02".to_vec(),
    );
    add("socks5_greeting", "empty", b"\x05\x00".to_vec());
    add(
        "socks5_greeting",
        "selection-userpass",
        b"\x05\x02".to_vec(),
    );
    add("socks5_greeting", "selection-none", b"\x05\xff".to_vec());
    add("socks5_greeting", "socks4", b"\x04\x01\x00\x50".to_vec());
    add("socks5_userpass", "bob", AUTH_BOB.to_vec());
    add("socks5_userpass", "empty-fields", b"\x01\x00\x00".to_vec());
    add("socks5_userpass", "reply-ok", b"\x01\x00".to_vec());
    add("socks5_userpass", "reply-fail", b"\x01\x01".to_vec());
    add("socks5_request", "connect-v4", connect(V4_TARGET));
    add("socks5_request", "connect-v6", connect(V6_TARGET));
    add("socks5_request", "connect-name", connect(NAME_TARGET));
    add("socks5_request", "bind", cat(&[b"\x05\x02\x00", V4_TARGET]));
    add(
        "socks5_request",
        "udp",
        cat(&[b"\x05\x03\x00", NAME_TARGET]),
    );
    add(
        "socks5_request",
        "reply-ok-v4",
        cat(&[b"\x05\x00\x00", V4_TARGET]),
    );
    add(
        "socks5_request",
        "reply-ok-v6",
        cat(&[b"\x05\x00\x00", V6_TARGET]),
    );
    add(
        "socks5_request",
        "reply-refused",
        cat(&[b"\x05\x05\x00", V4_TARGET]),
    );

    // SOCKS5 session scripts (options: bit 0 anonymous, bit 1 EOF at the end, bits 4.. the
    // dial outcome; step action: bit 0 dial outcome now, bit 1 EOF now).
    let happy = cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET), HTTP_GET]);
    add("socks5_session", "happy-one-read", script(0, &[], &happy));
    add(
        "socks5_session",
        "happy-step-by-step",
        script(
            0,
            &[
                step(3, 5, 0),
                step(13, 20, 0),
                step(18, 100, 1),
                step(0, 1, 0),
            ],
            &happy,
        ),
    );
    add(
        "socks5_session",
        "v6-result-v6-target",
        script(
            0x10,
            &[step(1, 0, 0), step(2, 0, 0)],
            &cat(&[GREET_UP, AUTH_BOB, &connect(V6_TARGET)]),
        ),
    );
    add(
        "socks5_session",
        "anonymous",
        script(1, &[], &cat(&[GREET_ANON, &connect(V4_TARGET), b"xy"])),
    );
    add(
        "socks5_session",
        "anonymous-refused",
        script(0, &[], &cat(&[GREET_ANON, &connect(V4_TARGET)])),
    );
    add(
        "socks5_session",
        "wrong-password",
        script(0, &[], &cat(&[GREET_UP, AUTH_WRONG])),
    );
    add(
        "socks5_session",
        "bind",
        script(
            0,
            &[],
            &cat(&[GREET_UP, AUTH_BOB, b"\x05\x02\x00", V4_TARGET]),
        ),
    );
    add(
        "socks5_session",
        "connect-refused",
        script(0x72, &[], &cat(&[GREET_UP, AUTH_BOB, &connect(V4_TARGET)])),
    );
    add(
        "socks5_session",
        "handshake-timeout",
        script(
            0,
            &[step(3, 0, 0), step(0, 10_000, 0)],
            &cat(&[GREET_UP, AUTH_BOB]),
        ),
    );
    add(
        "socks5_session",
        "timeout-during-dial",
        script(
            0,
            &[step(34, 0, 0), step(0, 9_999, 0), step(0, 1, 0)],
            &cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET)]),
        ),
    );
    add(
        "socks5_session",
        "eof-mid-auth",
        script(0, &[step(6, 0, 2)], &cat(&[GREET_UP, AUTH_BOB])),
    );
    add("socks5_session", "not-socks", script(2, &[], HTTP_GET));
    m
}

#[test]
fn seeds_are_committed() {
    let write = std::env::var_os("SOCKS5D_WRITE_SEEDS").is_some();
    for (target, files) in seeds() {
        let dir = corpus_dir().join(target);
        for (name, bytes) in files {
            let path = dir.join(name);
            if write {
                fs::create_dir_all(&dir).unwrap();
                fs::write(&path, &bytes).unwrap();
            }
            let on_disk = fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run with SOCKS5D_WRITE_SEEDS=1)", path.display())
            });
            assert_eq!(on_disk, bytes, "{} is stale", path.display());
        }
    }
}

#[test]
fn scripts_encode_for_arbitrary() {
    // The seeds of session targets are written with `Script::to_fuzz_input`, which must be
    // the exact inverse of what the fuzz bodies read.
    let s = Script {
        options: 0xa5,
        steps: vec![step(3, 65535, 1), step(0, 0, 0), step(65535, 7, 0xff)],
        stream: b"\x05\x01\x02rest".to_vec(),
    };
    assert_eq!(Script::from_fuzz_input(&s.to_fuzz_input()), s);
    assert_eq!(
        Script::from_fuzz_input(&[]),
        Script {
            options: 0,
            steps: vec![],
            stream: vec![]
        }
    );
    let chunks = s.chunks();
    assert_eq!(chunks, [&b"\x05\x01\x02"[..], b"", b"rest", b""]);
}

#[test]
fn replay_corpora() {
    let bodies: BTreeMap<&str, Body> = TARGETS.iter().copied().collect();
    let mut replayed = 0;
    let mut dirs: Vec<_> = fs::read_dir(corpus_dir())
        .expect("fuzz/corpus")
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let target = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let body = bodies
            .get(target.as_str())
            .unwrap_or_else(|| panic!("fuzz/corpus/{target} has no body in TARGETS"));
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        for f in files {
            let data = fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| body(&data));
            assert!(r.is_ok(), "{} fails its fuzz body", f.display());
            replayed += 1;
        }
    }
    for (target, _) in TARGETS {
        assert!(
            corpus_dir().join(target).is_dir(),
            "target {target} has no corpus"
        );
    }
    assert!(replayed >= TARGETS.len());
}

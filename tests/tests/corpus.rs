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
    ("admin_auth", fuzzing::admin_auth),
    ("admin_request", fuzzing::admin_request),
    ("admin_session", fuzzing::admin_session),
    ("sniffer", fuzzing::sniffer),
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
const ADMIN_AUTH: &[u8] = b"\x01\x05admin\x06secret";
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

    // SOCKS5 session scripts (options: bit 0 anonymous, bit 1 EOF at the end, bit 2 BIND
    // allowed, bit 3 UDP ASSOCIATE allowed, bits 4-5 the resolver's answer, bits 6-7 the dial
    // outcomes; step action: bit 0 answer the oldest question, bit 5 the newest (an accept
    // from a stranger), bit 1 EOF, bit 2 close request (bits 3-4 its cause), bit 6 results
    // nobody asked for). See `fuzzing::socks5_session`.
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
    // CONNECT to a name with two families: IPv6 attempts fail, IPv4 ones connect.
    let by_name = cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET)]);
    add(
        "socks5_session",
        "happy-eyeballs-stagger",
        script(
            0x80,
            &[
                step(34, 0, 1),
                step(0, 250, 0),
                step(0, 10, 1),
                step(0, 10, 0x21),
                step(0, 10, 1),
            ],
            &cat(&[&by_name, HTTP_GET]),
        ),
    );
    add(
        "socks5_session",
        "happy-eyeballs-all-fail",
        script(
            0x40,
            &[
                step(34, 0, 1),
                step(0, 5, 1),
                step(0, 5, 1),
                step(0, 5, 0x21),
                step(0, 5, 1),
            ],
            &by_name,
        ),
    );
    add(
        "socks5_session",
        "happy-eyeballs-black-hole",
        script(
            0,
            &[
                step(34, 0, 1),
                step(0, 1000, 0),
                step(0, 1600, 0),
                step(0, 100, 1),
            ],
            &by_name,
        ),
    );
    add(
        "socks5_session",
        "resolve-fails",
        script(0x30, &[step(34, 0, 1)], &by_name),
    );
    add(
        "socks5_session",
        "late-results",
        script(
            0,
            &[step(34, 0, 0x41), step(0, 300, 0x40), step(0, 1, 0x21)],
            &by_name,
        ),
    );
    add(
        "socks5_session",
        "close-request-while-dialing",
        script(0, &[step(34, 0, 1), step(0, 100, 0x14)], &by_name),
    );
    let bind = cat(&[GREET_UP, AUTH_BOB, b"\x05\x02\x00", V4_TARGET]);
    add(
        "socks5_session",
        "bind-accept",
        script(
            4,
            &[step(26, 0, 0), step(0, 50, 1)],
            &cat(&[&bind, b"PORT"]),
        ),
    );
    add(
        "socks5_session",
        "bind-stranger",
        script(4, &[step(26, 0, 1), step(0, 50, 0x21)], &bind),
    );
    add(
        "socks5_session",
        "bind-any-peer",
        script(
            4,
            &[],
            &cat(&[GREET_UP, AUTH_BOB, b"\x05\x02\x00\x01\0\0\0\0\0\0"]),
        ),
    );
    add(
        "socks5_session",
        "udp-associate",
        script(
            0x0a,
            &[step(26, 0, 1), step(5, 60_000, 0)],
            &cat(&[
                GREET_UP,
                AUTH_BOB,
                b"\x05\x03\x00\x01\0\0\0\0\0\0",
                b"junk!",
            ]),
        ),
    );
    add(
        "socks5_session",
        "udp-associate-closed-by-shutdown",
        script(
            0x08,
            &[step(26, 0, 1), step(0, 1000, 0x14)],
            &cat(&[GREET_UP, AUTH_BOB, b"\x05\x03\x00", NAME_TARGET]),
        ),
    );

    // Admin authentication: selector (bit 0 final, bit 1 SCTP framing, bit 2 EOF), stream.
    let sel = |b: u8, stream: &[u8]| cat(&[&[b], stream]);
    add("admin_auth", "admin", sel(0, ADMIN_AUTH));
    add(
        "admin_auth",
        "root-final-sctp",
        sel(3, b"\x01\x04root\x04toor"),
    );
    add("admin_auth", "not-admin", sel(0, AUTH_BOB));
    add(
        "admin_auth",
        "wrong-password",
        sel(1, b"\x01\x05admin\x06secreT"),
    );
    add("admin_auth", "bad-version", sel(0, b"\x05\x01\x02"));
    add("admin_auth", "empty-fields-eof", sel(4, b"\x01\x00\x00"));
    add(
        "admin_auth",
        "pipelined",
        sel(0, &cat(&[ADMIN_AUTH, b"\x00\x07\x00\x00"])),
    );

    // Admin requests: selector (bit 0 final), request, then its response.
    let req = |d: u8, q: &[u8], r: &[u8]| cat(&[&[d], q, r]);
    add(
        "admin_request",
        "list-draft",
        req(0, b"\x00\x00", b"\x00\x00\x02\x05admin\x03bob"),
    );
    add(
        "admin_request",
        "list-final",
        req(1, b"\x00\x00", b"\x00\x00\x02\x05admin\x01\x03bob\x00"),
    );
    add(
        "admin_request",
        "historic",
        req(0, b"\x00\x01", b"\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00"),
    );
    add(
        "admin_request",
        "current",
        req(0, b"\x00\x02", b"\x00\x02\x00\x03"),
    );
    add(
        "admin_request",
        "users-connected-final",
        req(1, b"\x00\x06", b"\x00\x06\x02"),
    );
    add(
        "admin_request",
        "buffer-size",
        req(0, b"\x00\x08", b"\x00\x08\x00\x00\x40\x00"),
    );
    add(
        "admin_request",
        "conn-timeout-draft",
        req(0, b"\x00\x10", b"\x00\x10\x78"),
    );
    add(
        "admin_request",
        "conn-timeout-final",
        req(1, b"\x00\x0a", b"\x00\x0a\x78"),
    );
    add(
        "admin_request",
        "user-conns-draft",
        req(0, b"\x00\x11\x03bob", b"\x00\x11\x02"),
    );
    add(
        "admin_request",
        "user-conns-final",
        req(1, b"\x00\x0b\x03bob", b"\x00\x0b\x00\x02"),
    );
    add(
        "admin_request",
        "user-conns-unknown",
        req(1, b"\x00\x0b\x03eve", b"\x00\xfe\xfe"),
    );
    add(
        "admin_request",
        "add-user",
        req(0, b"\x01\x00\x03eve\x02pw\x00", b"\x01\x00\x00"),
    );
    add(
        "admin_request",
        "remove-user-final",
        req(1, b"\x01\x01\x03bob", b"\x01\x01\xfe"),
    );
    add(
        "admin_request",
        "sniffing",
        req(0, b"\x01\x02\x01", b"\x01\x02\x00"),
    );
    add(
        "admin_request",
        "set-buffer",
        req(0, b"\x01\x04\x00\x00\x40\x00", b"\x01\x04\x01"),
    );
    add(
        "admin_request",
        "set-timeouts",
        req(0, b"\x01\x06\x3c", b"\x01\x06\x00"),
    );
    add(
        "admin_request",
        "unknown-cmd",
        req(0, b"\x00\x0c", b"\x00\xff"),
    );
    add(
        "admin_request",
        "unknown-type",
        req(0, b"\x07\x00", b"\xff\xff"),
    );

    // Admin sessions (options: bit 0 final, bit 1 SCTP framing, bit 2 EOF at the end, bit 3
    // log in as admin first; step action: bit 0 end of SCTP message, bit 1 EOF, bit 2 close
    // by the clean-up routine, bit 3 another admin removes `admin`).
    let queries: Vec<u8> = cat(&[
        b"\x00\x00\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x00\x06\x00\x07\x00\x08",
        b"\x00\x09\x00\x0a\x00\x10\x00\x0b\x03bob\x00\x11\x03eve",
    ]);
    let modifies: Vec<u8> = cat(&[
        b"\x01\x00\x03eve\x02pw\x00\x01\x00\x03eve\x02pw\x00\x01\x00\x03a:b\x01x\x01",
        b"\x01\x00\x02op\x02pw\x07\x00\x00\x01\x01\x03eve\x01\x01\x05admin\x01\x01\x03zed",
        b"\x01\x02\x00\x01\x02\x02\x01\x03\x01\x01\x04\x00\x00\x00\x31",
        b"\x01\x04\x00\x10\x00\x00\x01\x05\x00\x01\x05\x0a\x01\x06\x00\x01\x06\xff",
        b"\x00\x00",
    ]);
    add("admin_session", "queries-draft", script(8, &[], &queries));
    add("admin_session", "queries-final", script(9, &[], &queries));
    add("admin_session", "modifies-draft", script(8, &[], &modifies));
    add(
        "admin_session",
        "modifies-final-eof",
        script(13, &[], &modifies),
    );
    add(
        "admin_session",
        "auth-then-requests-step-by-step",
        script(
            0,
            &[
                step(5, 0, 0),
                step(9, 10, 0),
                step(1, 10, 0),
                step(6, 10, 0),
            ],
            &cat(&[ADMIN_AUTH, b"\x01\x00\x03eve\x02pw\x00\x00\x00"]),
        ),
    );
    add(
        "admin_session",
        "sctp-messages",
        script(
            10,
            &[step(2, 0, 1), step(3, 0, 1), step(1, 0, 1), step(4, 0, 1)],
            &cat(&[
                b"\x00\x07",
                b"\x00\x09\x00",
                b"\x00",
                b"\x00\x0c\x00\x07",
                b"\x00\x00",
            ]),
        ),
    );
    add(
        "admin_session",
        "unknown-type-closes-stream",
        script(8, &[], b"\x00\x07\x09\x00\x00\x07"),
    );
    add(
        "admin_session",
        "wrong-password",
        script(0, &[], b"\x01\x05admin\x06secreT\x00\x07"),
    );
    add(
        "admin_session",
        "not-admin",
        script(0, &[], &cat(&[AUTH_BOB, b"\x00\x07"])),
    );
    add(
        "admin_session",
        "handshake-timeout",
        script(0, &[step(4, 5000, 0), step(9, 5000, 0)], ADMIN_AUTH),
    );
    add(
        "admin_session",
        "removed-while-pipelining",
        script(
            8,
            &[step(2, 0, 0), step(2, 0, 8)],
            b"\x00\x07\x00\x07\x00\x07",
        ),
    );
    add(
        "admin_session",
        "cleanup-closes",
        script(8, &[step(2, 0, 0), step(2, 0, 4)], b"\x00\x07\x00\x07"),
    );
    add(
        "admin_session",
        "eof-mid-request",
        script(8, &[step(3, 0, 2)], b"\x00\x07\x01\x00"),
    );

    // Sniffer (options & 7: port index 80, 110, 21, 143, 8080, 995, 587, 25; step action bit 0:
    // the piece comes from the server).
    let conv = |parts: &[(bool, &[u8])]| -> (Vec<Step>, Vec<u8>) {
        let steps = parts
            .iter()
            .map(|(srv, b)| step(b.len() as u16, 0, u8::from(*srv)))
            .collect();
        (steps, parts.iter().flat_map(|(_, b)| b.to_vec()).collect())
    };
    let mut sniff = |name: &'static str, port_index: u8, parts: &[(bool, &[u8])]| {
        let (steps, stream) = conv(parts);
        add("sniffer", name, script(port_index, &steps, &stream));
    };
    sniff(
        "http-basic-200",
        0,
        &[
            (false, b"GET /private/ HTTP/1.1\r\nHost: www.example.com\r\nAuthorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"),
            (true, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        ],
    );
    sniff(
        "http-basic-401-then-200",
        4,
        &[
            (false, b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic Ym9iOng=\r\n\r\n"),
            (true, b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
            (false, b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nAuthorization: Basic Ym9iOnk=\r\n\r\nabc"),
            (true, b"HTTP/1.1 204 No Content\r\n\r\n"),
        ],
    );
    sniff(
        "pop3-user-pass",
        1,
        &[
            (true, b"+OK Dovecot ready.\r\n"),
            (false, b"USER alice\r\n"),
            (true, b"+OK\r\n"),
            (false, b"PASS s3cret\r\n"),
            (true, b"+OK Logged in.\r\n"),
            (false, b"QUIT\r\n"),
        ],
    );
    sniff(
        "pop3-failed",
        1,
        &[
            (true, b"+OK ready\r\n"),
            (false, b"USER alice\r\nPASS nope\r\n"),
            (true, b"+OK\r\n-ERR [AUTH] Authentication failed.\r\n"),
        ],
    );
    sniff(
        "ftp",
        2,
        &[
            (true, b"220 (vsFTPd 3.0.5)\r\n"),
            (false, b"USER anna\r\n"),
            (true, b"331 Please specify the password.\r\n"),
            (false, b"PASS pw1\r\n"),
            (true, b"230 Login successful.\r\n"),
        ],
    );
    sniff(
        "imap",
        3,
        &[
            (true, b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n"),
            (false, b"a1 LOGIN \"joe\" \"p w\"\r\n"),
            (true, b"a1 OK Logged in\r\n"),
        ],
    );
    sniff("tls", 0, &[(false, b"\x16\x03\x01\x00\x05hello")]);
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

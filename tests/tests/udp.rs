//! The UDP ASSOCIATE datagram side (`socks5d_core::udp`): header round trips (proptest),
//! association scripts run through the fuzz body's invariants (proptest), and the seeds of
//! the `udp_header` and `udp_association` fuzz targets, generated here and replayed.
//!
//! Regenerate the seeds after changing [`seeds`]:
//! `SOCKS5D_WRITE_SEEDS=1 cargo test -p socks5d-tests --test udp seeds_are_committed`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use socks5d_core::udp::{Header, HeaderError};
use socks5d_testkit::udp::{self as fuzz, Op, Script};
use socks5d_tests::strategies::{arb_addr_wire, arb_bytes, arb_target_addr};

// ---------------------------------------------------------------------------------------------
// Header round trips
// ---------------------------------------------------------------------------------------------

fn arb_header() -> impl Strategy<Value = Header> {
    (any::<u8>(), arb_target_addr()).prop_map(|(frag, addr)| Header { frag, addr })
}

/// Datagrams that are mostly well formed: RSV (usually zero), FRAG, an address as the wire
/// has it (valid or not), DATA.
fn arb_datagram_wire() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![9 => Just([0u8, 0]), 1 => any::<[u8; 2]>()],
        any::<u8>(),
        arb_addr_wire(),
        proptest::collection::vec(any::<u8>(), 0..64),
        0..8usize,
    )
        .prop_map(|(rsv, frag, addr, data, cut)| {
            let mut b = [&rsv[..], &[frag], &addr, &data].concat();
            // Sometimes shorter than the header.
            if cut == 0 {
                b.truncate(b.len() / 2);
            }
            b
        })
}

proptest! {
    /// `decode(encode(h) ++ data) == (h, data)`, and the header is `encoded_len` long.
    #[test]
    fn header(h in arb_header(), data in arb_bytes(0, 300)) {
        let mut b = BytesMut::new();
        h.encode(&mut b);
        prop_assert_eq!(b.len(), h.encoded_len());
        prop_assert!(b.len() <= Header::MAX_LEN);
        b.put_slice(&data);
        let d = b.freeze();
        prop_assert_eq!(Header::check(&d), Ok(h.encoded_len()));
        let (back, payload) = Header::decode(&d).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(payload, data);
    }

    /// Datagrams that decode re-encode to themselves; every strict prefix of a header is
    /// truncated; the fuzz body's invariants hold.
    #[test]
    fn header_bytes(b in arb_datagram_wire()) {
        let d = Bytes::from(b.clone());
        match Header::decode(&d) {
            Ok((h, payload)) => {
                let mut out = BytesMut::new();
                h.encode(&mut out);
                let n = out.len();
                out.put_slice(&payload);
                prop_assert_eq!(&out[..], &b[..]);
                for i in 0..n {
                    prop_assert_eq!(Header::check(&b[..i]), Err(HeaderError::Truncated { len: i }));
                }
            }
            Err(e) => prop_assert_eq!(Header::check(&b), Err(e)),
        }
        fuzz::udp_header(&b);
    }

    /// Any bytes at all.
    #[test]
    fn header_garbage(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz::udp_header(&b);
    }

    /// Association scripts shaped like real traffic keep the invariants of the fuzz body.
    #[test]
    fn association(options in any::<u8>(), ops in proptest::collection::vec(arb_op(), 0..40)) {
        let s = Script { options, ops };
        prop_assert_eq!(Script::from_fuzz_input(&s.to_fuzz_input()), s.clone());
        fuzz::udp_association(&s.to_fuzz_input());
    }

    /// And so do arbitrary bytes read as a script.
    #[test]
    fn association_garbage(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzz::udp_association(&b);
    }
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Mostly the client's addresses and valid headers, so that names and replies happen.
        6 => (0..4u8, prop_oneof![9 => Just(0u8), 1 => any::<u8>()], any::<u8>(),
              prop_oneof![Just(53u16), Just(80), Just(0), any::<u16>()], any::<u8>())
            .prop_map(|(from, frag, dest, port, len)| Op::Send { from, frag, dest, port, len }),
        4 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(from, bytes)| Op::Raw { from, bytes }),
        3 => (any::<u8>(), proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..3)))
            .prop_map(|(name, addrs)| Op::Resolved { name, addrs }),
        2 => prop_oneof![Just(0u16), Just(500), Just(1000), Just(2000), any::<u16>()]
            .prop_map(|ms| Op::Tick { ms }),
    ]
}

#[test]
fn scripts_encode_for_the_fuzz_body() {
    let s = Script {
        options: 0xa5,
        ops: vec![
            Op::Raw {
                from: 3,
                bytes: b"\x00\x00".to_vec(),
            },
            Op::Send {
                from: 0,
                frag: 1,
                dest: 14,
                port: 0xbeef,
                len: 255,
            },
            Op::Resolved {
                name: 2,
                addrs: Some(vec![4, 6]),
            },
            Op::Resolved {
                name: 0,
                addrs: Some(vec![]),
            },
            Op::Resolved {
                name: 1,
                addrs: None,
            },
            Op::Tick { ms: 65535 },
        ],
    };
    assert_eq!(Script::from_fuzz_input(&s.to_fuzz_input()), s);
    assert_eq!(
        Script::from_fuzz_input(&[]),
        Script {
            options: 0,
            ops: vec![]
        }
    );
    // Truncated input: missing bytes read as zero.
    assert_eq!(
        Script::from_fuzz_input(&[1, 3, 7]),
        Script {
            options: 1,
            ops: vec![Op::Tick { ms: 0x0700 }]
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Fuzz seeds
// ---------------------------------------------------------------------------------------------

/// A fuzz body.
type Body = fn(&[u8]);

/// Bodies of the targets whose seeds live here.
const TARGETS: &[(&str, Body)] = &[
    ("udp_header", fuzz::udp_header),
    ("udp_association", fuzz::udp_association),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// Pool indexes of the association script (see `socks5d_testkit::udp`).
const CLIENT: u8 = 0;
const CLIENT_MAPPED: u8 = 1;
const CLIENT_OTHER_PORT: u8 = 2;
const DNS_V4: u8 = 4;
const DNS_V4_MAPPED: u8 = 5;
const WEB_V6: u8 = 6;
const STRANGER: u8 = 8;
const DNS_V4_OTHER_PORT: u8 = 9;
const UNSPECIFIED: u8 = 10;
// Destination indexes of the names.
const NAME_A: u8 = 12;
const NAME_B: u8 = 13;
const NAME_C: u8 = 14;
const NAME_NOT_UTF8: u8 = 15;

fn send(from: u8, dest: u8, port: u16, len: u8) -> Op {
    Op::Send {
        from,
        frag: 0,
        dest,
        port,
        len,
    }
}

fn raw(from: u8, bytes: &[u8]) -> Op {
    Op::Raw {
        from,
        bytes: bytes.to_vec(),
    }
}

fn resolved(name: u8, addrs: Option<&[u8]>) -> Op {
    Op::Resolved {
        name,
        addrs: addrs.map(<[u8]>::to_vec),
    }
}

fn tick(ms: u16) -> Op {
    Op::Tick { ms }
}

fn script(options: u8, ops: Vec<Op>) -> Vec<u8> {
    Script { options, ops }.to_fuzz_input()
}

/// The seed files: target -> (file name -> contents).
fn seeds() -> BTreeMap<&'static str, BTreeMap<&'static str, Vec<u8>>> {
    let mut m: BTreeMap<&str, BTreeMap<&str, Vec<u8>>> = BTreeMap::new();
    let mut add = |t: &'static str, name: &'static str, bytes: Vec<u8>| {
        assert!(m.entry(t).or_default().insert(name, bytes).is_none());
    };

    // Headers (RFC 1928 §7), good and bad.
    let v4 = b"\x00\x00\x00\x01\xc0\x00\x02\x01\x00\x35";
    let v6 =
        b"\x00\x00\x00\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\xbb";
    let name = b"\x00\x00\x00\x03\x0bexample.com\x00\x50";
    add("udp_header", "v4", cat(&[v4, b"query"]));
    add("udp_header", "v6", cat(&[v6, b"hello"]));
    add("udp_header", "name", cat(&[name, b"GET"]));
    add("udp_header", "empty-data", v4.to_vec());
    add(
        "udp_header",
        "frag",
        b"\x00\x00\x81\x01\xc0\x00\x02\x01\x00\x35x".to_vec(),
    );
    add("udp_header", "truncated", v6[..12].to_vec());
    add(
        "udp_header",
        "reserved",
        b"\x00\x01\x00\x01\xc0\x00\x02\x01\x00\x35".to_vec(),
    );
    add(
        "udp_header",
        "bad-atyp",
        b"\x00\x00\x00\x02\xc0\x00\x02\x01\x00\x35".to_vec(),
    );
    add(
        "udp_header",
        "empty-name",
        b"\x00\x00\x00\x03\x00\x00\x35".to_vec(),
    );

    // Association scripts (options: bits 0-1 request DST 0.0.0.0:0 / 0.0.0.0:5000 / [::]:0 /
    // name:5000, bit 2 mapped control address, bit 3 small limits, bit 4 no negative cache).
    add(
        "udp_association",
        "relay-and-reply",
        script(
            1,
            vec![
                send(CLIENT, DNS_V4, 0, 5),
                raw(DNS_V4, b"answer"),
                raw(DNS_V4_OTHER_PORT, b"x"),
                raw(STRANGER, b"x"),
                send(STRANGER, DNS_V4, 0, 1),
                send(CLIENT_OTHER_PORT, DNS_V4, 0, 1),
                send(CLIENT, WEB_V6, 0, 0),
                raw(WEB_V6, b""),
            ],
        ),
    );
    add(
        "udp_association",
        "learn-port",
        script(
            0,
            vec![
                raw(CLIENT_OTHER_PORT, b"\x01\x02"),
                send(STRANGER, DNS_V4, 0, 1),
                send(CLIENT_OTHER_PORT, DNS_V4, 0, 2),
                send(CLIENT, DNS_V4, 0, 3),
                raw(DNS_V4, b"a"),
            ],
        ),
    );
    add(
        "udp_association",
        "mapped",
        script(
            5,
            vec![
                send(CLIENT_MAPPED, DNS_V4_MAPPED, 0, 4),
                raw(DNS_V4, b"a"),
                raw(DNS_V4_MAPPED, b"b"),
                send(CLIENT, DNS_V4, 0, 1),
                Op::Send {
                    from: CLIENT,
                    frag: 1,
                    dest: DNS_V4,
                    port: 0,
                    len: 1,
                },
            ],
        ),
    );
    add(
        "udp_association",
        "names",
        script(
            1,
            vec![
                send(CLIENT, NAME_A, 53, 3),
                send(CLIENT, NAME_A, 80, 2),
                resolved(0, Some(&[WEB_V6, DNS_V4])),
                raw(WEB_V6, b"r"),
                send(CLIENT, NAME_A, 53, 1),
                tick(60_000),
                send(CLIENT, NAME_A, 53, 1),
                resolved(0, Some(&[DNS_V4_MAPPED])),
            ],
        ),
    );
    add(
        "udp_association",
        "resolve-fail-timeout",
        script(
            9,
            vec![
                send(CLIENT, NAME_A, 53, 3),
                send(CLIENT, NAME_B, 53, 3),
                send(CLIENT, NAME_C, 53, 3),
                resolved(0, None),
                send(CLIENT, NAME_A, 53, 3),
                tick(2_000),
                send(CLIENT, NAME_B, 53, 3),
                tick(500),
                send(CLIENT, NAME_B, 53, 3),
                resolved(1, Some(&[])),
            ],
        ),
    );
    add(
        "udp_association",
        "small-limits",
        script(
            25,
            vec![
                send(CLIENT, 3, 0, 1),
                send(CLIENT, DNS_V4, 0, 1),
                raw(3, b"refresh"),
                send(CLIENT, WEB_V6, 0, 1),
                raw(DNS_V4, b"late"),
                send(CLIENT, NAME_A, 53, 40),
                send(CLIENT, NAME_A, 53, 40),
                send(CLIENT, NAME_A, 53, 10),
                send(CLIENT, NAME_A, 53, 10),
                resolved(0, Some(&[DNS_V4])),
                tick(1_000),
            ],
        ),
    );
    add(
        "udp_association",
        "bad-destinations",
        script(
            1,
            vec![
                send(CLIENT, UNSPECIFIED, 0, 1),
                send(CLIENT, NAME_NOT_UTF8, 53, 1),
                send(CLIENT, NAME_B, 0, 1),
                send(CLIENT, NAME_B, 53, 1),
                resolved(1, Some(&[UNSPECIFIED])),
            ],
        ),
    );
    add(
        "udp_association",
        "domain-request-v6-control",
        script(
            3,
            vec![
                send(CLIENT, WEB_V6, 0, 1),
                raw(WEB_V6, b"x"),
                raw(CLIENT, b""),
            ],
        ),
    );
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
fn replay_corpora() {
    for (target, body) in TARGETS {
        let dir = corpus_dir().join(target);
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        for f in files {
            let data = fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| body(&data));
            assert!(r.is_ok(), "{} fails its fuzz body", f.display());
        }
    }
}

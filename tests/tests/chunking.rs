//! Chunking invariance: however a stream is cut into reads, a session's transcript (bytes
//! sent, events, input left unread) is the same as when it arrives in one read. For the admin
//! protocol this holds for TCP reads and, as requests are reassembled across SCTP messages,
//! for any cut into SCTP messages too (message ends matter only after an unframable request). Cases:
//! `PROPTEST_CASES` (default 256).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use socks5d_core::admin::msg::{AdminRequest, AdminResponse, Query};
use socks5d_core::admin::{self, AdminSession, Dialect, Framing};
use socks5d_core::socks5::{self, Greeting, HandshakeLimits, Request, Socks5Handshake};
use socks5d_core::state::{Config, ConnKind, Mutation, Privilege, State};
use socks5d_core::UserPassRequest;
use socks5d_testkit::fuzzing::{self, Script, Step};
use socks5d_tests::strategies::*;

/// Cuts `stream` at the given points (taken modulo its length, sorted, deduplicated).
fn cut<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for a in at {
        out.push(&stream[prev..a]);
        prev = a;
    }
    out.push(&stream[prev..]);
    out
}

// ---------------------------------------------------------------------------------------------
// SOCKS5
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Socks5Transcript {
    out: Vec<u8>,
    events: Vec<socks5::Event>,
    unread: Vec<u8>,
}

/// How the transport answers every question of a run: a name resolves to `resolved`; every
/// dial gets `dial`; a BIND listens on `listen` and accepts from `peer`; a UDP socket is bound
/// to `listen`.
#[derive(Debug, Clone, Copy)]
struct World {
    resolved: SocketAddr,
    dial: Result<SocketAddr, io::ErrorKind>,
    listen: SocketAddr,
    peer: SocketAddr,
}

#[allow(clippy::disallowed_methods)] // one epoch per run; the session only sees it as input
fn socks5_run(chunks: &[&[u8]], world: World) -> Socks5Transcript {
    let t0 = Instant::now();
    let state = Arc::new(State::new(t0, &Config::default()));
    let m = Mutation::AddUser {
        name: "bob".into(),
        password: "hunter2".into(),
        privilege: Privilege::User,
    };
    state.apply(None, &m);
    let conn = state.open(ConnKind::Proxy, t0);
    let limits = HandshakeLimits {
        allow_bind: true,
        allow_udp: true,
        ..HandshakeLimits::default()
    };
    let mut s = Socks5Handshake::new(t0, limits);
    let mut input = BytesMut::new();
    let mut t = Socks5Transcript {
        out: vec![],
        events: vec![],
        unread: vec![],
    };
    // Drains; returns the questions asked by the events drained.
    let drain = |s: &mut Socks5Handshake, t: &mut Socks5Transcript| {
        while let Some(b) = s.poll_transmit() {
            t.out.extend_from_slice(&b);
        }
        let from = t.events.len();
        while let Some(e) = s.poll_event() {
            t.events.push(e);
        }
        t.events[from..].to_vec()
    };
    let mut asked = Vec::new();
    for c in chunks {
        input.extend_from_slice(c);
        s.handle_input(t0, &mut input, &conn);
        asked.extend(drain(&mut s, &mut t));
    }
    // Answer every question, in the order asked, until none is left.
    while !asked.is_empty() {
        for e in std::mem::take(&mut asked) {
            match e {
                socks5::Event::Resolve { .. } => s.handle_resolved(t0, Ok(vec![world.resolved])),
                socks5::Event::Dial { attempt, .. } => {
                    s.handle_dial_result(t0, attempt, world.dial)
                }
                socks5::Event::Listen => {
                    s.handle_listening(t0, Ok(world.listen));
                    asked.extend(drain(&mut s, &mut t));
                    s.handle_accepted(t0, world.peer);
                }
                socks5::Event::BindUdp => s.handle_udp_bound(t0, Ok(world.listen)),
                _ => continue,
            }
            asked.extend(drain(&mut s, &mut t));
        }
    }
    t.unread = input.to_vec();
    t
}

/// A client stream: greeting, RFC 1929 request (right or wrong password), request, payload;
/// each part may be replaced by noise.
fn arb_socks5_stream() -> impl Strategy<Value = Vec<u8>> {
    let greeting = prop_oneof![
        4 => Just(b"\x05\x01\x02".to_vec()),
        1 => arb_greeting().prop_map(|g| { let mut b = BytesMut::new(); g.encode(&mut b); b.to_vec() }),
        1 => vec(any::<u8>(), 0..8),
    ];
    let auth = prop_oneof![
        4 => Just(b"\x01\x03bob\x07hunter2".to_vec()),
        1 => arb_userpass_request().prop_map(|m| {
            let mut b = BytesMut::new();
            UserPassRequest::encode(&m, &mut b);
            b.to_vec()
        }),
        1 => vec(any::<u8>(), 0..8),
    ];
    let request = prop_oneof![
        4 => arb_request().prop_map(|r| { let mut b = BytesMut::new(); Request::encode(&r, &mut b); b.to_vec() }),
        1 => arb_request_wire(),
    ];
    (greeting, auth, request, vec(any::<u8>(), 0..64))
        .prop_map(|(g, a, r, p)| [g, a, r, p].concat())
}

fn arb_world() -> impl Strategy<Value = World> {
    let dial = prop_oneof![
        arb_socket_addr().prop_map(Ok),
        prop::sample::select(vec![
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut,
            io::ErrorKind::NetworkUnreachable,
            io::ErrorKind::HostUnreachable,
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::Other,
        ])
        .prop_map(Err),
    ];
    (
        arb_socket_addr(),
        dial,
        arb_socket_addr(),
        arb_socket_addr(),
    )
        .prop_map(|(resolved, dial, listen, peer)| World {
            resolved,
            dial,
            listen,
            peer,
        })
        .prop_filter("advertised addresses are concrete", |w| {
            !w.listen.ip().is_unspecified()
        })
}

proptest! {
    #[test]
    fn socks5_any_cut_same_transcript(
        stream in arb_socks5_stream(),
        cuts in vec(any::<usize>(), 0..12),
        world in arb_world(),
    ) {
        let whole = socks5_run(&[&stream], world);
        prop_assert_eq!(&socks5_run(&cut(&stream, &cuts), world), &whole);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(&socks5_run(&bytes, world), &whole);
    }

    /// The fuzz body on structured streams: the fuzzer rarely builds a valid request after a
    /// valid authentication by itself, so this feeds the same invariants realistic scripts.
    #[test]
    fn socks5_session_body_on_realistic_scripts(
        options in any::<u8>(),
        steps in vec((0u16..64, 0u16..3000, any::<u8>()), 0..8),
        stream in arb_socks5_stream(),
    ) {
        let steps = steps
            .into_iter()
            .map(|(len, tick_ms, action)| Step { len, tick_ms, action })
            .collect();
        fuzzing::socks5_session(&Script { options, steps, stream }.to_fuzz_input());
    }
}

#[test]
fn greeting_split_inside_methods() {
    // A fixed case of the property above, so a regression names itself.
    let stream = [
        &b"\x05\x02\x00\x02\x01\x03bob\x07hunter2"[..],
        b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
    ]
    .concat();
    let a: SocketAddr = "10.0.0.1:5".parse().unwrap();
    let ok = World {
        resolved: a,
        dial: Ok(a),
        listen: a,
        peer: a,
    };
    let whole = socks5_run(&[&stream], ok);
    assert!(whole
        .events
        .iter()
        .any(|e| matches!(e, socks5::Event::Established { .. })));
    assert_eq!(&whole.out[..4], b"\x05\x02\x01\x00");
    assert!(Greeting::check(&stream).unwrap().is_some());
    for i in 0..=stream.len() {
        assert_eq!(
            socks5_run(&[&stream[..i], &stream[i..]], ok),
            whole,
            "cut at {i}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Admin protocol
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct AdminTranscript {
    /// Every byte sent; with `Framing::Message`, one entry per SCTP message, else one entry.
    out: Vec<Vec<u8>>,
    events: Vec<admin::Event>,
}

/// Runs an admin session over `chunks` (each one SCTP message with `Framing::Message`), as the
/// one driver does: drain, apply each `Apply` on the state, continue while no input is wanted.
#[allow(clippy::disallowed_methods)] // one epoch per run; the session only sees it as input
fn admin_run(dialect: Dialect, framing: Framing, chunks: &[&[u8]]) -> AdminTranscript {
    let t0 = Instant::now();
    let state = Arc::new(State::new(t0, &Config::default()));
    let m = Mutation::AddUser {
        name: "admin".into(),
        password: "secret".into(),
        privilege: Privilege::Admin,
    };
    state.apply(None, &m);
    let conn = state.open(ConnKind::Admin, t0);
    let timeout = state.settings().auth_timeout();
    let mut s = AdminSession::new(t0, dialect, framing, timeout);
    let mut t = AdminTranscript {
        out: vec![],
        events: vec![],
    };
    for c in chunks {
        s.handle_message(t0, c, true, &conn);
        loop {
            while let Some(b) = s.poll_transmit() {
                t.out.push(b.to_vec());
            }
            let mut answered = false;
            while let Some(e) = s.poll_event() {
                if let admin::Event::Apply(m) = &e {
                    let outcome = state.apply(Some(b"admin"), m);
                    t.events.push(e);
                    s.handle_apply_result(t0, outcome, &conn);
                    answered = true;
                    break;
                }
                t.events.push(e);
            }
            if answered {
                continue;
            }
            if s.wants_input() || s.is_closed() {
                break;
            }
            s.handle_continue(t0, &conn);
        }
    }
    if framing == Framing::Stream {
        t.out = vec![t.out.concat()];
    }
    t
}

const ADMIN_LOGIN: &[u8] = b"\x01\x05admin\x06secret";

fn encode_all(reqs: &[AdminRequest]) -> Vec<u8> {
    let mut b = BytesMut::from(ADMIN_LOGIN);
    for r in reqs {
        r.encode(&mut b);
    }
    b.to_vec()
}

/// A realistic admin stream: the login (usually right), requests, maybe noise.
fn arb_admin_stream() -> impl Strategy<Value = Vec<u8>> {
    let login = prop_oneof![
        6 => Just(ADMIN_LOGIN.to_vec()),
        1 => Just(b"\x01\x05admin\x06secreT".to_vec()),
        1 => vec(any::<u8>(), 0..4),
    ];
    (
        login,
        vec(arb_admin_request(), 0..12),
        prop_oneof![3 => Just(vec![]), 1 => vec(any::<u8>(), 0..8)],
    )
        .prop_map(|(login, reqs, noise)| {
            let mut b = BytesMut::from(&login[..]);
            for r in &reqs {
                r.encode(&mut b);
            }
            b.extend_from_slice(&noise);
            b.to_vec()
        })
}

proptest! {
    #[test]
    fn admin_any_cut_same_transcript(
        dialect in arb_dialect(),
        reqs in vec(arb_admin_request(), 0..16),
        noise in vec(any::<u8>(), 0..8),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let mut stream = encode_all(&reqs);
        stream.extend_from_slice(&noise);
        let whole = admin_run(dialect, Framing::Stream, &[&stream]);
        prop_assert_eq!(&admin_run(dialect, Framing::Stream, &cut(&stream, &cuts)), &whole);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(&admin_run(dialect, Framing::Stream, &bytes), &whole);
    }

    /// On SCTP, requests are reassembled across messages: without an unframable request, any
    /// cut into messages gives the same responses (one message each) and events.
    #[test]
    fn admin_any_cut_into_sctp_messages_same_transcript(
        dialect in arb_dialect(),
        reqs in vec(arb_admin_request(), 0..16),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let stream = encode_all(&reqs);
        let whole = admin_run(dialect, Framing::Message, &[&stream]);
        prop_assert_eq!(whole.out.len(), reqs.len() + 1, "one message per response");
        prop_assert_eq!(&admin_run(dialect, Framing::Message, &cut(&stream, &cuts)), &whole);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(&admin_run(dialect, Framing::Message, &bytes), &whole);
        // And the bytes are those of the stream.
        let tcp = admin_run(dialect, Framing::Stream, &[&stream]);
        prop_assert_eq!(whole.out.concat(), tcp.out.concat());
        prop_assert_eq!(whole.events, tcp.events);
    }

    /// N pipelined requests get N responses, in order: each response decodes as the answer to
    /// its request, and nothing is left over.
    #[test]
    fn admin_n_pipelined_requests_n_responses(
        dialect in arb_dialect(),
        reqs in vec(arb_admin_request(), 1..32),
    ) {
        let t = admin_run(dialect, Framing::Stream, &[&encode_all(&reqs)]);
        let mut out = BytesMut::from(&t.out.concat()[..]);
        prop_assert_eq!(&out.split_to(2)[..], b"\x01\x00");
        for (i, r) in reqs.iter().enumerate() {
            let resp = AdminResponse::decode(&mut out, dialect, r);
            prop_assert!(
                matches!(
                    (r, &resp),
                    (AdminRequest::Modify(_), Ok(Some(AdminResponse::Status { .. })))
                        | (AdminRequest::Query(_), Ok(Some(AdminResponse::Value { .. })))
                        | (AdminRequest::Query(_), Ok(Some(AdminResponse::Users(_))))
                        | (AdminRequest::Query(_), Ok(Some(AdminResponse::QueryError { .. })))
                ),
                "response {} to {:?}: {:?}", i, r, resp
            );
        }
        prop_assert!(out.is_empty(), "{} bytes answer nothing", out.len());
    }

    /// The fuzz body on structured streams: the fuzzer rarely builds valid requests after a
    /// valid login by itself, so this feeds the same invariants realistic scripts (any
    /// options, SCTP message ends, EOF, close requests, failing stores).
    #[test]
    fn admin_session_body_on_realistic_scripts(
        options in any::<u8>(),
        steps in vec((0u16..48, 0u16..3000, any::<u8>()), 0..10),
        stream in arb_admin_stream(),
    ) {
        let steps = steps
            .into_iter()
            .map(|(len, tick_ms, action)| Step { len, tick_ms, action })
            .collect();
        // Bit 3 (log in first) would log in twice: leave it to the stream.
        let options = options & !8;
        fuzzing::admin_session(&Script { options, steps, stream }.to_fuzz_input());
    }
}

#[test]
fn admin_pipeline_beyond_high_water_is_served_in_order() {
    // 12000 requests (half of them List Users) produce more than HIGH_WATER bytes of
    // responses, so the session holds back; every request is still answered, in order.
    let reqs: Vec<AdminRequest> = (0..12_000)
        .map(|i| {
            if i % 2 == 0 {
                AdminRequest::Query(Query::ListUsers)
            } else {
                AdminRequest::Query(Query::UserCount)
            }
        })
        .collect();
    let t = admin_run(Dialect::Final, Framing::Stream, &[&encode_all(&reqs)]);
    let list = b"\x00\x00\x01\x05admin\x01";
    let count = b"\x00\x07\x01";
    let mut want = b"\x01\x00".to_vec();
    for _ in 0..6000 {
        want.extend_from_slice(list);
        want.extend_from_slice(count);
    }
    assert_eq!(t.out.concat(), want);
    assert!(want.len() > AdminSession::HIGH_WATER);
    // The same over SCTP, one response per message.
    let t = admin_run(Dialect::Final, Framing::Message, &[&encode_all(&reqs)]);
    assert_eq!(t.out.len(), 12_001);
    assert_eq!(t.out.concat(), want);
}

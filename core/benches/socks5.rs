//! SOCKS5 handshakes per second through the `Socks5Handshake` state machine, with RFC 1929
//! username/password: greeting, authentication, CONNECT request to an IPv4 address, dial
//! result, success reply; and the same CONNECT to a name that resolves to an IPv6 and an IPv4
//! address where the IPv6 attempt fails (resolve, two dials). Each iteration also registers
//! and drops the connection in the shared `State`, as the transport does.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock once, to have a `now`
#![allow(missing_docs)]

use std::hint::black_box;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use socks5d_core::socks5::{Event, HandshakeLimits, Socks5Handshake};
use socks5d_core::state::{Config, ConnKind, Mutation, Outcome, Privilege, State};

const GREETING: &[u8] = &[0x05, 0x01, 0x02];
const AUTH: &[u8] = b"\x01\x03bob\x07hunter2";
const REQUEST: &[u8] = &[0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x50];
const REQUEST_NAME: &[u8] = b"\x05\x01\x00\x03\x0bexample.com\x00\x50";

fn state(now: Instant) -> Arc<State> {
    let state = Arc::new(State::new(now, &Config::default()));
    let add = Mutation::AddUser {
        name: Bytes::from_static(b"bob"),
        password: Bytes::from_static(b"hunter2").into(),
        privilege: Privilege::User,
    };
    assert_eq!(state.apply(None, &add), Outcome::Applied);
    state
}

/// One handshake; `chunks` are the client's writes. The transport's world: a name resolves to
/// `[2001:db8::1]:80, 127.0.0.1:80`, IPv6 attempts fail (network unreachable), IPv4 ones
/// connect from `local`. Returns whether it was established.
fn handshake(state: &Arc<State>, now: Instant, chunks: &[&[u8]], local: SocketAddr) -> bool {
    let conn = state.open(ConnKind::Proxy, now);
    let mut hs = Socks5Handshake::new(now, HandshakeLimits::default());
    let mut input = BytesMut::with_capacity(64);
    let mut established = false;
    let resolved: [SocketAddr; 2] = ["[2001:db8::1]:80".parse().expect("address"), local];
    for chunk in chunks {
        input.extend_from_slice(chunk);
        hs.handle_input(now, &mut input, &conn);
        // Drain in contract order, then answer what was asked, until nothing is.
        let mut asked = Vec::with_capacity(4);
        loop {
            while let Some(out) = hs.poll_transmit() {
                black_box(out);
            }
            while let Some(ev) = hs.poll_event() {
                established |= matches!(ev, Event::Established { .. });
                asked.push(ev);
            }
            if asked.is_empty() {
                break;
            }
            for ev in asked.drain(..) {
                match ev {
                    Event::Resolve { .. } => hs.handle_resolved(now, Ok(resolved.to_vec())),
                    Event::Dial { attempt, addr } => {
                        let r = if addr.is_ipv6() {
                            Err(io::ErrorKind::NetworkUnreachable)
                        } else {
                            Ok(local)
                        };
                        hs.handle_dial_result(now, attempt, r);
                    }
                    _ => {}
                }
            }
        }
    }
    established
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let state = state(now);
    let local: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    assert!(handshake(&state, now, &[GREETING, AUTH, REQUEST], local));
    let all: Vec<u8> = [GREETING, AUTH, REQUEST].concat();
    assert!(handshake(&state, now, &[&all], local));

    let mut g = c.benchmark_group("socks5_handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("userpass/one_step_per_write", |b| {
        b.iter(|| black_box(handshake(&state, now, &[GREETING, AUTH, REQUEST], local)));
    });
    g.bench_function("userpass/pipelined_in_one_write", |b| {
        b.iter(|| black_box(handshake(&state, now, &[&all], local)));
    });
    let by_name: Vec<u8> = [GREETING, AUTH, REQUEST_NAME].concat();
    assert!(handshake(&state, now, &[&by_name], local));
    g.bench_function("userpass/name_v6_fails_then_v4", |b| {
        b.iter(|| black_box(handshake(&state, now, &[&by_name], local)));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

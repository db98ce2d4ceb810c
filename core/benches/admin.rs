//! Admin requests decoded and answered per second: one request per `handle_input` call, and
//! pipelined batches of 1000 (Get Total Historic Connections, `00 01` → 10 bytes), and one
//! modification through its Apply round trip (Set Selector Timeout, `01 05 05`).
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock once, to have a `now`
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use socks5d_core::admin::{AdminSession, Dialect, Event, Framing};
use socks5d_core::state::{Config, ConnKind, Connection, Mutation, Outcome, Privilege, State};

const AUTH: &[u8] = b"\x01\x05admin\x06secret";
const HISTORIC: [u8; 2] = [0x00, 0x01];
const SET_SELECTOR: [u8; 3] = [0x01, 0x05, 0x05];

fn authenticated() -> (Instant, Arc<State>, Connection, AdminSession) {
    let now = Instant::now();
    let state = Arc::new(State::new(now, &Config::default()));
    let add = Mutation::AddUser {
        name: Bytes::from_static(b"admin"),
        password: "secret".into(),
        privilege: Privilege::Admin,
    };
    assert_eq!(state.apply(None, &add), Outcome::Applied);
    let conn = state.open(ConnKind::Admin, now);
    let timeout = state.settings().auth_timeout();
    let mut s = AdminSession::new(now, Dialect::Draft, Framing::Stream, timeout);
    s.handle_input(now, AUTH, &conn);
    assert_eq!(s.poll_transmit().as_deref(), Some(&[0x01, 0x00][..]));
    while s.poll_event().is_some() {}
    (now, state, conn, s)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("admin");

    let (now, _state, conn, mut s) = authenticated();
    g.throughput(Throughput::Elements(1));
    g.bench_function("historic_connections/single", |b| {
        b.iter(|| {
            s.handle_input(now, &HISTORIC, &conn);
            let out = s.poll_transmit().expect("a response");
            debug_assert_eq!(out.len(), 10);
            black_box(out);
        });
    });
    assert!(!s.is_closed());

    const BATCH: usize = 1000;
    let (now, _state, conn, mut s) = authenticated();
    let batch: Vec<u8> = HISTORIC.iter().copied().cycle().take(2 * BATCH).collect();
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("historic_connections/pipelined_1000", |b| {
        b.iter(|| {
            s.handle_input(now, &batch, &conn);
            let mut n = 0;
            while let Some(out) = s.poll_transmit() {
                n += out.len();
                black_box(out);
            }
            debug_assert_eq!(n, 10 * BATCH);
            debug_assert!(s.wants_input());
        });
    });
    assert!(!s.is_closed());

    let (now, state, conn, mut s) = authenticated();
    g.throughput(Throughput::Elements(1));
    g.bench_function("set_selector_timeout/apply_round_trip", |b| {
        b.iter(|| {
            s.handle_input(now, &SET_SELECTOR, &conn);
            let Some(Event::Apply(m)) = s.poll_event() else {
                panic!("an Apply");
            };
            let outcome = state.apply(Some(b"admin"), &m);
            s.handle_apply_result(now, outcome, &conn);
            let out = s.poll_transmit().expect("a response");
            debug_assert_eq!(&out[..], b"\x01\x05\x00");
            black_box((out, s.poll_event()));
        });
    });
    assert!(!s.is_closed());
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

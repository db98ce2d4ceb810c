//! Admin requests decoded and answered per second: one request per `handle_input` call, and
//! pipelined batches of 1000 (Get Total Historic Connections, `00 01` → 10 bytes).
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock once, to have a `now`
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use socks5d_core::admin::{AdminSession, Dialect, Framing};
use socks5d_core::state::{Config, ConnKind, Connection, Mutation, Outcome, Privilege, State};

const AUTH: &[u8] = b"\x01\x05admin\x06secret";
const HISTORIC: [u8; 2] = [0x00, 0x01];

fn authenticated() -> (Instant, Arc<State>, Connection, AdminSession) {
    let now = Instant::now();
    let state = Arc::new(State::new(now, &Config::default()));
    let add = Mutation::AddUser {
        name: Bytes::from_static(b"admin"),
        password: Bytes::from_static(b"secret"),
        privilege: Privilege::Admin,
    };
    assert_eq!(state.apply(None, &add), Outcome::Applied);
    let conn = state.open(ConnKind::Admin, now);
    let mut s = AdminSession::new(now, Dialect::Draft, Framing::Stream);
    let mut input = BytesMut::from(AUTH);
    s.handle_input(now, &mut input, &conn);
    assert_eq!(s.poll_transmit().as_deref(), Some(&[0x01, 0x00][..]));
    while s.poll_event().is_some() {}
    (now, state, conn, s)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("admin");

    let (now, _state, conn, mut s) = authenticated();
    let mut input = BytesMut::with_capacity(64);
    g.throughput(Throughput::Elements(1));
    g.bench_function("historic_connections/single", |b| {
        b.iter(|| {
            input.extend_from_slice(&HISTORIC);
            s.handle_input(now, &mut input, &conn);
            let out = s.poll_transmit().expect("a response");
            debug_assert_eq!(out.len(), 10);
            black_box(out);
        });
    });
    assert!(!s.is_closed());

    const BATCH: usize = 1000;
    let (now, _state, conn, mut s) = authenticated();
    let batch: Vec<u8> = HISTORIC.iter().copied().cycle().take(2 * BATCH).collect();
    let mut input = BytesMut::with_capacity(batch.len());
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("historic_connections/pipelined_1000", |b| {
        b.iter(|| {
            input.extend_from_slice(&batch);
            s.handle_input(now, &mut input, &conn);
            let mut n = 0;
            while let Some(out) = s.poll_transmit() {
                n += out.len();
                black_box(out);
            }
            debug_assert_eq!(n, 10 * BATCH);
            debug_assert!(input.is_empty());
        });
    });
    assert!(!s.is_closed());
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

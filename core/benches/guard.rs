//! The cost per connection of the abuse policies (`socks5d_core::guard`):
//! - `throttle/login_ok`: a successful SOCKS5 login's `begin_attempt` + `record_success` on a
//!   clean key (every authenticated connection pays this);
//! - `throttle/login_failed`: `begin_attempt` + `record_failure` on a key already at the cap
//!   (an attacker's attempt, refused);
//! - `throttle/flood_new_key`: a failure under a new user name into a full table (16 384
//!   keys), which evicts entries (a flood of made-up names, the worst case);
//! - `pool/admit_release`: an admission ticket taken and given back, pool half full;
//! - `pool/admit_evict`: a ticket taken from a full pool of 64, evicting the oldest.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock once, to have a `now`
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use socks5d_core::guard::{AdmissionPool, LoginThrottle, Slot, ThrottleKey, ThrottlePolicy};

const DEADLINE: Duration = Duration::from_secs(10);

fn throttle(c: &mut Criterion) {
    let now = Instant::now();
    let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let mut g = c.benchmark_group("throttle");

    let th = LoginThrottle::default();
    let key = ThrottleKey::Socks(addr, b"alice");
    g.bench_function("login_ok", |b| {
        b.iter(|| {
            let slot = th.begin_attempt(now, black_box(key), now + DEADLINE);
            assert_eq!(slot, Slot::Now);
            black_box(th.record_success(key))
        });
    });

    let th = LoginThrottle::default();
    let key = ThrottleKey::Socks(addr, b"mallory");
    for _ in 0..10 {
        let _ = th.record_failure(now, key);
    }
    g.bench_function("login_failed", |b| {
        b.iter(
            || match th.begin_attempt(now, black_box(key), now + DEADLINE) {
                Slot::Refused(t) => black_box(t),
                other => panic!("{other:?}"),
            },
        );
    });

    let th = LoginThrottle::new(ThrottlePolicy::default());
    let max = th.policy().max_keys;
    let mut i = 0u64;
    let mut name = Vec::with_capacity(32);
    let mut fail_new = |th: &LoginThrottle| {
        name.clear();
        name.extend_from_slice(format!("user{i}").as_bytes());
        i += 1;
        th.record_failure(now, ThrottleKey::Socks(addr, &name))
    };
    for _ in 0..2 * max {
        let _ = fail_new(&th);
    }
    assert!(th.len() <= max);
    g.bench_function("flood_new_key", |b| b.iter(|| black_box(fail_new(&th))));
    assert!(th.len() <= max);
    g.finish();
}

fn pool(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("pool");

    let pool = AdmissionPool::new(64);
    let _held: Vec<_> = (0..32).map(|_| pool.admit(now).0).collect();
    g.bench_function("admit_release", |b| {
        b.iter(|| {
            let (t, ev) = pool.admit(now);
            assert!(ev.is_none());
            t.release();
        });
    });

    let pool = AdmissionPool::new(64);
    let mut held: std::collections::VecDeque<_> = (0..64).map(|_| pool.admit(now).0).collect();
    g.bench_function("admit_evict", |b| {
        b.iter(|| {
            let (t, ev) = pool.admit(now);
            assert!(ev.is_some());
            // The evicted ticket's task drops it.
            held.pop_front();
            held.push_back(t);
        });
    });
    g.finish();
}

fn config() -> Criterion {
    // Short runs: the machine is shared.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = throttle, pool
}
criterion_main!(benches);

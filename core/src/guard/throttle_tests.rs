use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::*;

const SEC: Duration = Duration::from_secs(1);
/// The handshake deadline the drivers use (`state::HANDSHAKE_TIMEOUT`).
const DEADLINE: Duration = Duration::from_secs(10);

fn t0() -> Instant {
    crate::epoch::epoch()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn admin(s: &str) -> ThrottleKey<'static> {
    ThrottleKey::Admin(ip(s))
}

/// One failed login by a client that waits for every answer: returns the instant of the
/// answer, or `None` if the attempt was refused (the connection closed at once).
fn fail_once(th: &LoginThrottle, now: Instant, key: ThrottleKey<'_>) -> Option<Instant> {
    match th.begin_attempt(now, key, now + DEADLINE) {
        Slot::Now => {
            let _ = th.record_failure(now, key);
            Some(now)
        }
        Slot::At(t) => {
            assert!(t > now && t <= now + DEADLINE, "{:?}", t - now);
            let _ = th.record_failure(now, key);
            Some(t)
        }
        Slot::Refused(t) => {
            assert!(t > now + DEADLINE);
            None
        }
    }
}

#[test]
fn delays_double_up_to_the_cap() {
    let p = ThrottlePolicy::default();
    let want = [0, 1, 2, 4, 8, 16, 32, 60, 60, 60];
    for (n, &w) in want.iter().enumerate() {
        assert_eq!(p.delay(n as u32), w * SEC, "{n}");
    }
    assert_eq!(p.delay(u32::MAX), 60 * SEC);
    // 1 + 2 + 4 + 8 + 16 + 32, then 13 times 60.
    assert_eq!(p.schedule_sum(20), (63 + 13 * 60) * SEC);
    assert_eq!(p.schedule_sum(1), Duration::ZERO);
}

#[test]
fn twenty_wrong_passwords_take_the_schedule_sum() {
    let th = LoginThrottle::default();
    let key = admin("192.0.2.7");
    let start = t0();
    let mut now = start;
    let mut answers = Vec::new();
    while answers.len() < 20 {
        match fail_once(&th, now, key) {
            // The client sends its next attempt as soon as it has the answer.
            Some(at) => {
                answers.push(at);
                now = at;
            }
            // Refused: it reconnects a second later.
            None => now += SEC,
        }
        assert!(now < start + 3600 * SEC, "runaway");
    }
    let p = th.policy();
    for (k, at) in answers.iter().enumerate() {
        let k = k as u32 + 1;
        assert_eq!(*at - start, p.schedule_sum(k), "attempt {k}");
    }
    assert!(answers[19] - start >= p.schedule_sum(20));
    assert_eq!(answers[19] - start, 843 * SEC);

    // Meanwhile, other addresses and the other SOCKS users of that address are not delayed.
    assert_eq!(th.delay_until(now, admin("192.0.2.8")), None);
    assert_eq!(
        th.begin_attempt(now, admin("192.0.2.8"), now + DEADLINE),
        Slot::Now
    );
    let socks = ThrottleKey::Socks(ip("192.0.2.7"), b"alice");
    assert_eq!(th.begin_attempt(now, socks, now + DEADLINE), Slot::Now);
    // And the attacker still is.
    assert!(th.delay_until(now, key).is_some());
}

#[test]
fn socks_keys_are_address_and_user() {
    let th = LoginThrottle::default();
    let now = t0();
    let a = ip("198.51.100.1");
    let typo = ThrottleKey::Socks(a, b"bob");
    for _ in 0..5 {
        let _ = th.record_failure(now, typo);
    }
    assert!(th.delay_until(now, typo).is_some());
    // Same NAT address, another user; same user name, another address; the admin key.
    assert_eq!(th.delay_until(now, ThrottleKey::Socks(a, b"carol")), None);
    assert_eq!(th.delay_until(now, ThrottleKey::Socks(a, b"Bob")), None);
    assert_eq!(th.delay_until(now, ThrottleKey::Socks(a, b"")), None);
    let other = ip("198.51.100.2");
    assert_eq!(th.delay_until(now, ThrottleKey::Socks(other, b"bob")), None);
    assert_eq!(th.delay_until(now, ThrottleKey::Admin(a)), None);
    assert_eq!(th.len(), 1);
}

#[test]
fn a_success_resets() {
    let th = LoginThrottle::default();
    let key = ThrottleKey::Socks(ip("203.0.113.9"), b"dave");
    let mut now = t0();
    for _ in 0..4 {
        now = fail_once(&th, now, key).unwrap();
    }
    let at = th.delay_until(now, key).expect("delayed");
    assert_eq!(at - now, 8 * SEC);
    // The right password: answered in its slot, then the key is clean.
    assert_eq!(th.begin_attempt(now, key, now + DEADLINE), Slot::At(at));
    // The first failure was logged, the three after it (within the interval) were not.
    assert_eq!(th.record_success(key), 3);
    assert_eq!(th.delay_until(at, key), None);
    assert!(th.is_empty());
    // The next failure starts the schedule over.
    assert_eq!(th.begin_attempt(at, key, at + DEADLINE), Slot::Now);
    let note = th.record_failure(at, key);
    assert_eq!(note.failures, 1);
    assert_eq!(th.delay_until(at, key), Some(at + SEC));
}

#[test]
fn ipv6_is_keyed_by_slash_64_and_mapped_ipv4_as_ipv4() {
    let th = LoginThrottle::default();
    let now = t0();
    let _ = th.record_failure(now, admin("2001:db8:1:2::1"));
    for same in ["2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"] {
        assert!(th.delay_until(now, admin(same)).is_some(), "{same}");
    }
    for other in ["2001:db8:1:3::1", "2001:db8:1::1", "::1"] {
        assert_eq!(th.delay_until(now, admin(other)), None, "{other}");
    }
    let v4 = Ipv4Addr::new(192, 0, 2, 200);
    let _ = th.record_failure(now, ThrottleKey::Admin(v4.to_ipv6_mapped().into()));
    assert!(th.delay_until(now, ThrottleKey::Admin(v4.into())).is_some());
    // The IPv4 /64 does not spill over: a neighbour address is separate.
    let next = Ipv4Addr::new(192, 0, 2, 201);
    assert_eq!(th.delay_until(now, ThrottleKey::Admin(next.into())), None);
    // ::c000:2c8 (IPv4-compatible, deprecated) is an IPv6 address, not 192.0.2.200.
    let compat = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0xc000, 0x2c8));
    assert_eq!(th.delay_until(now, ThrottleKey::Admin(compat)), None);
}

#[test]
fn parallel_attempts_get_serial_slots() {
    let th = LoginThrottle::default();
    let key = admin("192.0.2.50");
    let now = t0();
    let deadline = now + DEADLINE;
    // 100 connections send their guess at the same instant; none has been checked yet.
    let slots: Vec<Slot> = (0..100)
        .map(|_| th.begin_attempt(now, key, deadline))
        .collect();
    let mut want = vec![Slot::Now];
    want.extend((1..=10).map(|s| Slot::At(now + s * SEC)));
    assert_eq!(&slots[..11], &want[..]);
    assert!(slots[11..].iter().all(|s| matches!(s, Slot::Refused(_))));

    // Checked and recorded one by one (what a driver does), the slots double.
    let th = LoginThrottle::default();
    let slots: Vec<Slot> = (0..100)
        .map(|_| {
            let s = th.begin_attempt(now, key, deadline);
            if !matches!(s, Slot::Refused(_)) {
                let _ = th.record_failure(now, key);
            }
            s
        })
        .collect();
    let mut want = vec![Slot::Now];
    want.extend([1, 3, 7].map(|s| Slot::At(now + s * SEC)));
    assert_eq!(&slots[..4], &want[..]);
    assert!(slots[4..].iter().all(|s| matches!(s, Slot::Refused(_))));
}

#[test]
fn concurrent_threads_get_distinct_slots() {
    let th = LoginThrottle::default();
    let key = admin("192.0.2.51");
    let now = t0();
    let deadline = now + DEADLINE;
    let granted: Vec<Instant> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    let mut mine = Vec::new();
                    for _ in 0..200 {
                        match th.begin_attempt(now, key, deadline) {
                            Slot::Now => mine.push(now),
                            Slot::At(t) => mine.push(t),
                            Slot::Refused(_) => continue,
                        }
                        let _ = th.record_failure(now, key);
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = granted.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), granted.len(), "two attempts shared a slot");
    // At most one per second of the deadline, whatever the interleaving.
    assert!((1..=11).contains(&granted.len()), "{}", granted.len());
    assert!(granted.iter().all(|&t| t <= deadline));
}

#[test]
fn refused_attempts_change_nothing() {
    let th = LoginThrottle::default();
    let key = admin("192.0.2.60");
    let now = t0();
    for _ in 0..8 {
        let _ = th.record_failure(now, key);
    }
    let until = th.delay_until(now, key).unwrap();
    assert_eq!(until - now, 60 * SEC);
    for _ in 0..1000 {
        assert_eq!(
            th.begin_attempt(now, key, now + DEADLINE),
            Slot::Refused(until)
        );
    }
    assert_eq!(th.delay_until(now, key), Some(until));
    // At the edge of the deadline it is granted, exactly in its slot.
    let later = until - DEADLINE;
    assert_eq!(
        th.begin_attempt(later, key, later + DEADLINE),
        Slot::At(until)
    );
    assert_eq!(th.record_failure(later, key).failures, 9);
}

#[test]
fn failures_are_logged_once_per_interval() {
    let th = LoginThrottle::default();
    let key = admin("192.0.2.70");
    let now = t0();
    let note = |s: u32| th.record_failure(now + s * SEC, key);
    assert_eq!(
        note(0),
        FailureNote {
            log: true,
            suppressed: 0,
            failures: 1
        }
    );
    for (i, s) in [1, 3, 7, 15, 31].into_iter().enumerate() {
        let n = note(s);
        assert!(!n.log, "{s}");
        assert_eq!((n.suppressed, n.failures), (0, i as u32 + 2));
    }
    // The interval is over: logged, with the five in between.
    assert_eq!(
        note(60),
        FailureNote {
            log: true,
            suppressed: 5,
            failures: 7
        }
    );
    let _ = note(61);
    let _ = note(62);
    // A success reports the ones not logged yet.
    assert_eq!(th.record_success(key), 2);
    assert_eq!(th.record_success(key), 0);
    // A new burst is logged at once.
    assert!(note(63).log);
}

#[test]
fn quiet_keys_are_forgotten() {
    let th = LoginThrottle::default();
    let key = admin("192.0.2.80");
    let now = t0();
    for _ in 0..10 {
        let _ = th.record_failure(now, key);
    }
    let p = *th.policy();
    let until = now + p.cap;
    // Just before the forget time the back-off holds (no delay, but the failures count).
    let almost = until + p.forget_after - SEC;
    assert_eq!(th.delay_until(almost, key), None);
    assert_eq!(th.sweep(almost), 0);
    assert_eq!(th.record_failure(almost, key).failures, 11);
    // Quiet for `forget_after` after the delay ended: reset, by a lookup or by the sweep.
    let gone = almost + p.cap + p.forget_after;
    assert_eq!(th.record_failure(gone, key).failures, 1);
    let _ = th.record_failure(gone, admin("192.0.2.81"));
    assert_eq!(th.len(), 2);
    assert_eq!(th.sweep(gone + p.cap), 0);
    assert_eq!(th.sweep(gone + p.base + p.forget_after), 2);
    assert!(th.is_empty());
}

#[test]
fn memory_is_bounded_and_a_flood_does_not_evict_the_attacker() {
    // 4 keys per shard (one evicted at a time), and 64 (eight at a time).
    for max_keys in [64, 1024] {
        let th = LoginThrottle::new(ThrottlePolicy {
            max_keys,
            ..ThrottlePolicy::default()
        });
        let now = t0();
        let target = ThrottleKey::Socks(ip("192.0.2.90"), b"admin");
        for _ in 0..10 {
            let _ = th.record_failure(now, target);
        }
        // The attacker makes up 10 000 user names from the same address, two failures each.
        let mut name = Vec::new();
        for i in 0..10_000u32 {
            name.clear();
            name.extend_from_slice(format!("user{i}").as_bytes());
            let k = ThrottleKey::Socks(ip("192.0.2.90"), &name);
            let _ = th.begin_attempt(now, k, now + DEADLINE);
            let _ = th.record_failure(now, k);
            let _ = th.record_failure(now, k);
            assert!(th.len() <= max_keys);
        }
        assert!(th.len() > max_keys / 2, "{}", th.len());
        assert_eq!(th.delay_until(now, target), Some(now + 60 * SEC));
        assert_eq!(th.record_failure(now, target).failures, 11);
    }
}

#[test]
fn a_full_shard_loses_its_least_failed_eighth() {
    let th = LoginThrottle::new(ThrottlePolicy {
        max_keys: 16 * SHARDS,
        ..ThrottlePolicy::default()
    });
    let now = t0();
    let key = |i: u32| ThrottleKey::Admin(IpAddr::V4(Ipv4Addr::from(0x0a10_0000 + i)));
    let shard_of = |i: u32| std::ptr::from_ref(th.shard(&KeyRef::from(key(i))));
    let same: Vec<u32> = (0..)
        .filter(|&i| shard_of(i) == shard_of(0))
        .take(17)
        .collect();
    // Sixteen keys with 1 to 16 failures fill the shard.
    for (n, &k) in same[..16].iter().enumerate() {
        for _ in 0..=n {
            let _ = th.record_failure(now, key(k));
        }
    }
    assert_eq!(th.len(), 16);
    // The seventeenth evicts the two (16 / 8) with 1 and 2 failures.
    let _ = th.record_failure(now, key(same[16]));
    let left: Vec<Option<u32>> = same.iter().map(|&k| th.peek(now, key(k))).collect();
    let mut want: Vec<Option<u32>> = vec![None, None];
    want.extend((3..=16).map(Some));
    want.push(Some(1));
    assert_eq!(left, want);
}

impl LoginThrottle {
    /// The failures tracked under `key`, if it is tracked (and not forgotten).
    fn peek(&self, now: Instant, key: ThrottleKey<'_>) -> Option<u32> {
        let k = KeyRef::from(key);
        let mut map = lock(self.shard(&k));
        self.live(&mut map, now, &k).map(|e| e.failures)
    }
}

#[test]
fn eviction_takes_forgotten_then_least_failed_then_oldest() {
    let th = LoginThrottle::new(ThrottlePolicy {
        max_keys: 2 * SHARDS, // two keys per shard
        ..ThrottlePolicy::default()
    });
    let now = t0();
    let p = *th.policy();
    // Five keys that land in one shard.
    let key = |i: u32| ThrottleKey::Admin(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
    let shard_of = |i: u32| std::ptr::from_ref(th.shard(&KeyRef::from(key(i))));
    let same: Vec<u32> = (0..)
        .filter(|&i| shard_of(i) == shard_of(0))
        .take(5)
        .collect();
    let &[a, b, c, d, e] = &same[..] else {
        unreachable!()
    };
    let fail = |k: u32, at: Instant| th.record_failure(at, key(k)).failures;
    let peek = |k: u32, at: Instant| th.peek(at, key(k));

    for _ in 0..3 {
        fail(a, now);
    }
    fail(b, now);
    // Full: c evicts b (1 failure), not a (3).
    fail(c, now);
    assert_eq!([a, b, c].map(|k| peek(k, now)), [Some(3), None, Some(1)]);
    // d evicts c, the least-failed.
    let t1 = now + SEC;
    fail(d, t1);
    assert_eq!([a, c, d].map(|k| peek(k, t1)), [Some(3), None, Some(1)]);
    // Among equals (a and d with 3 failures), the least recently touched goes: a.
    fail(d, t1);
    fail(d, t1);
    let t2 = now + 2 * SEC;
    fail(e, t2);
    assert_eq!([a, d, e].map(|k| peek(k, t2)), [None, Some(3), Some(1)]);
    // A forgotten entry goes before any live one, whatever its failures: at `gone`, d (3
    // failures, its delay over since t1 + 4 s) is forgotten; e, failed again, is not.
    let gone = t1 + p.delay(3) + p.forget_after;
    assert_eq!(fail(e, gone - SEC), 1); // e itself had been forgotten: starts over
    assert_eq!(peek(d, gone - SEC), Some(3));
    fail(a, gone);
    assert_eq!([a, d, e].map(|k| peek(k, gone)), [Some(1), None, Some(1)]);
    assert_eq!(th.len(), 2);
}

#[test]
fn absurd_policies_do_not_panic() {
    let th = LoginThrottle::new(ThrottlePolicy {
        base: Duration::MAX,
        cap: Duration::MAX,
        max_keys: 0,
        log_interval: Duration::MAX,
        forget_after: Duration::MAX,
    });
    assert_eq!(th.policy().cap, MAX_POLICY_DURATION);
    let key = admin("192.0.2.99");
    let now = t0();
    for _ in 0..100 {
        let _ = th.begin_attempt(now, key, now + DEADLINE);
        let _ = th.record_failure(now, key);
    }
    assert_eq!(th.delay_until(now, key), Some(now + MAX_POLICY_DURATION));
    assert_eq!(th.sweep(now + 3 * MAX_POLICY_DURATION), 1);
    // A deadline already passed: refused, never a panic.
    assert!(matches!(
        th.begin_attempt(now + SEC, key, now),
        Slot::Refused(_)
    ));
}

#[test]
fn delay_until_is_only_a_query() {
    let th = LoginThrottle::default();
    let key = admin("192.0.2.100");
    let now = t0();
    for _ in 0..50 {
        assert_eq!(th.delay_until(now, key), None);
    }
    assert!(th.is_empty());
    let _ = th.record_failure(now, key);
    for _ in 0..50 {
        assert_eq!(th.delay_until(now, key), Some(now + SEC));
    }
    assert_eq!(th.delay_until(now + SEC, key), None);
}

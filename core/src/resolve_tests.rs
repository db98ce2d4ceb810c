use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn t0() -> Instant {
    crate::epoch::epoch()
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
}

fn policy(ttl: u64, negative: u64, capacity: usize) -> CachePolicy {
    CachePolicy {
        ttl: Duration::from_secs(ttl),
        negative_ttl: Duration::from_secs(negative),
        capacity,
    }
}

#[test]
fn an_answer_is_kept_for_the_ttl_then_forgotten() {
    let mut c = ResolveCache::new(policy(30, 5, 16));
    assert_eq!(c.lookup(t0(), b"example.com"), Lookup::Miss);
    let addrs = [v4(1), IpAddr::V6(Ipv6Addr::LOCALHOST)];
    c.insert(t0(), b"example.com", addrs);
    assert_eq!(c.lookup(t0(), b"example.com"), Lookup::Hit(&addrs));
    let just_before = t0() + 30 * SEC - Duration::from_nanos(1);
    assert_eq!(c.lookup(just_before, b"example.com"), Lookup::Hit(&addrs));
    assert_eq!(c.lookup(t0() + 30 * SEC, b"example.com"), Lookup::Miss);
    // The expired entry is gone, not only hidden.
    assert!(c.is_empty());
    assert_eq!(c.lookup(t0(), b"example.com"), Lookup::Miss);
}

#[test]
fn names_compare_ascii_case_insensitively() {
    let mut c = ResolveCache::new(CachePolicy::default());
    c.insert(t0(), b"Example.COM", [v4(1)]);
    assert_eq!(c.lookup(t0(), b"example.com"), Lookup::Hit(&[v4(1)]));
    assert_eq!(c.lookup(t0(), b"EXAMPLE.com"), Lookup::Hit(&[v4(1)]));
    // One entry, replaced whatever the case of the new insertion.
    c.insert(t0(), b"eXample.Com", [v4(2)]);
    assert_eq!(c.len(), 1);
    assert_eq!(c.lookup(t0(), b"EXAMPLE.COM"), Lookup::Hit(&[v4(2)]));
    // Only ASCII letters fold: other bytes must match exactly.
    c.insert(t0(), "bücher.de".as_bytes(), [v4(3)]);
    assert_eq!(c.lookup(t0(), "BÜCHER.DE".as_bytes()), Lookup::Miss);
    assert_eq!(
        c.lookup(t0(), "BüCHER.DE".as_bytes()),
        Lookup::Hit(&[v4(3)])
    );
    // A trailing dot is another name (the resolver may treat them differently).
    assert_eq!(c.lookup(t0(), b"example.com."), Lookup::Miss);
}

#[test]
fn a_failure_is_kept_for_the_negative_ttl() {
    let mut c = ResolveCache::new(policy(30, 5, 16));
    c.insert_failure(t0(), b"nxdomain.invalid", ErrorKind::NotFound);
    assert_eq!(
        c.lookup(t0() + 4 * SEC, b"nxdomain.invalid"),
        Lookup::Failed(ErrorKind::NotFound)
    );
    assert_eq!(c.lookup(t0() + 5 * SEC, b"nxdomain.invalid"), Lookup::Miss);
    // An answer with no address is a negative answer too.
    c.insert(t0(), b"empty.example", []);
    assert_eq!(c.lookup(t0() + 4 * SEC, b"empty.example"), Lookup::Hit(&[]));
    assert_eq!(c.lookup(t0() + 5 * SEC, b"empty.example"), Lookup::Miss);
    // A later success replaces a failure, and a later failure a success.
    c.insert_failure(t0(), b"flaky.example", ErrorKind::TimedOut);
    c.insert(t0() + SEC, b"flaky.example", [v4(7)]);
    assert_eq!(
        c.lookup(t0() + 20 * SEC, b"flaky.example"),
        Lookup::Hit(&[v4(7)])
    );
    c.insert_failure(t0() + 21 * SEC, b"flaky.example", ErrorKind::TimedOut);
    assert_eq!(
        c.lookup(t0() + 22 * SEC, b"flaky.example"),
        Lookup::Failed(ErrorKind::TimedOut)
    );
    assert_eq!(c.lookup(t0() + 26 * SEC, b"flaky.example"), Lookup::Miss);
}

#[test]
fn when_full_the_oldest_insertion_makes_room() {
    let mut c = ResolveCache::new(policy(30, 5, 3));
    for (i, name) in [&b"a"[..], b"b", b"c"].into_iter().enumerate() {
        c.insert(t0(), name, [v4(i as u8)]);
    }
    // Re-inserting `a` makes it the newest: `b` is now the oldest.
    c.insert(t0() + SEC, b"a", [v4(9)]);
    c.insert(t0() + SEC, b"d", [v4(4)]);
    assert_eq!(c.len(), 3);
    assert_eq!(c.lookup(t0() + SEC, b"b"), Lookup::Miss);
    assert_eq!(c.lookup(t0() + SEC, b"a"), Lookup::Hit(&[v4(9)]));
    assert_eq!(c.lookup(t0() + SEC, b"c"), Lookup::Hit(&[v4(2)]));
    assert_eq!(c.lookup(t0() + SEC, b"d"), Lookup::Hit(&[v4(4)]));
    // A flood of new names never holds more than the capacity.
    for i in 0..1000u32 {
        c.insert(t0(), format!("flood-{i}.example").as_bytes(), [v4(1)]);
        assert!(c.len() <= 3);
    }
    assert_eq!(c.lookup(t0(), b"flood-999.example"), Lookup::Hit(&[v4(1)]));
    assert_eq!(c.lookup(t0(), b"flood-996.example"), Lookup::Miss);
}

#[test]
fn the_default_holds_1024_names() {
    let mut c = ResolveCache::new(CachePolicy::default());
    for i in 0..2000u32 {
        c.insert(t0(), format!("n{i}").as_bytes(), [v4(1)]);
    }
    assert_eq!(c.len(), DEFAULT_CAPACITY);
    assert_eq!(c.lookup(t0(), b"n975"), Lookup::Miss);
    assert_eq!(c.lookup(t0(), b"n976"), Lookup::Hit(&[v4(1)]));
}

#[test]
fn re_inserting_one_name_keeps_the_bookkeeping_bounded() {
    let mut c = ResolveCache::new(policy(30, 5, 4));
    for i in 0..10_000u32 {
        c.insert(t0(), b"busy.example", [v4((i % 250) as u8)]);
    }
    assert_eq!(c.len(), 1);
    assert!(c.order.len() <= 2 * 8 + 1, "{}", c.order.len());
    assert_eq!(c.lookup(t0(), b"busy.example"), Lookup::Hit(&[v4(249)]));
}

#[test]
fn zero_ttl_or_capacity_keeps_nothing() {
    for p in [policy(0, 0, 16), policy(30, 5, 0)] {
        let mut c = ResolveCache::new(p);
        assert!(!p.is_enabled());
        c.insert(t0(), b"a", [v4(1)]);
        c.insert_failure(t0(), b"b", ErrorKind::NotFound);
        assert!(c.is_empty());
        assert_eq!(c.lookup(t0(), b"a"), Lookup::Miss);
    }
    // Answers kept, failures not.
    let mut c = ResolveCache::new(policy(30, 0, 16));
    c.insert_failure(t0(), b"b", ErrorKind::NotFound);
    assert_eq!(c.lookup(t0(), b"b"), Lookup::Miss);
    assert!(CachePolicy::default().is_enabled());
}

#[test]
fn with_ttl_never_keeps_a_failure_longer_than_an_answer() {
    assert_eq!(
        CachePolicy::with_ttl(Duration::from_secs(2)).negative_ttl,
        2 * SEC
    );
    assert_eq!(
        CachePolicy::with_ttl(Duration::from_secs(300)).negative_ttl,
        DEFAULT_NEGATIVE_TTL
    );
    assert!(!CachePolicy::with_ttl(Duration::ZERO).is_enabled());
}

#[test]
fn names_too_long_are_not_kept_and_huge_ttls_do_not_overflow() {
    let mut c = ResolveCache::new(policy(u64::MAX / 4, 5, 16));
    assert_eq!(c.policy().ttl, MAX_TTL);
    let long = vec![b'a'; MAX_NAME + 1];
    c.insert(t0(), &long, [v4(1)]);
    assert_eq!(c.lookup(t0(), &long), Lookup::Miss);
    let longest = vec![b'a'; MAX_NAME];
    c.insert(t0(), &longest, [v4(1)]);
    assert_eq!(c.lookup(t0() + 3600 * SEC, &longest), Lookup::Hit(&[v4(1)]));
    assert_eq!(c.lookup(t0() + MAX_TTL, &longest), Lookup::Miss);
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        name: usize,
        upper: bool,
        at: u64,
        addrs: Vec<u8>,
    },
    Fail {
        name: usize,
        at: u64,
    },
    Lookup {
        name: usize,
        upper: bool,
        at: u64,
    },
}

const NAMES: [&str; 6] = ["a.example", "b.example", "c", "localhost", "x.y.z", "Mixed"];

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let at = 0u64..60;
    prop_oneof![
        (
            name.clone(),
            any::<bool>(),
            at.clone(),
            prop::collection::vec(any::<u8>(), 0..4)
        )
            .prop_map(|(name, upper, at, addrs)| Op::Insert {
                name,
                upper,
                at,
                addrs
            }),
        (name.clone(), at.clone()).prop_map(|(name, at)| Op::Fail { name, at }),
        (name, any::<bool>(), at).prop_map(|(name, upper, at)| Op::Lookup { name, upper, at }),
    ]
}

fn spelled(name: usize, upper: bool) -> Vec<u8> {
    let n = NAMES[name].as_bytes();
    if upper {
        n.to_ascii_uppercase()
    } else {
        n.to_vec()
    }
}

proptest! {
    /// Against a model that remembers every name's last insertion: a hit is always that
    /// insertion's answer and still fresh; with room for every name, a fresh insertion is
    /// always found; the cache never holds more than its capacity.
    #[test]
    fn agrees_with_the_last_insertion(
        capacity in 1usize..8,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let p = policy(10, 3, capacity);
        let mut c = ResolveCache::new(p);
        // name index -> (inserted at, answer)
        let mut last: HashMap<usize, (u64, Result<Vec<IpAddr>, ErrorKind>)> = HashMap::new();
        // Time only moves forward, as the server's clock does.
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Insert { name, upper, at, addrs } => {
                    now = now.max(at);
                    let addrs: Vec<IpAddr> = addrs.into_iter().map(v4).collect();
                    c.insert(t0() + Duration::from_secs(now), &spelled(name, upper), addrs.clone());
                    last.insert(name, (now, Ok(addrs)));
                }
                Op::Fail { name, at } => {
                    now = now.max(at);
                    c.insert_failure(t0() + Duration::from_secs(now), NAMES[name].as_bytes(), ErrorKind::NotFound);
                    last.insert(name, (now, Err(ErrorKind::NotFound)));
                }
                Op::Lookup { name, upper, at } => {
                    now = now.max(at);
                    let got = c.lookup(t0() + Duration::from_secs(now), &spelled(name, upper));
                    let fresh = last.get(&name).filter(|(t, a)| {
                        let ttl = match a {
                            Ok(v) if !v.is_empty() => 10,
                            _ => 3,
                        };
                        now < t + ttl
                    });
                    match (got, fresh) {
                        (Lookup::Hit(h), Some((_, Ok(v)))) => prop_assert_eq!(h, &v[..]),
                        (Lookup::Failed(k), Some((_, Err(e)))) => prop_assert_eq!(k, *e),
                        (Lookup::Miss, f) => prop_assert!(
                            f.is_none() || capacity < NAMES.len(),
                            "a fresh entry was lost with room for every name"
                        ),
                        (got, f) => prop_assert!(false, "got {:?}, model {:?}", got, f),
                    }
                }
            }
            prop_assert!(c.len() <= capacity);
        }
    }
}

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::*;

fn t0() -> Instant {
    crate::epoch::epoch()
}

fn ms(n: u64) -> Instant {
    t0() + Duration::from_millis(n)
}

/// Counts its wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Relaxed);
    }
}

#[test]
fn full_pool_evicts_the_oldest() {
    let pool = AdmissionPool::new(200);
    let held: Vec<Ticket> = (0..200)
        .map(|i| {
            let (t, ev) = pool.admit(ms(i));
            assert_eq!(ev, None, "{i}");
            t
        })
        .collect();
    assert_eq!(pool.len(), 200);
    let (new, ev) = pool.admit(ms(500));
    assert_eq!(
        ev,
        Some(Evicted {
            id: held[0].id(),
            admitted_at: ms(0)
        })
    );
    assert!(held[0].is_evicted());
    assert!(held[1..].iter().all(|t| !t.is_evicted()));
    assert!(!new.is_evicted());
    assert_eq!((pool.len(), pool.evictions()), (200, 1));
    // Then the next oldest, in order.
    let (_new2, ev) = pool.admit(ms(501));
    assert_eq!(ev.map(|e| e.id), Some(held[1].id()));
    // Dropping an evicted ticket frees nothing more.
    drop(held);
    assert_eq!(pool.len(), 2);
}

#[test]
fn authenticated_connections_leave_and_are_never_evicted() {
    let pool = AdmissionPool::new(3);
    let (a, _) = pool.admit(ms(0));
    let (b, _) = pool.admit(ms(1));
    let (c, _) = pool.admit(ms(2));
    // a authenticates: its place is free for a newcomer, without evicting anyone.
    let a_id = a.id();
    a.release();
    let (d, ev) = pool.admit(ms(3));
    assert_eq!(ev, None);
    // Full again: the oldest *unauthenticated* one goes, b, not a.
    let (e, ev) = pool.admit(ms(4));
    assert_eq!(ev.map(|e| e.id), Some(b.id()));
    assert_ne!(b.id(), a_id);
    assert!(b.is_evicted() && !c.is_evicted() && !d.is_evicted() && !e.is_evicted());
    // A connection that closes frees its place too.
    drop(c);
    assert_eq!(pool.len(), 2);
    let (_f, ev) = pool.admit(ms(5));
    assert_eq!(ev, None);
}

#[test]
fn try_admit_refuses_when_full() {
    let pool = AdmissionPool::new(2);
    let a = pool.try_admit(ms(0)).unwrap();
    let _b = pool.try_admit(ms(1)).unwrap();
    assert!(pool.try_admit(ms(2)).is_none());
    assert!(!a.is_evicted());
    drop(a);
    assert!(pool.try_admit(ms(3)).is_some());
    assert_eq!(pool.evictions(), 0);
}

#[test]
fn zero_capacity_is_one() {
    let pool = AdmissionPool::new(0);
    assert_eq!(pool.capacity(), 1);
    let (a, ev) = pool.admit(ms(0));
    assert_eq!(ev, None);
    let (_b, ev) = pool.admit(ms(1));
    assert_eq!(ev.map(|e| e.id), Some(a.id()));
}

#[test]
fn eviction_wakes_the_waiting_task() {
    let pool = AdmissionPool::new(1);
    let (a, _) = pool.admit(ms(0));
    let w = Arc::new(CountingWaker::default());
    let waker = Waker::from(w.clone());
    let mut cx = Context::from_waker(&waker);
    assert_eq!(a.poll_evicted(&mut cx), Poll::Pending);
    assert_eq!(a.poll_evicted(&mut cx), Poll::Pending); // same waker kept, not duplicated
    assert_eq!(w.0.load(Relaxed), 0);
    let (b, _) = pool.admit(ms(1));
    assert_eq!(w.0.load(Relaxed), 1);
    assert_eq!(a.poll_evicted(&mut cx), Poll::Ready(()));
    assert_eq!(a.poll_evicted(&mut cx), Poll::Ready(()));
    assert_eq!(b.poll_evicted(&mut cx), Poll::Pending);
    // Released, a ticket is never signalled.
    b.release();
    let (_c, ev) = pool.admit(ms(2));
    assert_eq!(ev, None);
    assert_eq!(w.0.load(Relaxed), 1);
}

#[test]
fn concurrent_admits_and_releases_keep_the_bound() {
    const CAP: usize = 16;
    let pool = AdmissionPool::new(CAP);
    let signals: Vec<Arc<Signal>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8u64)
            .map(|th| {
                let pool = &pool;
                sc.spawn(move || {
                    // Every ticket's flag, kept past the ticket, to count evictions at the end.
                    let mut signals = Vec::new();
                    let mut held: Vec<Ticket> = Vec::new();
                    for i in 0..2000u64 {
                        let (t, _) = pool.admit(ms(th * 10_000 + i));
                        assert!(pool.len() <= CAP);
                        signals.push(t.signal.clone());
                        held.push(t);
                        // Some authenticate (release), others close, others wait.
                        if i % 3 == 0 {
                            held.swap_remove(0).release();
                        }
                        if held.len() > 2 * CAP {
                            held.drain(..CAP);
                        }
                    }
                    signals
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    // Every eviction reached exactly one ticket, and every place was given back.
    let evicted = signals.iter().filter(|s| s.is_set()).count();
    assert_eq!(evicted as u64, pool.evictions());
    assert!(pool.evictions() > 0);
    assert!(pool.is_empty());
}

#[test]
fn ids_follow_admission_order() {
    let pool = AdmissionPool::new(4);
    let ids: Vec<u64> = (0..10).map(|i| pool.admit(ms(i)).0.id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_flooding_source_only_evicts_its_own() {
    let now = ms(0);
    let pool = AdmissionPool::new(4);
    let attacker: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let admin: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let mut held: Vec<_> = (0..4).map(|_| pool.admit_from(now, attacker).0).collect();
    let (mine, evicted) = pool.admit_from(now, admin);
    assert!(evicted.is_some(), "the pool was full");
    // The attacker reopens as fast as it can: it keeps evicting itself, never the admin.
    for _ in 0..100 {
        let (t, e) = pool.admit_from(now, attacker);
        assert!(e.is_some());
        held.push(t);
    }
    assert!(!mine.is_evicted());
    // IPv6 sources count by /64: two addresses of one block are one source.
    let pool = AdmissionPool::new(2);
    let a = pool.admit_from(now, "2001:db8::1".parse().unwrap()).0;
    let b = pool.admit_from(now, "2001:db8:0:1::1".parse().unwrap()).0;
    let (_c, e) = pool.admit_from(now, "2001:db8::2".parse().unwrap());
    assert_eq!(
        e.map(|e| e.id),
        Some(a.id()),
        "a tie between the two /64s: the oldest goes"
    );
    assert!(!b.is_evicted());
}

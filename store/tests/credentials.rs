//! The credential cache and the bounded verifier.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::cheap_hash;
use socks5d_store::{hash_password, Busy, CredentialCache, Verifier, MAX_CACHED_USERS};

#[test]
fn wrong_password_never_warms_the_cache() {
    let cache = CredentialCache::new().unwrap();
    let v = Verifier::new(2, 4);
    let h = cheap_hash(b"right");
    for _ in 0..3 {
        assert_eq!(v.verify_cached(&cache, b"alice", &h, b"wrong"), Ok(false));
    }
    assert!(cache.is_empty());
    assert!(!cache.check(b"alice", &h, b"wrong"));
    assert_eq!(v.verify_cached(&cache, b"alice", &h, b"right"), Ok(true));
    assert!(cache.check(b"alice", &h, b"right"));
    // A wrong password after a right one is still wrong, and leaves the right one cached.
    assert_eq!(v.verify_cached(&cache, b"alice", &h, b"wrong"), Ok(false));
    assert!(cache.check(b"alice", &h, b"right"));
    assert!(!cache.check(b"alice", &h, b"righ"));
    assert!(!cache.check(b"bob", &h, b"right"), "entries are per user");
}

#[test]
fn cache_hit_skips_argon2() {
    let cache = CredentialCache::new().unwrap();
    // Refused by check_hash, so argon2 would answer false: only the cache can say true.
    let unverifiable = "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";
    assert_eq!(
        Verifier::new(1, 0).verify_cached(&cache, b"u", unverifiable, b"pw"),
        Ok(false)
    );
    cache.remember(b"u", unverifiable, b"pw");
    assert_eq!(
        Verifier::new(1, 0).verify_cached(&cache, b"u", unverifiable, b"pw"),
        Ok(true)
    );
}

#[test]
fn re_added_user_invalidates_and_forget_drops() {
    let cache = CredentialCache::new().unwrap();
    let v = Verifier::new(1, 1);
    let old = cheap_hash(b"same");
    assert_eq!(v.verify_cached(&cache, b"alice", &old, b"same"), Ok(true));
    // Re-added with the same password: a new salt, so a new PHC string.
    let new = cheap_hash(b"same");
    assert!(
        !cache.check(b"alice", &new, b"same"),
        "old entry must not vouch for a new hash"
    );
    // Re-added with another password: the old password is refused (argon2 says no).
    let other = cheap_hash(b"other");
    assert_eq!(
        v.verify_cached(&cache, b"alice", &other, b"same"),
        Ok(false)
    );
    assert!(
        cache.check(b"alice", &old, b"same"),
        "a failure does not evict either"
    );
    cache.forget(b"alice");
    assert!(!cache.check(b"alice", &old, b"same"));
    assert!(cache.is_empty());
}

#[test]
fn distinct_processes_keys_distinct_caches() {
    let (a, b) = (
        CredentialCache::new().unwrap(),
        CredentialCache::new().unwrap(),
    );
    let h = cheap_hash(b"pw");
    a.remember(b"u", &h, b"pw");
    assert!(a.check(b"u", &h, b"pw"));
    assert!(!b.check(b"u", &h, b"pw"));
    assert!(!format!("{a:?}").contains("key"), "{a:?}");
}

#[test]
fn cache_is_bounded() {
    let cache = CredentialCache::new().unwrap();
    for i in 0..1000 {
        cache.remember(format!("u{i}").as_bytes(), "$argon2id$x", b"pw");
        assert!(cache.len() <= MAX_CACHED_USERS);
    }
    assert_eq!(cache.len(), MAX_CACHED_USERS);
    assert!(
        cache.check(b"u999", "$argon2id$x", b"pw"),
        "the newest entry stays"
    );
}

#[test]
fn cache_is_shared_across_threads() {
    let cache = Arc::new(CredentialCache::new().unwrap());
    let h = Arc::new(cheap_hash(b"pw"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (cache, h) = (cache.clone(), h.clone());
            thread::spawn(move || {
                let v = Verifier::new(2, 16);
                let name = format!("user{t}");
                for _ in 0..20 {
                    assert_eq!(
                        v.verify_cached(&cache, name.as_bytes(), &h, b"pw"),
                        Ok(true)
                    );
                    assert_eq!(
                        v.verify_cached(&cache, name.as_bytes(), &h, b"no"),
                        Ok(false)
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cache.len(), 8);
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn verifier_refuses_beyond_its_bound() {
    // The real parameters: a verification takes long enough (hundreds of ms in a debug
    // build, ~30 ms in release) to hold its slot while the others arrive.
    let h = Arc::new(hash_password(b"pw").unwrap());
    let v = Arc::new(Verifier::new(1, 1));
    let spawn = |pw: &'static [u8]| {
        let (v, h) = (v.clone(), h.clone());
        thread::spawn(move || v.verify(&h, pw))
    };
    let running = spawn(b"pw");
    wait_for("one running", || v.running() == 1);
    let queued = spawn(b"wrong");
    wait_for("one waiting", || v.waiting() == 1);
    let t = Instant::now();
    assert_eq!(v.verify(&h, b"pw"), Err(Busy), "beyond concurrency + queue");
    assert!(t.elapsed() < Duration::from_millis(50), "Busy is immediate");
    // An unverifiable hash takes no slot, so it is answered even now.
    assert_eq!(v.verify("garbage", b"pw"), Ok(false));
    assert_eq!(running.join().unwrap(), Ok(true));
    assert_eq!(queued.join().unwrap(), Ok(false));
    assert_eq!((v.running(), v.waiting()), (0, 0));
    assert_eq!(v.verify(&h, b"pw"), Ok(true), "slots come back");
}

#[test]
fn verifier_never_runs_more_than_its_concurrency() {
    let h = Arc::new(cheap_hash(b"pw"));
    let v = Arc::new(Verifier::new(2, 64));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (v, peak, stop) = (v.clone(), peak.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(v.running(), std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (v, h) = (v.clone(), h.clone());
            thread::spawn(move || (0..10).all(|_| v.verify(&h, b"pw") == Ok(true)))
        })
        .collect();
    for w in workers {
        assert!(
            w.join().unwrap(),
            "16 workers fit in concurrency 2 + queue 64"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=2).contains(&peak), "peak {peak}");
}

#[test]
fn debug_shows_no_secret() {
    let v = Verifier::default();
    let d = format!("{v:?}");
    assert!(d.contains("concurrency") && d.contains("running"), "{d}");
}

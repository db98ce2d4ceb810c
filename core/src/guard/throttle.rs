//! [`LoginThrottle`]: exponential back-off on failed logins.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

/// Shards of the key table: concurrent logins under different keys rarely wait on each other.
const SHARDS: usize = 16;

/// Durations of a [`ThrottlePolicy`] above this (24 h) are taken as 24 h, so that no sum of
/// instants and durations here can overflow.
pub const MAX_POLICY_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The tuning of a [`LoginThrottle`].
///
/// After `n` failures under a key, the next answer waits `base · 2^(n-1)`, at most `cap`,
/// after the previous one: with the defaults 1 s, 2 s, 4 s, … 32 s, then 60 s for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// The delay after the first failure (default 1 s).
    pub base: Duration,
    /// The largest delay (default 60 s).
    pub cap: Duration,
    /// At most this many keys are tracked (default 16 384); when the table is full, the
    /// least-failed entries make room (see [`LoginThrottle`]). At least the number of shards
    /// (16) is used.
    pub max_keys: usize,
    /// At most one failure per key is to be logged per this interval (default 60 s); the others
    /// are counted and reported with the next logged one.
    pub log_interval: Duration,
    /// An entry is forgotten (its back-off reset) once its delay has been over for this long
    /// without a new failure (default 10 min).
    pub forget_after: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_keys: 16_384,
            log_interval: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
        }
    }
}

impl ThrottlePolicy {
    /// Returns the delay after `failures` failures: zero for none, else `base · 2^(failures-1)`
    /// capped at `cap`.
    pub fn delay(&self, failures: u32) -> Duration {
        match failures {
            0 => Duration::ZERO,
            n => self.base.saturating_mul(1 << (n - 1).min(31)).min(self.cap),
        }
    }

    /// Returns the time a client that waits for every answer needs before its `n`-th failed
    /// attempt is answered: the sum of the first `n - 1` delays.
    pub fn schedule_sum(&self, n: u32) -> Duration {
        (1..n).fold(Duration::ZERO, |sum, i| sum.saturating_add(self.delay(i)))
    }

    fn clamped(mut self) -> Self {
        for d in [
            &mut self.base,
            &mut self.cap,
            &mut self.log_interval,
            &mut self.forget_after,
        ] {
            *d = (*d).min(MAX_POLICY_DURATION);
        }
        self.max_keys = self.max_keys.max(SHARDS);
        self
    }
}

/// What a login attempt is throttled under.
///
/// Addresses are keyed by network, not by host: an IPv4 address as itself, an IPv6 address by
/// its /64 prefix (one subscriber or LAN usually has a whole /64 and can pick any address in
/// it), an IPv4-mapped IPv6 address (a dual-stack socket) as the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleKey<'a> {
    /// An admin login, keyed by address only: there are few administrators, and guessing
    /// user names is part of the attack.
    Admin(IpAddr),
    /// A SOCKS5 (RFC 1929) login, keyed by address and user name as sent, so that one user's
    /// typos behind a shared NAT address do not slow the others down.
    Socks(IpAddr, &'a [u8]),
}

/// When a login attempt may be answered, from [`LoginThrottle::begin_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Slot {
    /// Record the outcome and answer now.
    Now,
    /// Record the outcome now and answer at this instant (before the deadline given).
    At(Instant),
    /// Answering would pass the deadline: record nothing, answer nothing, close. Holds the
    /// earliest instant an attempt under this key could be answered.
    Refused(Instant),
}

/// What to do about a recorded failure, from [`LoginThrottle::record_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct FailureNote {
    /// Log this failure: it is the first under its key for [`ThrottlePolicy::log_interval`].
    pub log: bool,
    /// When `log`: how many failures under the key were not logged since the last logged one
    /// (0 otherwise).
    pub suppressed: u32,
    /// Failures under the key since it was last reset, this one included.
    pub failures: u32,
}

/// Thread-safe, memory-bounded login back-off, shared by all connection tasks.
///
/// # Schedule
///
/// Every attempt under a key is given its answer time when it arrives
/// ([`begin_attempt`](Self::begin_attempt)), as if every attempt still in flight under the key
/// fails: attempt `k` of a client that waits for each answer is answered
/// [`ThrottlePolicy::schedule_sum`]`(k)` after the first. Parallel connections do not help: N
/// attempts at once get N answer times one delay apart, and those past the handshake deadline
/// are refused without being checked, so the number of passwords checked per key and minute
/// does not grow with the number of connections. A success resets the key; a key with no
/// failure for [`ThrottlePolicy::forget_after`] after its delay ended is forgotten.
///
/// # Memory
///
/// At most [`ThrottlePolicy::max_keys`] keys are tracked, in 16 shards selected by a randomly
/// keyed hash. When a shard is full, its lowest-ranked eighth makes room: forgotten entries
/// first, then those with the **fewest failures** (the least recently touched among equals).
/// An attacker who wants his own entry with F failures evicted must first fill seven eighths
/// of the shard with entries of at least F failures each, which costs about
/// `7/8 · max_keys · F` failed attempts (each throttled) to win back F attempts. Fresh keys, such as a flood of made-up user names, only evict each other
/// and the one-typo entries of honest users (whose loss costs nothing). Use one throttle per
/// listener kind, so that SOCKS5 keys never evict admin keys.
///
/// # Methods
///
/// - policy: [`new`](Self::new), [`policy`](Self::policy);
/// - per attempt: [`begin_attempt`](Self::begin_attempt), then
///   [`record_failure`](Self::record_failure) or [`record_success`](Self::record_success);
/// - queries: [`delay_until`](Self::delay_until), [`len`](Self::len);
/// - housekeeping: [`sweep`](Self::sweep).
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    per_shard: usize,
    hasher: RandomState,
    shards: [Mutex<HashMap<OwnedKey, Entry>>; SHARDS],
}

impl fmt::Debug for LoginThrottle {
    // Not the table: it is large and holds user names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("policy", &self.policy)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::default())
    }
}

/// The network part of an address (see [`ThrottleKey`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Net {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for Net {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => Self::V4(a.to_bits()),
            // The /64 prefix: the upper half of the 128 bits.
            IpAddr::V6(a) => Self::V6((a.to_bits() >> 64) as u64),
        }
    }
}

/// A key as looked up: borrows the user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct KeyRef<'a> {
    net: Net,
    /// `None` for admin logins.
    user: Option<&'a [u8]>,
}

impl<'a> From<ThrottleKey<'a>> for KeyRef<'a> {
    fn from(key: ThrottleKey<'a>) -> Self {
        match key {
            ThrottleKey::Admin(ip) => Self {
                net: ip.into(),
                user: None,
            },
            ThrottleKey::Socks(ip, user) => Self {
                net: ip.into(),
                user: Some(user),
            },
        }
    }
}

/// A key as stored.
#[derive(Debug)]
struct OwnedKey {
    net: Net,
    user: Option<Box<[u8]>>,
}

/// Looks up `OwnedKey`s by `KeyRef` without allocating: both hash and compare as a `KeyRef`.
trait AsKeyRef {
    fn key_ref(&self) -> KeyRef<'_>;
}

impl AsKeyRef for OwnedKey {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            net: self.net,
            user: self.user.as_deref(),
        }
    }
}

impl AsKeyRef for KeyRef<'_> {
    fn key_ref(&self) -> KeyRef<'_> {
        *self
    }
}

impl<'a> Borrow<dyn AsKeyRef + 'a> for OwnedKey {
    fn borrow(&self) -> &(dyn AsKeyRef + 'a) {
        self
    }
}

impl Hash for dyn AsKeyRef + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key_ref().hash(h);
    }
}

impl PartialEq for dyn AsKeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key_ref() == other.key_ref()
    }
}

impl Eq for dyn AsKeyRef + '_ {}

impl Hash for OwnedKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key_ref().hash(h);
    }
}

impl PartialEq for OwnedKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_ref() == other.key_ref()
    }
}

impl Eq for OwnedKey {}

impl From<KeyRef<'_>> for OwnedKey {
    fn from(k: KeyRef<'_>) -> Self {
        Self {
            net: k.net,
            user: k.user.map(Box::from),
        }
    }
}

/// The back-off state of one key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures since the last reset.
    failures: u32,
    /// No attempt under the key is answered before this: the next free answer slot.
    until: Instant,
    /// The last attempt or failure (the eviction tie-break).
    touched: Instant,
    /// When a failure was last logged.
    logged_at: Option<Instant>,
    /// Failures since then that were not logged.
    unlogged: u32,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            until: now,
            touched: now,
            logged_at: None,
            unlogged: 0,
        }
    }
}

/// `t + d`, or `t` in the (with clamped durations, unreachable) case of overflow.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

impl LoginThrottle {
    /// Creates an empty throttle. Durations above [`MAX_POLICY_DURATION`] are clamped.
    pub fn new(policy: ThrottlePolicy) -> Self {
        let policy = policy.clamped();
        Self {
            per_shard: policy.max_keys / SHARDS,
            policy,
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// Returns the policy in force (after clamping).
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    fn shard(&self, k: &KeyRef<'_>) -> &Mutex<HashMap<OwnedKey, Entry>> {
        &self.shards[self.hasher.hash_one(k) as usize % SHARDS]
    }

    fn is_forgotten(&self, e: &Entry, now: Instant) -> bool {
        now >= later(e.until, self.policy.forget_after)
    }

    /// Returns the live entry under `k`, dropping it first if it is forgotten.
    fn live<'m>(
        &self,
        map: &'m mut HashMap<OwnedKey, Entry>,
        now: Instant,
        k: &KeyRef<'_>,
    ) -> Option<&'m mut Entry> {
        let q: &dyn AsKeyRef = k;
        if map.get(q).is_some_and(|e| self.is_forgotten(e, now)) {
            map.remove(q);
        }
        map.get_mut(q)
    }

    /// Returns the entry under `k`, making room for it if the shard is full.
    fn entry<'m>(
        &self,
        map: &'m mut HashMap<OwnedKey, Entry>,
        now: Instant,
        k: &KeyRef<'_>,
    ) -> &'m mut Entry {
        if self.live(map, now, k).is_none() {
            if map.len() >= self.per_shard {
                self.make_room(map, now);
            }
            map.insert(OwnedKey::from(*k), Entry::new(now));
        }
        let q: &dyn AsKeyRef = k;
        map.get_mut(q).expect("present: found or just inserted")
    }

    /// The eviction order: forgotten entries first, then the fewest failures, then the least
    /// recently touched.
    fn rank(&self, e: &Entry, now: Instant) -> (bool, u32, Instant) {
        (!self.is_forgotten(e, now), e.failures, e.touched)
    }

    /// Drops the lowest-ranked eighth of a full shard (at least one entry), so that a flood of
    /// new keys pays for the pass over the shard once per `per_shard / 8` keys, not per key.
    fn make_room(&self, map: &mut HashMap<OwnedKey, Entry>, now: Instant) {
        let k = (map.len() / 8).max(1);
        let mut ranks: Vec<_> = map.values().map(|e| self.rank(e, now)).collect();
        let (below, &mut threshold, _) = ranks.select_nth_unstable(k - 1);
        // Everything ranked below the threshold goes, and as many of its equals as make k.
        let mut ties = k - below.iter().filter(|&&r| r < threshold).count();
        map.retain(|_, e| match self.rank(e, now).cmp(&threshold) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal if ties > 0 => {
                ties -= 1;
                false
            }
            _ => true,
        });
    }

    /// Returns when an attempt under `key` arriving now could be answered: `None` = now.
    /// A query only: it reserves nothing (see [`begin_attempt`](Self::begin_attempt)).
    pub fn delay_until(&self, now: Instant, key: ThrottleKey<'_>) -> Option<Instant> {
        let k = KeyRef::from(key);
        let mut map = lock(self.shard(&k));
        self.live(&mut map, now, &k)
            .map(|e| e.until)
            .filter(|&t| t > now)
    }

    /// Reserves the answer slot of an attempt under `key` arriving now, to be answered before
    /// `deadline` (the handshake's). Atomic: concurrent attempts get distinct slots, each one
    /// delay after the one before, as if that one fails.
    ///
    /// On [`Slot::Now`] or [`Slot::At`], the caller records the outcome at once with
    /// [`record_failure`](Self::record_failure) or [`record_success`](Self::record_success).
    /// On [`Slot::Refused`] nothing changed and nothing is to be recorded.
    pub fn begin_attempt(&self, now: Instant, key: ThrottleKey<'_>, deadline: Instant) -> Slot {
        let k = KeyRef::from(key);
        let mut map = lock(self.shard(&k));
        let slot = self
            .live(&mut map, now, &k)
            .map_or(now, |e| e.until.max(now));
        if slot > deadline {
            return Slot::Refused(slot);
        }
        let e = self.entry(&mut map, now, &k);
        e.until = later(slot, self.policy.delay(e.failures.saturating_add(1)));
        e.touched = now;
        if slot > now {
            Slot::At(slot)
        } else {
            Slot::Now
        }
    }

    /// Records a failed attempt under `key`: the next answers wait longer. Says whether to log
    /// it (the first in [`ThrottlePolicy::log_interval`]) and how many went unlogged before it.
    pub fn record_failure(&self, now: Instant, key: ThrottleKey<'_>) -> FailureNote {
        let k = KeyRef::from(key);
        let mut map = lock(self.shard(&k));
        let e = self.entry(&mut map, now, &k);
        e.failures = e.failures.saturating_add(1);
        // Without a `begin_attempt` before (or after an eviction), the delay counts from now.
        e.until = e.until.max(later(now, self.policy.delay(e.failures)));
        e.touched = now;
        let log = e
            .logged_at
            .is_none_or(|t| now >= later(t, self.policy.log_interval));
        let suppressed = if log {
            e.logged_at = Some(now);
            std::mem::take(&mut e.unlogged)
        } else {
            e.unlogged = e.unlogged.saturating_add(1);
            0
        };
        FailureNote {
            log,
            suppressed,
            failures: e.failures,
        }
    }

    /// Records a successful login under `key`: its back-off is reset. Returns how many
    /// failures under it were not logged since the last logged one (to mention in the log of
    /// the success, if any).
    pub fn record_success(&self, key: ThrottleKey<'_>) -> u32 {
        let k = KeyRef::from(key);
        let q: &dyn AsKeyRef = &k;
        lock(self.shard(&k)).remove(q).map_or(0, |e| e.unlogged)
    }

    /// Drops the forgotten entries (called by housekeeping) and returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut map = lock(s);
                let before = map.len();
                map.retain(|_, e| !self.is_forgotten(e, now));
                before - map.len()
            })
            .sum()
    }

    /// Returns the number of keys tracked (at most [`ThrottlePolicy::max_keys`]).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Returns whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;

//! [`ResolveCache`]: what host names resolved to, kept for a while, so that a domain CONNECT
//! (or a UDP datagram to a name) does not ask the system resolver each time.
//!
//! The cache is keyed by the name alone, compared ASCII case-insensitively (DNS names are,
//! RFC 4343); the port is not part of the key: the transport puts the request's port on the
//! cached addresses. The system resolver (`getaddrinfo`) reports no TTL, so every answer is
//! kept for the same fixed time ([`CachePolicy::ttl`], 30 s by default), and a failure for a
//! shorter one ([`CachePolicy::negative_ttl`], 5 s), so that a flood of requests for a name
//! that does not resolve asks the resolver once per few seconds, not once per request.
//!
//! It is sans-IO: time comes in as `now` arguments, the transport resolves and inserts.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Default time an answer is kept: 30 s (`getaddrinfo` gives no TTL; short enough that a
/// moved name is followed within half a minute, long enough that a busy name is resolved
/// once per 30 s rather than once per request).
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Default time a failure is kept: 5 s.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Default number of names kept: 1 024.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Longest name cached, in bytes (a SOCKS5 name has at most 255); longer ones are never kept.
pub const MAX_NAME: usize = 255;
/// TTLs above this (one day) are taken as one day, so that `now + ttl` cannot overflow.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

/// How long answers are kept and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a successful answer is kept (zero: nothing is kept).
    pub ttl: Duration,
    /// How long a failure (or an answer with no address) is kept (zero: failures are not kept).
    pub negative_ttl: Duration,
    /// Most names kept; when full, the name inserted longest ago makes room (zero: nothing is
    /// kept).
    pub capacity: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

impl CachePolicy {
    /// The default policy with answers kept for `ttl`; failures are kept for
    /// [`DEFAULT_NEGATIVE_TTL`], or `ttl` if that is shorter (a failure is never kept longer
    /// than an answer would be).
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            negative_ttl: DEFAULT_NEGATIVE_TTL.min(ttl),
            ..Self::default()
        }
    }

    /// Whether anything is ever kept.
    pub fn is_enabled(&self) -> bool {
        self.capacity > 0 && (!self.ttl.is_zero() || !self.negative_ttl.is_zero())
    }
}

/// What [`ResolveCache::lookup`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The name resolved to these addresses (possibly none) less than a TTL ago.
    Hit(&'a [IpAddr]),
    /// Resolving the name failed with this error less than the negative TTL ago.
    Failed(io::ErrorKind),
    /// Nothing is known (never resolved, expired, evicted, or a name too long to keep).
    Miss,
}

/// One cached answer.
#[derive(Debug)]
struct Entry {
    /// Its insertion's number (matches one record of `ResolveCache::order`).
    seq: u64,
    expires: Instant,
    answer: Result<Box<[IpAddr]>, io::ErrorKind>,
}

/// Recently resolved names and their addresses (see [the module](self)).
///
/// Not synchronised: the transport wraps it in a lock (every operation is a hash lookup and
/// a copy of a few addresses).
#[derive(Debug)]
pub struct ResolveCache {
    policy: CachePolicy,
    /// By lower-cased name.
    entries: HashMap<Box<[u8]>, Entry>,
    /// Insertions, oldest first: `(seq, name)`. A record whose `seq` is not its entry's
    /// (re-inserted since, or removed) is stale and skipped.
    order: VecDeque<(u64, Box<[u8]>)>,
    next_seq: u64,
}

/// Lower-cases `host` into `buf`; `None` if it is too long to be kept.
fn key<'b>(host: &[u8], buf: &'b mut [u8; MAX_NAME]) -> Option<&'b [u8]> {
    let k = buf.get_mut(..host.len())?;
    for (d, s) in k.iter_mut().zip(host) {
        *d = s.to_ascii_lowercase();
    }
    Some(k)
}

impl ResolveCache {
    /// Creates an empty cache (TTLs above [`MAX_TTL`] are taken as [`MAX_TTL`]).
    pub fn new(policy: CachePolicy) -> Self {
        let policy = CachePolicy {
            ttl: policy.ttl.min(MAX_TTL),
            negative_ttl: policy.negative_ttl.min(MAX_TTL),
            capacity: policy.capacity,
        };
        Self {
            policy,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Returns the policy in force.
    pub fn policy(&self) -> CachePolicy {
        self.policy
    }

    /// Number of names kept (expired ones included until they are looked up or evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no name is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns what `host` resolved to, if that is still fresh at `now`. An expired entry
    /// is removed.
    pub fn lookup(&mut self, now: Instant, host: &[u8]) -> Lookup<'_> {
        let mut buf = [0u8; MAX_NAME];
        let Some(k) = key(host, &mut buf) else {
            return Lookup::Miss;
        };
        let fresh = match self.entries.get(k) {
            None => return Lookup::Miss,
            Some(e) => now < e.expires,
        };
        if !fresh {
            self.entries.remove(k);
            return Lookup::Miss;
        }
        match self.entries.get(k).map(|e| &e.answer) {
            Some(Ok(addrs)) => Lookup::Hit(addrs),
            Some(Err(kind)) => Lookup::Failed(*kind),
            None => Lookup::Miss,
        }
    }

    /// Keeps that `host` resolved to `addrs` at `now`, for the TTL (for the negative TTL if
    /// `addrs` is empty: an answer with no address is as good as a failure). Replaces what
    /// was known of `host`.
    pub fn insert(&mut self, now: Instant, host: &[u8], addrs: impl IntoIterator<Item = IpAddr>) {
        let addrs: Box<[IpAddr]> = addrs.into_iter().collect();
        let ttl = if addrs.is_empty() {
            self.policy.negative_ttl
        } else {
            self.policy.ttl
        };
        self.put(now, host, ttl, Ok(addrs));
    }

    /// Keeps that resolving `host` failed with `kind` at `now`, for the negative TTL.
    pub fn insert_failure(&mut self, now: Instant, host: &[u8], kind: io::ErrorKind) {
        self.put(now, host, self.policy.negative_ttl, Err(kind));
    }

    fn put(
        &mut self,
        now: Instant,
        host: &[u8],
        ttl: Duration,
        answer: Result<Box<[IpAddr]>, io::ErrorKind>,
    ) {
        if self.policy.capacity == 0 || ttl.is_zero() {
            return;
        }
        let mut buf = [0u8; MAX_NAME];
        let Some(k) = key(host, &mut buf) else {
            return;
        };
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(e) = self.entries.get_mut(k) {
            *e = Entry {
                seq,
                expires,
                answer,
            };
        } else {
            while self.entries.len() >= self.policy.capacity {
                self.evict_oldest();
            }
            self.entries.insert(
                k.into(),
                Entry {
                    seq,
                    expires,
                    answer,
                },
            );
        }
        self.order.push_back((seq, k.into()));
        // Stale records pile up when names are re-inserted: drop them once they outnumber
        // the live ones (amortised constant time per insertion).
        if self.order.len() > 2 * self.policy.capacity.max(8) {
            let entries = &self.entries;
            self.order
                .retain(|(seq, name)| entries.get(name).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Removes the entry inserted longest ago (skipping stale records).
    fn evict_oldest(&mut self) {
        while let Some((seq, name)) = self.order.pop_front() {
            if self.entries.get(&name).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&name);
                return;
            }
        }
        // No live record: only possible if the map is empty (every entry has one).
        debug_assert!(self.entries.is_empty());
        self.entries.clear();
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;

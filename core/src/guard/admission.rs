//! [`AdmissionPool`]: a bounded pool of connections that have not authenticated yet.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::lock;

/// The group a source counts in: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6 /64.
fn group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The oldest ticket of the source holding the most tickets (ids grow with admission, so the
/// first seen of a source is its oldest; ties go to the source whose oldest is older).
fn busiest_oldest(tickets: &BTreeMap<u64, (Instant, Arc<Signal>, Option<IpAddr>)>) -> Option<u64> {
    let mut per: Vec<(Option<IpAddr>, usize, u64)> = Vec::new();
    for (&id, (_, _, src)) in tickets {
        match per.iter_mut().find(|(s, _, _)| s == src) {
            Some(e) => e.1 += 1,
            None => per.push((*src, 1, id)),
        }
    }
    per.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
        .map(|(_, _, oldest)| oldest)
}

/// A bounded pool of places for connections in their handshake; when it is full, a new
/// connection takes the place of the oldest one, which is told to close.
///
/// An attacker who opens connections and holds them without authenticating can therefore
/// not lock anyone out: every new connection gets in, and only the unauthenticated ones that
/// have waited longest lose their place, which a client authenticating within a round trip or
/// two never is. (An attacker who opens more than the pool's capacity per handshake time does
/// push honest handshakes out; size the pool well above the honest handshake rate. An
/// unauthenticated connection costs little.) Authenticated connections leave the pool
/// ([`Ticket::release`]) and are never evicted: their limit is the driver's.
///
/// The same type serves the admin listener (unauthenticated admin connections, kept apart
/// from the authenticated sessions' limit) and the SOCKS5 listener ("handshakes in
/// progress"), each with its own pool; [`try_admit`](Self::try_admit) is the refusing
/// variant for a driver that would rather not evict.
///
/// # Methods
///
/// - [`new`](Self::new), [`capacity`](Self::capacity);
/// - [`admit`](Self::admit), [`try_admit`](Self::try_admit);
/// - queries: [`len`](Self::len), [`evictions`](Self::evictions);
/// - on the [`Ticket`]: [`Ticket::poll_evicted`], [`Ticket::release`] (or drop it).
pub struct AdmissionPool {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    live: Mutex<Live>,
    evictions: AtomicU64,
}

/// The tickets in the pool, oldest (smallest id) first.
struct Live {
    next_id: u64,
    tickets: BTreeMap<u64, (Instant, Arc<Signal>, Option<IpAddr>)>,
}

/// A one-shot "you were evicted" flag with one waiting task (as `state`'s close signal).
#[derive(Default)]
struct Signal {
    evicted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.evicted.store(true, Ordering::Release);
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }

    fn is_set(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_set() {
            return Poll::Ready(());
        }
        {
            let mut w = lock(&self.waker);
            match &mut *w {
                Some(old) if old.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        // Fired between the first check and storing the waker: `fire` may have found none.
        if self.is_set() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A connection's place in an [`AdmissionPool`]. Dropping it (or [`release`](Self::release))
/// frees the place.
pub struct Ticket {
    pool: Arc<Inner>,
    id: u64,
    admitted_at: Instant,
    signal: Arc<Signal>,
}

/// The ticket that lost its place to a new one, from [`AdmissionPool::admit`]. Its holder has
/// been told (through [`Ticket::poll_evicted`]); this is for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// The evicted ticket's [`Ticket::id`].
    pub id: u64,
    /// When it was admitted.
    pub admitted_at: Instant,
}

impl AdmissionPool {
    /// Creates an empty pool of `capacity` places (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                live: Mutex::new(Live {
                    next_id: 0,
                    tickets: BTreeMap::new(),
                }),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// Returns the number of places.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Returns the number of places taken.
    pub fn len(&self) -> usize {
        lock(&self.inner.live).tickets.len()
    }

    /// Returns whether no place is taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns how many tickets were evicted since the pool was created.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// Admits a new unauthenticated connection. If the pool was full, the oldest ticket
    /// (first admitted) loses its place: its holder's [`Ticket::poll_evicted`] becomes ready,
    /// and it is returned for the log.
    pub fn admit(&self, now: Instant) -> (Ticket, Option<Evicted>) {
        self.admit_inner(now, None)
    }

    /// As [`admit`](Self::admit), for a connection from `source`: when the pool is full, the
    /// place is taken from the source that holds the most places (its oldest connection), the
    /// oldest overall among equals. So one address holding sockets open, or reopening them as
    /// fast as they are closed, only ever evicts its own connections, never an administrator's
    /// from another address. IPv6 sources count by their /64 (one subscriber's block).
    pub fn admit_from(&self, now: Instant, source: IpAddr) -> (Ticket, Option<Evicted>) {
        self.admit_inner(now, Some(group(source)))
    }

    fn admit_inner(&self, now: Instant, source: Option<IpAddr>) -> (Ticket, Option<Evicted>) {
        let mut live = lock(&self.inner.live);
        let evicted = if live.tickets.len() >= self.inner.capacity {
            let victim = busiest_oldest(&live.tickets);
            victim.and_then(|id| live.tickets.remove_entry(&id))
        } else {
            None
        };
        let ticket = self.insert(&mut live, now, source);
        drop(live);
        let evicted = evicted.map(|(id, (admitted_at, signal, _))| {
            self.inner.evictions.fetch_add(1, Ordering::Relaxed);
            // Outside the pool's lock: waking may run arbitrary code.
            signal.fire();
            Evicted { id, admitted_at }
        });
        (ticket, evicted)
    }

    /// Admits a new connection if there is a free place, else returns `None` (nothing is
    /// evicted).
    pub fn try_admit(&self, now: Instant) -> Option<Ticket> {
        let mut live = lock(&self.inner.live);
        (live.tickets.len() < self.inner.capacity).then(|| self.insert(&mut live, now, None))
    }

    fn insert(&self, live: &mut Live, now: Instant, source: Option<IpAddr>) -> Ticket {
        let id = live.next_id;
        live.next_id += 1;
        let signal = Arc::new(Signal::default());
        live.tickets.insert(id, (now, signal.clone(), source));
        Ticket {
            pool: self.inner.clone(),
            id,
            admitted_at: now,
            signal,
        }
    }
}

impl Ticket {
    /// Returns the ticket's number: unique in its pool, increasing in the order of admission.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Returns when it was admitted.
    pub fn admitted_at(&self) -> Instant {
        self.admitted_at
    }

    /// Returns whether it lost its place (the connection must close).
    pub fn is_evicted(&self) -> bool {
        self.signal.is_set()
    }

    /// Polls for eviction; ready once the ticket lost its place, and from then on. One task at
    /// a time may wait on it: a driver races its I/O against
    /// `std::future::poll_fn(|cx| ticket.poll_evicted(cx))` and closes the connection when it
    /// is ready.
    pub fn poll_evicted(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.poll(cx)
    }

    /// Gives the place back: the connection authenticated (it moves to the authenticated
    /// limit) or closed. The same as dropping the ticket.
    pub fn release(self) {}
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // An evicted ticket is no longer in the pool; the removal is then a no-op.
        if !self.signal.is_set() {
            lock(&self.pool.live).tickets.remove(&self.id);
        }
    }
}

impl fmt::Debug for AdmissionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionPool")
            .field("capacity", &self.inner.capacity)
            .field("len", &self.len())
            .field("evictions", &self.evictions())
            .finish()
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("admitted_at", &self.admitted_at)
            .field("evicted", &self.is_evicted())
            .finish()
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;

//! Counters of the admin protocol's queries 0x01 to 0x06: atomics, so relaying never locks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The counters of the admin protocol's queries 0x01 to 0x06, as one consistent-enough read
/// (each field is exact; fields are read one after another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Every SOCKS client connection accepted.
    pub historic: u64,
    /// SOCKS client connections open now.
    pub current: u64,
    /// Most SOCKS client connections open at once.
    pub max_concurrent: u64,
    /// Bytes written to SOCKS clients and destinations.
    pub bytes_sent: u64,
    /// Bytes read from SOCKS clients and destinations.
    pub bytes_received: u64,
    /// Distinct users with at least one open SOCKS connection (anonymous use not counted).
    pub users_connected: u64,
}

/// The live counters behind [`Counters`].
#[derive(Debug, Default)]
pub(super) struct AtomicCounters {
    pub(super) historic: AtomicU64,
    pub(super) current: AtomicU64,
    pub(super) max_concurrent: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) users_connected: AtomicU64,
}

impl AtomicCounters {
    pub(super) fn snapshot(&self) -> Counters {
        Counters {
            historic: self.historic.load(Relaxed),
            current: self.current.load(Relaxed),
            max_concurrent: self.max_concurrent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            users_connected: self.users_connected.load(Relaxed),
        }
    }

    /// Counts a newly opened SOCKS connection.
    pub(super) fn open_proxy(&self) {
        self.historic.fetch_add(1, Relaxed);
        let current = self.current.fetch_add(1, Relaxed) + 1;
        self.max_concurrent.fetch_max(current, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::state;
    use super::super::{ConnKind, Privilege};

    #[test]
    fn counters_follow_connections() {
        let (s, t0) = state();
        let a = s.open(ConnKind::Proxy, t0);
        let b = s.open(ConnKind::Proxy, t0);
        let admin = s.open(ConnKind::Admin, t0);
        assert!(a.authenticate(b"bob", b"hunter2", Privilege::User));
        assert!(
            !a.authenticate(b"bob", b"hunter2", Privilege::User),
            "binds once"
        );
        assert!(b.authenticate(b"bob", b"hunter2", Privilege::User));
        assert!(
            !admin.authenticate(b"bob", b"hunter2", Privilege::Admin),
            "not an admin"
        );
        assert!(admin.authenticate(b"admin", b"pw", Privilege::Admin));
        a.record_received(t0, 10);
        b.record_sent(t0, 7);
        let c = s.counters();
        assert_eq!((c.historic, c.current, c.max_concurrent), (2, 2, 2));
        assert_eq!(
            (c.bytes_received, c.bytes_sent, c.users_connected),
            (10, 7, 1)
        );
        assert_eq!(s.user_connections(b"bob"), Some(2));
        drop(a);
        assert_eq!(s.user_connections(b"bob"), Some(1));
        drop(b);
        let c = s.counters();
        assert_eq!(
            (c.historic, c.current, c.max_concurrent, c.users_connected),
            (2, 0, 2, 0)
        );
    }
}

//! The registry of live connections: accounting, authentication, and the close signal that
//! lets removing a user, the clean-up routine or shutdown close a connection on any thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{lock, Login, Privilege, State};

/// What kind of connection a [`Connection`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// A SOCKS5 client connection (counted by the counters).
    Proxy,
    /// An administration connection (not counted).
    Admin,
}

/// Why the shared state asked a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseCause {
    /// Its user was removed.
    UserRemoved = 1,
    /// The clean-up routine found it idle for the connection timeout.
    Idle = 2,
    /// The server is shutting down.
    Shutdown = 3,
}

impl CloseCause {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::UserRemoved),
            2 => Some(Self::Idle),
            3 => Some(Self::Shutdown),
            _ => None,
        }
    }
}

/// A one-shot close flag with one waiting task.
#[derive(Debug, Default)]
struct CloseSignal {
    cause: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl CloseSignal {
    fn close(&self, cause: CloseCause) {
        if self
            .cause
            .compare_exchange(0, cause as u8, Relaxed, Relaxed)
            .is_ok()
        {
            if let Some(w) = lock(&self.waker).take() {
                w.wake();
            }
        }
    }

    fn get(&self) -> Option<CloseCause> {
        CloseCause::from_u8(self.cause.load(Relaxed))
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<CloseCause> {
        if let Some(c) = self.get() {
            return Poll::Ready(c);
        }
        {
            let mut w = lock(&self.waker);
            match &mut *w {
                Some(old) if old.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        // Closed between the first check and storing the waker: `close` may have found no waker.
        self.get().map_or(Poll::Pending, Poll::Ready)
    }
}

/// What the registry and the connection's owner share.
#[derive(Debug)]
pub(super) struct ConnShared {
    kind: ConnKind,
    pub(super) user: OnceLock<Bytes>,
    /// Milliseconds since the state's epoch of the last byte either way.
    last_active_ms: AtomicU64,
    /// A relay one of whose directions has ended (TCP half-close).
    half_closed: AtomicBool,
    close: CloseSignal,
}

/// Shards of the registry (connections are spread by id, so opening and closing contend
/// little).
pub(super) const SHARDS: usize = 16;

/// The registry: connection id to its shared part, in [`SHARDS`] shards.
pub(super) type Registry = [Mutex<HashMap<u64, Arc<ConnShared>>>; SHARDS];

impl State {
    pub(super) fn close_where(
        &self,
        cause: CloseCause,
        pred: impl Fn(&ConnShared) -> bool,
    ) -> usize {
        let mut n = 0;
        for shard in &self.registry {
            for c in lock(shard).values() {
                if c.close.get().is_none() && pred(c) {
                    c.close.close(cause);
                    n += 1;
                }
            }
        }
        n
    }

    /// Runs the clean-up routine once: when it is enabled, asks every connection idle for at
    /// least the connection timeout to close. Returns how many were asked. Transports call it
    /// every [`Settings::selector_timeout`](super::Settings::selector_timeout) seconds.
    pub fn sweep(&self, now: Instant) -> usize {
        if !self.settings.cleanup() {
            return 0;
        }
        let limit = u64::from(self.settings.connection_timeout()) * 1000;
        let now_ms = self.millis(now);
        self.close_where(CloseCause::Idle, |c| {
            now_ms.saturating_sub(c.last_active_ms.load(Relaxed)) >= limit
        })
    }

    /// Asks every relay that is half-closed ([`Connection::set_half_closed`]) and has moved
    /// no byte for at least `limit` to close, with [`CloseCause::Idle`], whether the clean-up
    /// routine is on or off. Returns how many were asked. Transports call it on the clean-up
    /// routine's tick, so a silent half-closed relay is closed between `limit` and `limit`
    /// plus one tick after its last byte: one timer for the server, none per connection.
    pub fn sweep_half_closed(&self, now: Instant, limit: Duration) -> usize {
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let now_ms = self.millis(now);
        self.close_where(CloseCause::Idle, |c| {
            c.half_closed.load(Relaxed)
                && now_ms.saturating_sub(c.last_active_ms.load(Relaxed)) >= limit
        })
    }

    /// Asks every open connection to close (server shutdown).
    pub fn close_all(&self) -> usize {
        self.close_where(CloseCause::Shutdown, |_| true)
    }

    /// Registers a new connection. For [`ConnKind::Proxy`] this counts it (historic, current,
    /// max concurrent). Dropping the returned handle deregisters it.
    pub fn open(self: &Arc<Self>, kind: ConnKind, now: Instant) -> Connection {
        let id = self.next_id.fetch_add(1, Relaxed);
        if kind == ConnKind::Proxy {
            self.counters.open_proxy();
        }
        let shared = Arc::new(ConnShared {
            kind,
            user: OnceLock::new(),
            last_active_ms: AtomicU64::new(self.millis(now)),
            half_closed: AtomicBool::new(false),
            close: CloseSignal::default(),
        });
        lock(&self.registry[id as usize % SHARDS]).insert(id, shared.clone());
        Connection {
            state: self.clone(),
            id,
            shared,
            user_open: OnceLock::new(),
        }
    }
}

/// One live connection's handle on the [`State`]: accounting, authentication and the close
/// signal. Owned by the transport's task for that connection; dropping it deregisters the
/// connection and updates the counters.
#[derive(Debug)]
pub struct Connection {
    state: Arc<State>,
    id: u64,
    shared: Arc<ConnShared>,
    user_open: OnceLock<Arc<AtomicU32>>,
}

impl Connection {
    /// Returns the shared state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Returns the shared state as the `Arc` it lives in.
    pub fn state_arc(&self) -> &Arc<State> {
        &self.state
    }

    /// Returns this connection's kind.
    pub fn kind(&self) -> ConnKind {
        self.shared.kind
    }

    /// Returns the authenticated user, if any.
    pub fn user(&self) -> Option<&Bytes> {
        self.shared.user.get()
    }

    /// Checks `user`/`password` and, if they name a user with at least `required` privilege,
    /// binds this connection to that user (at most once; a second call returns false) and, for
    /// a proxy connection, counts it as one of the user's open connections. The check and the
    /// binding happen under the users lock, so a concurrent removal of the user either sees
    /// this connection (and closes it) or makes this call fail. The password comparison takes
    /// time that depends only on the lengths, and an unknown user costs a comparison too.
    ///
    /// This is [`check_login`](Self::check_login) taking only [`Login::Accepted`] as success:
    /// a hashed user is accepted only from a warm cache (a cold one returns false, as the
    /// core cannot verify a hash; sessions use `check_login` and ask their driver).
    pub fn authenticate(&self, user: &[u8], password: &[u8], required: Privilege) -> bool {
        self.check_login(user, password, required) == Login::Accepted
    }

    pub(super) fn shared(&self) -> &ConnShared {
        &self.shared
    }

    pub(super) fn set_user_open(&self, open: Arc<AtomicU32>) {
        let _ = self.user_open.set(open);
    }

    /// Marks this connection's relay half-closed: one direction has passed its end of stream
    /// on. From then on [`State::sweep_half_closed`] closes it once it goes silent.
    pub fn set_half_closed(&self) {
        self.shared.half_closed.store(true, Relaxed);
    }

    /// Marks activity at `now` (for the clean-up routine) without counting bytes.
    pub fn touch(&self, now: Instant) {
        self.shared
            .last_active_ms
            .store(self.state.millis(now), Relaxed);
    }

    /// Counts `n` bytes read from the client or the destination, and marks activity.
    pub fn record_received(&self, now: Instant, n: usize) {
        self.state
            .counters
            .bytes_received
            .fetch_add(n as u64, Relaxed);
        self.touch(now);
    }

    /// Counts `n` bytes written to the client or the destination, and marks activity.
    pub fn record_sent(&self, now: Instant, n: usize) {
        self.state.counters.bytes_sent.fetch_add(n as u64, Relaxed);
        self.touch(now);
    }

    /// Returns why the state asked this connection to close, if it did.
    pub fn close_cause(&self) -> Option<CloseCause> {
        self.shared.close.get()
    }

    /// Asks this connection to close (as the state itself would).
    pub fn close(&self, cause: CloseCause) {
        self.shared.close.close(cause);
    }

    /// Polls for a request to close. One task at a time may wait on it: a transport awaits
    /// `std::future::poll_fn(|cx| conn.poll_closed(cx))` alongside its I/O.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseCause> {
        self.shared.close.poll(cx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        lock(&self.state.registry[self.id as usize % SHARDS]).remove(&self.id);
        let c = &self.state.counters;
        if self.shared.kind == ConnKind::Proxy {
            c.current.fetch_sub(1, Relaxed);
        }
        if let Some(open) = self.user_open.get() {
            if open.fetch_sub(1, Relaxed) == 1 {
                c.users_connected.fetch_sub(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::state;
    use super::super::{Mutation, Outcome};
    use super::*;

    #[test]
    fn wrong_password_and_unknown_user_fail() {
        let (s, t0) = state();
        let a = s.open(ConnKind::Proxy, t0);
        assert!(!a.authenticate(b"bob", b"hunter3", Privilege::User));
        assert!(!a.authenticate(b"eve", b"hunter2", Privilege::User));
        assert_eq!(s.counters().users_connected, 0);
    }

    #[test]
    fn removing_a_user_closes_its_connections() {
        let (s, t0) = state();
        let a = s.open(ConnKind::Proxy, t0);
        let other = s.open(ConnKind::Proxy, t0);
        assert!(a.authenticate(b"bob", b"hunter2", Privilege::User));
        let m = Mutation::RemoveUser {
            name: Bytes::from_static(b"bob"),
        };
        assert_eq!(s.apply(Some(b"admin"), &m), Outcome::Applied);
        assert_eq!(a.close_cause(), Some(CloseCause::UserRemoved));
        assert_eq!(other.close_cause(), None);
        assert_eq!(
            s.counters().users_connected,
            1,
            "still open until the transport drops it"
        );
        drop(a);
        assert_eq!(s.counters().users_connected, 0);
    }

    #[test]
    fn sweep_half_closed_closes_only_silent_half_closed_relays_cleanup_or_not() {
        let (s, t0) = state();
        let limit = Duration::from_secs(60);
        let open = s.open(ConnKind::Proxy, t0);
        let half = s.open(ConnKind::Proxy, t0);
        let busy = s.open(ConnKind::Proxy, t0);
        half.set_half_closed();
        busy.set_half_closed();
        assert_eq!(
            s.apply(None, &Mutation::SetCleanup(false)),
            Outcome::Applied
        );
        let later = t0 + limit;
        busy.record_sent(later - Duration::from_secs(1), 10);
        assert_eq!(
            s.sweep_half_closed(later - Duration::from_millis(1), limit),
            0
        );
        assert_eq!(s.sweep_half_closed(later, limit), 1);
        assert_eq!(half.close_cause(), Some(CloseCause::Idle));
        assert_eq!((open.close_cause(), busy.close_cause()), (None, None));
        // Asked once: a second sweep does not count it again.
        assert_eq!(s.sweep_half_closed(later, limit), 0);
        assert_eq!(s.sweep_half_closed(later + limit, limit), 1);
        assert_eq!(busy.close_cause(), Some(CloseCause::Idle));
        assert_eq!(open.close_cause(), None);
    }

    #[test]
    fn sweep_closes_idle_connections_only_when_enabled() {
        let (s, t0) = state();
        let idle = s.open(ConnKind::Proxy, t0);
        let busy = s.open(ConnKind::Admin, t0);
        let later = t0 + Duration::from_secs(120);
        busy.touch(later - Duration::from_secs(1));
        assert_eq!(s.sweep(later - Duration::from_millis(1)), 0);
        assert_eq!(s.sweep(later), 1);
        assert_eq!(idle.close_cause(), Some(CloseCause::Idle));
        assert_eq!(busy.close_cause(), None);
        assert_eq!(
            s.apply(None, &Mutation::SetCleanup(false)),
            Outcome::Applied
        );
        assert_eq!(s.sweep(later + Duration::from_secs(600)), 0);
    }

    #[test]
    fn close_signal_wakes_waiter() {
        use std::task::Wake;
        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Relaxed);
            }
        }
        let (s, t0) = state();
        let c = s.open(ConnKind::Proxy, t0);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(c.poll_closed(&mut cx).is_pending());
        assert_eq!(s.close_all(), 1);
        assert!(flag.0.load(Relaxed));
        assert_eq!(c.poll_closed(&mut cx), Poll::Ready(CloseCause::Shutdown));
    }
}

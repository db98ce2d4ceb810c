//! The model the administration protocol administers, as plain data: users, settings,
//! counters, and the registry of live connections.
//!
//! One [`State`] is shared (behind an `Arc`) by every proxy and admin connection on every
//! thread. It is built for that:
//!
//! - counters and settings are atomics, so relaying bytes never takes a lock;
//! - users sit behind one `RwLock`; a [`Mutation`] checks and applies under the write lock in
//!   one step ([`State::apply`]), so two administrators adding the same name at once get
//!   exactly one [`Outcome::Applied`] and one [`Outcome::NameTaken`];
//! - live connections are registered in a sharded map, so that removing a user or the
//!   clean-up routine can close them. Closing is a flag plus a [`Waker`]: runtime-neutral, a
//!   transport awaits it with `std::future::poll_fn(|cx| conn.poll_closed(cx))`.
//!
//! No method here blocks for longer than a short critical section, reads a clock or does I/O:
//! time comes in as `now: Instant` and is stored relative to the `epoch` given to
//! [`State::new`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::ct_eq;

/// At most this many users: the admin protocol counts them in one byte.
pub const MAX_USERS: usize = 255;
/// Smallest I/O buffer size accepted, in bytes.
pub const MIN_BUFFER_SIZE: u32 = 50;
/// Largest I/O buffer size accepted, in bytes (1 MiB).
pub const MAX_BUFFER_SIZE: u32 = 1_048_576;
/// A SOCKS5 or admin handshake not completed within this time is closed (slow-client
/// protection, independent of the clean-up routine).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum Privilege {
    /// May use the proxy (`0x00` on the wire).
    User = 0,
    /// May use the proxy and the administration protocol (`0x01` on the wire).
    Admin = 1,
}

impl TryFrom<u8> for Privilege {
    type Error = u8;

    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            0 => Ok(Self::User),
            1 => Ok(Self::Admin),
            other => Err(other),
        }
    }
}

/// A user as listed by the admin protocol (never with its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The username.
    pub name: Bytes,
    /// What the user may do.
    pub privilege: Privilege,
}

/// Returns whether `name` is a valid username: 1 to 255 bytes of printable ASCII (space
/// included) without `:`. Usernames appear in tab-separated logs and in `-u user:pass`.
pub fn is_valid_username(name: &[u8]) -> bool {
    (1..=255).contains(&name.len())
        && name
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b':')
}

/// Returns whether `password` is a valid password: 1 to 255 bytes.
pub fn is_valid_password(password: &[u8]) -> bool {
    (1..=255).contains(&password.len())
}

/// A typed change to the [`State`], as an administrator asked for it. Transports observe
/// applied mutations (to log them, later to persist them).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Mutation {
    /// Add a user.
    AddUser {
        /// Username.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        name: Bytes,
        /// Password.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        password: Bytes,
        /// Privilege.
        privilege: Privilege,
    },
    /// Remove a user and close its open connections.
    RemoveUser {
        /// Username.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        name: Bytes,
    },
    /// Turn credential sniffing ("password spoofing") on or off.
    SetSniffing(bool),
    /// Turn the idle-connection clean-up routine on or off.
    SetCleanup(bool),
    /// Set the relay buffer size, in bytes, for sessions started afterwards.
    SetBufferSize(u32),
    /// Set the clean-up routine's period, in seconds.
    SetSelectorTimeout(u8),
    /// Set how long a connection may be idle before the clean-up routine closes it, in seconds.
    SetConnectionTimeout(u8),
}

impl fmt::Debug for Mutation {
    // By hand, so that a logged mutation never shows a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddUser {
                name, privilege, ..
            } => f
                .debug_struct("AddUser")
                .field("name", name)
                .field("password", &"<redacted>")
                .field("privilege", privilege)
                .finish(),
            Self::RemoveUser { name } => f.debug_struct("RemoveUser").field("name", name).finish(),
            Self::SetSniffing(v) => f.debug_tuple("SetSniffing").field(v).finish(),
            Self::SetCleanup(v) => f.debug_tuple("SetCleanup").field(v).finish(),
            Self::SetBufferSize(v) => f.debug_tuple("SetBufferSize").field(v).finish(),
            Self::SetSelectorTimeout(v) => f.debug_tuple("SetSelectorTimeout").field(v).finish(),
            Self::SetConnectionTimeout(v) => {
                f.debug_tuple("SetConnectionTimeout").field(v).finish()
            }
        }
    }
}

/// The one well-defined outcome of applying a [`Mutation`]. The admin session turns it into
/// the dialect's status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Applied,
    /// Add user: the name is taken.
    NameTaken,
    /// Remove user: no such user.
    NoSuchUser,
    /// Add user: there are already [`MAX_USERS`] users.
    TooManyUsers,
    /// A value is out of range or not allowed (bad username or password, buffer size outside
    /// [`MIN_BUFFER_SIZE`]..=[`MAX_BUFFER_SIZE`], zero timeout, removing yourself or the last
    /// administrator).
    InvalidParameter,
}

/// Initial settings of a [`State`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Relay buffer size in bytes (default 16384).
    pub buffer_size: u32,
    /// Clean-up routine period in seconds (default 5).
    pub selector_timeout: u8,
    /// Idle time after which the clean-up routine closes a connection, in seconds (default 120).
    pub connection_timeout: u8,
    /// Credential sniffing on (default true; `-N` turns it off).
    pub sniffing: bool,
    /// Clean-up routine on (default true; `-D` turns it off).
    pub cleanup: bool,
    /// Serve SOCKS5 clients that offer no authentication (default false).
    pub allow_anonymous: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            buffer_size: 16384,
            selector_timeout: 5,
            connection_timeout: 120,
            sniffing: true,
            cleanup: true,
            allow_anonymous: false,
        }
    }
}

/// The settings, readable without a lock from any thread.
#[derive(Debug)]
pub struct Settings {
    buffer_size: AtomicU32,
    selector_timeout: AtomicU8,
    connection_timeout: AtomicU8,
    sniffing: AtomicBool,
    cleanup: AtomicBool,
    allow_anonymous: AtomicBool,
}

impl Settings {
    fn new(c: &Config) -> Self {
        Self {
            buffer_size: AtomicU32::new(c.buffer_size),
            selector_timeout: AtomicU8::new(c.selector_timeout),
            connection_timeout: AtomicU8::new(c.connection_timeout),
            sniffing: AtomicBool::new(c.sniffing),
            cleanup: AtomicBool::new(c.cleanup),
            allow_anonymous: AtomicBool::new(c.allow_anonymous),
        }
    }

    /// Returns the relay buffer size in bytes.
    pub fn buffer_size(&self) -> u32 {
        self.buffer_size.load(Relaxed)
    }
    /// Returns the clean-up routine's period in seconds.
    pub fn selector_timeout(&self) -> u8 {
        self.selector_timeout.load(Relaxed)
    }
    /// Returns the idle timeout in seconds.
    pub fn connection_timeout(&self) -> u8 {
        self.connection_timeout.load(Relaxed)
    }
    /// Returns whether credential sniffing is on.
    pub fn sniffing(&self) -> bool {
        self.sniffing.load(Relaxed)
    }
    /// Returns whether the clean-up routine is on.
    pub fn cleanup(&self) -> bool {
        self.cleanup.load(Relaxed)
    }
    /// Returns whether clients without authentication are served.
    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous.load(Relaxed)
    }
    /// Returns all settings as a plain value.
    pub fn snapshot(&self) -> Config {
        Config {
            buffer_size: self.buffer_size(),
            selector_timeout: self.selector_timeout(),
            connection_timeout: self.connection_timeout(),
            sniffing: self.sniffing(),
            cleanup: self.cleanup(),
            allow_anonymous: self.allow_anonymous(),
        }
    }
}

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

#[derive(Debug, Default)]
struct AtomicCounters {
    historic: AtomicU64,
    current: AtomicU64,
    max_concurrent: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    users_connected: AtomicU64,
}

#[derive(Debug)]
struct UserRecord {
    name: Bytes,
    password: Bytes,
    privilege: Privilege,
    /// Open SOCKS connections of this user; shared with those connections, which decrement it
    /// when they close even if the user was removed meanwhile.
    open: Arc<AtomicU32>,
}

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

#[derive(Debug)]
struct ConnShared {
    kind: ConnKind,
    user: OnceLock<Bytes>,
    /// Milliseconds since the state's epoch of the last byte either way.
    last_active_ms: AtomicU64,
    close: CloseSignal,
}

const SHARDS: usize = 16;

/// The administered model. Share it as `Arc<State>`.
#[derive(Debug)]
pub struct State {
    epoch: Instant,
    users: RwLock<Vec<UserRecord>>,
    settings: Settings,
    counters: AtomicCounters,
    next_id: AtomicU64,
    registry: [Mutex<HashMap<u64, Arc<ConnShared>>>; SHARDS],
}

/// Locks a mutex, carrying on if a thread panicked while holding it (the data here stays
/// consistent at every step, so poisoning carries no information).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    /// Creates a state with no users. `epoch` is any instant before every `now` passed later.
    pub fn new(epoch: Instant, config: &Config) -> Self {
        Self {
            epoch,
            users: RwLock::new(Vec::new()),
            settings: Settings::new(config),
            counters: AtomicCounters::default(),
            next_id: AtomicU64::new(0),
            registry: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    fn users_read(&self) -> std::sync::RwLockReadGuard<'_, Vec<UserRecord>> {
        self.users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn users_write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<UserRecord>> {
        self.users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Returns the settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Returns the counters.
    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            historic: c.historic.load(Relaxed),
            current: c.current.load(Relaxed),
            max_concurrent: c.max_concurrent.load(Relaxed),
            bytes_sent: c.bytes_sent.load(Relaxed),
            bytes_received: c.bytes_received.load(Relaxed),
            users_connected: c.users_connected.load(Relaxed),
        }
    }

    /// Returns the users in the order they were added.
    pub fn users(&self) -> Vec<User> {
        self.users_read()
            .iter()
            .map(|r| User {
                name: r.name.clone(),
                privilege: r.privilege,
            })
            .collect()
    }

    /// Returns the number of users.
    pub fn user_count(&self) -> usize {
        self.users_read().len()
    }

    /// Returns the open SOCKS connections of user `name`, `None` if there is no such user.
    pub fn user_connections(&self, name: &[u8]) -> Option<u32> {
        self.users_read()
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.open.load(Relaxed))
    }

    /// Checks and applies `m` in one atomic step and returns its outcome. `actor` is the
    /// administrator asking (who may not remove themself); `None` for the operator (command
    /// line). Removing a user closes its open proxy and admin connections.
    pub fn apply(&self, actor: Option<&[u8]>, m: &Mutation) -> Outcome {
        let s = &self.settings;
        match m {
            Mutation::AddUser {
                name,
                password,
                privilege,
            } => {
                if !is_valid_username(name) || !is_valid_password(password) {
                    return Outcome::InvalidParameter;
                }
                let mut users = self.users_write();
                if users.iter().any(|r| r.name == name) {
                    return Outcome::NameTaken;
                }
                if users.len() >= MAX_USERS {
                    return Outcome::TooManyUsers;
                }
                users.push(UserRecord {
                    name: name.clone(),
                    password: password.clone(),
                    privilege: *privilege,
                    open: Arc::default(),
                });
                Outcome::Applied
            }
            Mutation::RemoveUser { name } => {
                if !is_valid_username(name) || actor == Some(&name[..]) {
                    return Outcome::InvalidParameter;
                }
                {
                    let mut users = self.users_write();
                    let Some(i) = users.iter().position(|r| r.name == name) else {
                        return Outcome::NoSuchUser;
                    };
                    let admins = users
                        .iter()
                        .filter(|r| r.privilege == Privilege::Admin)
                        .count();
                    if users[i].privilege == Privilege::Admin && admins == 1 {
                        return Outcome::InvalidParameter;
                    }
                    users.remove(i);
                }
                // Connections bind their user under the users lock and only if it exists
                // (`Connection::authenticate`), so every connection of `name` is visible here.
                self.close_where(CloseCause::UserRemoved, |c| c.user.get() == Some(name));
                Outcome::Applied
            }
            Mutation::SetSniffing(on) => {
                s.sniffing.store(*on, Relaxed);
                Outcome::Applied
            }
            Mutation::SetCleanup(on) => {
                s.cleanup.store(*on, Relaxed);
                Outcome::Applied
            }
            Mutation::SetBufferSize(n) => {
                if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(n) {
                    return Outcome::InvalidParameter;
                }
                s.buffer_size.store(*n, Relaxed);
                Outcome::Applied
            }
            Mutation::SetSelectorTimeout(t) | Mutation::SetConnectionTimeout(t) if *t == 0 => {
                Outcome::InvalidParameter
            }
            Mutation::SetSelectorTimeout(t) => {
                s.selector_timeout.store(*t, Relaxed);
                Outcome::Applied
            }
            Mutation::SetConnectionTimeout(t) => {
                s.connection_timeout.store(*t, Relaxed);
                Outcome::Applied
            }
        }
    }

    fn close_where(&self, cause: CloseCause, pred: impl Fn(&ConnShared) -> bool) -> usize {
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
    /// every [`Settings::selector_timeout`] seconds.
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

    /// Asks every open connection to close (server shutdown).
    pub fn close_all(&self) -> usize {
        self.close_where(CloseCause::Shutdown, |_| true)
    }

    /// Registers a new connection. For [`ConnKind::Proxy`] this counts it (historic, current,
    /// max concurrent). Dropping the returned handle deregisters it.
    pub fn open(self: &Arc<Self>, kind: ConnKind, now: Instant) -> Connection {
        let id = self.next_id.fetch_add(1, Relaxed);
        if kind == ConnKind::Proxy {
            let c = &self.counters;
            c.historic.fetch_add(1, Relaxed);
            let current = c.current.fetch_add(1, Relaxed) + 1;
            c.max_concurrent.fetch_max(current, Relaxed);
        }
        let shared = Arc::new(ConnShared {
            kind,
            user: OnceLock::new(),
            last_active_ms: AtomicU64::new(self.millis(now)),
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
    /// this connection (and closes it) or makes this call fail.
    pub fn authenticate(&self, user: &[u8], password: &[u8], required: Privilege) -> bool {
        if self.shared.user.get().is_some() {
            return false;
        }
        let users = self.state.users_read();
        let Some(r) = users.iter().find(|r| r.name == user) else {
            // Compare anyway so that an unknown user takes as long as a wrong password.
            let _ = ct_eq(password, password);
            return false;
        };
        if !ct_eq(&r.password, password) || r.privilege < required {
            return false;
        }
        if self.shared.user.set(r.name.clone()).is_err() {
            return false;
        }
        if self.shared.kind == ConnKind::Proxy {
            if r.open.fetch_add(1, Relaxed) == 0 {
                self.state.counters.users_connected.fetch_add(1, Relaxed);
            }
            let _ = self.user_open.set(r.open.clone());
        }
        true
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
    use super::*;

    fn state() -> (Arc<State>, Instant) {
        let t0 = crate::epoch::epoch();
        let s = Arc::new(State::new(t0, &Config::default()));
        for (n, p, pr) in [
            ("admin", "pw", Privilege::Admin),
            ("bob", "hunter2", Privilege::User),
        ] {
            let m = Mutation::AddUser {
                name: Bytes::from(n),
                password: Bytes::from(p),
                privilege: pr,
            };
            assert_eq!(s.apply(None, &m), Outcome::Applied);
        }
        (s, t0)
    }

    fn add(name: &str) -> Mutation {
        Mutation::AddUser {
            name: Bytes::copy_from_slice(name.as_bytes()),
            password: Bytes::from_static(b"x"),
            privilege: Privilege::User,
        }
    }

    #[test]
    fn add_user_outcomes() {
        let (s, _) = state();
        assert_eq!(s.apply(None, &add("bob")), Outcome::NameTaken);
        assert_eq!(s.apply(None, &add("")), Outcome::InvalidParameter);
        assert_eq!(s.apply(None, &add("a:b")), Outcome::InvalidParameter);
        assert_eq!(s.apply(None, &add("tab\there")), Outcome::InvalidParameter);
        let empty_pw = Mutation::AddUser {
            name: Bytes::from_static(b"carol"),
            password: Bytes::new(),
            privilege: Privilege::User,
        };
        assert_eq!(s.apply(None, &empty_pw), Outcome::InvalidParameter);
        for i in 2..MAX_USERS {
            assert_eq!(s.apply(None, &add(&format!("u{i}"))), Outcome::Applied);
        }
        assert_eq!(s.user_count(), MAX_USERS);
        assert_eq!(s.apply(None, &add("one-too-many")), Outcome::TooManyUsers);
    }

    #[test]
    fn remove_user_outcomes() {
        let (s, _) = state();
        let rm = |n: &'static str| Mutation::RemoveUser {
            name: Bytes::from(n),
        };
        assert_eq!(s.apply(Some(b"admin"), &rm("nobody")), Outcome::NoSuchUser);
        assert_eq!(
            s.apply(Some(b"admin"), &rm("admin")),
            Outcome::InvalidParameter
        );
        assert_eq!(
            s.apply(None, &rm("admin")),
            Outcome::InvalidParameter,
            "last admin"
        );
        assert_eq!(
            s.apply(Some(b"admin"), &rm("a:b")),
            Outcome::InvalidParameter
        );
        assert_eq!(s.apply(Some(b"admin"), &rm("bob")), Outcome::Applied);
        assert_eq!(s.user_count(), 1);
    }

    #[test]
    fn settings_ranges() {
        let (s, _) = state();
        use Mutation::*;
        assert_eq!(s.apply(None, &SetBufferSize(0)), Outcome::InvalidParameter);
        assert_eq!(s.apply(None, &SetBufferSize(49)), Outcome::InvalidParameter);
        assert_eq!(
            s.apply(None, &SetBufferSize(MAX_BUFFER_SIZE + 1)),
            Outcome::InvalidParameter
        );
        assert_eq!(s.apply(None, &SetBufferSize(50)), Outcome::Applied);
        assert_eq!(s.settings().buffer_size(), 50);
        assert_eq!(
            s.apply(None, &SetSelectorTimeout(0)),
            Outcome::InvalidParameter
        );
        assert_eq!(
            s.apply(None, &SetConnectionTimeout(0)),
            Outcome::InvalidParameter
        );
        assert_eq!(s.apply(None, &SetConnectionTimeout(9)), Outcome::Applied);
        assert_eq!(s.apply(None, &SetSniffing(false)), Outcome::Applied);
        assert!(!s.settings().sniffing());
        assert_eq!(s.settings().connection_timeout(), 9);
    }

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

    #[test]
    fn concurrent_adds_of_one_name_succeed_once() {
        let (s, _) = state();
        let results: Vec<Outcome> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| sc.spawn(|| s.apply(None, &add("dup"))))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            results.iter().filter(|o| **o == Outcome::Applied).count(),
            1
        );
        assert_eq!(
            results.iter().filter(|o| **o == Outcome::NameTaken).count(),
            7
        );
    }

    #[test]
    fn mutation_debug_hides_password() {
        let m = Mutation::AddUser {
            name: Bytes::from_static(b"u"),
            password: Bytes::from_static(b"topsecret"),
            privilege: Privilege::User,
        };
        assert!(!format!("{m:?}").contains("topsecret"));
    }
}

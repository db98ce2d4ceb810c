//! [`Limits`]: concurrent connections per user and per client address, new connections per
//! second per client address, handshakes in progress, and each user's bandwidth.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::bucket::{Bucket, BucketHandle, Rate};
use super::lock;
use super::rules::canonical_ip;
use crate::socks5::ReplyCode;

/// One user's exceptions to the per-user defaults of [`LimitsConfig`]. Each field: `None`,
/// the default; `Some(None)`, no limit for this user; `Some(Some(n))`, this limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// Most connections at once.
    pub max_connections: Option<Option<NonZeroU32>>,
    /// Upload (client to destination) in bytes per second, over all the user's connections.
    pub upload: Option<Option<NonZeroU64>>,
    /// Download (destination to client) in bytes per second, over all the user's connections.
    pub download: Option<Option<NonZeroU64>>,
}

/// The limits; `None` everywhere (the default): no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most SOCKS connections of one user at once (after login).
    pub user_max_connections: Option<NonZeroU32>,
    /// Upload per user, bytes per second (token bucket, shared fairly by the user's connections).
    pub user_upload: Option<NonZeroU64>,
    /// Download per user, bytes per second.
    pub user_download: Option<NonZeroU64>,
    /// Exceptions per user name.
    pub users: HashMap<Bytes, UserLimits>,
    /// Most SOCKS connections from one client address at once.
    pub ip_max_connections: Option<NonZeroU32>,
    /// Most new SOCKS connections from one client address per second (a burst of this many,
    /// then one every `1/n` s).
    pub ip_connections_per_second: Option<NonZeroU32>,
    /// Most SOCKS handshakes in progress (accepted, not yet relaying or refused), server-wide.
    pub max_handshakes: Option<NonZeroU32>,
}

impl LimitsConfig {
    /// Returns the connection limit of `user` (its exception, else the default).
    pub fn max_connections_of(&self, user: &[u8]) -> Option<NonZeroU32> {
        self.users
            .get(user)
            .and_then(|u| u.max_connections)
            .unwrap_or(self.user_max_connections)
    }

    /// Returns the (upload, download) rates of `user`.
    pub fn rates_of(&self, user: &[u8]) -> (Option<Rate>, Option<Rate>) {
        let u = self.users.get(user);
        let up = u.and_then(|u| u.upload).unwrap_or(self.user_upload);
        let down = u.and_then(|u| u.download).unwrap_or(self.user_download);
        (
            up.and_then(|r| Rate::per_second(r.get())),
            down.and_then(|r| Rate::per_second(r.get())),
        )
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The user has this many connections already.
    UserConnections {
        /// The limit.
        max: u32,
    },
    /// The client address has this many connections already.
    IpConnections {
        /// The limit.
        max: u32,
    },
    /// The client address opened this many connections in the last second.
    IpRate {
        /// The limit.
        per_second: u32,
    },
    /// This many handshakes are in progress server-wide.
    Handshakes {
        /// The limit.
        max: u32,
    },
}

impl Hit {
    /// Returns the reply a SOCKS request refused by this limit gets: `0x02` (connection not
    /// allowed by ruleset). Only the user limit is met with a request to answer; the others
    /// are checked on accept, where the connection is closed without a word.
    pub fn reply_code(&self) -> ReplyCode {
        ReplyCode::NotAllowed
    }
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UserConnections { max } => write!(f, "user at its limit of {max} connections"),
            Self::IpConnections { max } => {
                write!(f, "client address at its limit of {max} connections")
            }
            Self::IpRate { per_second } => write!(
                f,
                "client address at its limit of {per_second} new connections per second"
            ),
            Self::Handshakes { max } => write!(f, "{max} handshakes already in progress"),
        }
    }
}

#[derive(Debug)]
struct UserEntry {
    conns: u32,
    upload: Arc<Bucket>,
    download: Arc<Bucket>,
}

#[derive(Debug, Default)]
struct IpEntry {
    conns: u32,
    /// When the new-connection bucket is full again (GCRA, as [`Bucket`]).
    full_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct IpTable {
    map: HashMap<IpAddr, IpEntry>,
    /// The table is swept of idle entries when it grows past this.
    sweep_at: usize,
}

/// Below this, the address table is never swept.
const MIN_SWEEP: usize = 1024;

#[derive(Debug)]
struct Inner {
    config: RwLock<Arc<LimitsConfig>>,
    users: Mutex<HashMap<Bytes, UserEntry>>,
    ips: Mutex<IpTable>,
    handshakes: AtomicU32,
}

/// The connection limits, shared by every connection task (clone the handle: it is an
/// `Arc`), thread-safe, sans-IO (time is an input) and reconfigurable live.
///
/// Each `try_acquire_*` either counts the connection in and returns a guard, which counts it
/// out when dropped, or returns the [`Hit`] limit. A driver:
///
/// 1. on accept, `try_acquire_ip(now, peer)` then `try_acquire_handshake()`; either refused:
///    log the hit (rate-limited) and close;
/// 2. keeps the [`IpGuard`] for the life of the connection, and drops the [`HandshakeGuard`]
///    when the handshake ends (relaying starts, or the session closes);
/// 3. once the user is known (after login, before serving the request),
///    `try_acquire_user(name)`: refused, the request is answered `0x02`
///    ([`Hit::reply_code`]) and an access-log line written; else it keeps the [`UserGuard`]
///    for the life of the connection and relays through its [`UserGuard::upload`] and
///    [`UserGuard::download`] bucket handles. Anonymous sessions have no user limits.
///
/// [`set_config`](Self::set_config) applies a new configuration at once: a lower connection
/// limit refuses new connections until enough have closed (live ones are not closed), new
/// rates apply to the live connections' next grant.
#[derive(Debug, Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(LimitsConfig::default())
    }
}

impl Limits {
    /// Makes the limits.
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config: RwLock::new(Arc::new(config)),
                users: Mutex::new(HashMap::new()),
                ips: Mutex::new(IpTable {
                    map: HashMap::new(),
                    sweep_at: MIN_SWEEP,
                }),
                handshakes: AtomicU32::new(0),
            }),
        }
    }

    /// Returns the configuration in force.
    pub fn config(&self) -> Arc<LimitsConfig> {
        Arc::clone(
            &self
                .inner
                .config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Replaces the configuration at `now`; the bandwidth of connected users changes at once.
    pub fn set_config(&self, now: Instant, config: LimitsConfig) {
        // Users first, then the configuration, as in `try_acquire_user`: a user entry made
        // concurrently gets either the old rates and is updated below, or the new ones.
        let users = lock(&self.inner.users);
        let config = Arc::new(config);
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&config);
        for (name, e) in users.iter() {
            let (up, down) = config.rates_of(name);
            e.upload.set_rate(now, up);
            e.download.set_rate(now, down);
        }
    }

    /// Counts a connection of `user` in, unless it has its maximum already.
    ///
    /// # Errors
    ///
    /// [`Hit::UserConnections`].
    pub fn try_acquire_user(&self, user: &[u8]) -> Result<UserGuard, Hit> {
        let mut users = lock(&self.inner.users);
        let config = self.config();
        let max = config.max_connections_of(user);
        let entry = match users.get_mut(user) {
            Some(e) => e,
            None => {
                let (up, down) = config.rates_of(user);
                users
                    .entry(Bytes::copy_from_slice(user))
                    .or_insert(UserEntry {
                        conns: 0,
                        upload: Bucket::new(up),
                        download: Bucket::new(down),
                    })
            }
        };
        if let Some(max) = max {
            // (A new entry has no connection yet, and `max` is at least 1: never refused.)
            if entry.conns >= max.get() {
                return Err(Hit::UserConnections { max: max.get() });
            }
        }
        entry.conns += 1;
        Ok(UserGuard {
            upload: entry.upload.attach(),
            download: entry.download.attach(),
            limits: Arc::clone(&self.inner),
            user: Bytes::copy_from_slice(user),
        })
    }

    /// Returns the number of connections counted for `user`.
    pub fn user_connections(&self, user: &[u8]) -> u32 {
        lock(&self.inner.users).get(user).map_or(0, |e| e.conns)
    }

    /// Counts a connection from `ip` in at `now`, unless the address has its maximum of
    /// connections, or of new connections this second, already. An IPv4-mapped IPv6 address
    /// counts as its IPv4 address.
    ///
    /// # Errors
    ///
    /// [`Hit::IpConnections`], [`Hit::IpRate`] (a refused connection does not count against
    /// the rate).
    pub fn try_acquire_ip(&self, now: Instant, ip: IpAddr) -> Result<IpGuard, Hit> {
        let ip = canonical_ip(ip);
        let config = self.config();
        let mut t = lock(&self.inner.ips);
        if t.map.len() >= t.sweep_at {
            t.map
                .retain(|_, e| e.conns > 0 || e.full_at.is_some_and(|f| f > now));
            t.sweep_at = (t.map.len() * 2).max(MIN_SWEEP);
        }
        let e = t.map.entry(ip).or_default();
        if let Some(max) = config.ip_max_connections {
            if e.conns >= max.get() {
                return Err(Hit::IpConnections { max: max.get() });
            }
        }
        if let Some(n) = config.ip_connections_per_second {
            let cost = Duration::from_secs(1) / n.get();
            let full_at = e.full_at.filter(|f| *f > now).unwrap_or(now) + cost;
            // Refused while the bucket (of n tokens, a second's worth) would go negative.
            if full_at > now + Duration::from_secs(1) {
                return Err(Hit::IpRate {
                    per_second: n.get(),
                });
            }
            e.full_at = Some(full_at);
        }
        e.conns += 1;
        Ok(IpGuard {
            limits: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Returns the number of connections counted for `ip`.
    pub fn ip_connections(&self, ip: IpAddr) -> u32 {
        lock(&self.inner.ips)
            .map
            .get(&canonical_ip(ip))
            .map_or(0, |e| e.conns)
    }

    /// Returns the number of client addresses tracked (connected, or seen within a second).
    pub fn tracked_ips(&self) -> usize {
        lock(&self.inner.ips).map.len()
    }

    /// Counts a handshake in, unless the server has its maximum in progress.
    ///
    /// # Errors
    ///
    /// [`Hit::Handshakes`].
    pub fn try_acquire_handshake(&self) -> Result<HandshakeGuard, Hit> {
        let max = self
            .config()
            .max_handshakes
            .map_or(u32::MAX, NonZeroU32::get);
        self.inner
            .handshakes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Hit::Handshakes { max })?;
        Ok(HandshakeGuard {
            limits: Arc::clone(&self.inner),
        })
    }

    /// Returns the number of handshakes in progress.
    pub fn handshakes(&self) -> u32 {
        self.inner.handshakes.load(Ordering::Acquire)
    }
}

/// A connection counted for its user, with the user's bandwidth; counted out when dropped.
#[derive(Debug)]
pub struct UserGuard {
    upload: BucketHandle,
    download: BucketHandle,
    limits: Arc<Inner>,
    user: Bytes,
}

impl UserGuard {
    /// Returns the user's upload bucket (client to destination), attached for this connection.
    pub fn upload(&self) -> &BucketHandle {
        &self.upload
    }

    /// Returns the user's download bucket (destination to client), attached for this
    /// connection.
    pub fn download(&self) -> &BucketHandle {
        &self.download
    }

    /// Returns the user name.
    pub fn user(&self) -> &Bytes {
        &self.user
    }
}

impl Drop for UserGuard {
    fn drop(&mut self) {
        let mut users = lock(&self.limits.users);
        if let Some(e) = users.get_mut(&self.user) {
            e.conns -= 1;
            if e.conns == 0 {
                users.remove(&self.user);
            }
        }
    }
}

/// A connection counted for its client address; counted out when dropped.
#[derive(Debug)]
pub struct IpGuard {
    limits: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut t = lock(&self.limits.ips);
        if let Some(e) = t.map.get_mut(&self.ip) {
            e.conns -= 1;
            if e.conns == 0 && e.full_at.is_none() {
                t.map.remove(&self.ip);
            }
        }
    }
}

/// A handshake in progress; counted out when dropped.
#[derive(Debug)]
pub struct HandshakeGuard {
    limits: Arc<Inner>,
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.limits.handshakes.fetch_sub(1, Ordering::AcqRel);
    }
}

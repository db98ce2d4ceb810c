//! The model the administration protocol administers, as plain data: users, settings,
//! counters, and the registry of live connections.
//!
//! One [`State`] is shared (behind an `Arc`) by every proxy and admin connection on every
//! thread. It is built for that:
//!
//! - counters and settings are atomics, so relaying bytes never takes a lock
//!   ([`Counters`], [`Settings`]);
//! - users sit behind one `RwLock`; a [`Mutation`] checks and applies under the write lock in
//!   one step ([`State::apply`]), so two administrators adding the same name at once get
//!   exactly one [`Outcome::Applied`] and one [`Outcome::NameTaken`]; passwords are
//!   [`Secret`]s, which never show in `Debug` output;
//! - live connections are registered in a sharded map ([`Connection`]), so that removing a
//!   user or the clean-up routine can close them. Closing is a flag plus a
//!   [`Waker`](std::task::Waker): runtime-neutral, a transport awaits it with
//!   `std::future::poll_fn(|cx| conn.poll_closed(cx))`.
//!
//! No method here blocks for longer than a short critical section, reads a clock or does I/O:
//! time comes in as `now: Instant` and is stored relative to the `epoch` given to
//! [`State::new`].
//!
//! Users are added with a clear password or a PHC string; logins of hashed users take two
//! phases, with a warm cache ([`Login`], `login.rs`).
//!
//! Files: `users.rs` (users, [`Secret`], the user half of `apply`), `login.rs`
//! ([`Credential`], [`Login`], the two-phase login and its cache), `settings.rs`
//! ([`Config`], [`Settings`]), `counters.rs` ([`Counters`]), `conn.rs` ([`Connection`], the
//! registry and the close signal).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

mod conn;
mod counters;
mod login;
mod settings;
mod users;

pub use conn::{CloseCause, ConnKind, Connection};
pub use counters::Counters;
pub(crate) use login::PendingLogin;
pub use login::{is_valid_phc, Credential, Login, MAX_PHC_LEN};
pub use settings::{Config, Settings};
pub use users::{is_valid_password, is_valid_username, Privilege, Secret, User};

use counters::AtomicCounters;
use login::DigestKeys;
use users::UserRecord;

/// At most this many users: the admin protocol counts them in one byte.
pub const MAX_USERS: usize = 255;
/// Smallest I/O buffer size accepted, in bytes.
pub const MIN_BUFFER_SIZE: u32 = 50;
/// Largest I/O buffer size accepted, in bytes (1 MiB).
pub const MAX_BUFFER_SIZE: u32 = 1_048_576;
/// A SOCKS5 or admin handshake not completed within this time is closed (slow-client
/// protection, independent of the clean-up routine). Admin sessions use the shorter of this
/// and the connection timeout: [`Settings::auth_timeout`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A typed change to the [`State`], as an administrator asked for it (or a store loaded). The
/// admin session asks its driver to check and apply it ([`State::apply`]) and to make it
/// durable before the session acknowledges it. `Debug` never shows a password ([`Secret`])
/// or a PHC string.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Mutation {
    /// Add a user.
    AddUser {
        /// Username.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        name: Bytes,
        /// Password.
        password: Secret,
        /// Privilege.
        privilege: Privilege,
    },
    /// Add a user whose password is stored hashed (loaded from a store, or an admin's
    /// [`AddUser`](Self::AddUser) after the driver hashed its password): applied like
    /// `AddUser`, with the same outcomes; `phc` must be [`is_valid_phc`], else
    /// [`Outcome::InvalidParameter`]. Its logins go through [`Login::Verify`].
    AddHashedUser {
        /// Username.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        name: Bytes,
        /// The PHC string (argon2id) of the password.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        phc: Bytes,
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddUser {
                name,
                password,
                privilege,
            } => f
                .debug_struct("AddUser")
                .field("name", name)
                .field("password", password)
                .field("privilege", privilege)
                .finish(),
            Self::AddHashedUser {
                name, privilege, ..
            } => f
                .debug_struct("AddHashedUser")
                .field("name", name)
                .field("privilege", privilege)
                .finish_non_exhaustive(),
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
    /// The change could not be made durable (persisting it failed), so it is not in effect.
    /// Never returned by [`State::apply`]; a driver reports it to the session instead of the
    /// outcome of `apply` when its store fails (and undoes the change). Answered General
    /// Server Error (`0xFF`) in both dialects.
    Failed,
}

/// The administered model. Share it as `Arc<State>`.
#[derive(Debug)]
pub struct State {
    epoch: Instant,
    users: RwLock<Vec<UserRecord>>,
    settings: Settings,
    counters: AtomicCounters,
    next_id: AtomicU64,
    registry: conn::Registry,
    /// The keys of every user's warm login cache (random per process).
    digest_keys: DigestKeys,
    /// The PHC string unknown users are verified against, if set.
    decoy: Mutex<Option<login::Decoy>>,
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
            digest_keys: DigestKeys::new(),
            decoy: Mutex::new(None),
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
        self.counters.snapshot()
    }

    /// Returns the outcome [`apply`](Self::apply) would have for `m` now, changing nothing:
    /// for a driver that must make a modification durable before it applies it. The answer
    /// holds for the apply that follows only while no other modification runs in between:
    /// the driver serialises modifications (users and settings change only through them).
    pub fn check(&self, actor: Option<&[u8]>, m: &Mutation) -> Outcome {
        match m {
            Mutation::AddUser { name, password, .. } => {
                self.check_add(name, users::is_valid_password(password.expose()))
            }
            Mutation::AddHashedUser { name, phc, .. } => {
                self.check_add(name, login::is_valid_phc(phc))
            }
            Mutation::RemoveUser { name } => self.check_remove(actor, name),
            Mutation::SetBufferSize(n) if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(n) => {
                Outcome::InvalidParameter
            }
            Mutation::SetSelectorTimeout(0) | Mutation::SetConnectionTimeout(0) => {
                Outcome::InvalidParameter
            }
            Mutation::SetSniffing(_)
            | Mutation::SetCleanup(_)
            | Mutation::SetBufferSize(_)
            | Mutation::SetSelectorTimeout(_)
            | Mutation::SetConnectionTimeout(_) => Outcome::Applied,
        }
    }

    /// Checks and applies `m` in one atomic step and returns its outcome (never
    /// [`Outcome::Failed`]). `actor` is the administrator asking (who may not remove
    /// themself); `None` for the operator (command line). Removing a user closes its open
    /// proxy and admin connections.
    pub fn apply(&self, actor: Option<&[u8]>, m: &Mutation) -> Outcome {
        match m {
            Mutation::AddUser {
                name,
                password,
                privilege,
            } => self.add_user(name, Credential::Clear(password.clone()), *privilege),
            Mutation::AddHashedUser {
                name,
                phc,
                privilege,
            } => self.add_user(name, Credential::Hashed(phc.clone()), *privilege),
            Mutation::RemoveUser { name } => self.remove_user(actor, name),
            Mutation::SetSniffing(_)
            | Mutation::SetCleanup(_)
            | Mutation::SetBufferSize(_)
            | Mutation::SetSelectorTimeout(_)
            | Mutation::SetConnectionTimeout(_) => self
                .settings
                .apply(m)
                .expect("settings apply every settings mutation"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A state with `admin`/`pw` (administrator) and `bob`/`hunter2`.
    pub(super) fn state() -> (Arc<State>, Instant) {
        let t0 = crate::epoch::epoch();
        let s = Arc::new(State::new(t0, &Config::default()));
        for (n, p, pr) in [
            ("admin", "pw", Privilege::Admin),
            ("bob", "hunter2", Privilege::User),
        ] {
            let m = Mutation::AddUser {
                name: Bytes::from(n),
                password: Secret::from(p),
                privilege: pr,
            };
            assert_eq!(s.apply(None, &m), Outcome::Applied);
        }
        (s, t0)
    }

    /// Adds user `name` with password `x`.
    pub(super) fn add(name: &str) -> Mutation {
        Mutation::AddUser {
            name: Bytes::copy_from_slice(name.as_bytes()),
            password: Secret::from("x"),
            privilege: Privilege::User,
        }
    }

    #[test]
    fn check_predicts_apply_and_changes_nothing() {
        let (s, _) = state();
        let cases = [
            add("carol"),
            add("admin"),
            add("bad:name"),
            Mutation::RemoveUser {
                name: Bytes::from("nobody"),
            },
            Mutation::RemoveUser {
                name: Bytes::from("admin"),
            },
            Mutation::SetBufferSize(10),
            Mutation::SetBufferSize(4096),
            Mutation::SetConnectionTimeout(0),
            Mutation::RemoveUser {
                name: Bytes::from("bob"),
            },
        ];
        for m in &cases {
            let users = s.users();
            let predicted = s.check(Some(b"admin"), m);
            assert_eq!(s.users(), users, "check changed nothing: {m:?}");
            assert_eq!(s.apply(Some(b"admin"), m), predicted, "{m:?}");
        }
    }
}

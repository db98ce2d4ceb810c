//! The embedded store of socks5d: users (name, argon2id hash, privilege) and the settings
//! the administration protocol changes, durable across restarts, and the argon2id hashing
//! of their passwords.
//!
//! The API is synchronous: the server calls it from a blocking thread. The fleet's PostgreSQL
//! backend (`socks5d-store-pg`) shares [`Change`], [`Snapshot`] and [`apply_change`] with it,
//! but follows the database (snapshots pushed to the server) rather than answer [`UserStore::load`];
//! [`Store`] stays each fleet instance's last-known-good copy.
//!
//! # The embedded backend: one text file, replaced atomically
//!
//! [`Store::open`] keeps `DIR/users.jsonl` (see [the format](#the-file-format)) and
//! `DIR/store.lock`. Every [`Store::commit`] writes the whole new file to
//! `DIR/users.jsonl.tmp`, fsyncs it, renames it over `users.jsonl` and fsyncs `DIR`, and only
//! then returns `Ok` and changes what [`Store::load`] answers: durable before acknowledged. A
//! crash at any moment leaves the old or the new file, never a mix.
//!
//! Why a file and not redb or SQLite: at most 255 users and five settings make a file of a few
//! tens of KiB, rewritten in well under a millisecond plus the two fsyncs that redb or SQLite
//! would also pay (a whole commit of a full store: about 3 ms here); the operator can read it
//! with `cat` or `jq` (it holds hashes, never passwords) without a database tool; it is the
//! very format of [`export`](Store::export) and [`import`]; and no database's own file format
//! comes along (redb 3 no longer opens redb 2 files: they must be upgraded with redb 2.6 first;
//! SQLite adds a C build). The parts that a database would give for free are small here and
//! tested: the lock, the version check, the atomic replacement.
//!
//! - **Lock**: `flock(LOCK_EX | LOCK_NB)` on `DIR/store.lock`, held as long as the
//!   [`Store`] lives. A second opener, in this process or another, gets
//!   [`StoreError::Locked`]. The kernel drops the lock when the process dies, even by
//!   SIGKILL, so a crashed server restarts without manual clean-up.
//! - **Permissions**: a missing `DIR` is created `0700`, the files are created `0600`. An
//!   existing `DIR` keeps its mode (systemd's `StateDirectory=` sets it).
//! - **Refusals**: a file of a newer format version ([`StoreError::NewerFormat`]) or that
//!   does not parse, or holds a bad name, hash, privilege, setting or user count
//!   ([`StoreError::Corrupt`], with the line) is never written to. The server should print
//!   the message and exit 1.
//! - **A failed commit** changes nothing: `load` answers as before and the server answers
//!   `FF`. One case is ambiguous: when the directory fsync fails after the rename, the new
//!   file may or may not survive a power cut. The store then refuses every later commit
//!   ([`StoreError::Poisoned`]) rather than build on an unknown state (an fsync that failed
//!   once cannot be trusted when retried, as PostgreSQL learned in 2018).
//! - **Stale temporary file** from a crash: removed by `open`, under the lock.
//!
//! # The file format
//!
//! UTF-8 text, one JSON object per line, `\n`-terminated. The same format is the store file,
//! the export and the import, so a store file can be imported as it is.
//!
//! ```text
//! {"format":"socks5d-users","format_version":1,"version":7,"users":2,"settings":{"sniffing":false,"buffer_size":4096}}
//! {"name":"admin","hash":"$argon2id$v=19$m=19456,t=2,p=1$...$...","privilege":1}
//! {"name":"alice","hash":"$argon2id$v=19$m=19456,t=2,p=1$...$...","privilege":0}
//! ```
//!
//! - Line 1, the header: `format` is always `"socks5d-users"`; `format_version` is
//!   [`FORMAT_VERSION`] (a reader refuses a larger one before looking at anything else);
//!   `version` is the number of commits the store has made; `users` the number of user lines
//!   that follow (a truncated file is caught); `settings` holds the settings an administrator
//!   changed, by the names of [`StoredSettings`]' fields, and omits the others.
//! - One line per user: `name` 1 to 255 bytes of printable ASCII without `:`, unique;
//!   `hash` an argon2id PHC string within the bounds of [`check_hash`]; `privilege` `0`
//!   (proxy user) or `1` (administrator).
//! - Unknown fields, empty lines, more than [`MAX_USERS`] users or a file over
//!   [`MAX_FILE_BYTES`] are refused. Clear passwords appear nowhere.
//!
//! # Passwords
//!
//! [`hash_password`] makes argon2id PHC strings: m = 19 MiB, t = 2, p = 1 (the OWASP baseline),
//! 24 to 31 ms per hash or verification on the development machine (2 shared cores, release
//! build; `cargo bench -p socks5d-store`). [`verify_password`] uses the parameters in the
//! string, so hashes made with other parameters keep working, within the bounds of
//! [`check_hash`] (at most 64 MiB, 8 passes, 8 lanes) so that an imported hash cannot make one
//! verification arbitrarily expensive.
//!
//! Argon2 per SOCKS5 handshake would cap the server at a few dozen handshakes per second per
//! core, so this crate only hashes and verifies; the cache of verified credentials is
//! `socks5d-core`'s (the warm cache of `State`: a keyed hash of the last password that
//! verified, per user), and the bound on cold verifications at once (verification slots, one
//! verification per user at a time, off the async workers) is `socks5d-net`'s
//! `Shared::verify`, to which the server hands [`verify_password`] as its `PasswordVerifier`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod file;
mod format;
mod password;
mod statedir;

use std::fmt;

pub use error::{Conflict, StoreError};
pub use file::{Store, LOCK_FILE, STORE_FILE};
pub use format::{import, write_users, FORMAT_VERSION, MAX_FILE_BYTES};
pub use password::{
    check_hash, hash_password, verify_password, MAX_M_COST_KIB, MAX_P_COST, MAX_T_COST, M_COST_KIB,
    P_COST, T_COST,
};
pub use socks5d_core::state::MAX_USERS;
pub use statedir::{default_state_dir, StateDir, FALLBACK_STATE_DIR, SYSTEM_STATE_DIR};

/// A durable store of users and settings. [`Store`] is the embedded implementation.
///
/// Contract for every implementation: [`commit`](Self::commit) returns `Ok` only once the
/// change is durable, and after an `Err` the stored state (and what [`load`](Self::load)
/// answers) is the one before the call. Commits are serialised: each successful one returns
/// a version one above the previous.
pub trait UserStore: Send + Sync {
    /// Returns every user and setting, and the version they are at.
    ///
    /// # Errors
    ///
    /// Backend-specific (the embedded store answers from memory and never fails).
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Applies `change` durably and returns the new version.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] for an existing name added or a missing name removed,
    /// [`StoreError::Invalid`] for a change no store may hold, other kinds when the change
    /// could not be made durable. Nothing changed in every case.
    fn commit(&self, change: &Change) -> Result<u64, StoreError>;
}

/// Everything a store holds, at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The users, in the order they were added.
    pub users: Vec<StoredUser>,
    /// The settings an administrator changed.
    pub settings: StoredSettings,
    /// The number of commits that led here (0 for a new store).
    pub version: u64,
}

/// One stored user. Its `Debug` shows the hash's algorithm only.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// Username: 1 to 255 bytes of printable ASCII without `:`.
    pub name: Vec<u8>,
    /// The argon2id PHC string of the password.
    pub hash: String,
    /// `0` proxy user, `1` administrator.
    pub privilege: u8,
}

impl fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("hash", &RedactedHash(&self.hash))
            .field("privilege", &self.privilege)
            .finish()
    }
}

/// Shows `$argon2id$…` for a PHC string: enough to tell what it is, nothing to crack.
struct RedactedHash<'a>(&'a str);

impl fmt::Debug for RedactedHash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = self.0.split('$').nth(1).unwrap_or("");
        let alg = if alg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            alg
        } else {
            "?"
        };
        write!(f, "\"${alg}$…\"")
    }
}

/// The settings the administration protocol changes. `None`: never set by an administrator,
/// so the command-line flag (or its default) applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredSettings {
    /// Credential sniffing on or off.
    pub sniffing: Option<bool>,
    /// The clean-up routine on or off.
    pub cleanup: Option<bool>,
    /// Relay buffer size, in bytes (`MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE` of `socks5d-core`).
    pub buffer_size: Option<u32>,
    /// Clean-up period, in seconds (at least 1).
    pub selector_timeout: Option<u8>,
    /// Idle time before the clean-up closes a connection, in seconds (at least 1).
    pub connection_timeout: Option<u8>,
}

impl StoredSettings {
    /// Returns the settings with `setting` applied.
    #[must_use]
    pub fn with(mut self, setting: Setting) -> Self {
        match setting {
            Setting::Sniffing(v) => self.sniffing = Some(v),
            Setting::Cleanup(v) => self.cleanup = Some(v),
            Setting::BufferSize(v) => self.buffer_size = Some(v),
            Setting::SelectorTimeout(v) => self.selector_timeout = Some(v),
            Setting::ConnectionTimeout(v) => self.connection_timeout = Some(v),
        }
        self
    }

    /// Checks every value that is set against the ranges the admin protocol accepts.
    ///
    /// # Errors
    ///
    /// The first value out of range, as a short reason.
    pub fn validate(&self) -> Result<(), String> {
        use socks5d_core::state::{MAX_BUFFER_SIZE, MIN_BUFFER_SIZE};
        if let Some(n) = self.buffer_size {
            if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&n) {
                return Err(format!(
                    "buffer_size {n} outside {MIN_BUFFER_SIZE}..={MAX_BUFFER_SIZE}"
                ));
            }
        }
        if self.selector_timeout == Some(0) {
            return Err("selector_timeout 0".into());
        }
        if self.connection_timeout == Some(0) {
            return Err("connection_timeout 0".into());
        }
        Ok(())
    }
}

/// One setting, as an administrator set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Credential sniffing on or off.
    Sniffing(bool),
    /// The clean-up routine on or off.
    Cleanup(bool),
    /// Relay buffer size, in bytes.
    BufferSize(u32),
    /// Clean-up period, in seconds.
    SelectorTimeout(u8),
    /// Idle time before the clean-up closes a connection, in seconds.
    ConnectionTimeout(u8),
}

/// One modification of a store, committed by [`UserStore::commit`].
#[derive(Clone, PartialEq, Eq)]
pub enum Change {
    /// Adds a user; [`Conflict::NameTaken`] if the name exists.
    AddUser {
        /// Username (validated: printable ASCII without `:`, 1 to 255 bytes).
        name: Vec<u8>,
        /// The argon2id PHC string from [`hash_password`] (validated by [`check_hash`]).
        hash: String,
        /// `0` proxy user, `1` administrator.
        privilege: u8,
    },
    /// Removes a user; [`Conflict::NoSuchUser`] if there is none of that name.
    RemoveUser {
        /// Username.
        name: Vec<u8>,
    },
    /// Sets one setting.
    SetSetting(Setting),
    /// Replaces every user and setting in one commit: applying an [`import`].
    Replace {
        /// The new users (validated as a store file's).
        users: Vec<StoredUser>,
        /// The new settings.
        settings: StoredSettings,
    },
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddUser {
                name,
                hash,
                privilege,
            } => f
                .debug_struct("AddUser")
                .field("name", &String::from_utf8_lossy(name))
                .field("hash", &RedactedHash(hash))
                .field("privilege", privilege)
                .finish(),
            Self::RemoveUser { name } => f
                .debug_struct("RemoveUser")
                .field("name", &String::from_utf8_lossy(name))
                .finish(),
            Self::SetSetting(s) => f.debug_tuple("SetSetting").field(s).finish(),
            Self::Replace { users, settings } => f
                .debug_struct("Replace")
                .field("users", users)
                .field("settings", settings)
                .finish(),
        }
    }
}

/// Returns the snapshot after `change`, or why `change` cannot apply to `snap`. The version
/// is left as it was. Shared by every backend that keeps a snapshot in memory.
///
/// # Errors
///
/// [`StoreError::Conflict`] or [`StoreError::Invalid`].
pub fn apply_change(snap: &Snapshot, change: &Change) -> Result<Snapshot, StoreError> {
    let mut next = snap.clone();
    match change {
        Change::AddUser {
            name,
            hash,
            privilege,
        } => {
            let user = StoredUser {
                name: name.clone(),
                hash: hash.clone(),
                privilege: *privilege,
            };
            validate_user(&user).map_err(StoreError::Invalid)?;
            if snap.users.iter().any(|u| u.name == *name) {
                return Err(StoreError::Conflict(Conflict::NameTaken));
            }
            if snap.users.len() >= MAX_USERS {
                return Err(StoreError::Invalid(format!("already {MAX_USERS} users")));
            }
            next.users.push(user);
        }
        Change::RemoveUser { name } => {
            let Some(i) = snap.users.iter().position(|u| u.name == *name) else {
                return Err(StoreError::Conflict(Conflict::NoSuchUser));
            };
            next.users.remove(i);
        }
        Change::SetSetting(s) => {
            next.settings = snap.settings.with(*s);
            next.settings.validate().map_err(StoreError::Invalid)?;
        }
        Change::Replace { users, settings } => {
            validate_users(users).map_err(|(_, reason)| StoreError::Invalid(reason))?;
            settings.validate().map_err(StoreError::Invalid)?;
            next.users = users.clone();
            next.settings = *settings;
        }
    }
    Ok(next)
}

/// Checks one user: name, hash and privilege.
pub(crate) fn validate_user(u: &StoredUser) -> Result<(), String> {
    if !socks5d_core::state::is_valid_username(&u.name) {
        return Err("username is not 1 to 255 bytes of printable ASCII without ':'".into());
    }
    if u.privilege > 1 {
        return Err(format!("privilege {} is neither 0 nor 1", u.privilege));
    }
    check_hash(&u.hash).map_err(|e| format!("hash: {e}"))
}

/// Checks a user list: each user, unique names, at most [`MAX_USERS`]. On error, the index
/// of the first bad user (or `users.len()` for the count) and the reason.
pub(crate) fn validate_users(users: &[StoredUser]) -> Result<(), (usize, String)> {
    if users.len() > MAX_USERS {
        return Err((MAX_USERS, format!("more than {MAX_USERS} users")));
    }
    for (i, u) in users.iter().enumerate() {
        validate_user(u).map_err(|e| (i, e))?;
        if users[..i].iter().any(|p| p.name == u.name) {
            return Err((
                i,
                format!("user {:?} appears twice", String::from_utf8_lossy(&u.name)),
            ));
        }
    }
    Ok(())
}

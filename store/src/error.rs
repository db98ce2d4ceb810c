//! The one error type of the store.

use std::io;
use std::path::PathBuf;

/// Why a modification was refused although the store works: the server maps each to its
/// protocol outcome (name taken / no such user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// [`Change::AddUser`](crate::Change::AddUser): a user of that name exists.
    NameTaken,
    /// [`Change::RemoveUser`](crate::Change::RemoveUser): no user of that name.
    NoSuchUser,
}

/// What went wrong. Every message names the file concerned and never contains a password
/// or a hash.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing, syncing or locking a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process (or another [`Store`](crate::Store) in this one) holds the store.
    #[error(
        "the store in {} is in use by another socks5d (lock {} is held)",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The state directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The store file was written by a newer socks5d: it is left untouched.
    #[error(
        "{} has store format version {found}, this socks5d reads only up to {supported}: \
         refusing to open it (run the newer socks5d, or move the file away)",
        path.display()
    )]
    NewerFormat {
        /// The store file.
        path: PathBuf,
        /// Its format version.
        found: u64,
        /// The newest format version this build reads.
        supported: u64,
    },
    /// The store file cannot be read as a store: it is left untouched.
    #[error(
        "{}:{line}: not a valid socks5d store ({reason}): refusing to open or overwrite it",
        path.display()
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// The first bad line, 1-based (0: the file as a whole).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An import file is not a valid users file.
    #[error("{}:{line}: {reason}", path.display())]
    BadImport {
        /// The import file.
        path: PathBuf,
        /// The first bad line, 1-based (0: the file as a whole).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The modification conflicts with the stored users; nothing was written.
    #[error("{0}")]
    Conflict(Conflict),
    /// The modification is not valid (bad name, hash, privilege or setting value, too many
    /// users); nothing was written.
    #[error("invalid change: {0}")]
    Invalid(String),
    /// An earlier commit's directory fsync failed after its rename, so what is on disk is
    /// unknown; the store refuses further commits until it is opened again.
    #[error(
        "an earlier fsync in {} failed, the store refuses changes until socks5d restarts",
        dir.display()
    )]
    Poisoned {
        /// The state directory.
        dir: PathBuf,
    },
    /// Writing an export failed.
    #[error("cannot write the export: {0}")]
    Export(#[source] io::Error),
    /// Hashing a password failed (the operating system's random source failed).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NameTaken => "a user of that name exists",
            Self::NoSuchUser => "no user of that name",
        })
    }
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

//! [`Store`]: the embedded backend, one file replaced atomically (see the crate docs).

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use rustix::fs::{flock, FlockOperation};

use crate::format::{self, ParseError, FORMAT_VERSION, MAX_FILE_BYTES};
use crate::{apply_change, Change, Snapshot, StoreError, UserStore};

/// The store file's name in the state directory.
pub const STORE_FILE: &str = "users.jsonl";
/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "store.lock";
/// Where a commit writes before its rename.
const TMP_FILE: &str = "users.jsonl.tmp";

/// The embedded store: `DIR/users.jsonl`, locked by `DIR/store.lock` for as long as it lives.
pub struct Store {
    dir: PathBuf,
    path: PathBuf,
    /// Held for the store's life: the kernel drops the `flock` when it is closed.
    _lock: File,
    /// What `load` answers; replaced only after a commit is durable.
    current: RwLock<Snapshot>,
    /// Serialises commits; `true` once a directory fsync failed after a rename.
    writer: Mutex<bool>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.current.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("version", &snap.version)
            .field("users", &snap.users.len())
            .finish_non_exhaustive()
    }
}

fn open_mode(path: &Path, opts: &mut OpenOptions) -> Result<File, StoreError> {
    opts.mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io("open", path, e))
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

impl Store {
    /// Opens the store in `dir`, creating `dir` (`0700`) and an empty store (`0600`) if
    /// there is none, and locks it for this [`Store`]'s life.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] if another store holds `dir`; [`StoreError::NewerFormat`] or
    /// [`StoreError::Corrupt`] for a store file this build must not touch (it is left as it
    /// is); [`StoreError::Io`] naming the file that could not be created, read or synced.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io("create directory", dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = open_mode(
            &lock_path,
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StoreError::Locked {
                    dir: dir.into(),
                    lock: lock_path,
                });
            }
            Err(e) => return Err(StoreError::io("lock", lock_path, e.into())),
        }

        let path = dir.join(STORE_FILE);
        let tmp = dir.join(TMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove", tmp, e)),
        }

        let snapshot = match File::open(&path) {
            Ok(f) => Self::read(&path, f)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let empty = Snapshot::default();
                write_atomic(dir, &path, &format::encode(&empty))?;
                empty
            }
            Err(e) => return Err(StoreError::io("open", path, e)),
        };
        Ok(Self {
            dir: dir.into(),
            path,
            _lock: lock,
            current: RwLock::new(snapshot),
            writer: Mutex::new(false),
        })
    }

    fn read(path: &Path, f: File) -> Result<Snapshot, StoreError> {
        let corrupt = |line, reason| StoreError::Corrupt {
            path: path.into(),
            line,
            reason,
        };
        let bytes = format::read_bounded(f)
            .map_err(|e| StoreError::io("read", path, e))?
            .map_err(|()| corrupt(0, format!("larger than {MAX_FILE_BYTES} bytes")))?;
        format::parse(&bytes).map_err(|e| match e {
            ParseError::Newer(found) => StoreError::NewerFormat {
                path: path.into(),
                found,
                supported: FORMAT_VERSION,
            },
            ParseError::Bad(line, reason) => corrupt(line, reason),
        })
    }

    /// Returns the store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns every user and setting, from memory (the file is read once, by `open`).
    pub fn load(&self) -> Snapshot {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies `change`, makes it durable (write, fsync, rename, fsync the directory) and
    /// only then returns the new version and shows it in [`load`](Self::load).
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] and [`StoreError::Invalid`] before anything is written;
    /// [`StoreError::Io`] if the change could not be made durable; [`StoreError::Poisoned`]
    /// after an earlier failed directory fsync. [`load`](Self::load) answers as before in
    /// every case.
    pub fn commit(&self, change: &Change) -> Result<u64, StoreError> {
        let mut poisoned = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if *poisoned {
            return Err(StoreError::Poisoned {
                dir: self.dir.clone(),
            });
        }
        let mut next = apply_change(&self.load(), change)?;
        next.version += 1;
        match write_atomic(&self.dir, &self.path, &format::encode(&next)) {
            Ok(()) => {}
            Err(Failure::Before(e)) => return Err(e),
            Err(Failure::AfterRename(e)) => {
                *poisoned = true;
                return Err(e);
            }
        }
        let version = next.version;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(version)
    }

    /// Writes every user and setting to `w` in the users file format (hashes, never
    /// passwords), for [`import`](crate::import) on another server.
    ///
    /// # Errors
    ///
    /// [`StoreError::Export`] with what `w` returned.
    pub fn export(&self, w: impl Write) -> Result<(), StoreError> {
        format::write_users(&self.load(), w).map_err(StoreError::Export)
    }
}

impl UserStore for Store {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(Self::load(self))
    }

    fn commit(&self, change: &Change) -> Result<u64, StoreError> {
        Self::commit(self, change)
    }
}

/// How [`write_atomic`] failed.
enum Failure {
    /// The store file is untouched.
    Before(StoreError),
    /// The rename happened but the directory fsync failed: the file on disk is unknown.
    AfterRename(StoreError),
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Before(e) | Failure::AfterRename(e) => e,
        }
    }
}

/// Replaces `path` with `bytes`: write `DIR/users.jsonl.tmp` (`0600`), fsync it, rename it
/// over `path`, fsync `dir`.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = dir.join(TMP_FILE);
    let written = (|| {
        let mut f = open_mode(
            &tmp,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?;
        f.write_all(bytes)
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| StoreError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", &tmp, e))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Failure::Before(e));
    }
    fsync_dir(dir).map_err(Failure::AfterRename)
}

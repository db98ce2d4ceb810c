//! [`Verifier`]: argon2 verifications, a bounded number at once.

use std::fmt;
use std::sync::{Condvar, Mutex, PoisonError};

use crate::{check_hash, verify_password, CredentialCache};

/// Refused: the [`Verifier`] already runs and queues as many verifications as it may. The
/// server answers as for a wrong password (RFC 1929 failure), and the client may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password verifications in progress")]
pub struct Busy;

#[derive(Default)]
struct Slots {
    running: usize,
    waiting: usize,
}

/// Runs argon2 verifications, at most `concurrency` at once and `queue` more waiting; a
/// call beyond that returns [`Busy`] at once. So 200 clients guessing passwords at once cost
/// at most `concurrency` cores and `concurrency + queue` blocked threads, and a waiting
/// call waits at most about `queue / concurrency` verifications (a few hundred ms with the
/// defaults).
///
/// The calls block: make them from a blocking thread pool (`spawn_blocking`), never from an
/// async worker.
pub struct Verifier {
    slots: Mutex<Slots>,
    freed: Condvar,
    concurrency: usize,
    queue: usize,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Verifier")
            .field("concurrency", &self.concurrency)
            .field("queue", &self.queue)
            .field("running", &s.running)
            .field("waiting", &s.waiting)
            .finish()
    }
}

impl Default for Verifier {
    /// One verification per core at once, and 8 per core waiting.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores, 8 * cores)
    }
}

/// Gives the slot back when dropped, also if argon2 panicked.
struct Permit<'a>(&'a Verifier);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .running -= 1;
        self.0.freed.notify_one();
    }
}

impl Verifier {
    /// Creates a verifier that runs at most `concurrency` (at least 1) verifications at once
    /// and lets at most `queue` more wait.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        Self {
            slots: Mutex::default(),
            freed: Condvar::new(),
            concurrency: concurrency.max(1),
            queue,
        }
    }

    fn acquire(&self) -> Result<Permit<'_>, Busy> {
        let mut s = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if s.running >= self.concurrency {
            if s.waiting >= self.queue {
                return Err(Busy);
            }
            s.waiting += 1;
            while s.running >= self.concurrency {
                s = self.freed.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            s.waiting -= 1;
        }
        s.running += 1;
        Ok(Permit(self))
    }

    /// Returns whether `password` matches the PHC string `phc` ([`verify_password`]),
    /// waiting for a slot if all are taken.
    ///
    /// # Errors
    ///
    /// [`Busy`] if all slots are taken and the queue is full. A hash that [`check_hash`]
    /// refuses answers `Ok(false)` without taking a slot.
    pub fn verify(&self, phc: &str, password: &[u8]) -> Result<bool, Busy> {
        if check_hash(phc).is_err() {
            return Ok(false);
        }
        let _permit = self.acquire()?;
        Ok(verify_password(phc, password))
    }

    /// Returns whether `password` is `user`'s, whose current hash is `phc`: from `cache` if
    /// it remembers this password for this hash, else by [`verify`](Self::verify), and then
    /// remembers it only if it matched. A wrong password never enters the cache.
    ///
    /// # Errors
    ///
    /// [`Busy`], as [`verify`](Self::verify); the cache is not touched then.
    pub fn verify_cached(
        &self,
        cache: &CredentialCache,
        user: &[u8],
        phc: &str,
        password: &[u8],
    ) -> Result<bool, Busy> {
        if cache.check(user, phc, password) {
            return Ok(true);
        }
        let ok = self.verify(phc, password)?;
        if ok {
            cache.remember(user, phc, password);
        }
        Ok(ok)
    }

    /// Returns the number of verifications running now.
    pub fn running(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .running
    }

    /// Returns the number of verifications waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
    }
}

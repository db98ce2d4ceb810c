//! [`CredentialCache`]: the last password that verified, per user, as a keyed hash.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use crate::MAX_USERS;

/// At most this many users are cached at once (one more than [`MAX_USERS`], so that a user
/// re-added under a new hash never pushes out a current one).
pub const MAX_CACHED_USERS: usize = MAX_USERS + 1;

/// Remembers, per user, a keyed BLAKE3 hash of the PHC string and of the last password that
/// verified against it, so that a returning client skips argon2.
///
/// - **Key**: 32 random bytes from the operating system, drawn per cache (so per process),
///   never stored, never shown. Without it a memory dump's entries are useless for offline
///   guessing at BLAKE3 speed only if the key is not in the same dump; the hashes at rest
///   stay argon2id.
/// - **Why BLAKE3 keyed**: a MAC designed for exactly this (a PRF under a secret key, 256-bit
///   output), a few hundred nanoseconds for a short input, and its [`blake3::Hash`]
///   equality is constant-time, so a timing side channel does not leak how many bytes of a
///   guess were right. SipHash is a PRF too, but with 64 or 128 bits and meant for hash
///   tables.
/// - **Invalidation**: the entry covers the PHC string, and a re-added user has a new salt,
///   so its old entry never matches; [`forget`](Self::forget) drops it at once (on remove
///   and re-add).
/// - **Bound**: [`MAX_CACHED_USERS`] entries; past that, an arbitrary entry is dropped
///   (costing that user one argon2 verification).
/// - Call [`remember`](Self::remember) only after argon2 verified the password;
///   [`Verifier::verify_cached`](crate::Verifier::verify_cached) does the right sequence.
pub struct CredentialCache {
    key: [u8; 32],
    entries: RwLock<HashMap<Vec<u8>, blake3::Hash>>,
}

impl fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCache")
            .field("users", &self.len())
            .finish_non_exhaustive()
    }
}

impl CredentialCache {
    /// Creates an empty cache with a fresh random key.
    ///
    /// # Errors
    ///
    /// The operating system's random source failed.
    pub fn new() -> Result<Self, getrandom::Error> {
        let mut key = [0; 32];
        getrandom::fill(&mut key)?;
        Ok(Self {
            key,
            entries: RwLock::new(HashMap::new()),
        })
    }

    fn tag(&self, hash_id: &str, password: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        // Length-prefixed, so that no (hash_id, password) pair can collide with another.
        h.update(&(hash_id.len() as u64).to_le_bytes());
        h.update(hash_id.as_bytes());
        h.update(password);
        h.finalize()
    }

    /// Returns whether `password` is the last one that verified for `user` against the PHC
    /// string `hash_id` (the user's current hash). Constant-time in the comparison.
    pub fn check(&self, user: &[u8], hash_id: &str, password: &[u8]) -> bool {
        let tag = self.tag(hash_id, password);
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.get(user).is_some_and(|t| *t == tag)
    }

    /// Records that `password` verified for `user` against `hash_id`. Call only after a
    /// successful argon2 verification.
    pub fn remember(&self, user: &[u8], hash_id: &str, password: &[u8]) {
        let tag = self.tag(hash_id, password);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_USERS && !entries.contains_key(user) {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(user.to_vec(), tag);
    }

    /// Drops `user`'s entry (the user was removed or re-added).
    pub fn forget(&self, user: &[u8]) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(user);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Returns the number of users cached.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Returns whether no user is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

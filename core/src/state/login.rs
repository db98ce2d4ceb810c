//! Logins in two phases, for users whose password is stored hashed (issue 13).
//!
//! A user is added with a [`Credential`]: a clear password ([`Credential::Clear`], checked at
//! once, as always) or a PHC string ([`Credential::Hashed`], argon2id, computed by a store
//! outside the core). The core cannot run argon2 (it is sans-IO and dependency-free, and a
//! verification costs milliseconds that must not be spent on an async worker), so a login of
//! a hashed user is a question to the driver:
//!
//! 1. [`Connection::check_login`] answers [`Login::Accepted`] (and binds the user) when the
//!    password matches the user's *warm cache*, [`Login::Rejected`] when it cannot succeed,
//!    and otherwise [`Login::Verify`] with the PHC string to verify against;
//! 2. the driver verifies off its async workers and reports with
//!    [`Connection::finish_login`], which accepts only if the user still has that very
//!    PHC string, warms the cache on success and binds the user.
//!
//! The sessions wrap this: `socks5::Event::Verify` / `admin::Event::Verify` and their
//! `handle_verified`.
//!
//! # The warm cache
//!
//! Each hashed user's record keeps the [`Digest`] of the last password that verified: two
//! 64-bit SipHash values of the password, under two [`RandomState`] keys made once per
//! [`State`] (random per process). It is set only by a successful
//! [`finish_login`](Connection::finish_login) (a wrong password never warms it), compared in
//! constant time, and dropped with the record when the user is removed (a re-added user is a
//! new, cold record).
//!
//! Why 128 bits of a keyed hash are enough here: the digests never leave the process's
//! memory and the keys are random per process, so the only attack on the cache is online: a
//! wrong password is accepted from the cache only if its digest equals the right one's, about
//! one chance in 2^64 per guess even if the two halves were one and the same function (std
//! derives the second key from the first by adding one to half of it, so they are not
//! independent), and every guess is a network round trip behind the login throttle. A
//! collision by chance between the right password and another is as unlikely. What the cache
//! gives up: someone who can read the process's memory finds the keys and the digests and can
//! test guesses at SipHash speed for users who logged in since the start; such a reader also
//! sees clear passwords as they pass through at login, and argon2 protects the store on disk
//! and in backups, which this does not weaken.
//!
//! # Timing
//!
//! A cold hashed login takes the driver's verification time; a warm one, a clear one and an
//! unknown user answer at once. So a client can tell "hashed user, not logged in lately" from
//! the rest. With a decoy set ([`State::set_decoy_phc`]), an unknown user is verified against
//! the decoy too (and always fails), so that existence does not show; a hashed user without
//! the privilege asked for is verified before being refused, for the same reason.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::conn::Connection;
use super::users::UserRecord;
use super::{lock, ConnKind, Privilege, Secret, State};

/// The longest PHC string accepted, in bytes (an argon2id string is about 100).
pub const MAX_PHC_LEN: usize = 512;

/// How a user's password is stored. `Debug` shows neither the password nor the hash.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The password itself: checked at once, in constant time.
    Clear(Secret),
    /// A PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`): verified by the driver.
    Hashed(Bytes),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clear(_) => f.write_str("Clear(..)"),
            Self::Hashed(_) => f.write_str("Hashed(..)"),
        }
    }
}

/// Returns whether `phc` can be a PHC string: 2 to [`MAX_PHC_LEN`] bytes of printable ASCII
/// without spaces, starting with `$`. The core checks only the shape; the driver's verifier
/// reads the rest (a string it cannot parse just never verifies).
pub fn is_valid_phc(phc: &[u8]) -> bool {
    (2..=MAX_PHC_LEN).contains(&phc.len())
        && phc[0] == b'$'
        && phc.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

/// The answer of [`Connection::check_login`]. `Debug` shows no hash.
#[derive(Clone, PartialEq, Eq)]
pub enum Login {
    /// The password is right (a clear password, or a warm cache): the user is bound.
    Accepted,
    /// The login fails: wrong clear password, unknown user (no decoy), insufficient
    /// privilege for a clear user, or a connection already bound.
    Rejected,
    /// Verify the password against `phc` off the async workers, then report with
    /// [`Connection::finish_login`].
    Verify {
        /// The PHC string to verify against.
        phc: Bytes,
    },
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted => f.write_str("Accepted"),
            Self::Rejected => f.write_str("Rejected"),
            Self::Verify { .. } => f.write_str("Verify { phc: .. }"),
        }
    }
}

/// The decoy PHC string ([`State::set_decoy_phc`]). `Debug` shows nothing of it.
pub(super) struct Decoy(Bytes);

impl fmt::Debug for Decoy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Decoy(..)")
    }
}

/// A login waiting for the driver's verification, as a session keeps it. `Debug` shows only
/// the user.
pub(crate) struct PendingLogin {
    pub(crate) user: Bytes,
    pub(crate) password: Secret,
    pub(crate) phc: Bytes,
}

impl PendingLogin {
    /// Copies `user` and `password` out of the input buffer.
    pub(crate) fn new(user: &[u8], password: &[u8], phc: Bytes) -> Self {
        Self {
            user: Bytes::copy_from_slice(user),
            password: Secret::new(Bytes::copy_from_slice(password)),
            phc,
        }
    }

    /// Reports the verification's result `ok` ([`Connection::finish_login`]).
    pub(crate) fn finish(&self, conn: &Connection, ok: bool, required: Privilege) -> bool {
        conn.finish_login(&self.user, self.password.expose(), &self.phc, ok, required)
    }
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The two keys of the warm cache, made once per [`State`].
pub(super) struct DigestKeys([RandomState; 2]);

impl DigestKeys {
    pub(super) fn new() -> Self {
        Self([RandomState::new(), RandomState::new()])
    }

    pub(super) fn digest(&self, password: &[u8]) -> Digest {
        Digest(self.0.each_ref().map(|k| {
            let mut h = k.build_hasher();
            h.write(password);
            h.finish()
        }))
    }
}

impl fmt::Debug for DigestKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKeys(..)")
    }
}

/// The keyed digest of a password that verified. `Debug` shows nothing of it.
#[derive(Clone, Copy)]
pub(super) struct Digest([u64; 2]);

impl Digest {
    /// Compares without branching on where the values differ.
    pub(super) fn ct_eq(&self, other: &Self) -> bool {
        let diff = (self.0[0] ^ other.0[0]) | (self.0[1] ^ other.0[1]);
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest(..)")
    }
}

impl State {
    /// Sets (or, with `None`, clears) the decoy PHC string: an unknown user's login is then
    /// answered [`Login::Verify`] with it, so that it takes as long as a hashed user's (it
    /// always fails in [`Connection::finish_login`]). Set it when users are stored hashed,
    /// with the hash of a random password made with the store's parameters; leave it unset
    /// when users are clear (an unknown user would then be the slow one). Unset by default.
    /// A string that is not [`is_valid_phc`] is ignored (clears the decoy).
    pub fn set_decoy_phc(&self, phc: Option<Bytes>) {
        *lock(&self.decoy) = phc.filter(|p| is_valid_phc(p)).map(Decoy);
    }

    /// Returns whether `user` still has the PHC string `phc` and its warm cache holds
    /// `password`: a verification another connection finished meanwhile (a driver that
    /// verifies one login per user at a time asks this first, so that a crowd of first logins
    /// costs one hash, not one each). Binds nothing.
    pub fn is_warm(&self, user: &[u8], password: &[u8], phc: &Bytes) -> bool {
        let users = self.users_read();
        let Some(r) = users.iter().find(|r| r.name == user) else {
            return false;
        };
        if !matches!(&r.credential, Credential::Hashed(p) if p == phc) {
            return false;
        }
        let d = self.digest_keys.digest(password);
        let warm = lock(&r.warm).is_some_and(|w| w.ct_eq(&d));
        warm
    }

    fn decoy_phc(&self) -> Option<Bytes> {
        lock(&self.decoy).as_ref().map(|d| d.0.clone())
    }
}

impl Connection {
    /// Checks `user`/`password` for at least `required` privilege. A clear user (and a hashed
    /// user whose warm cache matches) is decided at once: [`Login::Accepted`] binds this
    /// connection exactly as [`authenticate`](Self::authenticate) does. A hashed user whose
    /// cache misses is [`Login::Verify`] and nothing is bound: verify off the async workers
    /// and report with [`finish_login`](Self::finish_login). An unknown user is
    /// [`Login::Rejected`], or `Verify` against the decoy ([`State::set_decoy_phc`]). A
    /// connection already bound is `Rejected`.
    pub fn check_login(&self, user: &[u8], password: &[u8], required: Privilege) -> Login {
        if self.user().is_some() {
            return Login::Rejected;
        }
        let state = self.state();
        let users = state.users_read();
        let Some(r) = users.iter().find(|r| r.name == user) else {
            // Compare anyway so that an unknown user takes as long as a wrong password.
            let _ = crate::codec::ct_eq(password, password);
            return state
                .decoy_phc()
                .map_or(Login::Rejected, |phc| Login::Verify { phc });
        };
        match &r.credential {
            Credential::Clear(secret) => {
                if secret.matches(password) && r.privilege >= required && self.bind(r) {
                    Login::Accepted
                } else {
                    Login::Rejected
                }
            }
            Credential::Hashed(phc) => {
                let d = state.digest_keys.digest(password);
                let warm = lock(&r.warm).is_some_and(|w| w.ct_eq(&d));
                if !warm {
                    // Also without the privilege: refusing at once would tell it apart.
                    Login::Verify { phc: phc.clone() }
                } else if r.privilege >= required && self.bind(r) {
                    Login::Accepted
                } else {
                    Login::Rejected
                }
            }
        }
    }

    /// Reports the driver's verification of `password` against `phc` (from
    /// [`Login::Verify`]): `ok` is whether it verified. If `ok` and `user` still has that
    /// very PHC string (not removed, nor re-added with another, meanwhile), warms the user's
    /// cache with `password`; then, if the user has at least `required` privilege, binds this
    /// connection as [`authenticate`](Self::authenticate) does. Returns whether the login
    /// succeeded (always false for an unknown user, a decoy, `!ok`, or a connection already
    /// bound). The check and the binding happen under the users lock, as in `authenticate`.
    pub fn finish_login(
        &self,
        user: &[u8],
        password: &[u8],
        phc: &Bytes,
        ok: bool,
        required: Privilege,
    ) -> bool {
        if !ok || self.user().is_some() {
            return false;
        }
        let state = self.state();
        let users = state.users_read();
        let Some(r) = users.iter().find(|r| r.name == user) else {
            return false;
        };
        if !matches!(&r.credential, Credential::Hashed(p) if p == phc) {
            return false;
        }
        *lock(&r.warm) = Some(state.digest_keys.digest(password));
        r.privilege >= required && self.bind(r)
    }

    /// Binds this connection to `r` (the caller holds the users lock) and, for a proxy
    /// connection, counts it as one of the user's open connections. False if already bound.
    fn bind(&self, r: &UserRecord) -> bool {
        if self.shared().user.set(r.name.clone()).is_err() {
            return false;
        }
        if self.kind() == ConnKind::Proxy {
            if r.open.fetch_add(1, Relaxed) == 0 {
                self.state().counters.users_connected.fetch_add(1, Relaxed);
            }
            self.set_user_open(r.open.clone());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::state;
    use super::super::{Mutation, Outcome};
    use super::*;

    const PHC: &[u8] = b"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
    const PHC2: &[u8] = b"$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$b3RoZXJoYXNo";

    fn add_hashed(s: &State, name: &'static str, phc: &'static [u8], pr: Privilege) -> Outcome {
        s.apply(
            None,
            &Mutation::AddHashedUser {
                name: Bytes::from_static(name.as_bytes()),
                phc: Bytes::from_static(phc),
                privilege: pr,
            },
        )
    }

    fn verify(phc: &'static [u8]) -> Login {
        Login::Verify {
            phc: Bytes::from_static(phc),
        }
    }

    /// The state of `tests::state` plus `carol` (user, hashed with [`PHC`]).
    fn hashed_state() -> (Arc<State>, std::time::Instant) {
        let (s, t0) = state();
        assert_eq!(
            add_hashed(&s, "carol", PHC, Privilege::User),
            Outcome::Applied
        );
        (s, t0)
    }

    fn phc() -> Bytes {
        Bytes::from_static(PHC)
    }

    #[test]
    fn clear_users_are_decided_at_once() {
        let (s, t0) = hashed_state();
        let c = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            c.check_login(b"bob", b"nope", Privilege::User),
            Login::Rejected
        );
        assert_eq!(
            c.check_login(b"eve", b"x", Privilege::User),
            Login::Rejected
        );
        assert_eq!(
            c.check_login(b"bob", b"hunter2", Privilege::Admin),
            Login::Rejected
        );
        assert_eq!(c.user(), None);
        assert_eq!(
            c.check_login(b"bob", b"hunter2", Privilege::User),
            Login::Accepted
        );
        assert_eq!(c.user().map(|u| &u[..]), Some(&b"bob"[..]));
        assert_eq!(s.counters().users_connected, 1);
        assert_eq!(
            c.check_login(b"bob", b"hunter2", Privilege::User),
            Login::Rejected,
            "bound once"
        );
        let d = s.open(ConnKind::Admin, t0);
        assert!(d.authenticate(b"admin", b"pw", Privilege::Admin));
    }

    #[test]
    fn hashed_login_verifies_then_the_warm_cache_accepts() {
        let (s, t0) = hashed_state();
        let a = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            a.check_login(b"carol", b"right", Privilege::User),
            verify(PHC)
        );
        assert_eq!(a.user(), None, "nothing bound while verifying");
        assert!(!a.authenticate(b"carol", b"right", Privilege::User), "cold");
        assert!(a.finish_login(b"carol", b"right", &phc(), true, Privilege::User));
        assert_eq!(a.user().map(|u| &u[..]), Some(&b"carol"[..]));
        assert_eq!(s.user_connections(b"carol"), Some(1));
        assert_eq!(s.counters().users_connected, 1);
        assert!(
            !a.finish_login(b"carol", b"right", &phc(), true, Privilege::User),
            "bound once"
        );
        // Warm: the next connection is accepted without verifying.
        let b = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            b.check_login(b"carol", b"right", Privilege::User),
            Login::Accepted
        );
        assert_eq!(s.user_connections(b"carol"), Some(2));
        let c = s.open(ConnKind::Proxy, t0);
        assert!(c.authenticate(b"carol", b"right", Privilege::User));
        // A wrong password misses the warm cache and is verified (and fails).
        let d = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            d.check_login(b"carol", b"wrong", Privilege::User),
            verify(PHC)
        );
        assert!(!d.finish_login(b"carol", b"wrong", &phc(), false, Privilege::User));
        assert_eq!(d.user(), None);
        // ... and leaves the cache as it was.
        let e = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            e.check_login(b"carol", b"right", Privilege::User),
            Login::Accepted
        );
    }

    #[test]
    fn a_wrong_password_never_warms_the_cache() {
        let (s, t0) = hashed_state();
        let a = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            a.check_login(b"carol", b"wrong", Privilege::User),
            verify(PHC)
        );
        assert!(!a.finish_login(b"carol", b"wrong", &phc(), false, Privilege::User));
        assert_eq!(a.user(), None);
        assert_eq!(s.counters().users_connected, 0);
        // Still cold, for that password and for the right one.
        let b = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            b.check_login(b"carol", b"wrong", Privilege::User),
            verify(PHC)
        );
        assert_eq!(
            b.check_login(b"carol", b"right", Privilege::User),
            verify(PHC)
        );
    }

    #[test]
    fn removal_between_verify_and_finish_fails() {
        let (s, t0) = hashed_state();
        let a = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            a.check_login(b"carol", b"right", Privilege::User),
            verify(PHC)
        );
        let rm = Mutation::RemoveUser {
            name: Bytes::from_static(b"carol"),
        };
        assert_eq!(s.apply(None, &rm), Outcome::Applied);
        assert!(!a.finish_login(b"carol", b"right", &phc(), true, Privilege::User));
        assert_eq!(a.user(), None);
        assert_eq!(s.counters().users_connected, 0);
        // Re-added with the same hash: a new, cold record.
        assert_eq!(
            add_hashed(&s, "carol", PHC, Privilege::User),
            Outcome::Applied
        );
        assert_eq!(
            a.check_login(b"carol", b"right", Privilege::User),
            verify(PHC)
        );
    }

    #[test]
    fn re_adding_with_another_hash_invalidates() {
        let (s, t0) = hashed_state();
        let a = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            a.check_login(b"carol", b"right", Privilege::User),
            verify(PHC)
        );
        assert!(a.finish_login(b"carol", b"right", &phc(), true, Privilege::User));
        let b = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            b.check_login(b"carol", b"old", Privilege::User),
            verify(PHC)
        );
        let rm = Mutation::RemoveUser {
            name: Bytes::from_static(b"carol"),
        };
        assert_eq!(s.apply(None, &rm), Outcome::Applied);
        assert_eq!(
            add_hashed(&s, "carol", PHC2, Privilege::User),
            Outcome::Applied
        );
        // A verification against the old hash no longer counts, even if it succeeded.
        assert!(!b.finish_login(b"carol", b"old", &phc(), true, Privilege::User));
        assert_eq!(b.user(), None);
        // The warm password of the old record is cold again.
        let c = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            c.check_login(b"carol", b"right", Privilege::User),
            verify(PHC2)
        );
        // Re-added as a clear user: decided at once, no cache involved.
        assert_eq!(s.apply(None, &rm), Outcome::Applied);
        let m = Mutation::AddUser {
            name: Bytes::from_static(b"carol"),
            password: Secret::from("clear"),
            privilege: Privilege::User,
        };
        assert_eq!(s.apply(None, &m), Outcome::Applied);
        assert_eq!(
            c.check_login(b"carol", b"right", Privilege::User),
            Login::Rejected
        );
        assert!(!c.finish_login(b"carol", b"right", &phc(), true, Privilege::User));
        assert_eq!(
            c.check_login(b"carol", b"clear", Privilege::User),
            Login::Accepted
        );
    }

    #[test]
    fn a_hashed_user_without_the_privilege_is_verified_then_refused() {
        let (s, t0) = hashed_state();
        let a = s.open(ConnKind::Admin, t0);
        assert_eq!(
            a.check_login(b"carol", b"right", Privilege::Admin),
            verify(PHC)
        );
        assert!(!a.finish_login(b"carol", b"right", &phc(), true, Privilege::Admin));
        assert_eq!(a.user(), None);
        // The password was right, so the cache is warm, but the privilege still lacks.
        assert_eq!(
            a.check_login(b"carol", b"right", Privilege::Admin),
            Login::Rejected
        );
        assert_eq!(
            a.check_login(b"carol", b"right", Privilege::User),
            Login::Accepted
        );
        // A hashed administrator.
        assert_eq!(
            add_hashed(&s, "root", PHC2, Privilege::Admin),
            Outcome::Applied
        );
        let b = s.open(ConnKind::Admin, t0);
        assert_eq!(
            b.check_login(b"root", b"pw", Privilege::Admin),
            verify(PHC2)
        );
        let phc2 = Bytes::from_static(PHC2);
        assert!(b.finish_login(b"root", b"pw", &phc2, true, Privilege::Admin));
        assert_eq!(
            s.counters().users_connected,
            0,
            "admin sessions are not counted"
        );
    }

    #[test]
    fn unknown_users_verify_against_the_decoy_when_set() {
        let (s, t0) = hashed_state();
        let a = s.open(ConnKind::Proxy, t0);
        assert_eq!(
            a.check_login(b"eve", b"x", Privilege::User),
            Login::Rejected
        );
        s.set_decoy_phc(Some(Bytes::from_static(PHC2)));
        assert_eq!(a.check_login(b"eve", b"x", Privilege::User), verify(PHC2));
        let phc2 = Bytes::from_static(PHC2);
        assert!(!a.finish_login(b"eve", b"x", &phc2, true, Privilege::User));
        assert_eq!(a.user(), None);
        s.set_decoy_phc(Some(Bytes::from_static(b"not a phc")));
        assert_eq!(
            a.check_login(b"eve", b"x", Privilege::User),
            Login::Rejected
        );
        s.set_decoy_phc(Some(phc2));
        s.set_decoy_phc(None);
        assert_eq!(
            a.check_login(b"eve", b"x", Privilege::User),
            Login::Rejected
        );
    }

    #[test]
    fn add_hashed_user_outcomes() {
        let (s, _) = hashed_state();
        assert_eq!(
            add_hashed(&s, "carol", PHC2, Privilege::User),
            Outcome::NameTaken
        );
        assert_eq!(
            add_hashed(&s, "bob", PHC2, Privilege::User),
            Outcome::NameTaken
        );
        assert_eq!(
            add_hashed(&s, "a:b", PHC, Privilege::User),
            Outcome::InvalidParameter
        );
        for bad in [&b""[..], b"$", b"argon2id", b"$argon2id $x", b"$\x00"] {
            let m = Mutation::AddHashedUser {
                name: Bytes::from_static(b"dave"),
                phc: Bytes::copy_from_slice(bad),
                privilege: Privilege::User,
            };
            assert_eq!(s.apply(None, &m), Outcome::InvalidParameter, "{bad:?}");
        }
        let long = Bytes::from([&b"$"[..], &[b'a'; MAX_PHC_LEN]].concat());
        assert!(!is_valid_phc(&long) && is_valid_phc(&long[..MAX_PHC_LEN]));
        assert_eq!(s.user_count(), 3);
        assert_eq!(s.users()[2].name, "carol");
    }

    #[test]
    fn debug_shows_no_password_hash_or_digest() {
        let (s, t0) = hashed_state();
        let a = s.open(ConnKind::Proxy, t0);
        let _ = a.check_login(b"carol", b"right", Privilege::User);
        assert!(a.finish_login(b"carol", b"right", &phc(), true, Privilege::User));
        s.set_decoy_phc(Some(Bytes::from_static(PHC2)));
        let m = Mutation::AddHashedUser {
            name: Bytes::from_static(b"carol"),
            phc: phc(),
            privilege: Privilege::User,
        };
        let digest = s.digest_keys.digest(b"right");
        let shown = format!(
            "{m:?} {m:#?} {s:?} {a:?} {:?} {:?} {:?} {digest:?} {:?}",
            Credential::Hashed(phc()),
            Credential::Clear(Secret::from("right")),
            verify(PHC),
            s.digest_keys,
        );
        for needle in ["argon2", "c2FsdHNhbHQ", "b3RoZXJzYWx0", "right", "hunter2"] {
            assert!(!shown.contains(needle), "{needle} in {shown}");
        }
        for hex in digest.0.map(|v| format!("{v}")) {
            assert!(!shown.contains(&hex), "digest shown: {shown}");
        }
        assert!(shown.contains("AddHashedUser { name: b\"carol\", privilege: User, .. }"));
        let clear = Mutation::AddUser {
            name: Bytes::from_static(b"u"),
            password: Secret::from("p"),
            privilege: Privilege::Admin,
        };
        assert_eq!(
            format!("{clear:?}"),
            "AddUser { name: b\"u\", password: Secret(..), privilege: Admin }"
        );
    }

    #[test]
    fn digests_are_keyed_and_compared_whole() {
        let k = DigestKeys::new();
        let d = k.digest(b"pw");
        assert!(d.ct_eq(&k.digest(b"pw")));
        assert!(!d.ct_eq(&k.digest(b"pX")));
        assert!(!d.ct_eq(&k.digest(b"pw\0")));
        assert!(!d.ct_eq(&Digest([d.0[0], !d.0[1]])));
        assert!(!d.ct_eq(&Digest([!d.0[0], d.0[1]])));
        assert!(!d.ct_eq(&DigestKeys::new().digest(b"pw")), "another key");
    }

    #[test]
    fn concurrent_finishes_and_removal_stay_consistent() {
        for _ in 0..20 {
            let (s, t0) = hashed_state();
            let conns: Vec<_> = (0..4).map(|_| s.open(ConnKind::Proxy, t0)).collect();
            for c in &conns {
                assert_eq!(
                    c.check_login(b"carol", b"right", Privilege::User),
                    verify(PHC)
                );
            }
            let rm = Mutation::RemoveUser {
                name: Bytes::from_static(b"carol"),
            };
            let wins: usize = std::thread::scope(|sc| {
                let hs: Vec<_> = conns
                    .iter()
                    .map(|c| {
                        sc.spawn(|| {
                            usize::from(c.finish_login(
                                b"carol",
                                b"right",
                                &phc(),
                                true,
                                Privilege::User,
                            ))
                        })
                    })
                    .collect();
                assert_eq!(s.apply(None, &rm), Outcome::Applied);
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            // Every winner bound before the removal, so the removal asked it to close.
            let closed = conns
                .iter()
                .filter(|c| c.close_cause() == Some(super::super::CloseCause::UserRemoved))
                .count();
            assert_eq!(wins, closed);
            assert!(conns
                .iter()
                .all(|c| c.user().is_some() == c.close_cause().is_some()));
        }
    }
}

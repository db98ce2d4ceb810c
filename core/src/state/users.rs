//! Users: names, passwords ([`Secret`]), privileges, and the user half of [`State::apply`].

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::conn::CloseCause;
use super::login::{is_valid_phc, Credential, Digest};
use super::{Outcome, State, MAX_USERS};
use crate::codec::ct_eq;

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

/// A password. Its `Debug` shows nothing of it (`Secret(..)`), so a logged [`Mutation`] or
/// user record never carries one; equality takes time that depends only on the lengths.
///
/// [`Mutation`]: super::Mutation
#[derive(Clone, Default)]
pub struct Secret(Bytes);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// Returns the secret bytes (to check or store them; never log them).
    pub fn expose(&self) -> &Bytes {
        &self.0
    }

    /// Returns whether `candidate` is this secret, in time that depends only on the lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        ct_eq(&self.0, candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

impl From<Bytes> for Secret {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}

impl From<&'static str> for Secret {
    fn from(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for Secret {
    fn from(s: &'static [u8]) -> Self {
        Self(Bytes::from_static(s))
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Secret {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        crate::codec::arbitrary_field::<0>(u).map(Self)
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

/// One user as the state holds it. `Debug` shows no password, hash or digest.
#[derive(Debug)]
pub(super) struct UserRecord {
    pub(super) name: Bytes,
    pub(super) credential: Credential,
    pub(super) privilege: Privilege,
    /// Open SOCKS connections of this user; shared with those connections, which decrement it
    /// when they close even if the user was removed meanwhile.
    pub(super) open: Arc<AtomicU32>,
    /// [`Credential::Hashed`]: the digest of the last password that verified (the warm
    /// cache, see `login.rs`); never set for a clear user.
    pub(super) warm: Mutex<Option<Digest>>,
}

impl State {
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

    /// Returns how user `name` logs in (its clear password or PHC string), `None` if there
    /// is no such user. For a store that compares the live users with its own.
    pub fn user_credential(&self, name: &[u8]) -> Option<(Credential, Privilege)> {
        self.users_read()
            .iter()
            .find(|r| r.name == name)
            .map(|r| (r.credential.clone(), r.privilege))
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

    pub(super) fn add_user(
        &self,
        name: &Bytes,
        credential: Credential,
        privilege: Privilege,
    ) -> Outcome {
        let valid = match &credential {
            Credential::Clear(password) => is_valid_password(password.expose()),
            Credential::Hashed(phc) => is_valid_phc(phc),
        };
        if !is_valid_username(name) || !valid {
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
            credential,
            privilege,
            open: Arc::default(),
            warm: Mutex::new(None),
        });
        Outcome::Applied
    }

    pub(super) fn check_add(&self, name: &[u8], credential_valid: bool) -> Outcome {
        if !is_valid_username(name) || !credential_valid {
            return Outcome::InvalidParameter;
        }
        let users = self.users_read();
        if users.iter().any(|r| r.name == name) {
            Outcome::NameTaken
        } else if users.len() >= MAX_USERS {
            Outcome::TooManyUsers
        } else {
            Outcome::Applied
        }
    }

    pub(super) fn check_remove(&self, actor: Option<&[u8]>, name: &[u8]) -> Outcome {
        if !is_valid_username(name) || actor == Some(name) {
            return Outcome::InvalidParameter;
        }
        let users = self.users_read();
        let Some(r) = users.iter().find(|r| r.name == name) else {
            return Outcome::NoSuchUser;
        };
        let admins = users
            .iter()
            .filter(|r| r.privilege == Privilege::Admin)
            .count();
        if r.privilege == Privilege::Admin && admins == 1 {
            Outcome::InvalidParameter
        } else {
            Outcome::Applied
        }
    }

    /// Gives the existing user `name` a new credential and privilege in one step (a store
    /// that learned of a password change elsewhere), and closes its open connections (they
    /// logged in with the old credential). `NoSuchUser` if there is none; `InvalidParameter`
    /// for a bad PHC string or a privilege change that would leave no administrator.
    pub fn replace_user(
        &self,
        name: &Bytes,
        credential: Credential,
        privilege: Privilege,
    ) -> Outcome {
        match &credential {
            Credential::Hashed(phc) if !is_valid_phc(phc) => return Outcome::InvalidParameter,
            Credential::Clear(p) if !is_valid_password(p.expose()) => {
                return Outcome::InvalidParameter
            }
            _ => {}
        }
        {
            let mut users = self.users_write();
            let admins = users
                .iter()
                .filter(|r| r.privilege == Privilege::Admin)
                .count();
            let Some(r) = users.iter_mut().find(|r| r.name == name) else {
                return Outcome::NoSuchUser;
            };
            if r.privilege == Privilege::Admin && privilege != Privilege::Admin && admins == 1 {
                return Outcome::InvalidParameter;
            }
            r.credential = credential;
            r.privilege = privilege;
            *r.warm
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        self.close_where(CloseCause::UserRemoved, |c| c.user.get() == Some(name));
        Outcome::Applied
    }

    pub(super) fn remove_user(&self, actor: Option<&[u8]>, name: &Bytes) -> Outcome {
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::{add, state};
    use super::super::{Mutation, Outcome, MAX_USERS};
    use super::*;

    #[test]
    fn add_user_outcomes() {
        let (s, _) = state();
        assert_eq!(s.apply(None, &add("bob")), Outcome::NameTaken);
        assert_eq!(s.apply(None, &add("")), Outcome::InvalidParameter);
        assert_eq!(s.apply(None, &add("a:b")), Outcome::InvalidParameter);
        assert_eq!(s.apply(None, &add("tab\there")), Outcome::InvalidParameter);
        let empty_pw = Mutation::AddUser {
            name: Bytes::from_static(b"carol"),
            password: Secret::default(),
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
    fn replace_user_swaps_the_credential_and_closes_sessions() {
        let (s, t0) = state();
        let c = s.open(super::super::ConnKind::Proxy, t0);
        assert!(c.authenticate(b"bob", b"hunter2", Privilege::User));
        let phc = Bytes::from_static(b"$argon2id$new");
        let bob = Bytes::from_static(b"bob");
        assert_eq!(
            s.replace_user(&bob, Credential::Hashed(phc.clone()), Privilege::User),
            Outcome::Applied
        );
        assert_eq!(c.close_cause(), Some(CloseCause::UserRemoved));
        assert_eq!(
            s.user_credential(b"bob"),
            Some((Credential::Hashed(phc), Privilege::User))
        );
        let admin = Bytes::from_static(b"admin");
        let new = Credential::Clear(Secret::new("x"));
        assert_eq!(
            s.replace_user(&admin, new.clone(), Privilege::User),
            Outcome::InvalidParameter,
            "last admin"
        );
        assert_eq!(
            s.replace_user(&admin, new, Privilege::Admin),
            Outcome::Applied
        );
        let nobody = Bytes::from_static(b"nobody");
        let cred = Credential::Hashed(Bytes::from_static(b"$x"));
        assert_eq!(
            s.replace_user(&nobody, cred, Privilege::User),
            Outcome::NoSuchUser
        );
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
    fn secret_debug_shows_nothing() {
        let s = Secret::from("topsecret");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(format!("{s:#?}"), "Secret(..)");
        let m = Mutation::AddUser {
            name: Bytes::from_static(b"u"),
            password: s.clone(),
            privilege: Privilege::User,
        };
        let shown = format!("{m:?} {m:#?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("Secret(..)"), "{shown}");
        let (state, _) = state();
        assert_eq!(state.apply(None, &m), Outcome::Applied);
        assert!(!format!("{:?}", state.users_read()).contains("topsecret"));
    }

    #[test]
    fn secret_equality_and_matching() {
        let s = Secret::from("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b"ab"));
        assert_eq!(s, Secret::new(Bytes::from_static(b"abc")));
        assert_ne!(s, Secret::from("abcd"));
        assert_eq!(&s.expose()[..], b"abc");
    }
}

//! The embedded store at start-up and as the server's [`Persist`]: users (hashed) and the
//! settings the admin protocol changes survive a restart.
//!
//! Start-up, in this order:
//! 1. open the store in the state directory (refused, exit 1, if it is locked by another
//!    socks5d, from a newer format, or corrupt: never overwritten);
//! 2. load it into the live state: users with their argon2id hashes, and the settings an
//!    administrator changed (these win over the command line's values: the administrator's
//!    change is the later decision);
//! 3. merge the command line's `-u`/`-a` users: a name the store does not have is added (hashed
//!    and stored); a name it has keeps its stored hash if the command line's password verifies
//!    against it, and is replaced by the command line's otherwise (the operator's word wins);
//! 4. with no administrator at all, create `admin` with a random password, store it, and print
//!    the password once on stderr (not on every start).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use socks5d_core::state::{Mutation, Outcome, Privilege, State};
use socks5d_net::{PasswordVerifier, Persist, PersistError};
use socks5d_store::{hash_password, verify_password, Change, Setting, Store};

use crate::cli::Credentials;

/// The embedded store as the server's [`Persist`].
pub(crate) struct StorePersist(pub(crate) Store);

impl Persist for StorePersist {
    fn prepare(&self, m: Mutation) -> Result<Mutation, String> {
        prepare(m)
    }

    fn persist(&self, m: &Mutation) -> Result<(), PersistError> {
        self.0
            .commit(&to_change(m)?)
            .map(|_| ())
            .map_err(|e| PersistError::Failed(e.to_string()))
    }
}

/// Hashes the password of an `AddUser` (every store keeps hashes only).
pub(crate) fn prepare(m: Mutation) -> Result<Mutation, String> {
    match m {
        Mutation::AddUser {
            name,
            password,
            privilege,
        } => Ok(Mutation::AddHashedUser {
            name,
            phc: hashed(password.expose())?,
            privilege,
        }),
        other => Ok(other),
    }
}

/// The store's change for a (prepared) modification.
pub(crate) fn to_change(m: &Mutation) -> Result<Change, String> {
    Ok(match m {
        Mutation::AddHashedUser {
            name,
            phc,
            privilege,
        } => Change::AddUser {
            name: name.to_vec(),
            hash: String::from_utf8(phc.to_vec()).map_err(|e| e.to_string())?,
            privilege: *privilege as u8,
        },
        Mutation::AddUser { .. } => return Err("a clear password is never stored".into()),
        Mutation::RemoveUser { name } => Change::RemoveUser {
            name: name.to_vec(),
        },
        Mutation::SetSniffing(v) => Change::SetSetting(Setting::Sniffing(*v)),
        Mutation::SetCleanup(v) => Change::SetSetting(Setting::Cleanup(*v)),
        Mutation::SetBufferSize(v) => Change::SetSetting(Setting::BufferSize(*v)),
        Mutation::SetSelectorTimeout(v) => Change::SetSetting(Setting::SelectorTimeout(*v)),
        Mutation::SetConnectionTimeout(v) => Change::SetSetting(Setting::ConnectionTimeout(*v)),
    })
}

fn hashed(password: &[u8]) -> Result<Bytes, String> {
    hash_password(password)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// Verifies with the store's argon2id parameters.
pub(crate) fn verifier() -> PasswordVerifier {
    PasswordVerifier::new(|phc, password| {
        std::str::from_utf8(phc).is_ok_and(|phc| verify_password(phc, password))
    })
}

/// Opens the store in `dir` and loads it into `state`, then merges the command line's users
/// (see the module docs). Returns the store and, when one was created, the random
/// administrator password to print.
pub(crate) fn open(
    dir: &Path,
    state: &State,
    admins: &[Credentials],
    users: &[Credentials],
) -> Result<(Store, Option<String>), String> {
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    let snap = store.load();
    for u in &snap.users {
        let privilege = Privilege::try_from(u.privilege)
            .map_err(|_| format!("user with privilege {} in the store", u.privilege))?;
        let m = Mutation::AddHashedUser {
            name: Bytes::from(u.name.clone()),
            phc: Bytes::from(u.hash.clone()),
            privilege,
        };
        expect_applied(state, &m)?;
    }
    let s = snap.settings;
    let stored = [
        s.sniffing.map(Mutation::SetSniffing),
        s.cleanup.map(Mutation::SetCleanup),
        s.buffer_size.map(Mutation::SetBufferSize),
        s.selector_timeout.map(Mutation::SetSelectorTimeout),
        s.connection_timeout.map(Mutation::SetConnectionTimeout),
    ];
    for m in stored.iter().flatten() {
        expect_applied(state, m)?;
    }
    let persist = StorePersist(store);
    for (list, privilege) in [(admins, Privilege::Admin), (users, Privilege::User)] {
        for c in list {
            merge_user(&persist, state, &snap, c, privilege)?;
        }
    }
    let mut created = None;
    if !state
        .users()
        .iter()
        .any(|u| u.privilege == Privilege::Admin)
    {
        let password =
            crate::random_password().map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        let c = Credentials {
            user: Bytes::from_static(b"admin"),
            password: Bytes::from(password.clone()),
        };
        merge_user(&persist, state, &snap, &c, Privilege::Admin)?;
        created = Some(password);
    }
    Ok((persist.0, created))
}

/// Adds or replaces one command-line user, in the store first, then in the state.
fn merge_user(
    p: &StorePersist,
    state: &State,
    snap: &socks5d_store::Snapshot,
    c: &Credentials,
    privilege: Privilege,
) -> Result<(), String> {
    let name = String::from_utf8_lossy(&c.user).into_owned();
    if let Some(old) = snap.users.iter().find(|u| u.name == c.user[..]) {
        if old.privilege == privilege as u8 && verify_password(&old.hash, &c.password) {
            return Ok(());
        }
        let remove = Mutation::RemoveUser {
            name: c.user.clone(),
        };
        p.persist(&remove).map_err(|e| e.to_string())?;
        expect_applied(state, &remove)
            .map_err(|e| format!("cannot replace user {name:?} from the command line: {e}"))?;
    }
    let add = Mutation::AddHashedUser {
        name: c.user.clone(),
        phc: hashed(&c.password)?,
        privilege,
    };
    match state.check(None, &add) {
        Outcome::Applied => {}
        Outcome::NameTaken => return Err(format!("user {name:?} given more than once")),
        Outcome::TooManyUsers => return Err("too many users (at most 255)".into()),
        other => return Err(format!("cannot add user {name:?}: {other:?}")),
    }
    p.persist(&add).map_err(|e| e.to_string())?;
    expect_applied(state, &add)
}

fn expect_applied(state: &State, m: &Mutation) -> Result<(), String> {
    match state.apply(None, m) {
        Outcome::Applied => Ok(()),
        other => Err(format!("{m:?}: {other:?}")),
    }
}

/// `--in-memory`: the command line's users in clear, nothing stored; with no `-a`, a random
/// `admin` (returned to print).
pub(crate) fn in_memory(
    state: &State,
    admins: &[Credentials],
    users: &[Credentials],
) -> Result<Option<String>, String> {
    let add = |c: &Credentials, privilege| {
        expect_applied(
            state,
            &Mutation::AddUser {
                name: c.user.clone(),
                password: c.password.clone().into(),
                privilege,
            },
        )
    };
    for c in admins {
        add(c, Privilege::Admin)?;
    }
    for c in users {
        add(c, Privilege::User)?;
    }
    if admins.is_empty() {
        let password =
            crate::random_password().map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        let c = Credentials {
            user: Bytes::from_static(b"admin"),
            password: Bytes::from(password.clone()),
        };
        add(&c, Privilege::Admin)?;
        return Ok(Some(password));
    }
    Ok(None)
}

/// Shares the store with the server.
pub(crate) fn persist(store: Store) -> Arc<dyn Persist> {
    Arc::new(StorePersist(store))
}

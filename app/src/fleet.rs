//! `--user-store postgres://…`: a fleet of socks5d sharing users and settings through
//! PostgreSQL ([`socks5d_store_pg`]).
//!
//! - Start-up: the embedded store (the state directory) is loaded as without a fleet: it is
//!   the last-known-good copy, so the instance serves at once, database up or not. Then the
//!   fleet's thread connects; its first connection seeds an empty database with these users
//!   and adds the command line's users that the database does not hold.
//! - Admin changes ([`FleetPersist`]): committed to PostgreSQL, then to the embedded copy, then
//!   applied; a name the database already holds is answered `01` (NameTaken), a database that
//!   cannot be reached `FF`.
//! - Changes of other instances ([`Follower`]): every snapshot the fleet's thread reads is
//!   compared with the live state under the server's write lock and the differences applied
//!   (removing a user closes its sessions), then written to the embedded copy.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use socks5d_core::state::{Credential, Mutation, Outcome, Privilege, State};
use socks5d_net::{Persist, PersistError, Runtime, Shared};
use socks5d_store::{Change, Conflict, Snapshot, Store, StoredUser};
use socks5d_store_pg::{Bootstrap, CommitError, Fleet};

/// The fleet as the server's [`Persist`].
pub(crate) struct FleetPersist {
    fleet: Fleet,
    local: Arc<Store>,
    /// The version of the last local commit: an older snapshot must not undo it.
    floor: Arc<AtomicU64>,
}

impl Persist for FleetPersist {
    fn prepare(&self, m: Mutation) -> Result<Mutation, String> {
        crate::store::prepare(m)
    }

    fn persist(&self, m: &Mutation) -> Result<(), PersistError> {
        let change = crate::store::to_change(m)?;
        match self.fleet.commit(&change) {
            Ok(version) => {
                self.floor.fetch_max(version, Ordering::SeqCst);
                if let Err(e) = self.local.commit(&change) {
                    // PostgreSQL holds it; the next sync rewrites the copy.
                    tracing::warn!(error = %e, "the last-known-good copy lags behind PostgreSQL");
                }
                Ok(())
            }
            Err(CommitError::Conflict(Conflict::NameTaken)) => {
                Err(PersistError::Conflict(Outcome::NameTaken))
            }
            Err(CommitError::Conflict(Conflict::NoSuchUser)) => {
                Err(PersistError::Conflict(Outcome::NoSuchUser))
            }
            Err(CommitError::TooManyUsers) => Err(PersistError::Conflict(Outcome::TooManyUsers)),
            Err(CommitError::Invalid(e)) => Err(PersistError::Conflict({
                tracing::warn!(error = %e, "PostgreSQL refused an admin change");
                Outcome::InvalidParameter
            })),
            Err(CommitError::Failed(e)) => Err(PersistError::Failed(e)),
        }
    }
}

/// Applies the fleet's snapshots to the live state; run on the server's runtime.
pub(crate) struct Follower {
    snapshots: async_channel::Receiver<Snapshot>,
    local: Arc<Store>,
    floor: Arc<AtomicU64>,
}

/// Starts the fleet's thread on `url`. `store` is the embedded store, already loaded into
/// the state and merged with the command line; `cmdline` the names given with `-a`/`-u` (and a
/// created `admin`).
pub(crate) fn start(
    url: &str,
    resync: std::time::Duration,
    store: Store,
    cmdline: &HashSet<Bytes>,
) -> Result<(Arc<dyn Persist>, Follower), String> {
    let seed = store.load();
    let ensure: Vec<StoredUser> = seed
        .users
        .iter()
        .filter(|u| cmdline.contains(&u.name[..]))
        .cloned()
        .collect();
    let (tx, rx) = async_channel::unbounded();
    let fleet = Fleet::start(url, resync, Bootstrap { seed, ensure }, move |snap| {
        let _ = tx.try_send(snap);
    })?;
    let local = Arc::new(store);
    let floor = Arc::new(AtomicU64::new(0));
    let persist = Arc::new(FleetPersist {
        fleet,
        local: local.clone(),
        floor: floor.clone(),
    });
    Ok((
        persist,
        Follower {
            snapshots: rx,
            local,
            floor,
        },
    ))
}

impl Follower {
    /// Applies every snapshot until the fleet stops.
    pub(crate) async fn run<R: Runtime>(self, shared: Shared<R>) {
        while let Ok(mut snap) = self.snapshots.recv().await {
            while let Ok(newer) = self.snapshots.try_recv() {
                snap = newer;
            }
            // Under the write lock: a local change is checked, committed and applied either
            // wholly before or wholly after this.
            let _writes = shared.writes.lock().await;
            let floor = self.floor.load(Ordering::SeqCst);
            if snap.version < floor {
                // Read before a commit of this instance: the commit's notification brings a
                // newer one.
                tracing::debug!(
                    version = snap.version,
                    floor,
                    "skipped a snapshot older than a local change"
                );
                continue;
            }
            let changes = apply_snapshot(&shared.state, &snap);
            if changes > 0 {
                tracing::info!(
                    changes,
                    version = snap.version,
                    "applied the fleet's changes"
                );
            }
            if !same_content(&self.local.load(), &snap) {
                let local = self.local.clone();
                let replace = Change::Replace {
                    users: snap.users,
                    settings: snap.settings,
                };
                if let Err(e) = shared
                    .rt
                    .spawn_blocking(move || local.commit(&replace))
                    .await
                {
                    tracing::warn!(error = %e, "cannot update the last-known-good copy");
                }
            }
        }
    }
}

/// Whether two snapshots hold the same users (in any order) and settings.
fn same_content(a: &Snapshot, b: &Snapshot) -> bool {
    let set = |s: &Snapshot| -> HashMap<Vec<u8>, (String, u8)> {
        s.users
            .iter()
            .map(|u| (u.name.clone(), (u.hash.clone(), u.privilege)))
            .collect()
    };
    a.settings == b.settings && set(a) == set(b)
}

/// Makes the live state hold `snap`'s users and settings; returns how many mutations it
/// applied. A user whose hash or privilege changed gets the new ones in one step (which
/// closes its sessions, as removing would, but also works for the last administrator).
pub(crate) fn apply_snapshot(state: &State, snap: &Snapshot) -> usize {
    let wanted: HashMap<&[u8], &StoredUser> = snap.users.iter().map(|u| (&u.name[..], u)).collect();
    let mut n = 0;
    let mut refused = Vec::new();
    for u in state.users() {
        let Some(w) = wanted.get(&u.name[..]) else {
            let rm = Mutation::RemoveUser {
                name: u.name.clone(),
            };
            match state.apply(None, &rm) {
                Outcome::Applied => n += 1,
                // The last administrator: retried once the others are added.
                _ => refused.push(u.name),
            }
            continue;
        };
        let Ok(privilege) = Privilege::try_from(w.privilege) else {
            continue;
        };
        let phc = Credential::Hashed(Bytes::from(w.hash.clone()));
        if state.user_credential(&u.name) != Some((phc.clone(), privilege)) {
            match state.replace_user(&u.name, phc, privilege) {
                Outcome::Applied => n += 1,
                other => {
                    tracing::warn!(user = %String::from_utf8_lossy(&u.name), ?other, "cannot apply the fleet's user")
                }
            }
        }
    }
    for w in &snap.users {
        if state.user_credential(&w.name).is_some() {
            continue;
        }
        let Ok(privilege) = Privilege::try_from(w.privilege) else {
            continue;
        };
        let m = Mutation::AddHashedUser {
            name: Bytes::from(w.name.clone()),
            phc: Bytes::from(w.hash.clone()),
            privilege,
        };
        match state.apply(None, &m) {
            Outcome::Applied => n += 1,
            other => {
                tracing::warn!(user = %String::from_utf8_lossy(&w.name), ?other, "cannot add the fleet's user")
            }
        }
    }
    for name in refused {
        match state.apply(None, &Mutation::RemoveUser { name: name.clone() }) {
            Outcome::Applied => n += 1,
            other => {
                tracing::warn!(user = %String::from_utf8_lossy(&name), ?other, "cannot apply the fleet's removal")
            }
        }
    }
    let s = state.settings();
    let st = snap.settings;
    let settings = [
        st.sniffing
            .filter(|&v| v != s.sniffing())
            .map(Mutation::SetSniffing),
        st.cleanup
            .filter(|&v| v != s.cleanup())
            .map(Mutation::SetCleanup),
        st.buffer_size
            .filter(|&v| v != s.buffer_size())
            .map(Mutation::SetBufferSize),
        st.selector_timeout
            .filter(|&v| v != s.selector_timeout())
            .map(Mutation::SetSelectorTimeout),
        st.connection_timeout
            .filter(|&v| v != s.connection_timeout())
            .map(Mutation::SetConnectionTimeout),
    ];
    for m in settings.iter().flatten() {
        if state.apply(None, m) == Outcome::Applied {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use socks5d_core::state::Config;

    use super::*;

    fn user(name: &str, hash: &str, privilege: u8) -> StoredUser {
        StoredUser {
            name: name.into(),
            hash: hash.into(),
            privilege,
        }
    }

    fn names(state: &State) -> Vec<Vec<u8>> {
        let mut v: Vec<_> = state.users().into_iter().map(|u| u.name.to_vec()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_snapshot_replaces_users_and_settings() {
        let state = State::new(Instant::now(), &Config::default());
        let old = Snapshot {
            users: vec![user("admin", "$a1", 1), user("bob", "$b1", 0)],
            ..Snapshot::default()
        };
        assert_eq!(apply_snapshot(&state, &old), 2);
        assert_eq!(apply_snapshot(&state, &old), 0, "nothing to do twice");
        // The only admin gets a new hash, bob is removed, carol added.
        let mut new = Snapshot {
            users: vec![user("admin", "$a2", 1), user("carol", "$c1", 0)],
            ..Snapshot::default()
        };
        new.settings.buffer_size = Some(8192);
        new.settings.sniffing = Some(false);
        assert_eq!(apply_snapshot(&state, &new), 5);
        assert_eq!(names(&state), [b"admin".to_vec(), b"carol".to_vec()]);
        assert_eq!(
            state.user_credential(b"admin"),
            Some((Credential::Hashed(Bytes::from("$a2")), Privilege::Admin))
        );
        assert_eq!(state.settings().buffer_size(), 8192);
        assert!(!state.settings().sniffing());
        assert_eq!(apply_snapshot(&state, &new), 0);
    }

    #[test]
    fn same_content_ignores_order_and_version() {
        let a = Snapshot {
            users: vec![user("a", "$1", 0), user("b", "$2", 1)],
            version: 3,
            ..Snapshot::default()
        };
        let mut b = a.clone();
        b.users.reverse();
        b.version = 9;
        assert!(same_content(&a, &b));
        b.users[0].hash = "$3".into();
        assert!(!same_content(&a, &b));
    }
}

//! `Shared::modify` with a `Persist`: the change is applied only once persisted; a store
//! that refuses with an outcome (a fleet's database holding the name already) has that
//! outcome answered, a failing store `Failed`, and neither applies anything.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use socks5d_core::state::{Config, Mutation, Outcome, Privilege, State};
use socks5d_net::{Persist, PersistError, ServerOptions, Shared};

/// Answers each `persist` with the next result of its list, and records what it was asked.
struct Scripted {
    answers: Mutex<Vec<Result<(), PersistError>>>,
    asked: Mutex<Vec<Mutation>>,
}

impl Persist for Scripted {
    fn persist(&self, m: &Mutation) -> Result<(), PersistError> {
        self.asked.lock().unwrap().push(m.clone());
        self.answers.lock().unwrap().remove(0)
    }
}

fn add(name: &'static str) -> Mutation {
    Mutation::AddHashedUser {
        name: Bytes::from_static(name.as_bytes()),
        phc: Bytes::from_static(b"$argon2id$x"),
        privilege: Privilege::User,
    }
}

#[test]
fn conflicts_and_failures_apply_nothing() {
    let store = Arc::new(Scripted {
        answers: Mutex::new(vec![
            Err(PersistError::Conflict(Outcome::NameTaken)),
            Err(PersistError::Failed("disk on fire".into())),
            Err(PersistError::Conflict(Outcome::NoSuchUser)),
            Ok(()),
        ]),
        asked: Mutex::new(Vec::new()),
    });
    let state = Arc::new(State::new(Instant::now(), &Config::default()));
    let (st, p) = (state.clone(), store.clone());
    socks5d_tokio::block_on(Some(1), move |rt| async move {
        let shared = Shared::new(rt, st.clone(), ServerOptions::default()).with_persist(p);
        assert_eq!(shared.modify(None, add("bob")).await, Outcome::NameTaken);
        assert_eq!(st.user_count(), 0, "a conflict applies nothing");
        assert_eq!(shared.modify(None, add("bob")).await, Outcome::Failed);
        assert_eq!(st.user_count(), 0, "a failure applies nothing");
        // The live state has no carol: refused before the store is asked.
        let rm = Mutation::RemoveUser {
            name: Bytes::from_static(b"carol"),
        };
        assert_eq!(shared.modify(None, rm).await, Outcome::NoSuchUser);
        assert_eq!(shared.modify(None, add("carol")).await, Outcome::NoSuchUser);
        assert_eq!(st.user_count(), 0);
        assert_eq!(shared.modify(None, add("dave")).await, Outcome::Applied);
        assert_eq!(st.user_count(), 1);
    })
    .unwrap();
    assert_eq!(store.asked.lock().unwrap().len(), 4);
}

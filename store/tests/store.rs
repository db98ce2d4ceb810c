//! The embedded store: durability across reopen, conflicts, refusals, lock, permissions,
//! import/export, and no clear password anywhere.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::cheap_hash;
use socks5d_store::{
    hash_password, import, Change, Conflict, Setting, Snapshot, Store, StoreError, StoredSettings,
    StoredUser, UserStore, LOCK_FILE, STORE_FILE,
};

fn add(name: &str, hash: &str, privilege: u8) -> Change {
    Change::AddUser {
        name: name.into(),
        hash: hash.into(),
        privilege,
    }
}

fn remove(name: &str) -> Change {
    Change::RemoveUser { name: name.into() }
}

#[test]
fn new_store_is_empty_and_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b");
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.load(), Snapshot::default());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(STORE_FILE)), 0o600);
    assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
}

#[test]
fn reopen_sees_every_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let h = cheap_hash(b"pw-a");
    {
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.commit(&add("admin", &h, 1)).unwrap(), 1);
        assert_eq!(store.commit(&add("alice bob", &h, 0)).unwrap(), 2);
        assert_eq!(store.commit(&add("carol", &h, 0)).unwrap(), 3);
        assert_eq!(store.commit(&remove("alice bob")).unwrap(), 4);
        assert_eq!(
            store
                .commit(&Change::SetSetting(Setting::Sniffing(false)))
                .unwrap(),
            5
        );
        assert_eq!(
            store
                .commit(&Change::SetSetting(Setting::BufferSize(4096)))
                .unwrap(),
            6
        );
        assert_eq!(
            store
                .commit(&Change::SetSetting(Setting::SelectorTimeout(3)))
                .unwrap(),
            7
        );
        assert_eq!(
            store
                .commit(&Change::SetSetting(Setting::ConnectionTimeout(9)))
                .unwrap(),
            8
        );
        assert_eq!(
            store
                .commit(&Change::SetSetting(Setting::Cleanup(false)))
                .unwrap(),
            9
        );
    }
    let store = Store::open(tmp.path()).unwrap();
    let snap = store.load();
    assert_eq!(snap.version, 9);
    let names: Vec<_> = snap
        .users
        .iter()
        .map(|u| (u.name.clone(), u.privilege))
        .collect();
    assert_eq!(names, [(b"admin".to_vec(), 1), (b"carol".to_vec(), 0)]);
    assert_eq!(snap.users[0].hash, h);
    assert_eq!(
        snap.settings,
        StoredSettings {
            sniffing: Some(false),
            cleanup: Some(false),
            buffer_size: Some(4096),
            selector_timeout: Some(3),
            connection_timeout: Some(9),
        }
    );
    // Through the trait as well.
    let dynamic: &dyn UserStore = &store;
    assert_eq!(dynamic.load().unwrap(), snap);
    assert_eq!(dynamic.commit(&remove("carol")).unwrap(), 10);
}

#[test]
fn conflicts_and_invalid_changes_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let h = cheap_hash(b"pw");
    store.commit(&add("alice", &h, 0)).unwrap();
    let before = fs::read(store.path()).unwrap();

    let conflict = |r: Result<u64, StoreError>| match r {
        Err(StoreError::Conflict(c)) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        conflict(store.commit(&add("alice", &h, 1))),
        Conflict::NameTaken
    );
    assert_eq!(conflict(store.commit(&remove("bob"))), Conflict::NoSuchUser);

    for bad in [
        add("", &h, 0),
        add("a:b", &h, 0),
        add("tab\tname", &h, 0),
        add(&"x".repeat(256), &h, 0),
        add("bob", &h, 2),
        add("bob", "clear-password", 0),
        add("bob", &h.replacen("argon2id", "argon2i", 1), 0),
        Change::SetSetting(Setting::BufferSize(49)),
        Change::SetSetting(Setting::BufferSize(1_048_577)),
        Change::SetSetting(Setting::SelectorTimeout(0)),
        Change::SetSetting(Setting::ConnectionTimeout(0)),
        Change::Replace {
            users: vec![
                StoredUser {
                    name: b"d".to_vec(),
                    hash: h.clone(),
                    privilege: 0,
                },
                StoredUser {
                    name: b"d".to_vec(),
                    hash: h.clone(),
                    privilege: 1,
                },
            ],
            settings: StoredSettings::default(),
        },
    ] {
        let err = store.commit(&bad).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
        let msg = format!("{err} {err:?}");
        assert!(
            !msg.contains("clear-password") && !msg.contains(&h),
            "echoes input: {msg}"
        );
    }
    assert_eq!(store.load().version, 1);
    assert_eq!(fs::read(store.path()).unwrap(), before);
}

#[test]
fn at_most_255_users() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let h = cheap_hash(b"pw");
    let users: Vec<_> = (0..255)
        .map(|i| StoredUser {
            name: format!("u{i}").into_bytes(),
            hash: h.clone(),
            privilege: 0,
        })
        .collect();
    store
        .commit(&Change::Replace {
            users,
            settings: StoredSettings::default(),
        })
        .unwrap();
    let err = store.commit(&add("one-more", &h, 0)).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    drop(store);
    assert_eq!(Store::open(tmp.path()).unwrap().load().users.len(), 255);
}

#[test]
fn second_open_is_locked_out_until_the_first_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Store::open(tmp.path()).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another socks5d"),
        "{err}"
    );
    drop(first);
    Store::open(tmp.path()).unwrap();
}

fn refused(contents: &[u8]) -> StoreError {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(STORE_FILE);
    fs::write(&path, contents).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert_eq!(
        fs::read(&path).unwrap(),
        contents,
        "a refused store is never overwritten"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    err
}

#[test]
fn newer_format_is_refused_untouched() {
    let err = refused(
        b"{\"format\":\"socks5d-users\",\"format_version\":2,\"whatever\":[1,2],\"users\":0}\n",
    );
    assert!(
        matches!(
            err,
            StoreError::NewerFormat {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("format version 2"), "{err}");
}

#[test]
fn corrupt_files_are_refused_untouched_with_the_line() {
    let h = cheap_hash(b"pw");
    let header = |n: usize| {
        format!(
            "{{\"format\":\"socks5d-users\",\"format_version\":1,\"version\":3,\"users\":{n}}}\n"
        )
    };
    let user = |name: &str, hash: &str, p: u8| {
        format!("{{\"name\":\"{name}\",\"hash\":\"{hash}\",\"privilege\":{p}}}\n")
    };
    let cases: Vec<(Vec<u8>, usize)> = vec![
        (b"".to_vec(), 0),
        (b"\0\0\0\0garbage".to_vec(), 0),
        (b"not json\n".to_vec(), 1),
        (
            b"{\"format\":\"sqlite\",\"format_version\":1}\n".to_vec(),
            1,
        ),
        (header(1).into_bytes(), 0), // truncated: the user line is missing
        (
            format!("{}{}", header(1), user("a", &h, 0))
                .replace("\n{\"name", "\n\n{\"name")
                .into_bytes(),
            2,
        ),
        (format!("{}{}", header(0), user("a", &h, 0)).into_bytes(), 2),
        (
            format!("{}{}", header(1), user("a:b", &h, 0)).into_bytes(),
            2,
        ),
        (format!("{}{}", header(1), user("a", &h, 7)).into_bytes(), 2),
        (
            format!("{}{}", header(1), user("a", "$argon2id$v=19$bad", 0)).into_bytes(),
            2,
        ),
        (
            format!("{}{}{}", header(2), user("a", &h, 0), user("a", &h, 1)).into_bytes(),
            3,
        ),
        (
            format!("{}{}", header(1), user("a", &h, 0))
                .replace("}\n", "")
                .into_bytes(),
            0,
        ),
        (
            header(0)
                .replace(
                    "\"users\":0",
                    "\"users\":0,\"settings\":{\"buffer_size\":1}",
                )
                .into_bytes(),
            1,
        ),
        (vec![b' '; 2 << 20], 0),
    ];
    for (contents, want_line) in cases {
        match refused(&contents) {
            StoreError::Corrupt { line, .. } => assert_eq!(
                line,
                want_line,
                "{:?}",
                String::from_utf8_lossy(&contents[..contents.len().min(200)])
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn no_clear_password_in_the_file_the_export_or_debug() {
    const CLEAR: &str = "Clear-Pa55word-Zq7!";
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let hash = hash_password(CLEAR.as_bytes()).unwrap();
    let change = add("alice", &hash, 1);
    store.commit(&change).unwrap();

    let file = fs::read(store.path()).unwrap();
    let mut export = Vec::new();
    store.export(&mut export).unwrap();
    for (what, bytes) in [("store file", &file), ("export", &export)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            text.contains("alice") && text.contains("$argon2id$"),
            "{what}: {text}"
        );
        assert!(!text.contains(CLEAR), "{what} holds the clear password");
    }

    let snap = store.load();
    let debugs = [
        format!("{store:?}"),
        format!("{snap:?}"),
        format!("{:?}", snap.users[0]),
        format!("{change:?}"),
        format!(
            "{:?}",
            Change::Replace {
                users: snap.users.clone(),
                settings: snap.settings
            }
        ),
    ];
    for d in &debugs {
        assert!(!d.contains(CLEAR), "{d}");
        assert!(!d.contains(&hash), "Debug shows the hash: {d}");
    }
    assert!(
        debugs[2].contains("alice") && debugs[2].contains("$argon2id$"),
        "{}",
        debugs[2]
    );
}

#[test]
fn export_then_import_moves_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (h1, h2) = (cheap_hash(b"one"), cheap_hash(b"two"));
    let old = Store::open(&tmp.path().join("old")).unwrap();
    old.commit(&add("admin", &h1, 1)).unwrap();
    old.commit(&add("proxy user", &h2, 0)).unwrap();
    old.commit(&Change::SetSetting(Setting::ConnectionTimeout(30)))
        .unwrap();
    let file = tmp.path().join("users.export");
    old.export(fs::File::create(&file).unwrap()).unwrap();

    let imported = import(&file).unwrap();
    assert_eq!(imported, old.load());
    // A store file is an export too.
    assert_eq!(import(old.path()).unwrap(), imported);

    let new = Store::open(&tmp.path().join("new")).unwrap();
    new.commit(&add("someone", &h1, 0)).unwrap();
    let v = new
        .commit(&Change::Replace {
            users: imported.users.clone(),
            settings: imported.settings,
        })
        .unwrap();
    assert_eq!(v, 2, "the new store keeps its own version count");
    drop(new);
    let reopened = Store::open(&tmp.path().join("new")).unwrap().load();
    assert_eq!(reopened.users, imported.users);
    assert_eq!(reopened.settings.connection_timeout, Some(30));
}

#[test]
fn import_refuses_garbage_with_line_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let h = cheap_hash(b"pw");
    let file = tmp.path().join("in");
    let header = "{\"format\":\"socks5d-users\",\"format_version\":1,\"version\":0,\"users\":3}\n";
    let good = format!("{{\"name\":\"a\",\"hash\":\"{h}\",\"privilege\":0}}\n");
    let cases = [
        (format!("{header}{good}{good}{good}"), 3, "appears twice"),
        (
            format!("{header}{good}{{\"name\":\"b\",\"password\":\"x\",\"privilege\":0}}\n{good}"),
            3,
            "unknown field `password`",
        ),
        (
            format!("{header}{good}{{\"name\":\"b\",\"hash\":\"x\",\"privilege\":\"secret-x\"}}\n"),
            3,
            "column",
        ),
        (
            format!(
                "{header}{good}{}",
                good.replace("\"a\"", "\"b\"").replace(&h, "not-a-hash")
            ),
            3,
            "hash",
        ),
        (format!("{}\n", &header[..30]), 1, "JSON"),
        (
            header.replace("\"format_version\":1", "\"format_version\":9"),
            1,
            "newer",
        ),
    ];
    for (text, want_line, want_reason) in cases {
        fs::write(&file, &text).unwrap();
        match import(&file) {
            Err(StoreError::BadImport { line, reason, .. }) => {
                assert_eq!(line, want_line, "{reason}: {text}");
                assert!(reason.contains(want_reason), "{reason}");
                assert!(!reason.contains("secret-x"), "a value is echoed: {reason}");
            }
            other => panic!("{other:?} for {text}"),
        }
    }
    assert!(matches!(
        import(&tmp.path().join("missing")),
        Err(StoreError::Io { .. })
    ));
}

#[test]
fn stale_temporary_file_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path())
        .unwrap()
        .commit(&add("a", &cheap_hash(b"pw"), 1))
        .unwrap();
    let stale = tmp.path().join("users.jsonl.tmp");
    fs::write(&stale, b"half a fi").unwrap();
    let store = Store::open(tmp.path()).unwrap();
    assert!(!stale.exists());
    assert_eq!(store.load().users.len(), 1);
}

#[test]
fn failed_write_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let h = cheap_hash(b"pw");
    store.commit(&add("a", &h, 1)).unwrap();
    // A directory where the temporary file goes makes the write fail (root ignores modes).
    let tmpfile = tmp.path().join("users.jsonl.tmp");
    fs::create_dir(&tmpfile).unwrap();
    let err = store.commit(&add("b", &h, 0)).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("users.jsonl.tmp"), "{err}");
    assert_eq!(store.load().users.len(), 1);
    assert_eq!(store.load().version, 1);
    fs::remove_dir(&tmpfile).unwrap();
    assert_eq!(
        store.commit(&add("b", &h, 0)).unwrap(),
        2,
        "not poisoned: nothing was renamed"
    );
}

//! The socks5d fleet: users and the admin-changeable settings shared by several socks5d
//! instances through PostgreSQL.
//!
//! [`Fleet::start`] runs a small tokio runtime (one worker thread, named `socks5d-pg`) of its
//! own, whatever runtime the server uses, and on it one task that:
//!
//! 1. connects (`tokio-postgres`, no TLS: a unix socket or a trusted network), with back-off
//!    from 100 ms doubling to 5 s after every failure;
//! 2. creates or migrates the schema (`socks5d_schema` holds its version, under an advisory
//!    lock so that instances starting together do not race);
//! 3. `LISTEN socks5d`;
//! 4. the first time only: seeds an empty database from this instance's last-known-good
//!    snapshot, and adds the command-line users that PostgreSQL does not hold;
//! 5. reads a full snapshot and hands it to the callback given to [`Fleet::start`];
//! 6. then follows notifications (`user:VERSION`, `settings:VERSION`, `all:VERSION`: hints
//!    only), re-reading the rows whose version is above the last one read, and re-reads
//!    everything every `resync` period. Any error: back to 1, which re-syncs fully.
//!
//! # Schema (version 1)
//!
//! - `socks5d_meta (singleton, version)`: the fleet's version, one above the previous at
//!   every commit. Every commit locks this row first (`SELECT … FOR UPDATE`), so commits are
//!   serialised, versions are committed in order, and "rows with a version above N" is
//!   exactly what changed since N.
//! - `socks5d_users (name bytea, hash text, privilege smallint, deleted boolean, version)`:
//!   a removed user stays as a tombstone (`deleted`, empty hash) so that a delta read sees
//!   the removal; adding the name again revives the row.
//! - `socks5d_settings (name text, value bigint NULL, version)`: `NULL` = never set.
//!
//! Commits ([`Fleet::commit`]) run in one transaction that ends with `pg_notify`, so the
//! notification goes out exactly when the change is visible.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::poll_fn;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use socks5d_store::{
    apply_change, Change, Conflict, Setting, Snapshot, StoredSettings, StoredUser,
};
use tokio::sync::{mpsc, Mutex};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Transaction};

/// The schema version this build creates and reads.
pub const SCHEMA_VERSION: i32 = 1;
/// The channel of the notifications.
pub const CHANNEL: &str = "socks5d";
/// The first retry after a failed connection; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a commit (or a read) may take before it is answered as failed.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default period of the full re-sync.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);

const SCHEMA_V1: &str = "
CREATE TABLE socks5d_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL
);
INSERT INTO socks5d_meta (version) VALUES (0);
CREATE TABLE socks5d_users (
    name bytea PRIMARY KEY,
    hash text NOT NULL,
    privilege smallint NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    version bigint NOT NULL
);
CREATE INDEX socks5d_users_version ON socks5d_users (version);
CREATE TABLE socks5d_settings (
    name text PRIMARY KEY,
    value bigint,
    version bigint NOT NULL
);
INSERT INTO socks5d_schema (version) VALUES (1);
";

/// An arbitrary key of the advisory lock that serialises schema migrations.
const MIGRATION_LOCK: i64 = 0x50c5_5d00;

/// Why a commit did not happen. Nothing changed in PostgreSQL in every case but the last
/// (see [`CommitError::Failed`]).
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The name exists (add) or does not (remove) in PostgreSQL.
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    /// PostgreSQL already holds [`MAX_USERS`](socks5d_store::MAX_USERS) users.
    #[error("too many users")]
    TooManyUsers,
    /// A change no store may hold (bad name, hash or setting).
    #[error("invalid change: {0}")]
    Invalid(String),
    /// Not connected, timed out, or the database refused. When the connection broke while
    /// the commit was on its way, it may have been made: the next sync shows it.
    #[error("{0}")]
    Failed(String),
}

/// What the first successful connection does before the first sync.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// Written to a database that has never held anything (version 0): this instance's
    /// last-known-good users and settings.
    pub seed: Snapshot,
    /// Added when PostgreSQL has no user of their name (the command line's users).
    pub ensure: Vec<StoredUser>,
}

/// A connection's shared parts.
struct Inner {
    config: Config,
    resync: Duration,
    /// The connected client, for commits and reads; `None` while disconnected.
    client: Mutex<Option<Client>>,
    on_snapshot: Box<dyn Fn(Snapshot) + Send + Sync>,
}

/// The fleet's PostgreSQL client: follows the database on its own thread and commits
/// changes. Dropping it stops the thread.
pub struct Fleet {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("resync", &self.inner.resync)
            .finish_non_exhaustive()
    }
}

/// Parses a store URL (`postgres://…` or `postgresql://…`, or libpq's `key=value` form).
///
/// # Errors
///
/// Why it is not one (the message never repeats the URL: it may hold a password).
pub fn parse_url(url: &str) -> Result<Config, String> {
    Config::from_str(url).map_err(|e| format!("not a PostgreSQL URL: {e}"))
}

impl Fleet {
    /// Starts following the database at `url`. `on_snapshot` receives every valid snapshot
    /// read (on the fleet's thread: it must not block); a snapshot with no user, or with
    /// anything a store may not hold, is logged and never handed over (never fail open).
    ///
    /// # Errors
    ///
    /// A bad URL, or the thread cannot start. An unreachable database is no error: the
    /// task keeps retrying.
    pub fn start(
        url: &str,
        resync: Duration,
        bootstrap: Bootstrap,
        on_snapshot: impl Fn(Snapshot) + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let mut config = parse_url(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("socks5d");
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name("socks5d-pg")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the PostgreSQL thread: {e}"))?;
        let inner = Arc::new(Inner {
            config,
            resync: resync.max(Duration::from_millis(100)),
            client: Mutex::new(None),
            on_snapshot: Box::new(on_snapshot),
        });
        rt.spawn(follow(inner.clone(), bootstrap));
        Ok(Self {
            inner,
            rt: Some(rt),
        })
    }

    /// Commits `change` in one transaction and returns the fleet's new version, once
    /// PostgreSQL has committed it. Blocks: call it off the async workers.
    ///
    /// # Errors
    ///
    /// See [`CommitError`].
    ///
    /// # Panics
    ///
    /// If called from an async task (tokio's `block_on` refuses).
    pub fn commit(&self, change: &Change) -> Result<u64, CommitError> {
        let rt = self
            .rt
            .as_ref()
            .expect("the runtime lives as long as the Fleet");
        let inner = self.inner.clone();
        rt.handle().block_on(async move {
            let work = async {
                let mut guard = inner.client.lock().await;
                let Some(client) = guard.as_mut() else {
                    return Err(CommitError::Failed("not connected to PostgreSQL".into()));
                };
                commit_on(client, change).await
            };
            match tokio::time::timeout(COMMIT_TIMEOUT, work).await {
                Ok(r) => r,
                Err(_) => Err(CommitError::Failed(format!(
                    "PostgreSQL did not commit within {COMMIT_TIMEOUT:?}"
                ))),
            }
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Allowed from an async context too, unlike dropping the runtime.
            rt.shutdown_background();
        }
    }
}

/// The following task: connect, sync, follow; again after any error.
async fn follow(inner: Arc<Inner>, bootstrap: Bootstrap) {
    let mut bootstrap = Some(bootstrap);
    let mut backoff = MIN_BACKOFF;
    let mut cache = Cache::default();
    loop {
        let err = session(&inner, &mut bootstrap, &mut cache, &mut backoff).await;
        *inner.client.lock().await = None;
        tracing::warn!(error = %err, retry_in = ?backoff, "PostgreSQL user store unreachable: serving the last-known users");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life; returns why it ended.
async fn session(
    inner: &Inner,
    bootstrap: &mut Option<Bootstrap>,
    cache: &mut Cache,
    backoff: &mut Duration,
) -> String {
    let (mut client, mut conn) = match inner.config.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => return format!("cannot connect: {}", describe(&e)),
    };
    let (tx, mut notes) = mpsc::unbounded_channel::<String>();
    // Drives the connection; forwards the notifications; ends (dropping `tx`) with it.
    tokio::spawn(async move {
        loop {
            match poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "PostgreSQL connection ended");
                    return;
                }
                None => return,
            }
        }
    });
    if let Err(e) = migrate(&mut client).await {
        return e;
    }
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        return format!("LISTEN: {}", describe(&e));
    }
    if let Some(b) = bootstrap.as_ref() {
        if let Err(e) = seed(&mut client, b).await {
            return e;
        }
        *bootstrap = None;
    }
    if let Err(e) = cache.read_full(&mut client).await {
        return e;
    }
    cache.publish(inner);
    *inner.client.lock().await = Some(client);
    *backoff = MIN_BACKOFF;
    tracing::info!(
        version = cache.version,
        "following the PostgreSQL user store"
    );
    let mut tick = tokio::time::interval(inner.resync);
    tick.tick().await;
    loop {
        let full = tokio::select! {
            note = notes.recv() => {
                let Some(note) = note else {
                    return "connection closed".into();
                };
                let mut newest = hint_version(&note);
                while let Ok(n) = notes.try_recv() {
                    newest = newest.max(hint_version(&n));
                }
                if newest <= cache.version {
                    continue;
                }
                false
            }
            _ = tick.tick() => true,
        };
        let mut guard = inner.client.lock().await;
        let Some(client) = guard.as_mut() else {
            return "disconnected".into();
        };
        // A link that died silently (no reset) fails here rather than hanging the follower.
        let read = tokio::time::timeout(COMMIT_TIMEOUT, async {
            if full {
                cache.read_full(client).await
            } else {
                cache.read_delta(client).await
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer to a read within {COMMIT_TIMEOUT:?}")));
        drop(guard);
        if let Err(e) = read {
            return e;
        }
        cache.publish(inner);
    }
}

/// The version of a hint `entity:version`; `u64::MAX` for one that does not parse (read).
fn hint_version(note: &str) -> u64 {
    note.rsplit_once(':')
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Creates the schema, or checks it is one this build reads.
async fn migrate(client: &mut Client) -> Result<(), String> {
    let e = |e: tokio_postgres::Error| format!("schema: {}", describe(&e));
    let tx = client.transaction().await.map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(e)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS socks5d_schema (version integer NOT NULL)")
        .await
        .map_err(e)?;
    let rows = tx
        .query("SELECT max(version) FROM socks5d_schema", &[])
        .await
        .map_err(e)?;
    let have: Option<i32> = rows.first().and_then(|r| r.get(0));
    match have {
        None => {
            tx.batch_execute(SCHEMA_V1).await.map_err(e)?;
            tracing::info!(
                schema = SCHEMA_VERSION,
                "created the PostgreSQL user store schema"
            );
        }
        Some(SCHEMA_VERSION) => {}
        Some(v) if v > SCHEMA_VERSION => {
            return Err(format!(
                "the database's schema version {v} is newer than this socks5d's ({SCHEMA_VERSION}): upgrade socks5d"
            ));
        }
        Some(v) => return Err(format!("unknown schema version {v}")),
    }
    tx.commit().await.map_err(e)
}

/// The first connection's seeding (see [`Bootstrap`]).
async fn seed(client: &mut Client, b: &Bootstrap) -> Result<(), String> {
    if !b.seed.users.is_empty() {
        let replace = Change::Replace {
            users: b.seed.users.clone(),
            settings: b.seed.settings,
        };
        // Only into a database at version 0, checked under the commit lock: of instances
        // starting together, one seeds.
        match commit(client, &replace, true).await {
            Ok(v) => tracing::info!(
                users = b.seed.users.len(),
                version = v,
                "seeded the empty PostgreSQL user store with the local users"
            ),
            Err(CommitError::Conflict(_)) => {}
            Err(e) => return Err(format!("seed: {e}")),
        }
    }
    for u in &b.ensure {
        let add = Change::AddUser {
            name: u.name.clone(),
            hash: u.hash.clone(),
            privilege: u.privilege,
        };
        match commit_on(client, &add).await {
            Ok(_) | Err(CommitError::Conflict(_)) => {}
            Err(e @ (CommitError::Invalid(_) | CommitError::TooManyUsers)) => {
                tracing::warn!(user = %String::from_utf8_lossy(&u.name), error = %e, "command-line user not added to PostgreSQL");
            }
            Err(e) => return Err(format!("adding the command-line users: {e}")),
        }
    }
    Ok(())
}

fn failed(e: tokio_postgres::Error) -> CommitError {
    CommitError::Failed(format!("PostgreSQL: {}", describe(&e)))
}

/// The error with the server's message, when it sent one (tokio-postgres shows "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => e.to_string(),
    }
}

/// One commit, in one transaction (see the crate docs).
async fn commit_on(client: &mut Client, change: &Change) -> Result<u64, CommitError> {
    commit(client, change, false).await
}

/// One commit; with `only_if_new`, refused (`Conflict`) unless the database is at version 0.
async fn commit(
    client: &mut Client,
    change: &Change,
    only_if_new: bool,
) -> Result<u64, CommitError> {
    // The checks a store makes on the values alone (names, hashes, privileges, ranges).
    if let Change::AddUser { .. } | Change::Replace { .. } | Change::SetSetting(_) = change {
        apply_change(&Snapshot::default(), change).map_err(|e| match e {
            socks5d_store::StoreError::Invalid(r) => CommitError::Invalid(r),
            other => CommitError::Invalid(other.to_string()),
        })?;
    }
    let tx = client.transaction().await.map_err(failed)?;
    let old: i64 = tx
        .query_one("SELECT version FROM socks5d_meta FOR UPDATE", &[])
        .await
        .map_err(failed)?
        .get(0);
    if only_if_new && old != 0 {
        return Err(CommitError::Conflict(Conflict::NameTaken));
    }
    let v = old + 1;
    let entity = match change {
        Change::AddUser {
            name,
            hash,
            privilege,
        } => {
            let live: i64 = tx
                .query_one("SELECT count(*) FROM socks5d_users WHERE NOT deleted", &[])
                .await
                .map_err(failed)?
                .get(0);
            if live >= socks5d_store::MAX_USERS as i64 {
                return Err(CommitError::TooManyUsers);
            }
            let n = tx
                .execute(
                    "INSERT INTO socks5d_users (name, hash, privilege, deleted, version) \
                     VALUES ($1, $2, $3, false, $4) \
                     ON CONFLICT (name) DO UPDATE SET hash = EXCLUDED.hash, \
                     privilege = EXCLUDED.privilege, deleted = false, version = EXCLUDED.version \
                     WHERE socks5d_users.deleted",
                    &[&name.as_slice(), &hash.as_str(), &i16::from(*privilege), &v],
                )
                .await
                .map_err(failed)?;
            if n == 0 {
                return Err(CommitError::Conflict(Conflict::NameTaken));
            }
            "user"
        }
        Change::RemoveUser { name } => {
            let n = tx
                .execute(
                    "UPDATE socks5d_users SET deleted = true, hash = '', version = $2 \
                     WHERE name = $1 AND NOT deleted",
                    &[&name.as_slice(), &v],
                )
                .await
                .map_err(failed)?;
            if n == 0 {
                return Err(CommitError::Conflict(Conflict::NoSuchUser));
            }
            "user"
        }
        Change::SetSetting(s) => {
            let (key, value) = setting_row(*s);
            upsert_setting(&tx, key, Some(value), v).await?;
            "settings"
        }
        Change::Replace { users, settings } => {
            tx.execute(
                "UPDATE socks5d_users SET deleted = true, hash = '', version = $1 WHERE NOT deleted",
                &[&v],
            )
            .await
            .map_err(failed)?;
            for u in users {
                tx.execute(
                    "INSERT INTO socks5d_users (name, hash, privilege, deleted, version) \
                     VALUES ($1, $2, $3, false, $4) \
                     ON CONFLICT (name) DO UPDATE SET hash = EXCLUDED.hash, \
                     privilege = EXCLUDED.privilege, deleted = false, version = EXCLUDED.version",
                    &[
                        &u.name.as_slice(),
                        &u.hash.as_str(),
                        &i16::from(u.privilege),
                        &v,
                    ],
                )
                .await
                .map_err(failed)?;
            }
            for (key, value) in settings_rows(settings) {
                upsert_setting(&tx, key, value, v).await?;
            }
            "all"
        }
    };
    tx.execute("UPDATE socks5d_meta SET version = $1", &[&v])
        .await
        .map_err(failed)?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &format!("{entity}:{v}")],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(v.unsigned_abs())
}

async fn upsert_setting(
    tx: &Transaction<'_>,
    key: &str,
    value: Option<i64>,
    v: i64,
) -> Result<(), CommitError> {
    tx.execute(
        "INSERT INTO socks5d_settings (name, value, version) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version",
        &[&key, &value, &v],
    )
    .await
    .map_err(failed)?;
    Ok(())
}

/// The row of one setting: its name (a field of [`StoredSettings`]) and value.
fn setting_row(s: Setting) -> (&'static str, i64) {
    match s {
        Setting::Sniffing(b) => ("sniffing", i64::from(b)),
        Setting::Cleanup(b) => ("cleanup", i64::from(b)),
        Setting::BufferSize(n) => ("buffer_size", i64::from(n)),
        Setting::SelectorTimeout(n) => ("selector_timeout", i64::from(n)),
        Setting::ConnectionTimeout(n) => ("connection_timeout", i64::from(n)),
    }
}

fn settings_rows(s: &StoredSettings) -> [(&'static str, Option<i64>); 5] {
    [
        ("sniffing", s.sniffing.map(i64::from)),
        ("cleanup", s.cleanup.map(i64::from)),
        ("buffer_size", s.buffer_size.map(i64::from)),
        ("selector_timeout", s.selector_timeout.map(i64::from)),
        ("connection_timeout", s.connection_timeout.map(i64::from)),
    ]
}

/// Sets the setting of row `key` in `s`.
fn set_from_row(s: &mut StoredSettings, key: &str, value: Option<i64>) -> Result<(), String> {
    let bad = || format!("setting {key} = {value:?} out of range");
    let flag = |v: i64| match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(bad()),
    };
    match key {
        "sniffing" => s.sniffing = value.map(flag).transpose()?,
        "cleanup" => s.cleanup = value.map(flag).transpose()?,
        "buffer_size" => {
            s.buffer_size = value
                .map(|v| u32::try_from(v).map_err(|_| bad()))
                .transpose()?;
        }
        "selector_timeout" => {
            s.selector_timeout = value
                .map(|v| u8::try_from(v).map_err(|_| bad()))
                .transpose()?;
        }
        "connection_timeout" => {
            s.connection_timeout = value
                .map(|v| u8::try_from(v).map_err(|_| bad()))
                .transpose()?;
        }
        // A setting of a newer socks5d: not ours to read.
        _ => {}
    }
    Ok(())
}

/// What this instance last read from PostgreSQL.
#[derive(Debug, Default)]
struct Cache {
    users: Vec<StoredUser>,
    settings: StoredSettings,
    version: u64,
    /// Something in the rows read cannot be held (logged when read): not handed over.
    bad: Option<String>,
}

impl Cache {
    async fn read_full(&mut self, client: &mut Client) -> Result<(), String> {
        self.read(client, None).await
    }

    async fn read_delta(&mut self, client: &mut Client) -> Result<(), String> {
        self.read(client, Some(self.version)).await
    }

    /// Reads everything (`since` = `None`) or what changed after `since`, in one
    /// consistent read-only snapshot.
    async fn read(&mut self, client: &mut Client, since: Option<u64>) -> Result<(), String> {
        let e = |e: tokio_postgres::Error| format!("read: {}", describe(&e));
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(e)?;
        let version: i64 = tx
            .query_one("SELECT version FROM socks5d_meta", &[])
            .await
            .map_err(e)?
            .get(0);
        let after = since.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let users = tx
            .query(
                "SELECT name, hash, privilege, deleted FROM socks5d_users \
                 WHERE version > $1 ORDER BY version, name",
                &[&after],
            )
            .await
            .map_err(e)?;
        let settings = tx
            .query(
                "SELECT name, value FROM socks5d_settings WHERE version > $1",
                &[&after],
            )
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)?;
        let (mut next_users, mut next_settings) = match since {
            None => (Vec::new(), StoredSettings::default()),
            Some(_) => (self.users.clone(), self.settings),
        };
        let mut bad = None;
        for r in users {
            let name: Vec<u8> = r.get(0);
            next_users.retain(|u| u.name != name);
            if r.get::<_, bool>(3) {
                continue;
            }
            let privilege: i16 = r.get(2);
            let Ok(privilege) = u8::try_from(privilege) else {
                bad = Some(format!("privilege {privilege}"));
                continue;
            };
            next_users.push(StoredUser {
                name,
                hash: r.get(1),
                privilege,
            });
        }
        for r in settings {
            let key: String = r.get(0);
            if let Err(reason) = set_from_row(&mut next_settings, &key, r.get(1)) {
                bad = Some(reason);
            }
        }
        self.users = next_users;
        self.settings = next_settings;
        self.version = version.unsigned_abs();
        self.bad = bad.or_else(|| {
            apply_change(
                &Snapshot::default(),
                &Change::Replace {
                    users: self.users.clone(),
                    settings: self.settings,
                },
            )
            .err()
            .map(|e| e.to_string())
        });
        Ok(())
    }

    /// Hands the snapshot over, unless it cannot be trusted.
    fn publish(&self, inner: &Inner) {
        if let Some(reason) = &self.bad {
            tracing::error!(version = self.version, %reason, "PostgreSQL holds users or settings this server cannot hold: keeping the last-known users");
            return;
        }
        if self.users.is_empty() {
            tracing::error!(
                version = self.version,
                "PostgreSQL holds no user: keeping the last-known users (an empty load never applies)"
            );
            return;
        }
        (inner.on_snapshot)(Snapshot {
            users: self.users.clone(),
            settings: self.settings,
            version: self.version,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_parse_or_force_a_read() {
        assert_eq!(hint_version("user:42"), 42);
        assert_eq!(hint_version("all:7"), 7);
        assert_eq!(hint_version("garbage"), u64::MAX);
    }

    #[test]
    fn settings_rows_round_trip() {
        let s = StoredSettings {
            sniffing: Some(true),
            cleanup: Some(false),
            buffer_size: Some(4096),
            selector_timeout: Some(3),
            connection_timeout: None,
        };
        let mut back = StoredSettings::default();
        for (k, v) in settings_rows(&s) {
            set_from_row(&mut back, k, v).unwrap();
        }
        assert_eq!(back, s);
        assert!(set_from_row(&mut back, "sniffing", Some(2)).is_err());
        assert!(set_from_row(&mut back, "selector_timeout", Some(300)).is_err());
    }

    #[test]
    fn bad_urls_are_refused_without_echo() {
        let e = parse_url("postgres://u:secretpw@host:notaport/db").unwrap_err();
        assert!(!e.contains("secretpw"), "{e}");
    }
}

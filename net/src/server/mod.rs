//! The server, written once for every runtime: the accept loops, the SOCKS and admin
//! connection drivers, the relay, housekeeping and shutdown, generic over [`Runtime`].
//!
//! Every protocol decision is made by the sans-IO sessions of `socks5d-core`; the drivers here
//! move bytes, time, I/O results and close requests between them and the sockets, following
//! the core's drain contract: after every `handle_*`, drain `poll_transmit` (write), then
//! `poll_event` (act), then read `poll_timeout`, then wait with [`race`](crate::runtime::race()):
//! close request first, deadline second, I/O last.
//!
//! Shutdown and limits follow mini-redis: one task per connection, a semaphore of permits per
//! listener, a channel whose senders the tasks hold (all dropped: all tasks ended), errors
//! logged rather than propagated.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_lock::Semaphore;
use bytes::Bytes;
use socks5d_core::admin::Framing;
use socks5d_core::guard::{AdmissionPool, LoginThrottle};
use socks5d_core::resolve::{CachePolicy, Lookup, ResolveCache};
use socks5d_core::state::{CloseCause, Connection, Mutation, Outcome, Secret, State};

use crate::metrics::{DnsLookup, Metrics};
use crate::policy::ServerPolicy;
use crate::runtime::{race, Raced, Resolving, Runtime, Socket};
use crate::{io as sio, listen, AdminTransport, LogSink, ServerOptions, StdoutSink};

mod admin;
mod socks;
mod udp;

pub use admin::serve_admin_connection;
pub use socks::serve_socks_connection;

/// What every connection task shares: the runtime, the administered state, the server
/// options and the log sink. Cheap to clone.
#[derive(Debug)]
pub struct Shared<R: Runtime> {
    /// The runtime everything runs on.
    pub rt: R,
    /// The administered model (users, settings, counters, live connections).
    pub state: Arc<State>,
    /// How to serve.
    pub options: Arc<ServerOptions>,
    /// Where access and credential lines go.
    pub log: Arc<dyn LogSink>,
    /// Admin connections that have not authenticated yet (the oldest is closed when full).
    pub admin_pool: Arc<AdmissionPool>,
    /// Permits of the authenticated admin sessions.
    pub admin_sessions: Arc<Semaphore>,
    /// Back-off after failed admin logins, per address.
    pub admin_throttle: Arc<LoginThrottle>,
    /// Back-off after failed SOCKS5 logins, per address and user name.
    pub socks_throttle: Arc<LoginThrottle>,
    /// Prometheus metrics, when served (`--metrics`).
    pub metrics: Option<Arc<Metrics>>,
    /// Checks a password against a stored hash (a PHC string), for users stored hashed; run
    /// on threads of their own at a low priority (nice 10: they take little of the CPU that
    /// the served connections want), at most [`Shared::verify_slots`] at once. Without one, hashed
    /// users cannot log in.
    pub verifier: Option<PasswordVerifier>,
    /// Cold password verifications running at once (argon2 costs milliseconds of CPU: a flood
    /// of wrong passwords must not take every core).
    pub verify_slots: Arc<Semaphore>,
    verify_threads: Arc<crate::verify::VerifyThreads>,
    verify_locks: Arc<[async_lock::Mutex<()>; VERIFY_SHARDS]>,
    verify_keys: std::collections::hash_map::RandomState,
    /// Where modifications are made durable before they are applied; none: in memory only.
    pub persist: Option<Arc<dyn Persist>>,
    /// Serialises the modifications (check, persist, apply is one step for each).
    pub writes: Arc<async_lock::Mutex<()>>,
    /// The operator's policy (rules, limits, egress, PROXY senders), replaced on reload.
    pub policy: Arc<ServerPolicy>,
    /// Recently resolved names ([`ServerOptions::dns_cache_ttl`]); none when it is zero.
    resolve_cache: Option<Arc<Mutex<ResolveCache>>>,
}

/// Makes the administrators' modifications durable (an embedded store, a database): called on
/// the blocking pool, before the modification is applied and answered.
pub trait Persist: Send + Sync + 'static {
    /// Turns a modification into the one to store and apply: an `AddUser` with a clear
    /// password becomes an `AddHashedUser` (hashing is slow: it runs before the write lock).
    ///
    /// # Errors
    ///
    /// If it cannot (the modification is then answered General Server Error).
    fn prepare(&self, m: Mutation) -> Result<Mutation, String> {
        Ok(m)
    }

    /// Makes `m` durable; returns only once it is.
    ///
    /// # Errors
    ///
    /// [`PersistError::Conflict`] when the durable store refuses `m` (another instance of a
    /// fleet added the name first: answered with that outcome), [`PersistError::Failed`] if
    /// it could not be stored (answered General Server Error). Nothing is applied in both.
    fn persist(&self, m: &Mutation) -> Result<(), PersistError>;
}

/// Why [`Persist::persist`] did not make a modification durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistError {
    /// The store holds something else than the live state (a fleet's shared database): the
    /// modification is answered with this outcome (for example [`Outcome::NameTaken`]).
    Conflict(Outcome),
    /// The store could not take it (answered General Server Error).
    Failed(String),
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conflict(o) => write!(f, "refused by the store: {o:?}"),
            Self::Failed(e) => f.write_str(e),
        }
    }
}

impl From<String> for PersistError {
    fn from(e: String) -> Self {
        Self::Failed(e)
    }
}

const VERIFY_SHARDS: usize = 64;

impl std::fmt::Debug for dyn Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Persist")
    }
}

/// Checks a password (second argument) against a PHC string (first argument).
#[derive(Clone)]
pub struct PasswordVerifier(Arc<CheckFn>);

/// `check(phc, password)`.
type CheckFn = dyn Fn(&[u8], &[u8]) -> bool + Send + Sync;

impl PasswordVerifier {
    /// Wraps `check(phc, password)`.
    pub fn new(check: impl Fn(&[u8], &[u8]) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(check))
    }
}

impl std::fmt::Debug for PasswordVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordVerifier")
    }
}

impl<R: Runtime> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Self {
            rt: self.rt.clone(),
            state: self.state.clone(),
            options: self.options.clone(),
            log: self.log.clone(),
            admin_pool: self.admin_pool.clone(),
            admin_sessions: self.admin_sessions.clone(),
            admin_throttle: self.admin_throttle.clone(),
            socks_throttle: self.socks_throttle.clone(),
            metrics: self.metrics.clone(),
            verifier: self.verifier.clone(),
            verify_slots: self.verify_slots.clone(),
            verify_threads: self.verify_threads.clone(),
            verify_locks: self.verify_locks.clone(),
            verify_keys: self.verify_keys.clone(),
            persist: self.persist.clone(),
            writes: self.writes.clone(),
            policy: self.policy.clone(),
            resolve_cache: self.resolve_cache.clone(),
        }
    }
}

impl<R: Runtime> Shared<R> {
    /// Bundles `state` and `options` on `rt`, logging to standard output through a writer
    /// thread ([`StdoutSink`]).
    pub fn new(rt: R, state: Arc<State>, options: ServerOptions) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let cache = CachePolicy::with_ttl(options.dns_cache_ttl);
        Self {
            resolve_cache: cache
                .is_enabled()
                .then(|| Arc::new(Mutex::new(ResolveCache::new(cache)))),
            rt,
            state,
            admin_pool: Arc::new(AdmissionPool::new(options.max_unauthenticated_admin)),
            admin_sessions: Arc::new(Semaphore::new(options.max_admin_connections.max(1))),
            admin_throttle: Arc::new(LoginThrottle::new(options.login_backoff)),
            socks_throttle: Arc::new(LoginThrottle::new(options.login_backoff)),
            options: Arc::new(options),
            log: Arc::new(StdoutSink::default()),
            metrics: None,
            verifier: None,
            verify_slots: Arc::new(Semaphore::new(cores)),
            verify_threads: Arc::new(crate::verify::VerifyThreads::new(cores)),
            verify_locks: Arc::new(std::array::from_fn(|_| async_lock::Mutex::new(()))),
            verify_keys: std::collections::hash_map::RandomState::new(),
            persist: None,
            writes: Arc::default(),
            policy: Arc::default(),
        }
    }

    /// Serves under `policy` (keep the `Arc` to [`ServerPolicy::apply`] a reload).
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<ServerPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Makes modifications durable with `persist` before applying them.
    #[must_use]
    pub fn with_persist(mut self, persist: Arc<dyn Persist>) -> Self {
        self.persist = Some(persist);
        self
    }

    /// Checks, persists and applies an administrator's modification, one at a time: the
    /// answer (`Applied` included) goes out only once the change is durable, and a change
    /// that could not be stored is `Failed` and leaves the live state unchanged.
    pub async fn modify(&self, actor: Option<Bytes>, m: Mutation) -> Outcome {
        let actor = actor.as_deref();
        let Some(p) = self.persist.clone() else {
            return self.state.apply(actor, &m);
        };
        let prepare = p.clone();
        let m = match self.rt.spawn_blocking(move || prepare.prepare(m)).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot prepare an admin change: answered 0xFF");
                return Outcome::Failed;
            }
        };
        let _one_at_a_time = self.writes.lock().await;
        let outcome = self.state.check(actor, &m);
        if outcome != Outcome::Applied {
            return outcome;
        }
        let stored = m.clone();
        match self.rt.spawn_blocking(move || p.persist(&stored)).await {
            Ok(()) => self.state.apply(actor, &m),
            Err(PersistError::Conflict(outcome)) => {
                tracing::info!(?outcome, "the store refused an admin change");
                outcome
            }
            Err(PersistError::Failed(e)) => {
                tracing::error!(error = %e, "cannot store an admin change: answered 0xFF, nothing changed");
                Outcome::Failed
            }
        }
    }

    /// Verifies hashed passwords with `verifier`.
    #[must_use]
    pub fn with_verifier(mut self, verifier: PasswordVerifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Verifies `password` against `phc` off the async workers, within the verification
    /// slots; `false` without a verifier.
    pub(crate) async fn verify(&self, user: Bytes, phc: Bytes, password: Secret) -> bool {
        let Some(v) = self.verifier.clone() else {
            tracing::warn!("a user is stored hashed but this server has no password verifier");
            return false;
        };
        // A warm password never waits: not for the lock below, which a cold verification of
        // another name in the same shard may hold for as long as the verification threads
        // are starved of CPU.
        if self.state.is_warm(&user, password.expose(), &phc) {
            return true;
        }
        // One verification per user at a time: a crowd of first logins of one user waits for
        // the first, whose success warms the cache for the others.
        let shard = {
            use std::hash::BuildHasher;
            (self.verify_keys.hash_one(&user) % VERIFY_SHARDS as u64) as usize
        };
        let _same_user = self.verify_locks[shard].lock().await;
        if self.state.is_warm(&user, password.expose(), &phc) {
            return true;
        }
        let _slot = self.verify_slots.acquire().await;
        self.verify_threads
            .run(move || (v.0)(&phc, password.expose()))
            .await
            .unwrap_or(false)
    }

    /// Resolves `host` to addresses with `port`: from the cache while its answer (or failure)
    /// is fresh, otherwise with the runtime's resolver, whose answer is then kept. The
    /// addresses are a copy: the caller may filter them.
    pub(crate) fn resolve(&self, host: String, port: u16) -> Resolving {
        let Some(cache) = &self.resolve_cache else {
            self.count_lookup(DnsLookup::Miss);
            return self.rt.resolve(host, port);
        };
        let now = self.rt.now();
        let cached: Option<Result<Vec<SocketAddr>, io::ErrorKind>> = match cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lookup(now, host.as_bytes())
        {
            Lookup::Hit(ips) => Some(Ok(ips
                .iter()
                .map(|&ip| SocketAddr::new(ip, port))
                .collect())),
            Lookup::Failed(kind) => Some(Err(kind)),
            Lookup::Miss => None,
        };
        match cached {
            Some(Ok(addrs)) => {
                // An answer with no address was kept as a failure is (for the negative TTL).
                self.count_lookup(if addrs.is_empty() {
                    DnsLookup::NegativeHit
                } else {
                    DnsLookup::Hit
                });
                Box::pin(std::future::ready(Ok(addrs)))
            }
            Some(Err(kind)) => {
                self.count_lookup(DnsLookup::NegativeHit);
                Box::pin(std::future::ready(Err(io::Error::new(
                    kind,
                    format!("resolving {host:?} failed a moment ago (cached failure)"),
                ))))
            }
            None => {
                self.count_lookup(DnsLookup::Miss);
                let lookup = self.rt.resolve(host.clone(), port);
                let (cache, rt) = (cache.clone(), self.rt.clone());
                Box::pin(async move {
                    let r = lookup.await;
                    let mut c = cache.lock().unwrap_or_else(PoisonError::into_inner);
                    match &r {
                        Ok(addrs) => {
                            c.insert(rt.now(), host.as_bytes(), addrs.iter().map(SocketAddr::ip))
                        }
                        Err(e) => c.insert_failure(rt.now(), host.as_bytes(), e.kind()),
                    }
                    r
                })
            }
        }
    }

    fn count_lookup(&self, result: DnsLookup) {
        if let Some(m) = &self.metrics {
            m.dns_lookup(result);
        }
    }

    /// Counts into `metrics` (served by [`crate::metrics::serve_metrics`]).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Replaces the log sink.
    #[must_use]
    pub fn with_log(mut self, log: Arc<dyn LogSink>) -> Self {
        self.log = log;
        self
    }
}

/// A listening socket (TCP, or SCTP for the admin service) on a runtime.
#[derive(Debug)]
pub struct Listener<R: Runtime> {
    socket: R::Socket,
}

impl<R: Runtime> Listener<R> {
    /// Binds a TCP listener on `addr` (see [`listen::bind_tcp`]).
    ///
    /// # Errors
    ///
    /// Any bind error.
    pub fn bind(rt: &R, addr: SocketAddr) -> io::Result<Self> {
        Self::from_socket(rt, listen::bind_tcp(addr)?)
    }

    /// Adopts a bound, listening socket.
    ///
    /// # Errors
    ///
    /// If it cannot be made non-blocking or registered.
    pub fn from_socket(rt: &R, socket: socket2::Socket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket: rt.register(socket)?,
        })
    }

    /// Returns the bound address.
    ///
    /// # Errors
    ///
    /// The error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        listen::local_addr(self.socket.get())
    }

    /// Accepts one connection. Cancel-safe.
    ///
    /// # Errors
    ///
    /// The error of `accept`.
    pub async fn accept(&self) -> io::Result<(socket2::Socket, SocketAddr)> {
        sio::accept(&self.socket).await
    }
}

/// The admin listener: SCTP (message framing) or TCP (byte stream).
#[derive(Debug)]
pub struct AdminListener<R: Runtime> {
    listener: Listener<R>,
    transport: AdminTransport,
}

impl<R: Runtime> AdminListener<R> {
    /// Binds the admin listener on `addr` (see [`listen::bind_admin`] for `transport`).
    ///
    /// # Errors
    ///
    /// Any bind error; with [`AdminTransport::Sctp`], the kernel having no SCTP.
    pub fn bind(rt: &R, addr: SocketAddr, transport: AdminTransport) -> io::Result<Self> {
        let (socket, transport) = listen::bind_admin(addr, transport)?;
        Ok(Self {
            listener: Listener::from_socket(rt, socket)?,
            transport,
        })
    }

    /// Returns the bound address.
    ///
    /// # Errors
    ///
    /// The error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Returns the transport in use (`Tcp` or `Sctp`).
    pub fn transport(&self) -> AdminTransport {
        self.transport
    }

    fn framing(&self) -> Framing {
        match self.transport {
            AdminTransport::Sctp => Framing::Message,
            AdminTransport::Tcp | AdminTransport::Auto => Framing::Stream,
        }
    }
}

/// The two listeners of a server.
#[derive(Debug)]
pub struct Listeners<R: Runtime> {
    /// SOCKS5 over TCP.
    pub socks: Listener<R>,
    /// The admin protocol.
    pub admin: AdminListener<R>,
}

impl<R: Runtime> Listeners<R> {
    /// Binds the SOCKS listener on `socks` and the admin listener on `admin`.
    ///
    /// # Errors
    ///
    /// Any bind error; with [`AdminTransport::Sctp`], the kernel having no SCTP.
    pub fn bind(
        rt: &R,
        socks: SocketAddr,
        admin: SocketAddr,
        transport: AdminTransport,
    ) -> io::Result<Self> {
        Ok(Self {
            socks: Listener::bind(rt, socks)?,
            admin: AdminListener::bind(rt, admin, transport)?,
        })
    }
}

/// Serves both listeners and runs the housekeeping task until `shutdown` completes; then
/// stops accepting, asks every connection to close ([`State::close_all`]) and waits up to
/// `options.shutdown_grace` for them.
pub async fn run<R: Runtime>(
    listeners: Listeners<R>,
    shared: Shared<R>,
    shutdown: impl Future<Output = ()>,
) {
    run_rebindable(listeners, shared, shutdown, Rebind::default()).await;
}

/// Where a running server gets replacement listeners (a configuration reload that changed an
/// address): each one received replaces the listener of its kind, which is closed; the
/// connections it accepted are kept. `None`: never replaced.
#[derive(Debug)]
pub struct Rebind<R: Runtime> {
    /// New SOCKS listeners.
    pub socks: Option<async_channel::Receiver<Listener<R>>>,
    /// New admin listeners.
    pub admin: Option<async_channel::Receiver<AdminListener<R>>>,
}

impl<R: Runtime> Default for Rebind<R> {
    fn default() -> Self {
        Self {
            socks: None,
            admin: None,
        }
    }
}

/// What an accept loop saw first.
enum Accepted<T, L> {
    Conn(io::Result<T>),
    Swap(L),
}

/// Waits for a connection on `accept` or a replacement listener on `swap`.
async fn accept_or_swap<T, L>(
    accept: impl Future<Output = io::Result<T>>,
    swap: Option<&async_channel::Receiver<L>>,
) -> Accepted<T, L> {
    futures_lite::future::or(async { Accepted::Conn(accept.await) }, async {
        match swap {
            Some(rx) => match rx.recv().await {
                Ok(l) => Accepted::Swap(l),
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    })
    .await
}

/// As [`run`], with listeners replaced live from `rebind`.
pub async fn run_rebindable<R: Runtime>(
    listeners: Listeners<R>,
    shared: Shared<R>,
    shutdown: impl Future<Output = ()>,
    rebind: Rebind<R>,
) {
    // Closed (all senders dropped) on shutdown; every waiter sees it.
    let (tx, rx) = async_channel::bounded::<()>(1);
    let signal = |rx: async_channel::Receiver<()>| async move {
        let _ = rx.recv().await;
    };
    let socks = serve_socks_rebindable(
        listeners.socks,
        shared.clone(),
        signal(rx.clone()),
        rebind.socks,
    );
    let admin = serve_admin_rebindable(
        listeners.admin,
        shared.clone(),
        signal(rx.clone()),
        rebind.admin,
    );
    let house = housekeeping(shared, signal(rx));
    let notify = async move {
        shutdown.await;
        tracing::info!("shutting down");
        drop(tx);
    };
    let (((), ()), ((), ())) = futures_lite::future::zip(
        futures_lite::future::zip(socks, admin),
        futures_lite::future::zip(house, notify),
    )
    .await;
}

/// Tracks a listener's connection tasks (mini-redis's `shutdown_complete` channel): every
/// task holds a sender; all senders dropped means all tasks ended.
struct Tasks {
    tx: Option<async_channel::Sender<()>>,
    rx: async_channel::Receiver<()>,
}

impl Tasks {
    fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Self { tx: Some(tx), rx }
    }

    fn token(&self) -> Option<async_channel::Sender<()>> {
        self.tx.clone()
    }

    async fn wait<R: Runtime>(mut self, rt: &R, state: &State, grace: Duration, what: &str) {
        state.close_all();
        self.tx = None;
        let until = rt.now() + grace;
        match race(
            rt,
            std::future::pending::<()>(),
            Some(until),
            self.rx.recv(),
        )
        .await
        {
            Raced::Deadline => {
                tracing::warn!("some {what} connections did not close within {grace:?}");
            }
            _ => tracing::debug!("{what} listener stopped; its connections are closed"),
        }
    }
}

/// Handles an `accept` error: logs it and, when descriptors or memory ran out, backs off
/// for a moment so the loop does not spin.
async fn accept_failed<R: Runtime>(rt: &R, e: &io::Error, what: &str) {
    if let Some(pause) = crate::sys::accept_backoff(e, what) {
        rt.sleep_until(rt.now() + pause).await;
    }
}

/// Waits until the shared state asks `conn` to close.
pub(crate) fn closed(conn: &Connection) -> impl Future<Output = CloseCause> + '_ {
    poll_fn(|cx| conn.poll_closed(cx))
}

/// Accepts SOCKS5 clients on `listener` until `shutdown` completes, one task each, at most
/// `options.max_connections` at once. On shutdown, asks every connection of the state to
/// close and waits up to `options.shutdown_grace`.
pub async fn serve_socks<R: Runtime>(
    listener: Listener<R>,
    shared: Shared<R>,
    shutdown: impl Future<Output = ()>,
) {
    serve_socks_rebindable(listener, shared, shutdown, None).await;
}

/// As [`serve_socks`], taking each listener `swap` sends in place of the current one.
pub async fn serve_socks_rebindable<R: Runtime>(
    mut listener: Listener<R>,
    shared: Shared<R>,
    shutdown: impl Future<Output = ()>,
    swap: Option<async_channel::Receiver<Listener<R>>>,
) {
    let rt = shared.rt.clone();
    let limit = Arc::new(Semaphore::new(shared.options.max_connections.max(1)));
    let tasks = Tasks::new();
    // One pointer per connection task instead of a copy of the handles (160 bytes and a
    // dozen reference counts touched per accept).
    let shared = Arc::new(shared);
    let mut shutdown = pin!(shutdown);
    loop {
        let acquired = race(&rt, shutdown.as_mut(), None, limit.acquire_arc()).await;
        let Raced::Io(permit) = acquired else { break };
        let accepted = accept_or_swap(listener.accept(), swap.as_ref());
        let (socket, peer) = match race(&rt, shutdown.as_mut(), None, accepted).await {
            Raced::Io(Accepted::Conn(Ok(x))) => x,
            Raced::Io(Accepted::Conn(Err(e))) => {
                accept_failed(&rt, &e, "SOCKS").await;
                continue;
            }
            Raced::Io(Accepted::Swap(l)) => {
                tracing::info!(
                    old = ?listener.local_addr().ok(),
                    new = ?l.local_addr().ok(),
                    "SOCKS listener replaced"
                );
                listener = l;
                continue;
            }
            _ => break,
        };
        let shared = shared.clone();
        let token = tasks.token();
        rt.spawn(async move {
            let _permit = permit;
            let _token = token;
            let _ = socket.set_tcp_nodelay(true);
            let client = match shared.rt.register(socket) {
                Ok(c) => c,
                Err(e) => return tracing::debug!(%peer, error = %e, "cannot register"),
            };
            if let Err(e) = serve_socks_connection(&shared, client, peer).await {
                tracing::debug!(%peer, error = %e, "SOCKS connection ended with an error");
            }
        });
    }
    drop(listener);
    tasks
        .wait(&rt, &shared.state, shared.options.shutdown_grace, "SOCKS")
        .await;
}

/// Accepts administrators on `listener` until `shutdown` completes, one task each: at most
/// `options.max_unauthenticated_admin` that have not logged in (the oldest of them is closed
/// to make room) and `options.max_admin_connections` sessions. On shutdown, as
/// [`serve_socks`].
pub async fn serve_admin<R: Runtime>(
    listener: AdminListener<R>,
    shared: Shared<R>,
    shutdown: impl Future<Output = ()>,
) {
    serve_admin_rebindable(listener, shared, shutdown, None).await;
}

/// As [`serve_admin`], taking each listener `swap` sends in place of the current one.
pub async fn serve_admin_rebindable<R: Runtime>(
    mut listener: AdminListener<R>,
    shared: Shared<R>,
    shutdown: impl Future<Output = ()>,
    swap: Option<async_channel::Receiver<AdminListener<R>>>,
) {
    let rt = shared.rt.clone();
    let mut framing = listener.framing();
    let tasks = Tasks::new();
    let mut shutdown = pin!(shutdown);
    // No permit before `accept`: a connection is admitted into the unauthenticated pool
    // (which closes its oldest member when full) and takes an authenticated permit only once
    // it logged in, so connections that never log in cannot hold administrators out.
    loop {
        let accepted = accept_or_swap(listener.listener.accept(), swap.as_ref());
        let (socket, peer) = match race(&rt, shutdown.as_mut(), None, accepted).await {
            Raced::Io(Accepted::Conn(Ok(x))) => x,
            Raced::Io(Accepted::Conn(Err(e))) => {
                accept_failed(&rt, &e, "admin").await;
                continue;
            }
            Raced::Io(Accepted::Swap(l)) => {
                tracing::info!(
                    old = ?listener.local_addr().ok(),
                    new = ?l.local_addr().ok(),
                    "admin listener replaced"
                );
                listener = l;
                framing = listener.framing();
                continue;
            }
            _ => break,
        };
        let ticket = admin::admit(&shared, peer);
        let shared = shared.clone();
        let token = tasks.token();
        rt.spawn(async move {
            let _token = token;
            if framing == Framing::Stream {
                let _ = socket.set_tcp_nodelay(true);
            }
            let io = match shared.rt.register(socket) {
                Ok(c) => c,
                Err(e) => return tracing::debug!(%peer, error = %e, "cannot register"),
            };
            tracing::debug!(%peer, "admin connection");
            if let Err(e) = admin::serve_admitted(&shared, io, peer, framing, ticket).await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    tasks
        .wait(&rt, &shared.state, shared.options.shutdown_grace, "admin")
        .await;
}

/// Runs the clean-up routine ([`State::sweep`]) every `selector_timeout` seconds (read anew
/// each period, so an administrator's change applies from the next period) until `shutdown`
/// completes. On the same tick (every `half_close_timeout` if that is shorter) it closes the
/// half-closed relays gone silent ([`State::sweep_half_closed`]): a server that runs
/// [`serve_socks`] without it keeps those open.
pub async fn housekeeping<R: Runtime>(shared: Shared<R>, shutdown: impl Future<Output = ()>) {
    let rt = &shared.rt;
    let mut shutdown = pin!(shutdown);
    let mut reported_drops = 0;
    let half_close = shared.options.half_close_timeout;
    loop {
        // The clean-up period, or the half-close timeout if that is shorter: a silent
        // half-closed relay is closed within one tick after its timeout.
        let period = Duration::from_secs(u64::from(shared.state.settings().selector_timeout()))
            .min(half_close)
            .max(Duration::from_secs(1));
        let next = rt.now() + period;
        let pending = std::future::pending::<()>();
        match race(rt, shutdown.as_mut(), Some(next), pending).await {
            Raced::Deadline => {
                let now = rt.now();
                if let Some(m) = &shared.metrics {
                    let dropped = shared.log.dropped();
                    m.log_lines_dropped(dropped.saturating_sub(reported_drops));
                    reported_drops = dropped;
                }
                shared.admin_throttle.sweep(now);
                shared.socks_throttle.sweep(now);
                let n = shared.state.sweep(now);
                if n > 0 {
                    tracing::debug!(closed = n, "clean-up: closing idle connections");
                }
                let n = shared.state.sweep_half_closed(now, half_close);
                if n > 0 {
                    tracing::debug!(closed = n, "closing half-closed relays gone silent");
                }
            }
            _ => return,
        }
    }
}

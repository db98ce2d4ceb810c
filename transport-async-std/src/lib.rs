//! socks5d on async-std: serves SOCKS5 clients over TCP and administrators over SCTP (or TCP)
//! on one shared [`State`], plus the housekeeping task that runs the clean-up routine.
//!
//! This crate is thin: every protocol decision is made by the sans-IO sessions of
//! `socks5d-core`, and the socket set-up that does not depend on the runtime lives in
//! `socks5d-net`. What is here moves bytes, time and close signals between them and the
//! smol family of crates that async-std itself runs on: `async-io` (the reactor, timers and
//! the SCTP sockets), `async-net` (TCP, name resolution off the executor) and `futures-lite`.
//! It is a line-for-line counterpart of `socks5d-tokio` (async-std was discontinued in 2025;
//! this crate does not depend on it beyond [`Shared::new`]).
//!
//! # Running a server
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! use socks5d_async_std::{run, Listeners, Shared};
//! use socks5d_core::state::{Config, State};
//! use socks5d_net::ServerOptions;
//!
//! # fn main() -> std::io::Result<()> {
//! async_std::task::block_on(async {
//!     let state = Arc::new(State::new(Instant::now(), &Config::default()));
//!     // Add users with `state.apply(None, &Mutation::AddUser { .. })`.
//!     let options = ServerOptions::default();
//!     let listeners = Listeners::bind(
//!         "127.0.0.1:1080".parse().unwrap(),
//!         "127.0.0.1:8080".parse().unwrap(),
//!         options.admin_transport,
//!     )?;
//!     // Connection tasks go to `async_std::task::spawn`.
//!     let shared = Shared::new(state, options);
//!     // Serves until the future completes (here: one hour), then closes every connection.
//!     run(listeners, shared, async {
//!         async_io::Timer::after(std::time::Duration::from_secs(3600)).await;
//!     })
//!     .await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Embedding in a smol program
//!
//! Nothing here needs async-std's executor: sockets and timers are `async-io`'s, which any
//! executor can poll. Build the crate with `default-features = false` (no async-std at all)
//! and hand [`Shared::with_spawner`] your executor's spawn, e.g.
//! `|task| smol::spawn(task).detach()`, or with an `async_executor::Executor`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! use socks5d_async_std::{run, Listeners, Shared};
//! use socks5d_core::state::{Config, State};
//! use socks5d_net::ServerOptions;
//!
//! # fn main() -> std::io::Result<()> {
//! let ex = Arc::new(async_executor::Executor::new());
//! let state = Arc::new(State::new(Instant::now(), &Config::default()));
//! let options = ServerOptions::default();
//! let listeners = Listeners::bind(
//!     "127.0.0.1:1080".parse().unwrap(),
//!     "127.0.0.1:8080".parse().unwrap(),
//!     options.admin_transport,
//! )?;
//! let spawner = ex.clone();
//! let shared = Shared::with_spawner(state, options, move |task| spawner.spawn(task).detach());
//! async_io::block_on(ex.run(run(listeners, shared, std::future::pending())));
//! # Ok(())
//! # }
//! ```
//!
//! [`run`] is [`serve_socks`], [`serve_admin`] and [`housekeeping`] joined on one shutdown
//! signal; embedders may call those separately. A single connection on any byte stream can
//! be served with [`serve_socks_connection`] / [`serve_admin_connection`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel as mpsc;
use async_io::Timer;
use async_lock::Semaphore;
use async_net::{TcpListener, TcpStream};
use futures_lite::future;
use socks5d_core::state::State;
use socks5d_net::{AdminTransport, LogSink, ServerOptions, StdoutSink};

mod driver;
mod relay;
pub mod sctp;

pub use driver::{serve_admin_connection, serve_socks_connection, AdminIo};
pub use sctp::{SctpListener, SctpStream};

/// Returns the current time as the core wants it.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Sleeps for `d`.
pub(crate) async fn sleep(d: Duration) {
    Timer::after(d).await;
}

/// Awaits `f` for at most `d`; `TimedOut` after that.
pub(crate) async fn timeout<F: Future>(d: Duration, f: F) -> io::Result<F::Output> {
    future::or(async { Ok(f.await) }, async {
        sleep(d).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}

/// Awaits `f` unless `shutdown` completes first (`None` then). `shutdown` is polled first,
/// so a busy listener cannot starve it.
async fn until<F: Future>(shutdown: Pin<&mut impl Future<Output = ()>>, f: F) -> Option<F::Output> {
    future::or(
        async {
            shutdown.await;
            None
        },
        async { Some(f.await) },
    )
    .await
}

/// A connection task, as handed to a [`Shared`]'s spawner.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What every connection task shares: the administered state, the server options, the
/// log sink, and how to spawn a task. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    /// The administered model (users, settings, counters, live connections).
    pub state: Arc<State>,
    /// How to serve.
    pub options: Arc<ServerOptions>,
    /// Where access and credential lines go.
    pub log: Arc<dyn LogSink>,
    /// Runs a connection task in the background, detached.
    spawner: Arc<dyn Fn(Task) + Send + Sync>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Bundles `state` and `options`, logging to standard output ([`StdoutSink`]) and
    /// spawning connection tasks with `async_std::task::spawn`.
    #[cfg(feature = "async-std")]
    pub fn new(state: Arc<State>, options: ServerOptions) -> Self {
        Self::with_spawner(state, options, |task| {
            // Dropping async-std's JoinHandle detaches the task.
            drop(async_std::task::spawn(task));
        })
    }

    /// As [`Shared::new`], with `spawn` running each connection task (detached) on the
    /// executor of your choice.
    pub fn with_spawner(
        state: Arc<State>,
        options: ServerOptions,
        spawn: impl Fn(Task) + Send + Sync + 'static,
    ) -> Self {
        Self {
            state,
            options: Arc::new(options),
            log: Arc::new(StdoutSink),
            spawner: Arc::new(spawn),
        }
    }

    /// Replaces the log sink.
    #[must_use]
    pub fn with_log(mut self, log: Arc<dyn LogSink>) -> Self {
        self.log = log;
        self
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        (self.spawner)(Box::pin(task));
    }
}

/// The admin listener: SCTP or TCP.
#[derive(Debug)]
pub enum AdminListener {
    /// TCP (byte stream framing).
    Tcp(TcpListener),
    /// SCTP (message framing).
    Sctp(SctpListener),
}

impl AdminListener {
    /// Adopts a listener bound by `socks5d_net::bind_admin`.
    ///
    /// # Errors
    ///
    /// If the socket cannot be registered with the reactor.
    pub fn from_net(l: socks5d_net::AdminListener) -> io::Result<Self> {
        match l {
            socks5d_net::AdminListener::Tcp(l) => TcpListener::try_from(l).map(Self::Tcp),
            socks5d_net::AdminListener::Sctp(s) => SctpListener::from_socket(s).map(Self::Sctp),
        }
    }

    /// Returns the bound address.
    ///
    /// # Errors
    ///
    /// The error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr(),
            Self::Sctp(l) => l.local_addr(),
        }
    }

    /// Returns the transport in use (`Tcp` or `Sctp`).
    pub fn transport(&self) -> AdminTransport {
        match self {
            Self::Tcp(_) => AdminTransport::Tcp,
            Self::Sctp(_) => AdminTransport::Sctp,
        }
    }
}

/// The two listeners of a server.
#[derive(Debug)]
pub struct Listeners {
    /// SOCKS5 over TCP.
    pub socks: TcpListener,
    /// The admin protocol.
    pub admin: AdminListener,
}

impl Listeners {
    /// Binds the SOCKS listener on `socks` and the admin listener on `admin` (see
    /// `socks5d_net::bind_admin` for `transport`).
    ///
    /// # Errors
    ///
    /// Any bind error; with [`AdminTransport::Sctp`], the kernel having no SCTP.
    pub fn bind(
        socks: SocketAddr,
        admin: SocketAddr,
        transport: AdminTransport,
    ) -> io::Result<Self> {
        let socks = TcpListener::try_from(socks5d_net::bind_tcp(socks)?)?;
        let admin = AdminListener::from_net(socks5d_net::bind_admin(admin, transport)?)?;
        Ok(Self { socks, admin })
    }
}

/// Serves both listeners and runs the housekeeping task until `shutdown` completes; then
/// stops accepting, asks every connection to close ([`State::close_all`]) and waits up to
/// `options.shutdown_grace` for them.
pub async fn run(listeners: Listeners, shared: Shared, shutdown: impl Future<Output = ()>) {
    let (tx, rx) = mpsc::bounded::<()>(1);
    let signal = |rx: mpsc::Receiver<()>| async move {
        // Resolves when the sender is dropped: on the shutdown notice, or if `run` itself is.
        let _ = rx.recv().await;
    };
    let socks = serve_socks(listeners.socks, shared.clone(), signal(rx.clone()));
    let admin = serve_admin(listeners.admin, shared.clone(), signal(rx.clone()));
    let house = housekeeping(shared.state.clone(), signal(rx));
    let notify = async move {
        shutdown.await;
        tracing::info!("shutting down");
        drop(tx);
    };
    future::zip(future::zip(socks, admin), future::zip(house, notify)).await;
}

/// Tracks a listener's connection tasks (mini-redis's `shutdown_complete` channel): every
/// task holds a sender; all senders dropped means all tasks ended.
struct Tasks {
    tx: Option<mpsc::Sender<()>>,
    rx: mpsc::Receiver<()>,
}

impl Tasks {
    fn new() -> Self {
        let (tx, rx) = mpsc::bounded(1);
        Self { tx: Some(tx), rx }
    }

    fn token(&self) -> Option<mpsc::Sender<()>> {
        self.tx.clone()
    }

    async fn wait(mut self, state: &State, grace: Duration, what: &str) {
        state.close_all();
        self.tx = None;
        if timeout(grace, self.rx.recv()).await.is_err() {
            tracing::warn!("some {what} connections did not close within {grace:?}");
        } else {
            tracing::debug!("{what} listener stopped; its connections are closed");
        }
    }
}

/// Handles an `accept` error: logs it and, when descriptors or memory ran out, backs off
/// for a moment so the loop does not spin.
async fn accept_failed(e: &io::Error, what: &str) {
    if let Some(pause) = socks5d_net::sys::accept_backoff(e, what) {
        sleep(pause).await;
    }
}

/// Accepts SOCKS5 clients on `listener` until `shutdown` completes, one task each, at most
/// `options.max_connections` at once. On shutdown, asks every connection of the state to
/// close and waits up to `options.shutdown_grace`.
pub async fn serve_socks(
    listener: TcpListener,
    shared: Shared,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(shared.options.max_connections.max(1)));
    let tasks = Tasks::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let Some(permit) = until(shutdown.as_mut(), limit.acquire_arc()).await else {
            break;
        };
        let Some(accepted) = until(shutdown.as_mut(), listener.accept()).await else {
            break;
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                accept_failed(&e, "SOCKS").await;
                continue;
            }
        };
        let shared2 = shared.clone();
        let token = tasks.token();
        shared.spawn(async move {
            let _permit = permit;
            let _token = token;
            let _ = stream.set_nodelay(true);
            if let Err(e) = serve_socks_connection::<TcpStream>(stream, peer, &shared2).await {
                tracing::debug!(%peer, error = %e, "SOCKS connection ended with an error");
            }
        });
    }
    drop(listener);
    tasks
        .wait(&shared.state, shared.options.shutdown_grace, "SOCKS")
        .await;
}

/// Accepts administrators on `listener` until `shutdown` completes, one task each, at most
/// `options.max_admin_connections` at once. On shutdown, as [`serve_socks`].
pub async fn serve_admin(
    listener: AdminListener,
    shared: Shared,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(shared.options.max_admin_connections.max(1)));
    let tasks = Tasks::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let Some(permit) = until(shutdown.as_mut(), limit.acquire_arc()).await else {
            break;
        };
        let Some(accepted) = until(shutdown.as_mut(), accept_admin(&listener)).await else {
            break;
        };
        let (io, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                accept_failed(&e, "admin").await;
                continue;
            }
        };
        let shared2 = shared.clone();
        let token = tasks.token();
        shared.spawn(async move {
            let _permit = permit;
            let _token = token;
            tracing::debug!(%peer, "admin connection");
            if let Err(e) = serve_admin_connection(io, peer, &shared2).await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    tasks
        .wait(&shared.state, shared.options.shutdown_grace, "admin")
        .await;
}

async fn accept_admin(l: &AdminListener) -> io::Result<(AdminIo<TcpStream>, SocketAddr)> {
    match l {
        AdminListener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((AdminIo::Stream(s), peer))
        }
        AdminListener::Sctp(l) => {
            let (s, peer) = l.accept().await?;
            Ok((AdminIo::Sctp(s), peer))
        }
    }
}

/// Runs the clean-up routine ([`State::sweep`]) every `selector_timeout` seconds (read
/// anew each period, so an administrator's change applies from the next period) until
/// `shutdown` completes.
pub async fn housekeeping(state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let period = Duration::from_secs(u64::from(state.settings().selector_timeout().max(1)));
        if until(shutdown.as_mut(), sleep(period)).await.is_none() {
            return;
        }
        let n = state.sweep(now());
        if n > 0 {
            tracing::debug!(closed = n, "clean-up: closing idle connections");
        }
    }
}

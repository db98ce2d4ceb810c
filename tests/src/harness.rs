//! Starts an in-process socks5d on a background thread, on loopback ports chosen by the
//! kernel, with the runtime under test. Scenarios take a [`Runtime`] so each is written once.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use socks5d_core::state::{Config, Mutation, Outcome, Privilege, State};
use socks5d_net::policy::ServerPolicy;
use socks5d_net::{AdminTransport, Listeners, LogSink, ServerOptions, Shared};

/// The transport runtimes a scenario can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `socks5d-tokio` on a multi-threaded tokio runtime.
    Tokio,
    /// `socks5d-async-std`'s default: the smol family, tasks on an `async_executor`.
    Smol,
    /// `socks5d-async-std` with its `async-std` feature: tasks on async-std's executor.
    AsyncStd,
}

impl Runtime {
    /// Every runtime, for loops that instantiate scenarios.
    pub const ALL: &'static [Self] = &[Self::Tokio, Self::Smol, Self::AsyncStd];
}

/// Collects log lines in memory.
#[derive(Debug, Default)]
pub struct MemoryLog {
    access: Mutex<Vec<String>>,
    credentials: Mutex<Vec<String>>,
}

impl MemoryLog {
    /// Returns the access lines so far.
    pub fn access(&self) -> Vec<String> {
        self.access
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Returns the credential lines so far.
    pub fn credentials(&self) -> Vec<String> {
        self.credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl LogSink for MemoryLog {
    fn access(&self, line: &str) {
        self.access
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line.to_owned());
    }

    fn credential(&self, line: &str) {
        self.credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line.to_owned());
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Initial settings.
    pub config: Config,
    /// Server options (`admin_transport` picks the admin listener).
    pub options: ServerOptions,
    /// Users to add before serving: name, password, privilege.
    pub users: Vec<(&'static str, &'static str, Privilege)>,
    /// Bind the SOCKS listener here (port 0 for any).
    pub socks_addr: SocketAddr,
    /// The operator's policy (rules, limits, egress); keep a clone to change it live.
    pub policy: Arc<ServerPolicy>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            config: Config::default(),
            options: ServerOptions {
                admin_transport: AdminTransport::Tcp,
                shutdown_grace: Duration::from_secs(1),
                ..ServerOptions::default()
            },
            users: vec![
                ("admin", "adminpw", Privilege::Admin),
                ("alice", "secret", Privilege::User),
            ],
            socks_addr: "127.0.0.1:0".parse().expect("literal"),
            policy: Arc::default(),
        }
    }
}

/// A running server. Dropping it shuts it down and waits for its thread.
#[derive(Debug)]
pub struct TestServer {
    /// The SOCKS listener's address.
    pub socks: SocketAddr,
    /// The admin listener's address.
    pub admin: SocketAddr,
    /// The admin transport in use (`Tcp` or `Sctp`).
    pub admin_transport: AdminTransport,
    /// The shared state the server administers.
    pub state: Arc<State>,
    /// Access and credential lines written by the server.
    pub log: Arc<MemoryLog>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with `setup` on `runtime`.
    ///
    /// # Panics
    ///
    /// If a user cannot be added or a listener cannot be bound (the error is in the message).
    pub fn start(runtime: Runtime, setup: Setup) -> Self {
        let state = Arc::new(State::new(Instant::now(), &setup.config));
        for (name, password, privilege) in &setup.users {
            let m = Mutation::AddUser {
                name: Bytes::from_static(name.as_bytes()),
                password: Bytes::from_static(password.as_bytes()).into(),
                privilege: *privilege,
            };
            assert_eq!(state.apply(None, &m), Outcome::Applied, "adding {name}");
        }
        let log = Arc::new(MemoryLog::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let name = match runtime {
            Runtime::Tokio => "socks5d-tokio",
            Runtime::Smol => "socks5d-smol",
            Runtime::AsyncStd => "socks5d-async-std",
        };
        let thread = {
            let state = state.clone();
            let log: Arc<dyn LogSink> = log.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || launch(runtime, setup, state, log, stop_rx, ready_tx))
                .expect("spawn server thread")
        };
        let (socks, admin, admin_transport) = match ready_rx.recv() {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => panic!("server did not start: {e}"),
            Err(_) => panic!("server thread died before starting"),
        };
        Self {
            socks,
            admin,
            admin_transport,
            state,
            log,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Shuts the server down (as SIGTERM would) and waits for it to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Where a server thread reports its bound addresses (or why it could not bind).
type Ready = mpsc::Sender<Result<(SocketAddr, SocketAddr, AdminTransport), String>>;
/// Completes when the test asks the server to stop (runtime-neutral).
type Stop = tokio::sync::oneshot::Receiver<()>;

/// Runs a server on `runtime` until `stop` completes: the one runtime-specific line is how
/// to start the runtime; serving is [`serve`], the same for all.
fn launch(
    runtime: Runtime,
    setup: Setup,
    state: Arc<State>,
    log: Arc<dyn LogSink>,
    stop: Stop,
    ready: Ready,
) {
    let failed = ready.clone();
    let (a, b, c, d, e) = (setup, state, log, stop, ready);
    match runtime {
        Runtime::Tokio => {
            // As `socks5d` runs: the accept loops on the workers.
            let main = |rt| serve(rt, a, b, c, d, e);
            if let Err(err) = socks5d_tokio::block_on_workers(Some(2), main) {
                let _ = failed.send(Err(err.to_string()));
            }
        }
        Runtime::Smol => socks5d_async_std::block_on_smol(Some(2), |rt| serve(rt, a, b, c, d, e)),
        Runtime::AsyncStd => socks5d_async_std::block_on_async_std(|rt| serve(rt, a, b, c, d, e)),
    }
}

/// Binds the listeners on `rt`, reports their addresses, and serves until `stop` completes.
/// Not an `async fn`, so that the future is declared `Send`: rustc cannot prove it for a
/// concrete runtime's futures (rust-lang/rust#130113), and `block_on_workers` spawns it.
#[allow(clippy::manual_async_fn)] // an `async fn` could not say `Send`
fn serve<R: socks5d_net::Runtime>(
    rt: R,
    setup: Setup,
    state: Arc<State>,
    log: Arc<dyn LogSink>,
    stop: Stop,
    ready: Ready,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        let admin_addr = SocketAddr::new(setup.socks_addr.ip(), 0);
        let transport = setup.options.admin_transport;
        let listeners = match Listeners::bind(&rt, setup.socks_addr, admin_addr, transport) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let addrs = (|| {
            Ok::<_, std::io::Error>((
                listeners.socks.local_addr()?,
                listeners.admin.local_addr()?,
                listeners.admin.transport(),
            ))
        })()
        .map_err(|e| e.to_string());
        let _ = ready.send(addrs);
        let shared = Shared::new(rt, state, setup.options)
            .with_log(log)
            .with_policy(setup.policy);
        socks5d_net::run(listeners, shared, async {
            let _ = stop.await;
        })
        .await;
    }
}

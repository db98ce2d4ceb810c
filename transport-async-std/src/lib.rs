//! socks5d on the smol family (async-io, async-net, async-executor), and on async-std: the
//! runtime-neutral server of `socks5d-net` (SOCKS5 over TCP, the admin protocol over SCTP or
//! TCP, housekeeping), run without tokio.
//!
//! async-std was discontinued in 2025 (RUSTSEC-2025-0052; its authors point to smol). This
//! crate's default is therefore the smol family async-std itself is built on: [`Smol`]
//! spawns onto any executor you give it (an `async_executor::Executor`, `smol::spawn`), its
//! sockets are `async_io::Async`, its timers `async_io::Timer`, and names resolve on the
//! `blocking` pool (`async_net::resolve`). With the `async-std` feature, [`AsyncStd`] spawns
//! onto async-std's executor instead (same reactor, same sockets).
//!
//! # Running a server on smol
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! use socks5d_async_std::{run, Listeners, Shared, Smol};
//! use socks5d_core::state::{Config, State};
//! use socks5d_net::ServerOptions;
//!
//! # fn main() -> std::io::Result<()> {
//! let ex = Arc::new(async_executor::Executor::new());
//! let smol = Smol::with_executor(ex.clone());
//! let state = Arc::new(State::new(Instant::now(), &Config::default()));
//! let options = ServerOptions::default();
//! let listeners = Listeners::bind(
//!     &smol,
//!     "127.0.0.1:1080".parse().unwrap(),
//!     "127.0.0.1:8080".parse().unwrap(),
//!     options.admin_transport,
//! )?;
//! let shared = Shared::new(smol, state, options);
//! // Serves until the future completes (here: never), then closes every connection.
//! async_io::block_on(ex.run(run(listeners, shared, std::future::pending())));
//! # Ok(())
//! # }
//! ```
//!
//! [`block_on_smol`] does the same with worker threads, as `socks5d --runtime smol` runs.
//! [`run`] is [`serve_socks`], [`serve_admin`] and [`housekeeping`] joined on one shutdown
//! signal; embedders may call those separately.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use async_io::{Async, Timer};

pub use socks5d_net::runtime::Resolving;
pub use socks5d_net::server::{
    housekeeping, run, serve_admin, serve_admin_connection, serve_socks, serve_socks_connection,
};
pub use socks5d_net::{Runtime, Socket};

/// The server's shared handles on smol.
pub type Shared<R = Smol> = socks5d_net::Shared<R>;
/// The two listeners on smol.
pub type Listeners<R = Smol> = socks5d_net::Listeners<R>;

/// A task, as handed to a [`Smol`] spawner.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The smol family as the server's runtime: async-io's reactor and timers, a spawner of your
/// choice, names resolved on the `blocking` pool.
#[derive(Clone)]
pub struct Smol {
    spawner: Arc<dyn Fn(Task) + Send + Sync>,
}

impl std::fmt::Debug for Smol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Smol")
    }
}

impl Smol {
    /// Spawns tasks with `spawner` (e.g. `|task| smol::spawn(task).detach()`).
    pub fn new(spawner: impl Fn(Task) + Send + Sync + 'static) -> Self {
        Self {
            spawner: Arc::new(spawner),
        }
    }

    /// Spawns tasks onto `ex` (which the program must run: `ex.run(...)`).
    pub fn with_executor(ex: Arc<async_executor::Executor<'static>>) -> Self {
        Self::new(move |task| ex.spawn(task).detach())
    }
}

/// A socket registered with async-io's reactor.
#[derive(Debug)]
pub struct AsyncSocket(Async<socket2::Socket>);

/// The runtime methods both flavours share: async-io does the waiting.
macro_rules! async_io_runtime {
    () => {
        type Socket = AsyncSocket;

        fn now(&self) -> Instant {
            Instant::now()
        }

        fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
            async move {
                Timer::at(deadline).await;
            }
        }

        fn spawn_blocking<T: Send + 'static>(
            &self,
            work: impl FnOnce() -> T + Send + 'static,
        ) -> impl Future<Output = T> + Send + 'static {
            blocking::unblock(work)
        }

        fn register(&self, socket: socket2::Socket) -> io::Result<AsyncSocket> {
            Async::new_nonblocking(socket).map(AsyncSocket)
        }

        fn resolve(&self, host: String, port: u16) -> Resolving {
            Box::pin(async move { async_net::resolve((host.as_str(), port)).await })
        }
    };
}

impl Runtime for Smol {
    async_io_runtime!();

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        (self.spawner)(Box::pin(task));
    }
}

/// async-std's executor as the server's runtime (sockets and timers are async-io's, which
/// async-std runs on).
#[cfg(feature = "async-std")]
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

#[cfg(feature = "async-std")]
impl Runtime for AsyncStd {
    async_io_runtime!();

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(task);
    }
}

impl Socket for AsyncSocket {
    fn get(&self) -> &socket2::Socket {
        self.0.get_ref()
    }

    // `poll_*able` keep the task's waker in the source's own slot, one per direction, as on
    // tokio (the `readable()` future holds a place in a list of its own). One slot is enough:
    // a socket is polled by its connection's task only.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        std::future::poll_fn(|cx| self.0.poll_readable(cx))
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        std::future::poll_fn(|cx| self.0.poll_writable(cx))
    }

    // async-io keeps no readiness to clear: `readable()` always waits for a new event.
    fn try_read_io<R>(&self, f: impl FnOnce(&socket2::Socket) -> io::Result<R>) -> io::Result<R> {
        f(self.0.get_ref())
    }

    fn try_write_io<R>(&self, f: impl FnOnce(&socket2::Socket) -> io::Result<R>) -> io::Result<R> {
        f(self.0.get_ref())
    }
}

/// Runs `main` on an `async_executor::Executor` with `threads` threads (one per core if
/// `None`), the calling thread among them, until it completes.
pub fn block_on_smol<F: Future>(threads: Option<usize>, main: impl FnOnce(Smol) -> F) -> F::Output {
    let ex = Arc::new(async_executor::Executor::new());
    let threads = threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let workers: Vec<_> = (1..threads)
        .map(|i| {
            let (ex, stopped) = (ex.clone(), stopped.clone());
            std::thread::Builder::new()
                .name(format!("socks5d-smol-{i}"))
                .spawn(move || async_io::block_on(ex.run(stopped.recv())))
                .expect("spawn an executor thread")
        })
        .collect();
    let out = async_io::block_on(ex.run(main(Smol::with_executor(ex.clone()))));
    drop(stop);
    for w in workers {
        let _ = w.join();
    }
    out
}

/// Runs `main` on async-std's executor until it completes.
#[cfg(feature = "async-std")]
pub fn block_on_async_std<F: Future>(main: impl FnOnce(AsyncStd) -> F) -> F::Output {
    async_std::task::block_on(main(AsyncStd))
}

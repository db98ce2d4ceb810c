//! socks5d on tokio: the runtime-neutral server of `socks5d-net` (SOCKS5 over TCP, the admin
//! protocol over SCTP or TCP, housekeeping), run on tokio.
//!
//! This crate is the [`Runtime`] implementation for tokio — clock (tokio's, so
//! `tokio::time::pause()` works), timers, `tokio::spawn`, `lookup_host`, and sockets in an
//! [`AsyncFd`] — plus type aliases for the embedding API. Every protocol decision is made by
//! `socks5d-core`'s sessions, and every driver is `socks5d-net`'s.
//!
//! # Running a server
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! use socks5d_core::state::{Config, State};
//! use socks5d_net::ServerOptions;
//! use socks5d_tokio::{run, Listeners, Shared, Tokio};
//!
//! # async fn example() -> std::io::Result<()> {
//! let state = Arc::new(State::new(Instant::now(), &Config::default()));
//! // Add users with `state.apply(None, &Mutation::AddUser { .. })`.
//! let options = ServerOptions::default();
//! let listeners = Listeners::bind(
//!     &Tokio,
//!     "127.0.0.1:1080".parse().unwrap(),
//!     "127.0.0.1:8080".parse().unwrap(),
//!     options.admin_transport,
//! )?;
//! let shared = Shared::new(Tokio, state, options);
//! // Serves until the future completes (here: Ctrl-C), then closes every connection.
//! run(listeners, shared, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! # Ok(())
//! # }
//! ```
//!
//! [`run`] is [`serve_socks`], [`serve_admin`] and [`housekeeping`] joined on one shutdown
//! signal; embedders may call those separately, or serve one accepted socket with
//! [`serve_socks_connection`] / [`serve_admin_connection`] after [`Runtime::register`].

use std::future::Future;
use std::io;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub use socks5d_net::runtime::Resolving;
pub use socks5d_net::server::{
    housekeeping, run, serve_admin, serve_admin_connection, serve_socks, serve_socks_connection,
};
pub use socks5d_net::{Runtime, Socket};

/// The server's shared handles on tokio.
pub type Shared = socks5d_net::Shared<Tokio>;
/// The two listeners on tokio.
pub type Listeners = socks5d_net::Listeners<Tokio>;
/// A listener on tokio.
pub type Listener = socks5d_net::Listener<Tokio>;
/// The admin listener on tokio.
pub type AdminListener = socks5d_net::AdminListener<Tokio>;

/// The tokio runtime, as the server uses it. Methods must be called within a tokio runtime
/// with I/O and time enabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

/// A socket registered with tokio's reactor.
#[derive(Debug)]
pub struct TokioSocket(AsyncFd<socket2::Socket>);

impl Runtime for Tokio {
    type Socket = TokioSocket;

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn spawn_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        let task = tokio::task::spawn_blocking(work);
        async move {
            match task.await {
                Ok(t) => t,
                // The work panicked: carry the panic on, as a direct call would.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }

    fn register(&self, socket: socket2::Socket) -> io::Result<TokioSocket> {
        // SAFETY: a `socket2::Socket` owns its descriptor: it stays open and refers to the
        // same socket until the `Socket` is dropped, which happens only when the `AsyncFd`
        // (its only owner) is dropped, and `as_raw_fd` always returns that descriptor.
        Ok(TokioSocket(unsafe { AsyncFd::register(socket) }?))
    }

    fn resolve(&self, host: String, port: u16) -> Resolving {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

impl Socket for TokioSocket {
    fn get(&self) -> &socket2::Socket {
        self.0.get_ref()
    }

    // `poll_*_ready` keep the task's waker in the socket's own slot, one per direction; the
    // `readable()` future would hold a waiter node of its own (some 170 bytes, in every idle
    // relay's future, twice). One slot is enough: a socket is polled by its connection's task
    // only.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        std::future::poll_fn(|cx| self.0.poll_read_ready(cx).map_ok(|mut g| g.retain_ready()))
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        std::future::poll_fn(|cx| self.0.poll_write_ready(cx).map_ok(|mut g| g.retain_ready()))
    }

    fn try_read_io<R>(&self, f: impl FnOnce(&socket2::Socket) -> io::Result<R>) -> io::Result<R> {
        self.0.try_io(Interest::READABLE, f)
    }

    fn try_write_io<R>(&self, f: impl FnOnce(&socket2::Socket) -> io::Result<R>) -> io::Result<R> {
        self.0.try_io(Interest::WRITABLE, f)
    }
}

/// Starts a multi-threaded tokio runtime (`threads` workers, or one per core) and runs
/// `main` on it to completion, on the calling thread (as `Runtime::block_on`). A server
/// should prefer [`block_on_workers`].
///
/// # Errors
///
/// If the runtime cannot be built.
pub fn block_on<F: Future>(
    threads: Option<usize>,
    main: impl FnOnce(Tokio) -> F,
) -> io::Result<F::Output> {
    Ok(runtime(threads)?.block_on(main(Tokio)))
}

/// As [`block_on`], but `main` runs as a task on the workers. The accept loops then spawn
/// each connection's task on the worker that accepted it, and tokio runs it next on that
/// thread, instead of the calling thread waking a worker for every accepted connection (a
/// fifth of the context switches of `block_on`, measured in BENCHMARKS.md). `socks5d` runs
/// this way.
///
/// `main`'s future must be `Send`. Where rustc cannot prove that of a future built on
/// `Tokio` itself (rust-lang/rust#130113: futures of `Runtime` methods called on a concrete
/// runtime), build it in a function generic over the `Runtime` that returns
/// `impl Future + Send`.
///
/// # Errors
///
/// If the runtime cannot be built.
///
/// # Panics
///
/// If `main` panics (the panic is resumed on the calling thread).
pub fn block_on_workers<F>(
    threads: Option<usize>,
    main: impl FnOnce(Tokio) -> F,
) -> io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime(threads)?;
    let task = rt.spawn(main(Tokio));
    match rt.block_on(task) {
        Ok(out) => Ok(out),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn runtime(threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    builder.enable_all().build()
}

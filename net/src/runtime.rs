//! The whole surface the server needs from an async runtime, as two small traits (the shape
//! of quinn's `runtime` module): [`Runtime`] (clock, timers, spawning, name resolution, and
//! registering a socket with the reactor) and [`Socket`] (a registered non-blocking socket's
//! readiness). Every socket the server uses — TCP listeners and streams, SCTP listeners and
//! associations, UDP — is a [`socket2::Socket`] made here, so the driver of [`crate::server`] is
//! written once and a runtime is about a hundred lines (`socks5d-tokio`, `socks5d-async-std`).
//!
//! # The select order
//!
//! Wherever the driver waits for several things at once it uses [`race`]: the shared state's
//! close request first, then the session's deadline, then socket I/O. The order is fixed (not
//! random, as `tokio::select!` would be), so a connection that always has bytes to move still
//! sees its close request and its deadline, on every runtime alike.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

/// An async runtime, as the server uses it. Cheap to clone (a unit struct or an `Arc`).
pub trait Runtime: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// A socket registered with this runtime's reactor.
    type Socket: Socket;

    /// Returns the current time (a runtime with a paused test clock returns that clock).
    fn now(&self) -> Instant;

    /// Completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static;

    /// Runs `task` in the background.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// Runs the blocking `work` on a thread pool off the async workers (password hashing and
    /// verification, store writes) and completes with its result.
    fn spawn_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static;

    /// Registers a non-blocking socket with the reactor.
    ///
    /// # Errors
    ///
    /// If the reactor refuses it (out of memory or descriptors).
    fn register(&self, socket: socket2::Socket) -> io::Result<Self::Socket>;

    /// Resolves `host` to addresses with `port`, without blocking the runtime's workers.
    fn resolve(&self, host: String, port: u16) -> Resolving;
}

/// A name resolution in flight (boxed: one allocation is nothing next to a lookup).
pub type Resolving = std::pin::Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// A non-blocking socket registered with a runtime's reactor.
///
/// The `try_*_io` methods run one system call on the socket. When it fails with
/// `WouldBlock`, the runtime forgets the readiness it cached, so that the next
/// [`readable`](Self::readable) / [`writable`](Self::writable) waits for a new event.
pub trait Socket: std::fmt::Debug + Send + Sync + 'static {
    /// Returns the socket.
    fn get(&self) -> &socket2::Socket;

    /// Waits until the socket may be readable (or has an error or end of stream).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Waits until the socket may be writable.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Runs a read-side system call (`read`, `recvmsg`, `accept`, `splice` from it).
    ///
    /// # Errors
    ///
    /// The call's error; `WouldBlock` when not ready.
    fn try_read_io<R>(&self, f: impl FnOnce(&socket2::Socket) -> io::Result<R>) -> io::Result<R>;

    /// Runs a write-side system call.
    ///
    /// # Errors
    ///
    /// The call's error; `WouldBlock` when not ready.
    fn try_write_io<R>(&self, f: impl FnOnce(&socket2::Socket) -> io::Result<R>) -> io::Result<R>;
}

/// What [`race`] saw first.
#[derive(Debug)]
pub enum Raced<C, T> {
    /// The close request (polled first).
    Close(C),
    /// The deadline passed (polled second).
    Deadline,
    /// The I/O future completed (polled last).
    Io(T),
}

/// Waits for the first of `close`, the `deadline` (never, if `None`) and `io`, polling them in
/// that order every time (see [the select order](self#the-select-order)).
pub async fn race<R: Runtime, C, T>(
    rt: &R,
    close: impl Future<Output = C>,
    deadline: Option<Instant>,
    io: impl Future<Output = T>,
) -> Raced<C, T> {
    let mut close = pin!(close);
    let mut io = pin!(io);
    let mut timer = pin!(async {
        match deadline {
            Some(d) => rt.sleep_until(d).await,
            None => std::future::pending().await,
        }
    });
    poll_fn(|cx| {
        if let Poll::Ready(c) = close.as_mut().poll(cx) {
            return Poll::Ready(Raced::Close(c));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Raced::Deadline);
        }
        io.as_mut().poll(cx).map(Raced::Io)
    })
    .await
}

/// Waits for the first of `close` and `io`, polling `close` first: [`race`] without a
/// deadline, so without a timer in its future (a relay waits in one for its whole life).
/// `Err` holds the close request's output.
pub async fn race_close<C, T>(
    close: impl Future<Output = C>,
    io: impl Future<Output = T>,
) -> Result<T, C> {
    let mut close = pin!(close);
    let mut io = pin!(io);
    poll_fn(|cx| {
        if let Poll::Ready(c) = close.as_mut().poll(cx) {
            return Poll::Ready(Err(c));
        }
        io.as_mut().poll(cx).map(Ok)
    })
    .await
}

/// Yields once to the runtime's scheduler: the task is woken at once and re-queued behind
/// the tasks that are ready (tokio and async-executor both queue a task that woke itself while
/// running behind the others).
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

//! The runtime-neutral half of socks5d: the server itself — accept loops, the SOCKS and admin
//! connection drivers, the relay, housekeeping and shutdown — written once over a small
//! [`Runtime`] trait, plus the socket glue it needs. `socks5d-tokio` and `socks5d-async-std`
//! implement [`Runtime`] and re-export an embedding API; nothing here knows a runtime.
//!
//! - [`runtime`]: the [`Runtime`] and [`Socket`] traits, and the one select order
//!   ([`runtime::race`]: close request, then deadline, then I/O).
//! - [`server`]: [`server::run`], the listeners, the connection drivers, housekeeping.
//! - [`io`]: accept, connect, read, write, SCTP messages and the graceful close over any
//!   runtime.
//! - [`relay`]: the relay loop: buffers only while data is in flight, `splice(2)` ([`splice`],
//!   Linux) once the sniffer is done or off, a turn for the runtime after every burst.
//! - [`sctp`]: one-to-one SCTP sockets (listen, connect), `recvmsg` that reports the end of an
//!   SCTP message, and a send that sends one message.
//! - [`listen`]: binding the SOCKS5 listener and the admin listener, with the
//!   [`AdminTransport`] choice (SCTP, falling back to TCP when the kernel has no SCTP).
//! - [`ServerOptions`]: how to serve.
//! - [`LogSink`]: where access-log and credentials-log lines go ([`StdoutSink`]: a writer
//!   thread behind a bounded queue, so a stuck stdout never blocks a connection).
//! - [`Tap`]: what a relay does with each chunk it moves (counting, sniffing, logging).
//! - [`metrics`]: Prometheus metrics and the `GET /metrics` server (`--metrics ADDR`).
//! - [`policy`]: the operator's policy (rules, limits, egress, PROXY senders) where the
//!   drivers reach it, swapped whole on reload.
//! - [`budget`]: how many connections and relay pipes fit in the open-file limit.
//! - [`sys`]: raising `RLIMIT_NOFILE`, recognising descriptor exhaustion and backing off.
//!
//! Protocol decisions live in `socks5d-core`; this crate only moves bytes and reports I/O.
//!
//! # Adding a runtime
//!
//! Implement [`Runtime`] (clock, timer, spawn, register a socket, resolve) and [`Socket`]
//! (readiness and non-blocking calls) in a crate of its own; `server::run` then serves on it.
//! See `socks5d-tokio` (about a hundred lines).

pub mod budget;
pub mod io;
pub mod listen;
mod log;
pub mod metrics;
mod options;
pub mod policy;
pub mod relay;
pub mod runtime;
pub mod sctp;
pub mod server;
#[cfg(target_os = "linux")]
pub mod splice;
pub mod sys;
mod tap;
mod verify;

pub use listen::{bind_admin, bind_tcp};
pub use log::{LogSink, StdoutSink, LOG_BATCH, LOG_QUEUE};
pub use options::{AdminTransport, ParseAdminTransportError, ServerOptions};
pub use runtime::{Runtime, Socket};
pub use server::{
    run, run_rebindable, AdminListener, Listener, Listeners, PasswordVerifier, Persist,
    PersistError, Rebind, Shared,
};
pub use tap::{unix_time, Tap};

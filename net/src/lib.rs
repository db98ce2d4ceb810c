//! Runtime-neutral socket glue shared by the socks5d transports (tokio, async-std).
//!
//! Everything here is synchronous and knows no async runtime, so that the transports differ
//! only in how they wait: they wrap the non-blocking sockets made here in their runtime's
//! readiness type (`tokio::io::unix::AsyncFd`, `async_io::Async`) and call the functions here
//! when the socket is ready.
//!
//! - [`sctp`]: one-to-one SCTP sockets (listen, connect), `recvmsg` that reports the end of
//!   an SCTP message, and a send that sends one message.
//! - [`connect`]: the CONNECT policy (each resolved address in turn, errors to reply codes).
//! - [`listen`]: binding the SOCKS5 listener and the admin listener, with the
//!   [`AdminTransport`] choice (SCTP, falling back to TCP when the kernel has no SCTP).
//! - [`ServerOptions`]: the options both transports take.
//! - [`LogSink`]: where access-log and credentials-log lines go.
//! - [`Tap`]: what a relay does with each chunk it moves (counting, sniffing, logging).
//! - [`sys`]: raising `RLIMIT_NOFILE`, recognising descriptor exhaustion and backing off.
//!
//! Protocol decisions live in `socks5d-core`; this crate only moves bytes and reports I/O.

pub mod connect;
pub mod listen;
mod log;
mod options;
pub mod sctp;
pub mod sys;
mod tap;

pub use listen::{bind_admin, bind_tcp, AdminListener};
pub use log::{LogSink, StdoutSink};
pub use options::{AdminTransport, ParseAdminTransportError, ServerOptions};
pub use tap::{resolve_error_code, unix_time, Tap};

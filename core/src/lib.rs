//! Sans-IO state machines for socks5d: a SOCKS5 server handshake (RFC 1928, RFC 1929), the
//! socks5d administration protocol, credential sniffers, log formatting, and the shared model
//! (users, settings, counters) that the administration protocol changes at run time.
//!
//! This crate contains no networking code, spawns nothing, and never reads a clock: time is an
//! input (`now: Instant`), bytes are inputs, and everything a session wants done comes out as
//! bytes to send, typed events and deadlines. Transports (`socks5d-tokio`,
//! `socks5d-async-std`) move bytes and time in and out; they make no protocol decisions.
//!
//! | module | what |
//! |---|---|
//! | [`state`] | the shared model: users, settings, counters, live connections; [`state::State::apply`] checks and applies a [`state::Mutation`] atomically |
//! | [`socks5`] | [`socks5::Socks5Handshake`] and the RFC 1928 messages (server and client side) |
//! | [`admin`] | [`admin::AdminSession`] and the admin protocol messages, in two dialects |
//! | [`sniff`] | [`sniff::Sniffer`]: HTTP Basic, POP3, FTP and IMAP credentials in relayed traffic |
//! | [`logfmt`] | the access-log and credentials-log lines |
//! | [`policy`] | operator policy: access rules, connection limits, bandwidth, egress address |
//!
//! # The run loop
//!
//! Every session follows one contract (as quinn-proto and str0m do): after each `handle_*`
//! call, drain `poll_transmit` (write what it returns), then `poll_event` (act on each event),
//! then read `poll_timeout` (the next deadline), and only then wait for more input or time.
//! `Closed` events come after the last bytes to send, so "write, then close" never loses data.
//!
//! A blocking admin server for one connection, as a driver would write it (with a real
//! runtime, the `read` becomes an `await` raced against the close signal and a sleep until the
//! deadline; see [`admin`] for the loop):
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! use socks5d_core::admin::{AdminSession, Dialect, Event, Framing};
//! use socks5d_core::state::{ConnKind, State};
//!
//! /// Serves one admin connection on `io`; `now` is the driver's clock.
//! fn serve(
//!     mut io: impl Read + Write,
//!     state: &Arc<State>,
//!     now: impl Fn() -> Instant,
//! ) -> std::io::Result<()> {
//!     let conn = state.open(ConnKind::Admin, now());
//!     let auth_timeout = state.settings().auth_timeout();
//!     let mut session = AdminSession::new(now(), Dialect::Draft, Framing::Stream, auth_timeout);
//!     let mut buf = [0u8; 4096];
//!     loop {
//!         // 1. bytes out
//!         while let Some(bytes) = session.poll_transmit() {
//!             io.write_all(&bytes)?;
//!         }
//!         // 2. events out; a modification is applied (and would be stored) here
//!         while let Some(event) = session.poll_event() {
//!             match event {
//!                 Event::Apply(m) => {
//!                     let outcome = state.apply(conn.user().map(|u| &u[..]), &m);
//!                     session.handle_apply_result(now(), outcome, &conn);
//!                 }
//!                 Event::Closed { .. } => return Ok(()),
//!                 _ => {}
//!             }
//!         }
//!         // 3. responses held back while output waited: serve them before reading
//!         if !session.wants_input() {
//!             session.handle_continue(now(), &conn);
//!             continue;
//!         }
//!         // 4. the next deadline (a runtime would sleep until it; see `handle_timeout`)
//!         let _deadline = session.poll_timeout();
//!         // 5. more input
//!         let n = io.read(&mut buf)?;
//!         if n == 0 {
//!             session.handle_eof(now());
//!         } else {
//!             session.handle_input(now(), &buf[..n], &conn);
//!         }
//!     }
//! }
//! ```
//!
//! A SOCKS5 client connection goes the same way with [`socks5::Socks5Handshake`], whose events
//! ask the transport to resolve, dial, listen or bind ([`socks5::Event::Resolve`],
//! [`socks5::Event::Dial`], ...) and take the results back (`handle_resolved`,
//! `handle_dial_result`, ...), then hand over the client's early bytes
//! ([`socks5::Event::Established`]) before the transport relays both directions, feeding a
//! [`sniff::Sniffer`] while sniffing is on and counting bytes on its [`state::Connection`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
mod codec;
#[cfg(test)]
#[path = "../test-support/epoch.rs"]
mod epoch;
pub mod error;
pub mod guard;
pub mod logfmt;
pub mod policy;
pub mod proxy_protocol;
pub mod resolve;
pub mod sniff;
pub mod socks5;
pub mod state;
pub mod timer;
pub mod udp;

pub use codec::{UserPassReply, UserPassRequest};
pub use error::{CloseReason, DecodeError, ProtocolError};

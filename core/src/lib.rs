//! Sans-IO state machines for socks5d: a SOCKS5 server handshake (RFC 1928, RFC 1929), the
//! socks5d administration protocol, credential sniffers, log formatting, and the shared model
//! (users, settings, counters) the administration protocol changes at run time.
//!
//! This crate contains no networking code, spawns nothing, and never reads a clock: time is
//! an input (`now: Instant`), bytes are inputs, and everything the sessions want done comes out
//! as bytes to send, typed events and deadlines.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
mod codec;
pub mod error;
/// UNSTABLE: for the fuzz crate and tests.
#[cfg(feature = "_test_exports")]
pub mod fuzzing;
pub mod logfmt;
pub mod sniff;
pub mod socks5;
pub mod state;
pub mod timer;

pub use codec::{UserPassReply, UserPassRequest};
pub use error::{CloseReason, DecodeError, ProtocolError};

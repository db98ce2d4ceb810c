//! SOCKS5 server handshake (RFC 1928, RFC 1929) as a sans-IO state machine.
//!
//! SKELETON: signatures fixed, bodies to be written (issue 3).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::error::CloseReason;
use crate::state::Connection;

mod addr;

pub use addr::{ReplyCode, TargetAddr};

/// What a [`Socks5Handshake`] reports to its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Dial `target` and report with [`Socks5Handshake::handle_connect_result`].
    Connect {
        /// Where the client asked to go.
        target: TargetAddr,
    },
    /// The request was answered with `code` (success or not): one access-log line.
    Replied {
        /// The target as the client sent it.
        target: TargetAddr,
        /// The reply code sent.
        code: ReplyCode,
    },
    /// The reply was sent with success: write `leftover` (bytes the client pipelined after its
    /// request) to the destination, then relay.
    Established {
        /// Client bytes already read that belong to the destination.
        leftover: Bytes,
    },
    /// The handshake failed or timed out: close after writing everything polled before.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// One SOCKS5 client connection's handshake.
#[derive(Debug)]
pub struct Socks5Handshake {
    _private: (),
}

impl Socks5Handshake {
    /// Creates a handshake that must finish by `now + HANDSHAKE_TIMEOUT`.
    pub fn new(_now: Instant) -> Self {
        todo!("issue 3")
    }

    /// Consumes the client's bytes.
    pub fn handle_input(&mut self, _now: Instant, _input: &mut BytesMut, _conn: &Connection) {
        todo!("issue 3")
    }

    /// Reports the outcome of the `Connect` event: the local address of the outgoing
    /// connection, or the reply code of the failure.
    pub fn handle_connect_result(&mut self, _now: Instant, _result: Result<SocketAddr, ReplyCode>) {
        todo!("issue 3")
    }

    /// The client closed its sending side.
    pub fn handle_eof(&mut self, _now: Instant) {
        todo!("issue 3")
    }

    /// Fires expired timers.
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!("issue 3")
    }

    /// Returns bytes to send to the client.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        todo!("issue 3")
    }

    /// Returns the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!("issue 3")
    }

    /// Returns the next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!("issue 3")
    }

    /// Returns whether the handshake is over (established or closed).
    pub fn is_done(&self) -> bool {
        todo!("issue 3")
    }
}

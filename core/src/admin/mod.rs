//! The socks5d administration protocol (`admin-protocol-draft.txt`, dialects of PROTOCOL.md).
//!
//! SKELETON: signatures fixed, bodies to be written (issue 2).

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::error::CloseReason;
use crate::state::{Connection, Mutation};

/// Which revision of the wire protocol to speak (see PROTOCOL.md, "Two dialects").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Dialect {
    /// `admin-protocol-draft.txt` (default).
    #[default]
    Draft,
    /// `admin-protocol-final.txt`, as the original socks5d and its client speak it.
    Final,
}

/// How the transport delivers bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A byte stream (TCP): no boundaries.
    Stream,
    /// Messages (SCTP): the transport calls [`AdminSession::handle_end_of_message`] after the
    /// last byte of each message, and sends each [`AdminSession::poll_transmit`] item as its
    /// own message.
    Message,
}

/// What an [`AdminSession`] reports to its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The administrator authenticated.
    Authenticated {
        /// Username.
        user: Bytes,
    },
    /// A modification was applied to the shared state (already; this is for logging).
    Applied(Mutation),
    /// The session is over: close the connection after writing everything polled before.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// One administration connection's protocol state.
#[derive(Debug)]
pub struct AdminSession {
    _private: (),
}

impl AdminSession {
    /// Creates a session that must authenticate by `now + HANDSHAKE_TIMEOUT`.
    pub fn new(_now: Instant, _dialect: Dialect, _framing: Framing) -> Self {
        todo!("issue 2")
    }

    /// Consumes every complete message in `input`, leaving a partial tail in place.
    pub fn handle_input(&mut self, _now: Instant, _input: &mut BytesMut, _conn: &Connection) {
        todo!("issue 2")
    }

    /// [`Framing::Message`] only: the bytes given so far end one SCTP message.
    pub fn handle_end_of_message(&mut self, _now: Instant, _input: &mut BytesMut) {
        todo!("issue 2")
    }

    /// The peer closed its sending side.
    pub fn handle_eof(&mut self, _now: Instant) {
        todo!("issue 2")
    }

    /// Fires expired timers.
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!("issue 2")
    }

    /// Returns bytes to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        todo!("issue 2")
    }

    /// Returns the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!("issue 2")
    }

    /// Returns the next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!("issue 2")
    }

    /// Returns whether the session is over.
    pub fn is_closed(&self) -> bool {
        todo!("issue 2")
    }
}

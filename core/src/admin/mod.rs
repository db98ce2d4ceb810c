//! The socks5d administration protocol (`admin-protocol-draft.txt`, dialects of PROTOCOL.md).
//!
//! [`msg`] holds the typed messages and their codecs (the command table in
//! [`msg::Command`]); [`AdminSession`] is the server side of one administration connection as
//! a sans-IO state machine.
//!
//! # Drain contract and the driver loop
//!
//! After every `handle_*` call, the driver drains [`AdminSession::poll_transmit`] until
//! `None` (writing each item; with [`Framing::Message`] each item is one SCTP message), then
//! [`AdminSession::poll_event`] until `None` (acting on each event, see below), then reads
//! [`AdminSession::poll_timeout`]. Then, if [`AdminSession::wants_input`], it waits for the
//! first of: a close request from the shared state
//! ([`AdminSession::handle_close_request`]), the deadline
//! ([`AdminSession::handle_timeout`]), readable input ([`AdminSession::handle_input`] on TCP,
//! [`AdminSession::handle_message`] on SCTP, [`AdminSession::handle_eof`] at the end);
//! otherwise it calls [`AdminSession::handle_continue`] (the session held requests back while
//! responses waited to be written). This never spins: once everything is drained and every
//! Apply answered, `handle_continue` either serves a request or leaves `wants_input()` true.
//!
//! [`Event::Closed`] is returned only once every response byte has been polled, so "write,
//! then close on `Closed`" never loses a response.
//!
//! **Durable before acknowledged.** The session never changes the shared state itself. A
//! modification comes out as [`Event::Apply`]: the driver checks and applies it with
//! [`State::apply`] (actor: the session's user), makes it durable if it persists, and reports
//! the outcome with [`AdminSession::handle_apply_result`] ([`Outcome::Failed`] if storing
//! failed, which answers General Server Error and must leave the change undone). Until then the
//! session answers nothing later, in order; then it sends the status and, if applied, emits
//! [`Event::Applied`] for the log.
//!
//! # Decisions where PROTOCOL.md and both spec texts are silent
//!
//! - **Get User Total Current Connections**: a name that is no user (unknown, or one that could
//!   never be a user, such as `a:b`) is answered with count 0 in the dialect's width, in both
//!   dialects, as PROTOCOL.md says for "a name that is no user"; only the empty name (ULEN 0)
//!   differs: final `00 FE FE`, draft count 0.
//! - **General Server Error (`0xFF`)** is sent where PROTOCOL.md maps an outcome to it (draft:
//!   Add User with 255 users, toggles with ACTION > 1) and for [`Outcome::Failed`] (the driver
//!   could not make the change durable), in both dialects.
//! - **Set I/O Buffer Sizes and the two timeouts** answer an out-of-range value with `0x01` in
//!   both dialects, as PROTOCOL.md's settings table says, although the revision also lists
//!   `0xFE` for them.
//! - **PRIVILEGE other than `0x00`/`0x01`** in Add User, and ACTION > 1, are answered directly
//!   (no [`Event::Apply`]: there is no [`Mutation`] to apply).
//! - **Authentication deadline**: authentication must complete within the `auth_timeout` given
//!   to [`AdminSession::new`], which drivers take from
//!   [`Settings::auth_timeout`](crate::state::Settings::auth_timeout) (the shorter of
//!   [`HANDSHAKE_TIMEOUT`] and the connection timeout), measured from the accept; bytes
//!   trickling in do not extend it. On expiry the session closes without sending anything
//!   ([`CloseReason::HandshakeTimeout`]); an authentication request handed in at or after the
//!   deadline is not served. Once authenticated, idleness is the clean-up routine's business
//!   ([`State::sweep`]), not a session timer; input marks the connection active
//!   ([`Connection::touch`]).
//! - **Administrators stored hashed** (`state::Login`): unless the password matches the warm
//!   cache, the authentication request becomes [`Event::Verify`]; the session serves nothing
//!   more (and wants no input) until [`AdminSession::handle_verified`], which answers `01 00`
//!   or `01 01` as the synchronous check would. The authentication deadline runs on: expiry,
//!   a close request, or EOF-then-failure close as before, and a verdict after the close is
//!   ignored. EOF while verifying waits for the verdict (the request was complete).
//! - **Failed logins** are reported as [`Event::AuthFailed`] with the name sent (never the
//!   password), for the driver to log and throttle; a bad VER (`01 02`) is not a login attempt
//!   and emits none.
//! - **End of input ([`AdminSession::handle_eof`])**: complete requests already received are
//!   still served, responses delivered, then `Closed { PeerEof }`. A partial request is
//!   dropped without an answer. Before the peer authenticated, EOF closes without an answer.
//! - **SCTP**: requests (and the authentication request) are reassembled across message
//!   boundaries like on TCP. After an unframable request, the rest of the message holding the
//!   byte that made it unframable (TYPE for an unknown TYPE, CMD for an unknown CMD) is
//!   discarded, even if that rest arrives in later reads, and the next message starts a new
//!   request. A bad VER in the authentication request closes on SCTP too (`01 02`).
//! - **Closed by the shared state** ([`AdminSession::handle_close_request`], or the
//!   connection's close signal seen before a request): the session stops serving before the
//!   next request and closes with [`CloseReason::UserRemoved`], [`CloseReason::IdleTimeout`]
//!   or [`CloseReason::Done`] (shutdown). A removed administrator's pipelined requests are not
//!   served. A pending Apply is still answered first (the change may be in effect).
//! - **Bytes after the session decided to close** (failed authentication, unframable request
//!   on a stream) are ignored.
//!
//! [`State::apply`]: crate::state::State::apply
//! [`State::sweep`]: crate::state::State::sweep
//! [`Outcome::Failed`]: crate::state::Outcome::Failed
//! [`Mutation`]: crate::state::Mutation
//! [`HANDSHAKE_TIMEOUT`]: crate::state::HANDSHAKE_TIMEOUT
//! [`Connection::touch`]: crate::state::Connection::touch
//! [`CloseReason::HandshakeTimeout`]: crate::error::CloseReason::HandshakeTimeout
//! [`CloseReason::UserRemoved`]: crate::error::CloseReason::UserRemoved
//! [`CloseReason::IdleTimeout`]: crate::error::CloseReason::IdleTimeout
//! [`CloseReason::Done`]: crate::error::CloseReason::Done

use std::fmt;

use bytes::Bytes;

use crate::error::CloseReason;
use crate::state::{Mutation, Secret};

mod command;
pub mod msg;
mod request;
mod response;
mod session;

pub use session::AdminSession;

#[cfg(test)]
mod tests;

/// Which revision of the wire protocol to speak (see PROTOCOL.md, "Two dialects").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
    /// A byte stream (TCP): no boundaries; an unframable request closes the session.
    Stream,
    /// Messages (SCTP): the driver passes each `recvmsg` to
    /// [`AdminSession::handle_message`] with its end-of-message flag, and sends each
    /// [`AdminSession::poll_transmit`] item as its own message.
    Message,
}

/// What an [`AdminSession`] reports to its driver. `Debug` shows no password or PHC string.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The administrator is stored hashed and its warm cache missed: verify `password`
    /// against `phc` off the async workers (bounded in number) and report with
    /// [`AdminSession::handle_verified`]. Until then the session serves nothing (what
    /// follows waits in its buffer) and [`AdminSession::wants_input`] is false; the
    /// authentication deadline still runs, and a verdict after the session closed is ignored.
    Verify {
        /// The username as sent.
        user: Bytes,
        /// The password as sent.
        password: Secret,
        /// The PHC string to verify against.
        phc: Bytes,
    },
    /// The administrator authenticated.
    Authenticated {
        /// Username.
        user: Bytes,
    },
    /// Check and apply this modification ([`State::apply`](crate::state::State::apply), actor:
    /// the session's user), make it durable, then report the outcome with
    /// [`AdminSession::handle_apply_result`]. Later requests wait until then.
    Apply(Mutation),
    /// A modification was applied (after its [`Event::Apply`]; this is for logging).
    Applied(Mutation),
    /// An authentication request failed (`01 01`, then close): log and throttle.
    AuthFailed {
        /// The username sent (possibly empty; never the password).
        user: Bytes,
    },
    /// The session is over: close the connection after writing everything polled before.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Verify { user, .. } => f
                .debug_struct("Verify")
                .field("user", user)
                .finish_non_exhaustive(),
            Self::Authenticated { user } => {
                f.debug_struct("Authenticated").field("user", user).finish()
            }
            Self::Apply(m) => f.debug_tuple("Apply").field(m).finish(),
            Self::Applied(m) => f.debug_tuple("Applied").field(m).finish(),
            Self::AuthFailed { user } => f.debug_struct("AuthFailed").field("user", user).finish(),
            Self::Closed { reason } => f.debug_struct("Closed").field("reason", reason).finish(),
        }
    }
}

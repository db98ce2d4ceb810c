//! The socks5d administration protocol (`admin-protocol-draft.txt`, dialects of PROTOCOL.md).
//!
//! [`msg`] holds the typed messages and their codecs; [`AdminSession`] is the server side of
//! one administration connection as a sans-IO state machine.
//!
//! # Drain contract
//!
//! After every `handle_*` call, the transport drains [`AdminSession::poll_transmit`] until
//! `None` (writing each item; with [`Framing::Message`] each item is one SCTP message), then
//! [`AdminSession::poll_event`] until `None`, then reads [`AdminSession::poll_timeout`], before
//! the next `handle_*` call. [`Event::Closed`] is returned only once every response byte has
//! been polled, so "write, then close on `Closed`" never loses a response.
//!
//! **Back-pressure.** [`AdminSession::handle_input`] stops consuming requests once
//! [`AdminSession::HIGH_WATER`] bytes of responses are waiting to be polled, and leaves the
//! unconsumed requests in `input`. After draining, a transport whose `input` is not empty must
//! call `handle_input` again (before waiting for more bytes from the peer) until it consumes
//! nothing more; only a partial request is then left in `input`.
//!
//! # Decisions where PROTOCOL.md and both spec texts are silent
//!
//! - **Get User Total Current Connections for a name that is no user** (unknown, empty or
//!   invalid): the final revision's query error `00 FE FE` (Invalid Parameter), in both
//!   dialects. PROTOCOL.md says to follow the revision where the draft is silent, and the draft
//!   has no error reply for queries at all (it also forgot the username of this query).
//! - **General Server Error (`0xFF`)** is sent only where PROTOCOL.md maps an outcome to it
//!   (draft: Add User with 255 users, toggles with ACTION > 1); nothing else in this server can
//!   fail, so the "general error" rows of the other commands are never sent.
//! - **Set I/O Buffer Sizes and the two timeouts** answer an out-of-range value with `0x01` in
//!   both dialects, as PROTOCOL.md's settings table says, although the revision also lists
//!   `0xFE` for them.
//! - **PRIVILEGE other than `0x00`/`0x01`** in Add User is a bad parameter (`0x02` draft,
//!   `0xFE` final).
//! - **Handshake deadline**: authentication must complete within
//!   [`HANDSHAKE_TIMEOUT`] of [`AdminSession::new`]; on expiry
//!   the session closes without sending anything ([`CloseReason::HandshakeTimeout`]). An
//!   authentication request handed to `handle_input` at or after the deadline is not served.
//!   Once authenticated, idleness is the clean-up routine's business ([`State::sweep`]), not a
//!   session timer; `handle_input` marks the connection active ([`Connection::touch`]) whenever
//!   it is given bytes, and the transport may touch it on writes.
//! - **End of input ([`AdminSession::handle_eof`])**: responses already produced are still
//!   delivered, then `Closed { PeerEof }`. A partial request left in the transport's buffer is
//!   dropped without an answer (it can never complete). Before the peer authenticated, EOF
//!   closes without an answer too.
//! - **SCTP message ending inside a request** (or inside the authentication request): the
//!   truncated request is discarded without an answer, and the next message starts afresh.
//!   Requests never span messages.
//! - **Closed by the shared state**: if the connection was asked to close (its administrator
//!   was removed, server shutdown, idle clean-up), the session stops serving before the next
//!   request and closes with [`CloseReason::UserRemoved`], [`CloseReason::IdleTimeout`] or
//!   [`CloseReason::Done`] (shutdown). A removed administrator's pipelined requests are not
//!   served.
//! - **Bytes after the session decided to close** (failed authentication, unframable request
//!   on a stream) are consumed and ignored.
//!
//! [`State::sweep`]: crate::state::State::sweep

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{UserPassReply, UserPassRequest};
use crate::error::{CloseReason, DecodeError, ProtocolError};
use crate::state::{
    CloseCause, Connection, Mutation, Outcome, Privilege, State, HANDSHAKE_TIMEOUT,
};
use crate::timer::{Timer, TimerTable};

pub mod msg;

use msg::{AdminRequest, AdminResponse, Query, RequestType, ValueCmd};

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

/// STATUS of an authentication reply: success.
const AUTH_OK: u8 = 0x00;
/// STATUS of an authentication reply: failed (for every kind of failure).
const AUTH_FAILED: u8 = 0x01;
/// STATUS of an authentication reply: VER is not `0x01`.
const AUTH_BAD_VERSION: u8 = 0x02;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `VER ULEN UNAME PLEN PASSWD`.
    Auth,
    /// Serving requests.
    Ready,
    /// Decided to close; `Closed` is queued.
    Closed,
}

/// One administration connection's protocol state (server side).
///
/// - Construct with [`new`](Self::new).
/// - Inputs: [`handle_input`](Self::handle_input), [`handle_end_of_message`](Self::handle_end_of_message)
///   (SCTP), [`handle_eof`](Self::handle_eof), [`handle_timeout`](Self::handle_timeout).
/// - Outputs, drained in this order after every input (see the [module docs](self)):
///   [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   [`poll_timeout`](Self::poll_timeout).
/// - Getter: [`is_closed`](Self::is_closed).
///
/// Requests are served in order; every complete request in the input is consumed before
/// `handle_input` returns, unless [`HIGH_WATER`](Self::HIGH_WATER) bytes of responses are
/// waiting. Queries read [`Connection::state`]; modifications are checked and applied there in
/// one step ([`State::apply`](crate::state::State::apply)) and reported as [`Event::Applied`].
///
/// Unknown TYPE is answered `FF FF`, unknown CMD `TYPE FF`. The request stream then cannot be
/// framed: with [`Framing::Stream`] the session sends the responses before it, the error, and
/// closes; with [`Framing::Message`] it discards the rest of that SCTP message and carries on
/// with the next one.
#[derive(Debug)]
pub struct AdminSession {
    dialect: Dialect,
    framing: Framing,
    phase: Phase,
    /// Encoded responses not yet polled.
    out: BytesMut,
    /// [`Framing::Message`]: the length of each response in `out`, oldest first.
    lens: VecDeque<usize>,
    events: VecDeque<Event>,
    timers: TimerTable,
    /// Bytes consumed from the transport's input since the start.
    consumed: u64,
    /// [`Framing::Message`]: where (in `consumed` terms) the messages seen to end so far end,
    /// for those not yet fully consumed.
    boundaries: VecDeque<u64>,
    /// [`Framing::Message`]: dropping the rest of the current message after an unframable
    /// request.
    discarding: bool,
}

impl AdminSession {
    /// Responses waiting to be polled beyond which [`handle_input`](Self::handle_input) stops
    /// consuming requests (64 KiB). One List Users response may exceed it on its own.
    pub const HIGH_WATER: usize = 64 * 1024;

    /// Creates a session that must authenticate by `now + HANDSHAKE_TIMEOUT`.
    pub fn new(now: Instant, dialect: Dialect, framing: Framing) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Handshake, now + HANDSHAKE_TIMEOUT);
        Self {
            dialect,
            framing,
            phase: Phase::Auth,
            out: BytesMut::with_capacity(4096),
            lens: VecDeque::new(),
            events: VecDeque::new(),
            timers,
            consumed: 0,
            boundaries: VecDeque::new(),
            discarding: false,
        }
    }

    /// Returns the dialect this session speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Consumes every complete message in `input`, leaving a partial tail in place.
    ///
    /// Stops early, leaving complete requests in `input`, once
    /// [`HIGH_WATER`](Self::HIGH_WATER) bytes of responses wait to be polled: drain, then call
    /// again. After the session has decided to close, `input` is cleared and ignored.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut, conn: &Connection) {
        if !input.is_empty() {
            conn.touch(now);
        }
        self.handle_timeout(now);
        self.process(input, Some(conn));
    }

    /// [`Framing::Message`] only: the bytes given so far end one SCTP message.
    ///
    /// `input` must hold no byte of the next message yet. A request cut by the end of the
    /// message is discarded without an answer; after an unframable request, the rest of the
    /// message is discarded. Complete requests left in `input` by back-pressure stay there and
    /// are served by the next [`handle_input`](Self::handle_input), which remembers where this
    /// message ended. With [`Framing::Stream`] this does nothing.
    pub fn handle_end_of_message(&mut self, now: Instant, input: &mut BytesMut) {
        if self.framing == Framing::Stream {
            return;
        }
        self.handle_timeout(now);
        if self.phase == Phase::Closed {
            input.clear();
            return;
        }
        let end = self.consumed + input.len() as u64;
        if self.boundaries.back() != Some(&end) {
            self.boundaries.push_back(end);
        }
        self.process(input, None);
    }

    /// The peer closed its sending side: responses already produced are delivered, then the
    /// session closes ([`CloseReason::PeerEof`]). Call it once `handle_input` consumes nothing
    /// more; a partial request still in the transport's buffer is dropped unanswered.
    pub fn handle_eof(&mut self, _now: Instant) {
        if self.phase != Phase::Closed {
            self.close(CloseReason::PeerEof);
        }
    }

    /// Fires expired timers. Spurious or early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.is_expired(Timer::Handshake, now) {
            self.timers.stop(Timer::Handshake);
            if self.phase == Phase::Auth {
                self.close(CloseReason::HandshakeTimeout);
            }
        }
    }

    /// Returns bytes to send: with [`Framing::Message`] exactly one response (send it as one
    /// SCTP message), with [`Framing::Stream`] everything pending.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        match self.framing {
            Framing::Stream => Some(self.out.split().freeze()),
            Framing::Message => {
                let len = self.lens.pop_front()?;
                Some(self.out.split_to(len).freeze())
            }
        }
    }

    /// Returns the next event. [`Event::Closed`] waits until every response byte was polled.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if matches!(self.events.front(), Some(Event::Closed { .. })) && !self.out.is_empty() {
            return None;
        }
        self.events.pop_front()
    }

    /// Returns the next deadline: the handshake deadline until authentication, then none.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Returns whether the session is over (it may still have responses and `Closed` to poll).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    fn close(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.timers.stop(Timer::Handshake);
        self.discarding = false;
        self.boundaries.clear();
        self.events.push_back(Event::Closed { reason });
    }

    fn consume(&mut self, input: &mut BytesMut, n: usize) {
        input.advance(n);
        self.consumed += n as u64;
    }

    /// Marks the end of one response written to `out` since `start`.
    fn end_response(&mut self, start: usize) {
        if self.framing == Framing::Message {
            self.lens.push_back(self.out.len() - start);
        }
    }

    /// Serves what `input` holds. Without `conn` (end of an SCTP message) only discards and
    /// answers what needs no shared state; complete requests wait for the next `handle_input`.
    fn process(&mut self, input: &mut BytesMut, conn: Option<&Connection>) {
        loop {
            if self.phase == Phase::Closed {
                input.clear();
                return;
            }
            // How much of `input` belongs to the current message, and whether it ends there.
            let (limit, ends) = match self.boundaries.front() {
                Some(&end) => {
                    let left = usize::try_from(end.saturating_sub(self.consumed)).unwrap_or(0);
                    (left.min(input.len()), true)
                }
                None => (input.len(), false),
            };
            if self.discarding || limit == 0 {
                self.consume(input, limit);
                if !ends {
                    return;
                }
                self.boundaries.pop_front();
                self.discarding = false;
                continue;
            }
            let buf = &input[..limit];
            let (checked, max) = match self.phase {
                Phase::Auth => (UserPassRequest::check(buf), UserPassRequest::MAX_LEN),
                _ => (AdminRequest::check(buf), AdminRequest::MAX_LEN),
            };
            match checked {
                Ok(None) if ends => {
                    // Requests never span SCTP messages: this one was cut short.
                    self.consume(input, limit);
                }
                Ok(None) if limit >= max => {
                    // Unreachable with these length-prefixed formats (a prefix this long always
                    // completes or fails); kept so a future format cannot loop on a growing buffer.
                    self.close(CloseReason::Peer(ProtocolError::InputLimit));
                }
                Ok(None) => return,
                Ok(Some(len)) => {
                    let Some(conn) = conn else { return };
                    if self.out.len() >= Self::HIGH_WATER {
                        return;
                    }
                    if let Some(cause) = conn.close_cause() {
                        self.close(match cause {
                            CloseCause::UserRemoved => CloseReason::UserRemoved,
                            CloseCause::Idle => CloseReason::IdleTimeout,
                            CloseCause::Shutdown => CloseReason::Done,
                        });
                        continue;
                    }
                    if self.phase == Phase::Auth {
                        self.authenticate(input, len, conn);
                    } else {
                        let req = AdminRequest::decode_checked(input, len);
                        self.consumed += len as u64;
                        self.serve(req, conn);
                    }
                }
                Err(e) => {
                    if self.out.len() >= Self::HIGH_WATER {
                        return;
                    }
                    self.unframable(e);
                }
            }
        }
    }

    fn authenticate(&mut self, input: &mut BytesMut, len: usize, conn: &Connection) {
        let frame = input.split_to(len);
        self.consumed += len as u64;
        // VER ULEN UNAME PLEN PASSWD, complete per `check`.
        let ulen = usize::from(frame[1]);
        let (user, password) = (&frame[2..2 + ulen], &frame[3 + ulen..]);
        // "ULEN or PLEN zero, unknown user, wrong password, or a user without the
        // administrator privilege: respond 01 01, then close. The same answer for all."
        let ok = !user.is_empty()
            && !password.is_empty()
            && conn.authenticate(user, password, Privilege::Admin);
        let start = self.out.len();
        UserPassReply {
            status: if ok { AUTH_OK } else { AUTH_FAILED },
        }
        .encode(&mut self.out);
        self.end_response(start);
        if ok {
            self.timers.stop(Timer::Handshake);
            self.phase = Phase::Ready;
            let user = conn
                .user()
                .cloned()
                .unwrap_or_else(|| Bytes::copy_from_slice(user));
            self.events.push_back(Event::Authenticated { user });
        } else {
            self.close(CloseReason::Peer(ProtocolError::AuthFailed));
        }
    }

    /// Answers a request that cannot be framed (bad VER, unknown TYPE or CMD).
    fn unframable(&mut self, e: DecodeError) {
        let start = self.out.len();
        match e {
            DecodeError::UnsupportedVersion(_) => UserPassReply {
                status: AUTH_BAD_VERSION,
            }
            .encode(&mut self.out),
            DecodeError::UnknownCommand { ty, .. } => AdminResponse::InvalidCommand {
                ty: if ty == msg::TYPE_QUERY {
                    RequestType::Query
                } else {
                    RequestType::Modify
                },
            }
            .encode(self.dialect, &mut self.out),
            // UnknownType; the request decoders report nothing else.
            _ => AdminResponse::InvalidType.encode(self.dialect, &mut self.out),
        }
        self.end_response(start);
        if self.phase == Phase::Auth || self.framing == Framing::Stream {
            self.close(CloseReason::Peer(ProtocolError::Decode(e)));
        } else {
            self.discarding = true;
        }
    }

    fn serve(&mut self, req: AdminRequest, conn: &Connection) {
        let start = self.out.len();
        let dialect = self.dialect;
        let state = conn.state();
        match req {
            AdminRequest::Query(Query::ListUsers) => {
                let users = state.users();
                msg::encode_users(
                    dialect,
                    users.iter().map(|u| (&u.name[..], Some(u.privilege))),
                    &mut self.out,
                );
            }
            AdminRequest::Query(Query::UserConnections { cmd, name }) => {
                match state.user_connections(&name) {
                    Some(n) => AdminResponse::Value {
                        cmd: ValueCmd::UserConnections(cmd),
                        value: u64::from(n),
                    },
                    // Not a user (unknown, empty or invalid name): see the module docs.
                    None => AdminResponse::QueryError {
                        status: msg::QUERY_ERROR_INVALID_PARAMETER,
                    },
                }
                .encode(dialect, &mut self.out);
            }
            AdminRequest::Query(q) => {
                if let Some(cmd) = q.value_cmd() {
                    let value = number(state, cmd);
                    AdminResponse::Value { cmd, value }.encode(dialect, &mut self.out);
                }
            }
            AdminRequest::Modify(m) => {
                let cmd = m.cmd();
                let status = match m.to_mutation() {
                    // An out-of-range PRIVILEGE or ACTION byte.
                    None => cmd.status(dialect, Outcome::InvalidParameter),
                    Some(mutation) => {
                        let outcome = state.apply(conn.user().map(|u| &u[..]), &mutation);
                        if outcome == Outcome::Applied {
                            self.events.push_back(Event::Applied(mutation));
                        }
                        cmd.status(dialect, outcome)
                    }
                };
                AdminResponse::Status { cmd, status }.encode(dialect, &mut self.out);
            }
        }
        self.end_response(start);
    }
}

/// Returns the answer to a query without arguments.
fn number(state: &State, cmd: ValueCmd) -> u64 {
    let settings = state.settings();
    match cmd {
        ValueCmd::HistoricConnections => state.counters().historic,
        ValueCmd::CurrentConnections => state.counters().current,
        ValueCmd::MaxConcurrentConnections => state.counters().max_concurrent,
        ValueCmd::BytesSent => state.counters().bytes_sent,
        ValueCmd::BytesReceived => state.counters().bytes_received,
        ValueCmd::UsersConnected => state.counters().users_connected,
        ValueCmd::UserCount => state.user_count() as u64,
        ValueCmd::BufferSize => u64::from(settings.buffer_size()),
        ValueCmd::SelectorTimeout => u64::from(settings.selector_timeout()),
        ValueCmd::ConnectionTimeout(_) => u64::from(settings.connection_timeout()),
        // Takes a name; answered by `serve`.
        ValueCmd::UserConnections(_) => 0,
    }
}

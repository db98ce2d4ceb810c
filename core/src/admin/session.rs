//! [`AdminSession`]: the server side of one administration connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::command::TYPE_QUERY;
use super::msg::{encode_users, AdminRequest, AdminResponse, ModifyCmd, Query, RequestType};
use super::{Dialect, Event, Framing};
use crate::codec::{UserPassReply, UserPassRequest};
use crate::error::{CloseReason, DecodeError, ProtocolError};
use crate::state::{CloseCause, Connection, Login, Mutation, Outcome, PendingLogin, Privilege};
use crate::timer::{Timer, TimerTable};

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
    /// Decided to close; `Closed` is queued (or waits for the pending Apply's result).
    Closed,
}

/// A modification handed to the driver ([`Event::Apply`]) whose result has not come back.
#[derive(Debug)]
struct Pending {
    cmd: ModifyCmd,
    mutation: Mutation,
}

/// One administration connection's protocol state (server side).
///
/// - Construct with [`new`](Self::new).
/// - Inputs: [`handle_input`](Self::handle_input) (TCP), [`handle_message`](Self::handle_message)
///   (SCTP), [`handle_eof`](Self::handle_eof), [`handle_timeout`](Self::handle_timeout),
///   [`handle_close_request`](Self::handle_close_request),
///   [`handle_apply_result`](Self::handle_apply_result),
///   [`handle_verified`](Self::handle_verified), [`handle_continue`](Self::handle_continue).
/// - Outputs, drained in this order after every input (see the [module docs](super)):
///   [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   [`poll_timeout`](Self::poll_timeout).
/// - Getters: [`wants_input`](Self::wants_input), [`is_closed`](Self::is_closed),
///   [`dialect`](Self::dialect).
///
/// The session owns its input buffer: drivers hand it bytes as they arrive and never keep
/// any. Requests are served in order; every complete request is served before the session
/// asks for more input, except that it holds back (and stops asking for input) while
/// [`HIGH_WATER`](Self::HIGH_WATER) bytes of responses wait to be polled or while a
/// modification waits for its [`handle_apply_result`](Self::handle_apply_result). Queries read
/// [`Connection::state`]; modifications go out as [`Event::Apply`].
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
    /// Received bytes not yet served.
    input: BytesMut,
    /// Bytes removed from the front of `input` since the start.
    consumed: u64,
    /// [`Framing::Message`]: where (in `consumed` terms) the messages seen to end so far end,
    /// oldest first, for those not yet consumed.
    boundaries: VecDeque<u64>,
    /// [`Framing::Message`]: dropping input up to the next message end, after an unframable
    /// request.
    discarding: bool,
    /// The peer closed its sending side.
    eof: bool,
    /// A complete request waits for the responses to be polled (back-pressure).
    held: bool,
    /// A modification waits for its result.
    pending: Option<Pending>,
    /// The authentication waits for the driver's verification ([`Event::Verify`]).
    verifying: Option<PendingLogin>,
    /// Closed while a modification was pending: `Closed` is queued after its result.
    deferred_close: Option<CloseReason>,
    /// Encoded responses not yet polled.
    out: BytesMut,
    /// [`Framing::Message`]: the length of each response in `out`, oldest first.
    lens: VecDeque<usize>,
    events: VecDeque<Event>,
    timers: TimerTable,
}

impl AdminSession {
    /// Responses waiting to be polled beyond which the session holds back the next request
    /// (64 KiB). One List Users response may exceed it on its own.
    pub const HIGH_WATER: usize = 64 * 1024;

    /// Received bytes at which [`wants_input`](Self::wants_input) turns false (64 KiB). The
    /// buffer holds more than one partial request only while the session holds requests back,
    /// when it asks for no input anyway, so a driver that reads only while `wants_input()`
    /// keeps it below `INPUT_BOUND` plus one read.
    pub const INPUT_BOUND: usize = 64 * 1024;

    /// Creates a session that must authenticate by `now + auth_timeout` (drivers pass
    /// [`Settings::auth_timeout`](crate::state::Settings::auth_timeout)).
    pub fn new(now: Instant, dialect: Dialect, framing: Framing, auth_timeout: Duration) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Handshake, now + auth_timeout);
        Self {
            dialect,
            framing,
            phase: Phase::Auth,
            input: BytesMut::with_capacity(1024),
            consumed: 0,
            boundaries: VecDeque::new(),
            discarding: false,
            eof: false,
            held: false,
            pending: None,
            verifying: None,
            deferred_close: None,
            out: BytesMut::with_capacity(4096),
            lens: VecDeque::new(),
            events: VecDeque::new(),
            timers,
        }
    }

    /// Returns the dialect this session speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Takes bytes as read from a byte stream (TCP), split anywhere, and serves every complete
    /// request they finish. With [`Framing::Message`] this is
    /// [`handle_message`](Self::handle_message) with `end_of_message` false.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], conn: &Connection) {
        self.handle_message(now, data, false, conn);
    }

    /// Takes the bytes of one `recvmsg` on SCTP; `end_of_message` is whether `MSG_EOR` was set
    /// on them. Requests are reassembled across messages exactly as on a stream; message ends
    /// matter only after an unframable request, whose message's rest is discarded. With
    /// [`Framing::Stream`], `end_of_message` is ignored.
    ///
    /// Bytes given after the session decided to close, or after [`handle_eof`](Self::handle_eof),
    /// are ignored.
    pub fn handle_message(
        &mut self,
        now: Instant,
        data: &[u8],
        end_of_message: bool,
        conn: &Connection,
    ) {
        if !data.is_empty() {
            conn.touch(now);
        }
        self.handle_timeout(now);
        if self.phase == Phase::Closed || self.eof {
            return;
        }
        self.input.extend_from_slice(data);
        if end_of_message && self.framing == Framing::Message {
            let end = self.consumed + self.input.len() as u64;
            if self.boundaries.back() != Some(&end) {
                self.boundaries.push_back(end);
            }
        }
        self.process(conn);
    }

    /// The peer closed its sending side. Complete requests still held back are served (after
    /// [`handle_continue`](Self::handle_continue) or the pending
    /// [`handle_apply_result`](Self::handle_apply_result)), every response produced is
    /// delivered, then the session closes ([`CloseReason::PeerEof`]); a partial request is
    /// dropped unanswered (it can never complete).
    pub fn handle_eof(&mut self, _now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.eof = true;
        if self.pending.is_none() && self.verifying.is_none() && !self.held {
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

    /// The shared state asked this connection to close (its user was removed, the clean-up
    /// routine found it idle, the server shuts down): unserved input is dropped and
    /// `Closed { reason }` queued after the responses already produced, with
    /// [`CloseReason::UserRemoved`], [`CloseReason::IdleTimeout`] or [`CloseReason::Done`].
    /// If a modification is pending, its result is still awaited and answered first.
    pub fn handle_close_request(&mut self, _now: Instant, cause: CloseCause) {
        self.close(close_reason(cause));
    }

    /// Takes the result of the last [`Event::Apply`]: answers the modification with the
    /// dialect's status for `outcome` ([`Outcome::Failed`] is General Server Error, `0xFF`),
    /// emits [`Event::Applied`] if `outcome` is [`Outcome::Applied`], then serves the requests
    /// held back behind it. Without a pending Apply this does nothing.
    pub fn handle_apply_result(&mut self, now: Instant, outcome: Outcome, conn: &Connection) {
        let Some(Pending { cmd, mutation }) = self.pending.take() else {
            return;
        };
        let start = self.out.len();
        AdminResponse::Status {
            cmd,
            status: cmd.status(self.dialect, outcome),
        }
        .encode(self.dialect, &mut self.out);
        self.end_response(start);
        if outcome == Outcome::Applied {
            self.events.push_back(Event::Applied(mutation));
        }
        if let Some(reason) = self.deferred_close.take() {
            self.events.push_back(Event::Closed { reason });
            return;
        }
        self.handle_timeout(now);
        self.process(conn);
    }

    /// Takes the driver's verification of the password of the last [`Event::Verify`]: `ok`
    /// is whether it matched the PHC string. The verdict is
    /// [`Connection::finish_login`]'s (the user may have been removed or re-added since):
    /// `01 00` and [`Event::Authenticated`], then the requests that waited are served; or
    /// `01 01`, [`Event::AuthFailed`] and close. Fires the timers due at `now` first; without
    /// a pending Verify (late: after the deadline or a close) this does nothing.
    pub fn handle_verified(&mut self, now: Instant, ok: bool, conn: &Connection) {
        self.handle_timeout(now);
        let Some(pending) = self.verifying.take() else {
            return;
        };
        let ok = pending.finish(conn, ok, Privilege::Admin);
        self.auth_done(&pending.user, ok, conn);
        self.process(conn);
    }

    /// Serves requests held back by back-pressure, once the driver wrote everything polled.
    /// Call it when [`wants_input`](Self::wants_input) is false after draining; it always
    /// makes progress then, except while an [`Event::Apply`] or [`Event::Verify`] waits for
    /// its result, which the driver must give first (a debug build panics).
    pub fn handle_continue(&mut self, now: Instant, conn: &Connection) {
        debug_assert!(
            self.pending.is_none(),
            "handle_continue while an Apply waits for handle_apply_result"
        );
        debug_assert!(
            self.verifying.is_none(),
            "handle_continue while a Verify waits for handle_verified"
        );
        self.handle_timeout(now);
        self.process(conn);
    }

    /// Returns whether the driver should read more input now: false while held-back
    /// complete requests wait, while an Apply or a Verify is pending, while the input buffer is at
    /// [`INPUT_BOUND`](Self::INPUT_BOUND), after EOF, and once closed.
    pub fn wants_input(&self) -> bool {
        self.phase != Phase::Closed
            && !self.eof
            && !self.held
            && self.pending.is_none()
            && self.verifying.is_none()
            && self.input.len() < Self::INPUT_BOUND
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

    /// Returns the next deadline: the authentication deadline until authentication, then none.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Returns whether the session decided to close (it may still have responses and `Closed`
    /// to poll, and a pending Apply to answer).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    fn close(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        // A verification still running is abandoned: its verdict will be ignored.
        self.verifying = None;
        self.timers.stop(Timer::Handshake);
        self.input.clear();
        self.boundaries.clear();
        self.discarding = false;
        self.held = false;
        if self.pending.is_some() {
            self.deferred_close = Some(reason);
        } else {
            self.events.push_back(Event::Closed { reason });
        }
    }

    /// Drops `n` bytes from the front of the input.
    fn advance(&mut self, n: usize) {
        self.input.advance(n);
        self.consumed += n as u64;
    }

    /// Marks the end of one response written to `out` since `start`.
    fn end_response(&mut self, start: usize) {
        if self.framing == Framing::Message {
            self.lens.push_back(self.out.len() - start);
        }
    }

    /// Serves what the input holds, until it needs more input or holds back.
    fn process(&mut self, conn: &Connection) {
        self.held = false;
        loop {
            if self.pending.is_some() || self.verifying.is_some() {
                return;
            }
            if self.discarding {
                if let Some(end) = self.boundaries.pop_front() {
                    let n = usize::try_from(end - self.consumed).expect("within the buffer");
                    self.advance(n);
                    self.discarding = false;
                } else {
                    self.advance(self.input.len());
                    if self.eof {
                        self.close(CloseReason::PeerEof);
                    }
                    return;
                }
            }
            while self.boundaries.front().is_some_and(|&b| b <= self.consumed) {
                self.boundaries.pop_front();
            }
            let (checked, max) = match self.phase {
                Phase::Closed => return,
                Phase::Auth => (
                    UserPassRequest::check(&self.input),
                    UserPassRequest::MAX_LEN,
                ),
                Phase::Ready => (AdminRequest::check(&self.input), AdminRequest::MAX_LEN),
            };
            let len = match checked {
                Ok(None) => {
                    if self.input.len() >= max {
                        // Unreachable with these length-prefixed formats (a prefix this long
                        // always completes or fails); kept so a future format cannot grow the
                        // buffer without bound.
                        self.close(CloseReason::Peer(ProtocolError::InputLimit));
                    } else if self.eof {
                        self.close(CloseReason::PeerEof);
                    }
                    return;
                }
                Ok(Some(_)) | Err(_) if self.out.len() >= Self::HIGH_WATER => {
                    self.held = true;
                    return;
                }
                Ok(Some(len)) => Ok(len),
                Err(e) => Err(e),
            };
            // "Stops serving before the next request" once the state asked to close.
            if let Some(cause) = conn.close_cause() {
                self.close(close_reason(cause));
                return;
            }
            match (len, self.phase) {
                (Ok(len), Phase::Auth) => self.authenticate(len, conn),
                (Ok(len), Phase::Ready) => {
                    let req = AdminRequest::decode_checked(&mut self.input, len);
                    self.consumed += len as u64;
                    self.serve(req, conn);
                }
                (Err(e), Phase::Auth | Phase::Ready) => self.unframable(e),
                (Ok(_) | Err(_), Phase::Closed) => return,
            }
        }
    }

    fn authenticate(&mut self, len: usize, conn: &Connection) {
        let frame = self.input.split_to(len);
        self.consumed += len as u64;
        // VER ULEN UNAME PLEN PASSWD, complete per `check`.
        let ulen = usize::from(frame[1]);
        let (user, password) = (&frame[2..2 + ulen], &frame[3 + ulen..]);
        // "ULEN or PLEN zero, unknown user, wrong password, or a user without the
        // administrator privilege: respond 01 01, then close. The same answer for all."
        let ok = !user.is_empty()
            && !password.is_empty()
            && match conn.check_login(user, password, Privilege::Admin) {
                Login::Accepted => true,
                Login::Rejected => false,
                Login::Verify { phc } => {
                    let pending = PendingLogin::new(user, password, phc);
                    self.events.push_back(Event::Verify {
                        user: pending.user.clone(),
                        password: pending.password.clone(),
                        phc: pending.phc.clone(),
                    });
                    self.verifying = Some(pending);
                    return;
                }
            };
        self.auth_done(user, ok, conn);
    }

    /// Answers the authentication request of `user`: success or failure and close.
    fn auth_done(&mut self, user: &[u8], ok: bool, conn: &Connection) {
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
            // A copy, so that the event does not keep the buffer that held the password.
            let user = Bytes::copy_from_slice(user);
            self.events.push_back(Event::AuthFailed { user });
            self.close(CloseReason::Peer(ProtocolError::AuthFailed));
        }
    }

    /// Answers a request that cannot be framed (bad VER, unknown TYPE or CMD).
    fn unframable(&mut self, e: DecodeError) {
        let start = self.out.len();
        // How many bytes of the request were read when it could not be framed: the message
        // holding the last of them is the one whose rest is discarded.
        let read = match e {
            DecodeError::UnsupportedVersion(_) => {
                UserPassReply {
                    status: AUTH_BAD_VERSION,
                }
                .encode(&mut self.out);
                1
            }
            DecodeError::UnknownCommand { ty, .. } => {
                AdminResponse::InvalidCommand {
                    ty: if ty == TYPE_QUERY {
                        RequestType::Query
                    } else {
                        RequestType::Modify
                    },
                }
                .encode(self.dialect, &mut self.out);
                2
            }
            // The request and authentication checks report nothing else.
            DecodeError::UnknownType(_)
            | DecodeError::BadAddressType(_)
            | DecodeError::EmptyField
            | DecodeError::UnknownSocksCommand(_)
            | DecodeError::Reserved(_)
            | DecodeError::TooLong { .. }
            | DecodeError::InvalidValue(_) => {
                AdminResponse::InvalidType.encode(self.dialect, &mut self.out);
                1
            }
        };
        self.end_response(start);
        if self.phase == Phase::Auth || self.framing == Framing::Stream {
            self.close(CloseReason::Peer(ProtocolError::Decode(e)));
            return;
        }
        let last = self.consumed + read;
        while self.boundaries.front().is_some_and(|&b| b < last) {
            self.boundaries.pop_front();
        }
        self.discarding = true;
    }

    fn serve(&mut self, req: AdminRequest, conn: &Connection) {
        let start = self.out.len();
        let dialect = self.dialect;
        let state = conn.state();
        match req {
            AdminRequest::Query(q) => {
                let value = match &q {
                    Query::ListUsers => {
                        let users = state.users();
                        encode_users(
                            dialect,
                            users.iter().map(|u| (&u.name[..], Some(u.privilege))),
                            &mut self.out,
                        );
                        self.end_response(start);
                        return;
                    }
                    Query::UserConnections { name, .. } => {
                        if name.is_empty() && dialect == Dialect::Final {
                            // PROTOCOL.md: "for an empty name (ULEN 0)": final `00 FE FE`.
                            AdminResponse::QueryError {
                                status: super::command::QUERY_ERROR_INVALID_PARAMETER,
                            }
                            .encode(dialect, &mut self.out);
                            self.end_response(start);
                            return;
                        }
                        // "for a name that is no user: count 0", both dialects.
                        u64::from(state.user_connections(name).unwrap_or(0))
                    }
                    Query::HistoricConnections => state.counters().historic,
                    Query::CurrentConnections => state.counters().current,
                    Query::MaxConcurrentConnections => state.counters().max_concurrent,
                    Query::BytesSent => state.counters().bytes_sent,
                    Query::BytesReceived => state.counters().bytes_received,
                    Query::UsersConnected => state.counters().users_connected,
                    Query::UserCount => state.user_count() as u64,
                    Query::BufferSize => u64::from(state.settings().buffer_size()),
                    Query::SelectorTimeout => u64::from(state.settings().selector_timeout()),
                    Query::ConnectionTimeout(_) => u64::from(state.settings().connection_timeout()),
                };
                let cmd = q
                    .value_cmd()
                    .expect("every query but List Users has a value");
                AdminResponse::Value { cmd, value }.encode(dialect, &mut self.out);
                self.end_response(start);
            }
            AdminRequest::Modify(m) => {
                let cmd = m.cmd();
                match m.to_mutation() {
                    // An out-of-range PRIVILEGE or ACTION byte: no Mutation to apply.
                    None => {
                        AdminResponse::Status {
                            cmd,
                            status: cmd.status(dialect, Outcome::InvalidParameter),
                        }
                        .encode(dialect, &mut self.out);
                        self.end_response(start);
                    }
                    // Durable before acknowledged: the driver applies (and stores) it, then
                    // `handle_apply_result` answers; later requests wait until then.
                    Some(mutation) => {
                        self.events.push_back(Event::Apply(mutation.clone()));
                        self.pending = Some(Pending { cmd, mutation });
                    }
                }
            }
        }
    }
}

fn close_reason(cause: CloseCause) -> CloseReason {
    match cause {
        CloseCause::UserRemoved => CloseReason::UserRemoved,
        CloseCause::Idle => CloseReason::IdleTimeout,
        CloseCause::Shutdown => CloseReason::Done,
    }
}

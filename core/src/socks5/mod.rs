//! SOCKS5 server handshake (RFC 1928, RFC 1929) as a sans-IO state machine, and the SOCKS5
//! messages of both directions ([`Greeting`], [`MethodSelection`], [`Request`], [`Reply`];
//! the RFC 1929 sub-negotiation is [`UserPassRequest`] / [`UserPassReply`]).
//!
//! A client (a test, a load generator, an embedder) encodes [`Greeting`], [`UserPassRequest`]
//! and [`Request`] and decodes [`MethodSelection`], [`UserPassReply`] and [`Reply`]; the
//! server session [`Socks5Handshake`] does the opposite.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{UserPassReply, UserPassRequest};
use crate::error::{CloseReason, DecodeError, ProtocolError};
use crate::state::{Connection, Privilege, HANDSHAKE_TIMEOUT};
use crate::timer::{Timer, TimerTable};

mod addr;
mod msg;
#[cfg(test)]
mod tests;

pub use addr::{ReplyCode, TargetAddr};
pub use msg::{Command, Greeting, Method, MethodSelection, Reply, Request, VERSION};

use msg::RequestFrame;

/// The most client bytes, in bytes, a [`Socks5Handshake`] keeps for the destination while a
/// [`Event::Connect`] is pending (64 KiB). More than that before the reply closes the
/// session with [`ProtocolError::InputLimit`]: clients that pipeline data send one write's
/// worth, not a stream.
pub const MAX_EARLY_DATA: usize = 64 * 1024;

/// Capacity reserved once for the output: a method selection (2), an RFC 1929 reply (2) and
/// the longest reply this server sends (22, IPv6) fit without growing.
const OUT_CAPACITY: usize = MethodSelection::LEN + UserPassReply::LEN + Reply::MAX_IP_LEN;

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

#[derive(Debug)]
enum Phase {
    /// Waiting for the client's [`Greeting`].
    Greeting,
    /// Username/password selected; waiting for the [`UserPassRequest`].
    Auth,
    /// Waiting for the [`Request`].
    Request,
    /// [`Event::Connect`] emitted; waiting for `handle_connect_result`.
    Connecting { target: TargetAddr },
    /// Success reply sent and [`Event::Established`] emitted.
    Established,
    /// [`Event::Closed`] emitted.
    Closed,
}

/// One SOCKS5 client connection's handshake, server side: greeting, RFC 1929
/// authentication, request, reply. It does no I/O and reads no clock.
///
/// # Methods by kind
///
/// - create: [`new`](Self::new) (arms the [`HANDSHAKE_TIMEOUT`]);
/// - inputs: [`handle_input`](Self::handle_input) (client bytes),
///   [`handle_connect_result`](Self::handle_connect_result) (outcome of the dial asked for by
///   [`Event::Connect`]), [`handle_eof`](Self::handle_eof) (client closed),
///   [`handle_timeout`](Self::handle_timeout) (time passed);
/// - outputs: [`poll_transmit`](Self::poll_transmit) (bytes for the client),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout);
/// - getters: [`is_done`](Self::is_done), [`is_established`](Self::is_established),
///   [`is_closed`](Self::is_closed).
///
/// # Drain contract
///
/// After every `handle_*` call, drain [`poll_transmit`](Self::poll_transmit) until `None` and
/// write the bytes to the client, then [`poll_event`](Self::poll_event) until `None`, then
/// read [`poll_timeout`](Self::poll_timeout), before the next `handle_*` call. `Closed` is
/// queued only after the last reply bytes, so a transport that writes what it polled and
/// then acts on `Closed` never cuts a reply short.
///
/// # What a transport sees
///
/// - Success: `Connect { target }`; after `handle_connect_result(now, Ok(local_addr))` the
///   reply bytes, then `Replied { target, Succeeded }`, then `Established { leftover }`. Write
///   `leftover` to the destination, then relay both ways. The session is done; do not call
///   `handle_*` again.
/// - Dial failure: `Connect { target }`; after `handle_connect_result(now, Err(code))` the
///   reply bytes, then `Replied { target, code }`, then `Closed { RequestFailed(code) }`.
/// - BIND, UDP ASSOCIATE or an unknown CMD: the `0x07` reply, `Replied { target,
///   CommandNotSupported }`, `Closed`. No `Connect`.
/// - Any other refusal (no acceptable method, failed authentication, a malformed request,
///   a timeout, EOF): whatever reply the protocol has for it, then `Closed { reason }`.
///   `Replied` is emitted only for requests whose target could be decoded.
///
/// # Decisions where RFC 1928/1929 are silent
///
/// - Method `0x02` is selected whenever offered, even if the server has no users (the
///   authentication then fails): the selection never reveals the user table. `0x00` only when
///   `0x02` is not offered and anonymous use is allowed. A greeting with `NMETHODS = 0` gets
///   `05 FF`.
/// - A first byte other than `0x05` (SOCKS4, HTTP, noise) closes without a reply: no SOCKS5
///   refusal means anything to such a client.
/// - An RFC 1929 request with VER other than `0x01` gets `01 01` (failure).
/// - A request with VER other than `0x05` or RSV other than zero gets REP `0x01`; an unknown
///   ATYP gets `0x08`; BIND, UDP ASSOCIATE and unknown commands get `0x07`. Failure replies
///   carry BND `0.0.0.0:0` ([`Reply::failure`]).
/// - The handshake timer covers the dial too: if it fires while `Connect` is pending, the
///   client gets REP `0x06` (TTL expired, the code for timeouts), then `Replied`, then
///   `Closed { HandshakeTimeout }`; the transport drops its dial, and a late
///   `handle_connect_result` is ignored.
/// - Client bytes after the request are kept for the destination (up to
///   [`MAX_EARLY_DATA`]; beyond that REP `0x01` and `Closed { Peer(InputLimit) }`).
/// - Every message is self-delimiting with a bounded length (a greeting at most 257 bytes,
///   RFC 1929 at most 513, a request at most 262), so a partial message can never outgrow
///   its maximum: the input limit is structural.
#[derive(Debug)]
pub struct Socks5Handshake {
    phase: Phase,
    /// Encoded replies not yet taken by the transport; reserved once.
    out: BytesMut,
    /// At most three events are ever queued at once (`Replied`, then `Established` or
    /// `Closed`).
    events: VecDeque<Event>,
    timers: TimerTable,
    /// Client bytes after the request, for the destination.
    early: BytesMut,
}

impl Socks5Handshake {
    /// Creates a handshake that must finish by `now + HANDSHAKE_TIMEOUT`.
    pub fn new(now: Instant) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Handshake, now + HANDSHAKE_TIMEOUT);
        Self {
            phase: Phase::Greeting,
            out: BytesMut::with_capacity(OUT_CAPACITY),
            events: VecDeque::with_capacity(3),
            timers,
            early: BytesMut::new(),
        }
    }

    /// Consumes the client's bytes: every complete message in `input`, in order, as far as
    /// the handshake goes; a partial message stays in `input`. Once the request has been read,
    /// every further byte is taken for the destination (see [`Event::Established`]). `conn`
    /// is used for the settings (anonymous use) and to authenticate (which binds the user to
    /// `conn`); no lock is held after this returns.
    ///
    /// Once the session [`is_done`](Self::is_done), this does nothing and leaves `input`
    /// untouched.
    pub fn handle_input(&mut self, _now: Instant, input: &mut BytesMut, conn: &Connection) {
        loop {
            let more = match self.phase {
                Phase::Greeting => self.on_greeting(input, conn),
                Phase::Auth => self.on_auth(input, conn),
                Phase::Request => self.on_request(input),
                Phase::Connecting { .. } => {
                    self.take_early(input);
                    false
                }
                Phase::Established | Phase::Closed => false,
            };
            if !more {
                return;
            }
        }
    }

    /// Reports the outcome of the `Connect` event: the local address of the outgoing
    /// connection, or the reply code of the failure (see [`ReplyCode::from_io_error`];
    /// `Err(ReplyCode::Succeeded)` is taken as [`ReplyCode::GeneralFailure`]).
    ///
    /// Ignored unless a `Connect` is pending (a result that arrives after the session closed,
    /// e.g. on its timeout, changes nothing).
    pub fn handle_connect_result(&mut self, _now: Instant, result: Result<SocketAddr, ReplyCode>) {
        let Some(target) = self.take_pending_target() else {
            return;
        };
        match result {
            Ok(local) => {
                Reply {
                    code: ReplyCode::Succeeded,
                    bound: TargetAddr::Ip(local),
                }
                .encode(&mut self.out);
                self.events.push_back(Event::Replied {
                    target,
                    code: ReplyCode::Succeeded,
                });
                self.events.push_back(Event::Established {
                    leftover: std::mem::take(&mut self.early).freeze(),
                });
                self.timers.stop(Timer::Handshake);
                self.phase = Phase::Established;
            }
            Err(code) => {
                let code = match code {
                    ReplyCode::Succeeded => ReplyCode::GeneralFailure,
                    other => other,
                };
                self.refuse(target, code, CloseReason::RequestFailed(code as u8));
            }
        }
    }

    /// Reports that the client closed its sending side. Before the handshake is done this
    /// closes the session with [`CloseReason::PeerEof`] (a pending dial is abandoned: the
    /// client cannot be relayed to without a reply having been read).
    pub fn handle_eof(&mut self, _now: Instant) {
        if !self.is_done() {
            self.close(CloseReason::PeerEof);
        }
    }

    /// Fires expired timers. Spurious or early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The timer is stopped whenever the session is done, so this fires at most once.
        if !self.timers.is_expired(Timer::Handshake, now) {
            return;
        }
        match self.take_pending_target() {
            Some(target) => {
                self.refuse(target, ReplyCode::TtlExpired, CloseReason::HandshakeTimeout);
            }
            None => self.close(CloseReason::HandshakeTimeout),
        }
    }

    /// Returns bytes to send to the client, all that are pending in one `Bytes`.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// Returns the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Returns the next deadline: the handshake timeout while the handshake runs, `None` once
    /// it is done.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Returns whether the handshake is over (established or closed).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Established | Phase::Closed)
    }

    /// Returns whether the handshake succeeded ([`Event::Established`] was emitted).
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    /// Returns whether the session closed ([`Event::Closed`] was emitted).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Handles the greeting; returns whether to go on with the rest of `input`.
    fn on_greeting(&mut self, input: &mut BytesMut, conn: &Connection) -> bool {
        let len = match Greeting::check(input) {
            Ok(Some(len)) => len,
            Ok(None) => return false,
            Err(e) => {
                // Not SOCKS5 at all: no SOCKS5 answer means anything to this peer.
                self.close(CloseReason::Peer(e.into()));
                return false;
            }
        };
        let methods = &input[2..len];
        let method = if methods.contains(&Method::USER_PASS.0) {
            Method::USER_PASS
        } else if methods.contains(&Method::NO_AUTH.0) && conn.state().settings().allow_anonymous()
        {
            Method::NO_AUTH
        } else {
            Method::NO_ACCEPTABLE
        };
        input.advance(len);
        MethodSelection { method }.encode(&mut self.out);
        match method {
            Method::USER_PASS => self.phase = Phase::Auth,
            Method::NO_AUTH => self.phase = Phase::Request,
            _ => {
                // RFC 1928 §3: on X'FF' "the client MUST close the connection"; we do too.
                self.close(CloseReason::Peer(ProtocolError::NoAcceptableMethod));
                return false;
            }
        }
        true
    }

    /// Handles the RFC 1929 request; returns whether to go on with the rest of `input`.
    fn on_auth(&mut self, input: &mut BytesMut, conn: &Connection) -> bool {
        let (len, reason) = match UserPassRequest::check(input) {
            Ok(Some(len)) => {
                // Borrowed in place (no allocation): VER ULEN UNAME PLEN PASSWD, as checked.
                let ulen = usize::from(input[1]);
                let user = &input[2..2 + ulen];
                let password = &input[3 + ulen..len];
                let ok = conn.authenticate(user, password, Privilege::User);
                (len, (!ok).then_some(ProtocolError::AuthFailed))
            }
            Ok(None) => return false,
            Err(e) => (0, Some(e.into())),
        };
        input.advance(len);
        let status = u8::from(reason.is_some());
        UserPassReply { status }.encode(&mut self.out);
        if let Some(reason) = reason {
            // RFC 1929 §2: on failure "the server MUST close the connection".
            self.close(CloseReason::Peer(reason));
            return false;
        }
        self.phase = Phase::Request;
        true
    }

    /// Handles the request; returns whether to go on with the rest of `input`.
    fn on_request(&mut self, input: &mut BytesMut) -> bool {
        let f = match RequestFrame::check(input) {
            Ok(Some(f)) => f,
            Ok(None) => return false,
            Err(e) => {
                let code = match e {
                    DecodeError::BadAddressType(_) => ReplyCode::AddressTypeNotSupported,
                    _ => ReplyCode::GeneralFailure,
                };
                Reply::failure(code).encode(&mut self.out);
                self.close(CloseReason::Peer(e.into()));
                return false;
            }
        };
        let frame = input.split_to(f.len).freeze();
        let (target, _) = TargetAddr::decode_checked(&frame, RequestFrame::ADDR_AT);
        match Command::from_u8(f.cmd) {
            Some(Command::Connect) => {
                self.events.push_back(Event::Connect {
                    target: target.clone(),
                });
                self.phase = Phase::Connecting { target };
                self.take_early(input);
            }
            Some(Command::Bind | Command::UdpAssociate) => {
                let code = ReplyCode::CommandNotSupported;
                self.refuse(target, code, CloseReason::RequestFailed(code as u8));
            }
            None => {
                let e = DecodeError::UnknownSocksCommand(f.cmd);
                self.refuse(
                    target,
                    ReplyCode::CommandNotSupported,
                    CloseReason::Peer(e.into()),
                );
            }
        }
        false
    }

    /// Takes every byte of `input` for the destination, within [`MAX_EARLY_DATA`].
    fn take_early(&mut self, input: &mut BytesMut) {
        if input.is_empty() {
            return;
        }
        if self.early.len() + input.len() > MAX_EARLY_DATA {
            if let Some(target) = self.take_pending_target() {
                let reason = CloseReason::Peer(ProtocolError::InputLimit);
                self.refuse(target, ReplyCode::GeneralFailure, reason);
            }
            return;
        }
        if self.early.is_empty() {
            self.early = input.split();
        } else {
            self.early.extend_from_slice(input);
            input.clear();
        }
    }

    /// Ends a pending `Connect`, returning its target (the phase is then `Closed` until the
    /// caller moves on); `None`, changing nothing, if no `Connect` is pending.
    fn take_pending_target(&mut self) -> Option<TargetAddr> {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Connecting { target } => Some(target),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// Sends a failure reply for `target` and closes.
    fn refuse(&mut self, target: TargetAddr, code: ReplyCode, reason: CloseReason) {
        Reply::failure(code).encode(&mut self.out);
        self.events.push_back(Event::Replied { target, code });
        self.close(reason);
    }

    /// Queues `Closed` (after everything already queued) and stops the timer.
    fn close(&mut self, reason: CloseReason) {
        self.timers.stop(Timer::Handshake);
        self.early = BytesMut::new();
        self.phase = Phase::Closed;
        self.events.push_back(Event::Closed { reason });
    }
}

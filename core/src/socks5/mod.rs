//! SOCKS5 server handshake (RFC 1928, RFC 1929) as a sans-IO state machine, and the SOCKS5
//! messages of both directions ([`Greeting`], [`MethodSelection`], [`Request`], [`Reply`];
//! the RFC 1929 sub-negotiation is [`UserPassRequest`] / [`UserPassReply`]).
//!
//! A client (a test, a load generator, an embedder) encodes [`Greeting`], [`UserPassRequest`]
//! and [`Request`] and decodes [`MethodSelection`], [`UserPassReply`] and [`Reply`]; the
//! server session [`Socks5Handshake`] does the opposite. The CONNECT policy (Happy Eyeballs,
//! RFC 8305) is in [`connect`].

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{UserPassReply, UserPassRequest};
use crate::error::{CloseReason, DecodeError, ProtocolError};
use crate::state::{
    CloseCause, Connection, Login, PendingLogin, Privilege, Secret, HANDSHAKE_TIMEOUT,
};
use crate::timer::{Timer, TimerTable};

mod addr;
pub mod connect;
mod msg;
#[cfg(test)]
mod tests;

pub use addr::{ReplyCode, TargetAddr};
pub use connect::{Attempt, CONNECTION_ATTEMPT_DELAY};
pub use msg::{Command, Greeting, Method, MethodSelection, Reply, Request, VERSION};

use connect::{Dialer, Progress};
use msg::RequestFrame;

/// The most client bytes, in bytes, a [`Socks5Handshake`] keeps for the destination while a
/// CONNECT or BIND is pending (64 KiB). More than that before the (last) reply closes the
/// session with [`ProtocolError::InputLimit`]: clients that pipeline data send one write's
/// worth, not a stream.
pub const MAX_EARLY_DATA: usize = 64 * 1024;

/// Capacity reserved once for the output: a method selection (2), an RFC 1929 reply (2) and
/// the two longest replies this server sends (22 each, IPv6; BIND sends two).
const OUT_CAPACITY: usize = MethodSelection::LEN + UserPassReply::LEN + 2 * Reply::MAX_IP_LEN;

/// The most events queued at once: a `CancelDial` per attempt in flight, `Replied`, then
/// `Established`, `Associated` or `Closed`.
const EVENTS_CAPACITY: usize = Timer::ATTEMPT_SLOTS + 3;

/// The limits and switches of a [`Socks5Handshake`], fixed when it is created. Build with
/// `HandshakeLimits { allow_bind: true, ..HandshakeLimits::default() }` so that fields added
/// later keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// From creation to the (first) reply, the CONNECT attempts included (default
    /// [`HANDSHAKE_TIMEOUT`], 10 s). On expiry: REP `0x06` if a request is pending, else a
    /// silent close; [`CloseReason::HandshakeTimeout`] either way.
    pub handshake_timeout: Duration,
    /// Between the starts of two CONNECT attempts (default [`CONNECTION_ATTEMPT_DELAY`],
    /// 250 ms, RFC 8305 §5).
    pub attempt_delay: Duration,
    /// Whether BIND is served (default `false`: answered `0x07`).
    pub allow_bind: bool,
    /// Whether UDP ASSOCIATE is served (default `false`: answered `0x07`).
    pub allow_udp: bool,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            attempt_delay: CONNECTION_ATTEMPT_DELAY,
            allow_bind: false,
            allow_udp: false,
        }
    }
}

/// What a [`Socks5Handshake`] asks of its transport, and reports to it. `Debug` shows no
/// password or PHC string.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// RFC 1929: `user` is stored hashed and its warm cache missed. Verify `password` against
    /// `phc` off the async workers (bounded in number) and report with
    /// [`Socks5Handshake::handle_verified`]. Until then the session consumes no input (keep
    /// what the client pipelined and hand it to `handle_input` after `handle_verified`); the
    /// handshake deadline still runs, and a verdict after the session closed is ignored.
    Verify {
        /// The username as sent.
        user: Bytes,
        /// The password as sent.
        password: Secret,
        /// The PHC string to verify against.
        phc: Bytes,
    },
    /// Resolve `host` (UTF-8: the session refuses other names with `0x04` before asking) and
    /// report with [`Socks5Handshake::handle_resolved`].
    Resolve {
        /// The name as the client sent it.
        host: Bytes,
        /// The port to connect to (the session uses it whatever ports the resolver reports).
        port: u16,
    },
    /// Start one TCP connect to `addr` and report with
    /// [`Socks5Handshake::handle_dial_result`]. Several may be in flight at once.
    Dial {
        /// Names this attempt in the result and in [`Event::CancelDial`].
        attempt: Attempt,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// Abandon that attempt (it lost the race, or its share of the deadline passed): drop its
    /// socket; a result that still comes is ignored.
    CancelDial {
        /// The attempt to drop.
        attempt: Attempt,
    },
    /// BIND: listen on a fresh port of the control connection's local address and report with
    /// [`Socks5Handshake::handle_listening`], then accept one connection and report it with
    /// [`Socks5Handshake::handle_accepted`].
    Listen,
    /// UDP ASSOCIATE: bind a UDP socket on the control connection's local address, port 0,
    /// and report with [`Socks5Handshake::handle_udp_bound`].
    BindUdp,
    /// The request was answered with `code` (success or not): one access-log line.
    Replied {
        /// The target as the client sent it.
        target: TargetAddr,
        /// The reply code sent (for BIND, that of the second reply).
        code: ReplyCode,
    },
    /// CONNECT or BIND succeeded: write `leftover` (bytes the client pipelined after its
    /// request) to the destination, then relay both ways. Keep the session and report a
    /// close request with [`Socks5Handshake::handle_close_request`].
    Established {
        /// CONNECT: the winning attempt, whose socket is the destination. BIND: `None`, the
        /// accepted socket is.
        attempt: Option<Attempt>,
        /// Client bytes already read that belong to the destination.
        leftover: Bytes,
    },
    /// UDP ASSOCIATE succeeded: run the association while the TCP control connection stays
    /// open (keep reading it: the session discards its bytes and reports its EOF).
    Associated {
        /// The request's DST: where the client expects to send from (all zeros when it does
        /// not know), for `udp::Association::new`.
        client: TargetAddr,
    },
    /// The session is over: close after writing everything polled before, and drop every
    /// socket it asked for.
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
            Self::Resolve { host, port } => f
                .debug_struct("Resolve")
                .field("host", host)
                .field("port", port)
                .finish(),
            Self::Dial { attempt, addr } => f
                .debug_struct("Dial")
                .field("attempt", attempt)
                .field("addr", addr)
                .finish(),
            Self::CancelDial { attempt } => f
                .debug_struct("CancelDial")
                .field("attempt", attempt)
                .finish(),
            Self::Listen => f.write_str("Listen"),
            Self::BindUdp => f.write_str("BindUdp"),
            Self::Replied { target, code } => f
                .debug_struct("Replied")
                .field("target", target)
                .field("code", code)
                .finish(),
            Self::Established { attempt, leftover } => f
                .debug_struct("Established")
                .field("attempt", attempt)
                .field("leftover", leftover)
                .finish(),
            Self::Associated { client } => f
                .debug_struct("Associated")
                .field("client", client)
                .finish(),
            Self::Closed { reason } => f.debug_struct("Closed").field("reason", reason).finish(),
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the client's [`Greeting`].
    Greeting,
    /// Username/password selected; waiting for the [`UserPassRequest`].
    Auth,
    /// [`Event::Verify`] emitted; waiting for [`Socks5Handshake::handle_verified`].
    Verifying(PendingLogin),
    /// Waiting for the [`Request`].
    Request,
    /// CONNECT to a name: [`Event::Resolve`] emitted.
    Resolving { target: TargetAddr },
    /// CONNECT: attempts running.
    Connecting { target: TargetAddr, dialer: Dialer },
    /// BIND: [`Event::Listen`] emitted; the accept deadline once listening.
    Listening {
        target: TargetAddr,
        accept_within: Duration,
    },
    /// BIND: first reply sent; waiting for the incoming connection from `from` (any address
    /// if unspecified).
    Accepting { target: TargetAddr, from: IpAddr },
    /// UDP ASSOCIATE: [`Event::BindUdp`] emitted.
    BindingUdp { target: TargetAddr },
    /// CONNECT or BIND succeeded: [`Event::Established`] emitted.
    Established,
    /// UDP ASSOCIATE succeeded: [`Event::Associated`] emitted.
    Associated,
    /// [`Event::Closed`] emitted.
    Closed,
}

/// One SOCKS5 client connection, server side: greeting, RFC 1929 authentication, request,
/// reply, and the control side of what follows (a relay, a BIND's second reply, a UDP
/// association's lifetime). It does no I/O and reads no clock.
///
/// # Methods by kind
///
/// - create: [`new`](Self::new) (arms the handshake timeout of its [`HandshakeLimits`]);
/// - inputs: [`handle_input`](Self::handle_input) (client bytes),
///   [`handle_eof`](Self::handle_eof) (client closed), [`handle_timeout`](Self::handle_timeout)
///   (time passed), [`handle_close_request`](Self::handle_close_request) (the shared state
///   wants it closed), and the results of what the events asked for:
///   [`handle_resolved`](Self::handle_resolved), [`handle_dial_result`](Self::handle_dial_result),
///   [`handle_listening`](Self::handle_listening), [`handle_accepted`](Self::handle_accepted),
///   [`handle_udp_bound`](Self::handle_udp_bound), [`handle_verified`](Self::handle_verified);
/// - outputs: [`poll_transmit`](Self::poll_transmit) (bytes for the client),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout);
/// - getters: [`is_done`](Self::is_done), [`is_established`](Self::is_established),
///   [`is_associated`](Self::is_associated), [`is_closed`](Self::is_closed).
///
/// # Drain contract
///
/// After every `handle_*` call, drain [`poll_transmit`](Self::poll_transmit) until `None` and
/// write the bytes to the client, then [`poll_event`](Self::poll_event) until `None`, then
/// read [`poll_timeout`](Self::poll_timeout), before the next `handle_*` call. `Closed` is
/// queued only after the last reply bytes, so a transport that writes what it polled and
/// then acts on `Closed` never cuts a reply short. After a timer fires, `poll_timeout` is
/// later or `None`.
///
/// Every `handle_*` that reports an I/O result first fires the timers due at its `now`: a
/// result that arrives at or after a deadline the transport has not yet reported with
/// `handle_timeout` counts as late.
///
/// # What a transport sees
///
/// - RFC 1929 with a user stored hashed whose warm cache missed (`state::Login`):
///   `Verify { user, password, phc }`, no reply yet, no input consumed; after
///   `handle_verified(ok)` the RFC 1929 reply, then (on success) the rest as below, once the
///   driver hands the kept input to `handle_input` again.
/// - CONNECT to a name: `Resolve { host, port }`, then after `handle_resolved(Ok(addrs))`
///   one `Dial { attempt, addr }` per address as the race goes (IP targets and IP literals
///   skip `Resolve`), `CancelDial` for the losers, and on success the reply (BND = the
///   winner's local address), `Replied`, `Established { attempt: Some(winner), leftover }`.
///   On failure the reply, `Replied { target, code }`, `Closed { RequestFailed(code) }`.
/// - BIND (when allowed): `Listen`; after `handle_listening(Ok(addr))` the first reply
///   (BND = `addr`); after `handle_accepted(peer)` the second reply (BND = `peer`), `Replied`,
///   `Established { attempt: None, leftover }`.
/// - UDP ASSOCIATE (when allowed): `BindUdp`; after `handle_udp_bound(Ok(addr))` the reply
///   (BND = `addr`), `Replied`, `Associated { client }`; later `Closed` on the control
///   connection's EOF or a close request.
/// - A disabled BIND or UDP ASSOCIATE, or an unknown CMD: the `0x07` reply, `Replied { target,
///   CommandNotSupported }`, `Closed`.
/// - Any other refusal (no acceptable method, failed authentication, a malformed request,
///   a timeout, EOF): whatever reply the protocol has for it, then `Closed { reason }`.
///   `Replied` is emitted only for requests whose target could be decoded, once per request.
/// - `Closed` after `Established` or `Associated` comes only from `handle_close_request`
///   (and, for an association, `handle_eof`).
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
/// - A user stored hashed is verified by the driver ([`Event::Verify`]) unless the password
///   matches the user's warm cache (`state::Login`). Meanwhile no input is consumed (a
///   pipelined request waits in the transport's buffer), the handshake deadline runs on
///   (expiry closes silently, [`CloseReason::HandshakeTimeout`]), EOF and close requests
///   close as in any other phase, and a verdict that comes after the close is ignored (and
///   never reported by [`poll_login`](Self::poll_login)).
/// - A request with VER other than `0x05` or RSV other than zero gets REP `0x01`; an unknown
///   ATYP gets `0x08`; disabled commands and unknown commands get `0x07`. Failure replies
///   carry BND `0.0.0.0:0` ([`Reply::failure`]).
/// - A domain name that is not UTF-8 is refused with `0x04` without resolving; one that is
///   an IP literal (`"192.0.2.1"`, `"2001:db8::1"`) is dialled without resolving.
/// - CONNECT: Happy Eyeballs as described in [`connect`]; when every attempt failed the reply
///   carries the most informative failure ([`connect::informativeness`]).
/// - The handshake timer covers resolution and every connect attempt too: if it fires while
///   a request is pending, the client gets REP `0x06` (TTL expired, the code for timeouts),
///   then `Replied`, then `Closed { HandshakeTimeout }`; the transport drops what it was
///   doing, and a late result is ignored.
/// - BIND: a domain-name DST gets `0x08` (the server would have to resolve it only to filter
///   peers). The incoming connection must come within the connection-timeout setting (read
///   from `conn` when the request is handled), else second reply `0x06` and close. It must
///   come from DST.ADDR (the port is not compared: clients rarely know it; IPv4-mapped IPv6
///   counts as IPv4), or from anywhere when DST.ADDR is all zeros. A peer from elsewhere
///   gets second reply `0x02` and the session closes: RFC 1928 says the second reply reports
///   whether "the anticipated incoming connection succeeds or fails", and failing at once
///   tells the client, where waiting on would hide the stranger until the timeout; it also
///   lets the transport accept exactly one connection per BIND.
/// - BIND logs one access line, with the second reply's code (or the first's, if it failed).
/// - UDP ASSOCIATE: client bytes on the control connection are discarded (RFC 1928 §7: it
///   only keeps the association alive).
/// - A close request from the shared state ([`handle_close_request`](Self::handle_close_request))
///   closes without a reply in any phase: [`CloseCause::UserRemoved`] gives
///   [`CloseReason::UserRemoved`], [`CloseCause::Idle`] [`CloseReason::IdleTimeout`],
///   [`CloseCause::Shutdown`] [`CloseReason::Done`] (as the admin session does).
/// - Client bytes after a CONNECT or BIND request are kept for the destination (up to
///   [`MAX_EARLY_DATA`]; beyond that REP `0x01` and `Closed { Peer(InputLimit) }`).
/// - EOF before the handshake is done closes it (a pending request is abandoned: the client
///   cannot be relayed to without a reply having been read).
/// - Every message is self-delimiting with a bounded length (a greeting at most 257 bytes,
///   RFC 1929 at most 513, a request at most 262), so a partial message can never outgrow
///   its maximum: the input limit is structural.
#[derive(Debug)]
pub struct Socks5Handshake {
    phase: Phase,
    limits: HandshakeLimits,
    /// Encoded replies not yet taken by the transport; reserved once.
    out: BytesMut,
    /// At most [`EVENTS_CAPACITY`] events are ever queued at once.
    events: VecDeque<Event>,
    timers: TimerTable,
    /// Client bytes after the request, for the destination.
    early: BytesMut,
    /// The RFC 1929 login checked by the last `handle_input`, until polled.
    login: Option<(Bytes, bool)>,
}

impl Socks5Handshake {
    /// Creates a handshake that must finish by `now + limits.handshake_timeout`.
    pub fn new(now: Instant, limits: HandshakeLimits) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Handshake, now + limits.handshake_timeout);
        Self {
            phase: Phase::Greeting,
            limits,
            out: BytesMut::with_capacity(OUT_CAPACITY),
            events: VecDeque::with_capacity(EVENTS_CAPACITY),
            timers,
            early: BytesMut::new(),
            login: None,
        }
    }

    /// Consumes the client's bytes: every complete message in `input`, in order, as far as
    /// the handshake goes; a partial message stays in `input`. Once a CONNECT or BIND request
    /// has been read, every further byte is taken for the destination (see
    /// [`Event::Established`]); after a UDP ASSOCIATE request every byte is discarded. `conn`
    /// is used for the settings (anonymous use, connection timeout) and to authenticate
    /// (which binds the user to `conn`); no lock is held after this returns.
    ///
    /// Once the session [`is_established`](Self::is_established) or
    /// [`is_closed`](Self::is_closed), this does nothing and leaves `input` untouched.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut, conn: &Connection) {
        loop {
            let more = match self.phase {
                Phase::Greeting => self.on_greeting(input, conn),
                Phase::Auth => self.on_auth(input, conn),
                // Consumes nothing until `handle_verified`: the request waits in `input`.
                Phase::Verifying(_) => false,
                Phase::Request => self.on_request(now, input, conn),
                Phase::Resolving { .. }
                | Phase::Connecting { .. }
                | Phase::Listening { .. }
                | Phase::Accepting { .. } => {
                    self.take_early(input);
                    false
                }
                Phase::BindingUdp { .. } | Phase::Associated => {
                    input.clear();
                    false
                }
                Phase::Established | Phase::Closed => false,
            };
            if !more {
                return;
            }
        }
    }

    /// Reports the outcome of [`Event::Resolve`]: the addresses of the name (their ports are
    /// replaced by the requested one), or the error kind ([`ReplyCode::from_resolve_error`]).
    /// No address at all is `0x04`.
    ///
    /// Ignored unless a `Resolve` is pending.
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        result: Result<Vec<SocketAddr>, io::ErrorKind>,
    ) {
        self.handle_timeout(now);
        let Phase::Resolving { target } = &self.phase else {
            return;
        };
        let port = target.port();
        match result {
            Ok(mut addrs) => {
                for a in &mut addrs {
                    a.set_port(port);
                }
                let addrs = connect::happy_eyeballs_order(&addrs);
                if addrs.is_empty() {
                    self.fail_pending(ReplyCode::HostUnreachable);
                } else {
                    self.start_dialing(now, addrs);
                }
            }
            Err(kind) => self.fail_pending(ReplyCode::from_resolve_error(kind)),
        }
    }

    /// Reports the outcome of [`Event::Dial`] `attempt`: the local address of the connection
    /// (the success reply's BND), or the error kind ([`ReplyCode::from_io_error`]).
    ///
    /// Ignored unless that attempt is in flight (a result after its `CancelDial`, after the
    /// race ended or after the session closed changes nothing).
    pub fn handle_dial_result(
        &mut self,
        now: Instant,
        attempt: Attempt,
        result: Result<SocketAddr, io::ErrorKind>,
    ) {
        self.handle_timeout(now);
        if let Phase::Connecting { dialer, .. } = &mut self.phase {
            let p = dialer.on_result(now, attempt, result, &mut self.timers, &mut self.events);
            self.on_progress(p);
        }
    }

    /// Reports the outcome of [`Event::Listen`]: the listening address (the first reply's
    /// BND), or the error kind ([`ReplyCode::from_io_error`]). On success the accept deadline
    /// starts.
    ///
    /// Ignored unless a `Listen` is pending.
    pub fn handle_listening(&mut self, now: Instant, result: Result<SocketAddr, io::ErrorKind>) {
        self.handle_timeout(now);
        let Phase::Listening { accept_within, .. } = self.phase else {
            return;
        };
        match result {
            Ok(addr) => {
                let Phase::Listening { target, .. } =
                    std::mem::replace(&mut self.phase, Phase::Closed)
                else {
                    unreachable!("matched above");
                };
                Reply {
                    code: ReplyCode::Succeeded,
                    bound: TargetAddr::Ip(addr),
                }
                .encode(&mut self.out);
                let from = match &target {
                    TargetAddr::Ip(a) => a.ip().to_canonical(),
                    TargetAddr::Domain(..) => unreachable!("BIND to a name is refused"),
                };
                self.timers.stop(Timer::Handshake);
                self.timers.set(Timer::Accept, now + accept_within);
                self.phase = Phase::Accepting { target, from };
            }
            Err(kind) => self.fail_pending(ReplyCode::from_io_error(kind)),
        }
    }

    /// Reports the connection accepted on the BIND listener, from `peer`. A peer other than
    /// the expected one gets second reply `0x02` and closes the session.
    ///
    /// Ignored unless the session waits for one (after `handle_listening(Ok(..))`).
    pub fn handle_accepted(&mut self, now: Instant, peer: SocketAddr) {
        self.handle_timeout(now);
        let Phase::Accepting { from, .. } = self.phase else {
            return;
        };
        if from.is_unspecified() || from == peer.ip().to_canonical() {
            let Some(target) = self.end_pending() else {
                return;
            };
            self.succeed(target, peer, None);
        } else {
            self.fail_pending(ReplyCode::NotAllowed);
        }
    }

    /// Reports the outcome of [`Event::BindUdp`]: the address to advertise to the client (the
    /// reply's BND; a concrete address, never `0.0.0.0` or `::`), or the error kind
    /// ([`ReplyCode::from_io_error`]).
    ///
    /// Ignored unless a `BindUdp` is pending.
    ///
    /// # Panics
    ///
    /// In debug builds, if the address is unspecified.
    pub fn handle_udp_bound(&mut self, now: Instant, result: Result<SocketAddr, io::ErrorKind>) {
        self.handle_timeout(now);
        if !matches!(self.phase, Phase::BindingUdp { .. }) {
            return;
        }
        match result {
            Ok(addr) => {
                debug_assert!(
                    !addr.ip().is_unspecified(),
                    "advertise a concrete address, not {addr}"
                );
                let Some(target) = self.end_pending() else {
                    return;
                };
                Reply {
                    code: ReplyCode::Succeeded,
                    bound: TargetAddr::Ip(addr),
                }
                .encode(&mut self.out);
                self.events.push_back(Event::Replied {
                    target: target.clone(),
                    code: ReplyCode::Succeeded,
                });
                self.events.push_back(Event::Associated { client: target });
                self.timers.stop_all();
                self.phase = Phase::Associated;
            }
            Err(kind) => self.fail_pending(ReplyCode::from_io_error(kind)),
        }
    }

    /// Reports the driver's verification of the password of the last [`Event::Verify`]: `ok`
    /// is whether it matched the PHC string. The verdict is
    /// [`Connection::finish_login`]'s (the user may have been removed or re-added since):
    /// the RFC 1929 reply is queued, [`poll_login`](Self::poll_login) reports the login, and
    /// on failure the session closes ([`ProtocolError::AuthFailed`]). On success, call
    /// [`handle_input`](Self::handle_input) next with the bytes kept meanwhile (the request
    /// the client may have pipelined), even if there are none yet.
    ///
    /// Fires the timers due at `now` first; ignored unless a `Verify` is pending (late:
    /// after the handshake deadline, a close request or EOF).
    pub fn handle_verified(&mut self, now: Instant, ok: bool, conn: &Connection) {
        self.handle_timeout(now);
        if !matches!(self.phase, Phase::Verifying(_)) {
            return;
        }
        let Phase::Verifying(pending) = std::mem::replace(&mut self.phase, Phase::Auth) else {
            unreachable!("matched above");
        };
        let ok = pending.finish(conn, ok, Privilege::User);
        self.login = Some((pending.user, ok));
        self.auth_reply((!ok).then_some(ProtocolError::AuthFailed));
    }

    /// Reports that the client closed its sending side. Before the handshake is done this
    /// closes the session with [`CloseReason::PeerEof`] (a pending request is abandoned); for
    /// a UDP association it ends the association (RFC 1928 §7). Once established it does
    /// nothing (the relay carries the half-close).
    pub fn handle_eof(&mut self, _now: Instant) {
        if !matches!(self.phase, Phase::Established | Phase::Closed) {
            self.end_pending();
            self.close(CloseReason::PeerEof);
        }
    }

    /// Reports that the shared state asked this connection to close (its user was removed,
    /// it was idle, the server shuts down), in any phase, also after `Established` or
    /// `Associated`: queues `Closed` with the matching reason (see the type's decisions), no
    /// reply. Does nothing once closed.
    pub fn handle_close_request(&mut self, _now: Instant, cause: CloseCause) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.end_pending();
        self.close(match cause {
            CloseCause::UserRemoved => CloseReason::UserRemoved,
            CloseCause::Idle => CloseReason::IdleTimeout,
            CloseCause::Shutdown => CloseReason::Done,
        });
    }

    /// Fires expired timers. Spurious or early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.is_expired(Timer::Handshake, now) {
            // Stopped whenever the handshake is over, so this fires at most once.
            match self.end_pending() {
                Some(target) => {
                    self.refuse(target, ReplyCode::TtlExpired, CloseReason::HandshakeTimeout);
                }
                None => self.close(CloseReason::HandshakeTimeout),
            }
            return;
        }
        if self.timers.is_expired(Timer::Accept, now) {
            self.fail_pending(ReplyCode::TtlExpired);
            return;
        }
        if let Phase::Connecting { dialer, .. } = &mut self.phase {
            let p = dialer.on_timeout(now, &mut self.timers, &mut self.events);
            self.on_progress(p);
        }
    }

    /// Returns the request being carried out, as its command and its target as the client
    /// sent it: from the request's first event ([`Event::Resolve`], [`Event::Dial`],
    /// [`Event::Listen`], [`Event::BindUdp`]) until its reply. `None` otherwise. A driver
    /// checks the operator's policy (`crate::policy`) against it and, if it refuses,
    /// answers with [`refuse_pending`](Self::refuse_pending).
    pub fn pending_request(&self) -> Option<(Command, &TargetAddr)> {
        match &self.phase {
            Phase::Resolving { target } | Phase::Connecting { target, .. } => {
                Some((Command::Connect, target))
            }
            Phase::Listening { target, .. } | Phase::Accepting { target, .. } => {
                Some((Command::Bind, target))
            }
            Phase::BindingUdp { target } => Some((Command::UdpAssociate, target)),
            _ => None,
        }
    }

    /// Refuses the pending request with `code`, a decision the driver's policy made (`0x02`
    /// for an access rule or a limit, `0x03` for a destination the egress address cannot
    /// reach): the attempts in flight are cancelled ([`Event::CancelDial`]), the failure
    /// reply is queued with [`Event::Replied`], then [`Event::Closed`] with
    /// [`CloseReason::RequestFailed`]. A `Succeeded` code is sent as `0x01`. Events already
    /// polled for the request (a `Resolve`, a `Listen`) are then to be dropped unanswered;
    /// their answers, if given anyway, are ignored.
    ///
    /// Ignored unless a request is pending ([`pending_request`](Self::pending_request)).
    pub fn refuse_pending(&mut self, now: Instant, code: ReplyCode) {
        self.handle_timeout(now);
        self.fail_pending(code);
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

    /// Returns, once, the RFC 1929 login that the last [`handle_input`](Self::handle_input)
    /// or [`handle_verified`](Self::handle_verified) decided: the user name as sent and
    /// whether it was accepted. Its reply is in the pending output, so a driver that delays
    /// failed logins (`socks5d_core::guard::LoginThrottle`) asks for this before it writes
    /// what [`poll_transmit`](Self::poll_transmit) returns. A login sent for verification
    /// ([`Event::Verify`]) is reported only once `handle_verified` gives its verdict (never
    /// if the session closed before). Never carries the password.
    #[must_use]
    pub fn poll_login(&mut self) -> Option<(Bytes, bool)> {
        self.login.take()
    }

    /// Returns the next deadline: the handshake timeout, the next connection attempt or an
    /// attempt's deadline, the BIND accept deadline; `None` once the session
    /// [`is_done`](Self::is_done).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Returns whether the handshake is over: established, associated or closed.
    pub fn is_done(&self) -> bool {
        matches!(
            self.phase,
            Phase::Established | Phase::Associated | Phase::Closed
        )
    }

    /// Returns whether a CONNECT or BIND succeeded ([`Event::Established`] was emitted) and
    /// the session has not closed since.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    /// Returns whether a UDP association runs ([`Event::Associated`] was emitted) and the
    /// session has not closed since.
    pub fn is_associated(&self) -> bool {
        matches!(self.phase, Phase::Associated)
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
                let ok = match conn.check_login(user, password, Privilege::User) {
                    Login::Accepted => true,
                    Login::Rejected => false,
                    Login::Verify { phc } => {
                        let pending = PendingLogin::new(user, password, phc);
                        self.events.push_back(Event::Verify {
                            user: pending.user.clone(),
                            password: pending.password.clone(),
                            phc: pending.phc.clone(),
                        });
                        input.advance(len);
                        self.phase = Phase::Verifying(pending);
                        return false;
                    }
                };
                self.login = Some((Bytes::copy_from_slice(user), ok));
                (len, (!ok).then_some(ProtocolError::AuthFailed))
            }
            Ok(None) => return false,
            Err(e) => (0, Some(e.into())),
        };
        input.advance(len);
        self.auth_reply(reason)
    }

    /// Sends the RFC 1929 reply: success (`reason` is `None`), else failure and close.
    /// Returns whether to go on.
    fn auth_reply(&mut self, reason: Option<ProtocolError>) -> bool {
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
    fn on_request(&mut self, now: Instant, input: &mut BytesMut, conn: &Connection) -> bool {
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
        let not_supported = |s: &mut Self, target| {
            let code = ReplyCode::CommandNotSupported;
            s.refuse(target, code, CloseReason::RequestFailed(code as u8));
        };
        match Command::from_u8(f.cmd) {
            Some(Command::Connect) => self.on_connect(now, target),
            Some(Command::Bind) if self.limits.allow_bind => {
                if matches!(target, TargetAddr::Domain(..)) {
                    let code = ReplyCode::AddressTypeNotSupported;
                    self.refuse(target, code, CloseReason::RequestFailed(code as u8));
                } else {
                    let secs = conn.state().settings().connection_timeout();
                    self.events.push_back(Event::Listen);
                    self.phase = Phase::Listening {
                        target,
                        accept_within: Duration::from_secs(secs.into()),
                    };
                }
            }
            Some(Command::UdpAssociate) if self.limits.allow_udp => {
                self.events.push_back(Event::BindUdp);
                self.phase = Phase::BindingUdp { target };
            }
            Some(Command::Bind | Command::UdpAssociate) => not_supported(self, target),
            None => {
                let e = DecodeError::UnknownSocksCommand(f.cmd);
                self.refuse(
                    target,
                    ReplyCode::CommandNotSupported,
                    CloseReason::Peer(e.into()),
                );
            }
        }
        // Whatever follows is early data (or discarded): the next loop round takes it.
        !self.is_closed()
    }

    /// Starts a CONNECT: resolves a name, or dials an address at once.
    fn on_connect(&mut self, now: Instant, target: TargetAddr) {
        let addr = match &target {
            TargetAddr::Ip(a) => *a,
            TargetAddr::Domain(name, port) => {
                let Ok(host) = std::str::from_utf8(name) else {
                    let code = ReplyCode::HostUnreachable;
                    self.refuse(target, code, CloseReason::RequestFailed(code as u8));
                    return;
                };
                match host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, *port),
                    Err(_) => {
                        self.events.push_back(Event::Resolve {
                            host: name.clone(),
                            port: *port,
                        });
                        self.phase = Phase::Resolving { target };
                        return;
                    }
                }
            }
        };
        self.phase = Phase::Resolving { target };
        self.start_dialing(now, vec![addr]);
    }

    /// Moves from `Resolving` to `Connecting` over `addrs` (ordered, not empty).
    fn start_dialing(&mut self, now: Instant, addrs: Vec<SocketAddr>) {
        let Phase::Resolving { target } = std::mem::replace(&mut self.phase, Phase::Closed) else {
            unreachable!("called while resolving");
        };
        let deadline = self
            .timers
            .get(Timer::Handshake)
            .expect("the handshake timer runs until the reply");
        let dialer = Dialer::start(
            now,
            addrs,
            deadline,
            self.limits.attempt_delay,
            &mut self.timers,
            &mut self.events,
        );
        self.phase = Phase::Connecting { target, dialer };
    }

    /// Acts on the race's progress.
    fn on_progress(&mut self, p: Progress) {
        match p {
            Progress::Pending => {}
            Progress::Won { attempt, local } => {
                if let Some(target) = self.end_pending() {
                    self.succeed(target, local, Some(attempt));
                }
            }
            Progress::Failed(code) => self.fail_pending(code),
        }
    }

    /// Sends the (last) success reply with BND `bound` and hands over to the relay.
    fn succeed(&mut self, target: TargetAddr, bound: SocketAddr, attempt: Option<Attempt>) {
        Reply {
            code: ReplyCode::Succeeded,
            bound: TargetAddr::Ip(bound),
        }
        .encode(&mut self.out);
        self.events.push_back(Event::Replied {
            target,
            code: ReplyCode::Succeeded,
        });
        self.events.push_back(Event::Established {
            attempt,
            leftover: std::mem::take(&mut self.early).freeze(),
        });
        self.timers.stop_all();
        self.phase = Phase::Established;
    }

    /// Takes every byte of `input` for the destination, within [`MAX_EARLY_DATA`].
    fn take_early(&mut self, input: &mut BytesMut) {
        if input.is_empty() {
            return;
        }
        if self.early.len() + input.len() > MAX_EARLY_DATA {
            if let Some(target) = self.end_pending() {
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

    /// Ends a pending request, returning its target; cancels the attempts in flight. The
    /// phase is then `Closed` until the caller moves on. `None`, changing nothing, if no
    /// request is pending.
    fn end_pending(&mut self) -> Option<TargetAddr> {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Connecting { target, mut dialer } => {
                dialer.cancel_all(&mut self.timers, &mut self.events);
                Some(target)
            }
            Phase::Resolving { target }
            | Phase::Listening { target, .. }
            | Phase::Accepting { target, .. }
            | Phase::BindingUdp { target } => Some(target),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// Refuses the pending request (if any) with `code`.
    fn fail_pending(&mut self, code: ReplyCode) {
        let code = match code {
            ReplyCode::Succeeded => ReplyCode::GeneralFailure,
            other => other,
        };
        if let Some(target) = self.end_pending() {
            self.refuse(target, code, CloseReason::RequestFailed(code as u8));
        }
    }

    /// Sends a failure reply for `target` and closes.
    fn refuse(&mut self, target: TargetAddr, code: ReplyCode, reason: CloseReason) {
        Reply::failure(code).encode(&mut self.out);
        self.events.push_back(Event::Replied { target, code });
        self.close(reason);
    }

    /// Queues `Closed` (after everything already queued) and stops the timers.
    fn close(&mut self, reason: CloseReason) {
        self.timers.stop_all();
        self.early = BytesMut::new();
        self.phase = Phase::Closed;
        self.events.push_back(Event::Closed { reason });
    }
}

//! UNSTABLE: for the fuzz crate and tests.
//!
//! One function per fuzz target. Each takes the raw fuzzer input (`&[u8]`), so that the fuzz
//! crate's targets are one line each and `tests/` can replay `fuzz/corpus/*` on a stable
//! toolchain. Every body checks invariants, not only the absence of panics:
//!
//! - parsers: whatever decodes consumed exactly one message, re-encodes to the very bytes it
//!   was decoded from (every message of these protocols has one encoding), and decodes back to
//!   the same value; every strict prefix of it is partial; a partial input is shorter than the
//!   longest message; `Ok(None)` and `Err` leave the input untouched; `check` agrees with
//!   `decode`. The same input is also read as an [`Arbitrary`] value, which must survive an
//!   encode/decode round trip.
//! - sessions: the input is a [`Script`] (a byte stream, how to cut it into reads, and when
//!   time passes). The transcript (bytes sent, events, input left unread) is the same however
//!   the stream is cut; what the session sends is well-formed, answers only messages it
//!   received, and stays within a fixed bound.
//!
//! A failed check panics, which is what a fuzzer reports.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};

use crate::codec::{UserPassReply, UserPassRequest};
use crate::error::{CloseReason, DecodeError};
use crate::socks5::{
    self, Greeting, Method, MethodSelection, ReplyCode, Request, Socks5Handshake, TargetAddr,
};
use crate::state::{Config, ConnKind, Mutation, Privilege, State, HANDSHAKE_TIMEOUT};

// ---------------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------------

type DecodeFn<M> = fn(&mut BytesMut) -> Result<Option<M>, DecodeError>;
type CheckFn = fn(&[u8]) -> Result<Option<usize>, DecodeError>;

/// One message type under test: how to decode, encode and frame it, and its longest encoding.
struct Codec<M> {
    name: &'static str,
    decode: DecodeFn<M>,
    encode: fn(&M, &mut BytesMut),
    check: Option<CheckFn>,
    max_len: usize,
}

impl<M: PartialEq + std::fmt::Debug> Codec<M> {
    /// Decodes `data` and checks everything the module docs promise for parsers.
    fn check_bytes(&self, data: &[u8]) {
        let name = self.name;
        let mut src = BytesMut::from(data);
        let decoded = (self.decode)(&mut src);
        let consumed = data.len() - src.len();
        if let Some(check) = self.check {
            let framed = check(data);
            match (&decoded, framed) {
                (Ok(Some(_)), Ok(Some(n))) => assert_eq!(n, consumed, "{name}: check vs decode"),
                (Ok(None), Ok(None)) => {}
                (Err(a), Err(b)) => assert_eq!(*a, b, "{name}: check vs decode error"),
                (d, c) => panic!("{name}: decode gave {d:?}, check gave {c:?}"),
            }
        }
        let msg = match decoded {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                assert_eq!(
                    &src[..],
                    data,
                    "{name}: Ok(None) must leave the input untouched"
                );
                assert!(
                    data.len() < self.max_len,
                    "{name}: {} bytes are still partial, longest message is {}",
                    data.len(),
                    self.max_len
                );
                return;
            }
            Err(_) => {
                assert_eq!(&src[..], data, "{name}: Err must leave the input untouched");
                return;
            }
        };
        assert!(
            (1..=self.max_len).contains(&consumed),
            "{name}: consumed {consumed} bytes"
        );
        let frame = &data[..consumed];
        let mut enc = BytesMut::new();
        (self.encode)(&msg, &mut enc);
        assert_eq!(
            &enc[..],
            frame,
            "{name}: {msg:?} must re-encode to its bytes"
        );
        self.check_value(&msg);
        for i in 0..consumed {
            let mut prefix = BytesMut::from(&frame[..i]);
            assert_eq!(
                (self.decode)(&mut prefix),
                Ok(None),
                "{name}: strict prefix {i} of {frame:02x?} must be partial"
            );
        }
    }

    /// Checks that `msg` encodes to one complete message that decodes back to `msg`.
    fn check_value(&self, msg: &M) {
        let name = self.name;
        let mut enc = BytesMut::new();
        (self.encode)(msg, &mut enc);
        assert!(
            enc.len() <= self.max_len,
            "{name}: {msg:?} encodes too long"
        );
        let len = enc.len();
        enc.extend_from_slice(b"\x00tail");
        let mut src = enc.clone();
        let back = (self.decode)(&mut src);
        assert!(
            matches!(&back, Ok(Some(m)) if m == msg),
            "{name}: {msg:?} decoded as {back:?}"
        );
        assert_eq!(
            &src[..],
            b"\x00tail",
            "{name}: decode must consume one message"
        );
        if let Some(check) = self.check {
            assert_eq!(check(&enc), Ok(Some(len)), "{name}: check of {msg:?}");
        }
    }
}

/// Reads the start of `data` as an arbitrary `M` (with the same input the byte-level checks
/// use) and checks it round-trips.
fn check_arbitrary<'a, M: Arbitrary<'a> + PartialEq + std::fmt::Debug>(
    codec: &Codec<M>,
    data: &'a [u8],
) {
    if let Ok(msg) = M::arbitrary(&mut Unstructured::new(data)) {
        codec.check_value(&msg);
    }
}

fn greeting_codec() -> Codec<Greeting> {
    Codec {
        name: "Greeting",
        decode: Greeting::decode,
        encode: |m, b| m.encode(b),
        check: Some(Greeting::check),
        max_len: Greeting::MAX_LEN,
    }
}

fn method_selection_codec() -> Codec<MethodSelection> {
    Codec {
        name: "MethodSelection",
        decode: MethodSelection::decode,
        encode: |m, b| m.encode(b),
        check: Some(MethodSelection::check),
        max_len: MethodSelection::LEN,
    }
}

fn userpass_codec() -> Codec<UserPassRequest> {
    Codec {
        name: "UserPassRequest",
        decode: UserPassRequest::decode,
        encode: |m, b| m.encode(b),
        check: Some(UserPassRequest::check),
        max_len: UserPassRequest::MAX_LEN,
    }
}

fn userpass_reply_codec() -> Codec<UserPassReply> {
    Codec {
        name: "UserPassReply",
        decode: UserPassReply::decode,
        encode: |m, b| m.encode(b),
        check: None,
        max_len: UserPassReply::LEN,
    }
}

fn request_codec() -> Codec<Request> {
    Codec {
        name: "Request",
        decode: Request::decode,
        encode: |m, b| m.encode(b),
        check: Some(Request::check),
        max_len: Request::MAX_LEN,
    }
}

fn reply_codec() -> Codec<socks5::Reply> {
    Codec {
        name: "Reply",
        decode: socks5::Reply::decode,
        encode: |m, b| m.encode(b),
        check: Some(socks5::Reply::check),
        max_len: socks5::Reply::MAX_LEN,
    }
}

/// Fuzz body `socks5_greeting`: the SOCKS5 greeting (client) and method selection (server).
pub fn socks5_greeting(data: &[u8]) {
    let (g, m) = (greeting_codec(), method_selection_codec());
    g.check_bytes(data);
    m.check_bytes(data);
    check_arbitrary(&g, data);
    check_arbitrary(&m, data);
}

/// Fuzz body `socks5_userpass`: the RFC 1929 request and reply (also the admin
/// authentication messages).
pub fn socks5_userpass(data: &[u8]) {
    let (q, r) = (userpass_codec(), userpass_reply_codec());
    q.check_bytes(data);
    r.check_bytes(data);
    check_arbitrary(&q, data);
    check_arbitrary(&r, data);
}

/// Fuzz body `socks5_request`: the SOCKS5 request (client) and reply (server).
pub fn socks5_request(data: &[u8]) {
    let (q, r) = (request_codec(), reply_codec());
    q.check_bytes(data);
    r.check_bytes(data);
    check_arbitrary(&q, data);
    check_arbitrary(&r, data);
}

// ---------------------------------------------------------------------------------------------
// Session scripts
// ---------------------------------------------------------------------------------------------

/// One read of a [`Script`]: how many stream bytes arrive, how much time passes before they
/// do, and what else happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub struct Step {
    /// Bytes of the stream delivered by this read (fewer if the stream runs out).
    pub len: u16,
    /// Milliseconds that pass before this read (the session's timers are fired first).
    pub tick_ms: u16,
    /// Bit flags, meaning per session: see each session body.
    pub action: u8,
}

/// The fixed part of a [`Script`], decoded with [`Arbitrary`] from the front of the input.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
struct Head {
    options: u8,
    steps: Vec<Step>,
}

/// A session script: a byte stream from the peer, how to cut it into reads, and when time
/// passes. The fuzzer input is an [`Arbitrary`] head (options, steps) followed by the raw
/// stream, so that the fuzzer mutates protocol bytes directly; [`Script::to_fuzz_input`] is
/// the inverse, used to write seeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Bit flags, meaning per session: see each session body.
    pub options: u8,
    /// The reads, in order. Stream bytes left after the last step arrive in one final read.
    pub steps: Vec<Step>,
    /// Everything the peer sends.
    pub stream: Vec<u8>,
}

impl Script {
    /// At most this many steps are used (the rest are ignored).
    pub const MAX_STEPS: usize = 256;

    /// Reads a script from fuzzer input; never fails (missing parts are empty).
    pub fn from_fuzz_input(data: &[u8]) -> Self {
        let mut u = Unstructured::new(data);
        let head = Head::arbitrary(&mut u).unwrap_or(Head {
            options: 0,
            steps: Vec::new(),
        });
        let stream = u.take_rest().to_vec();
        Self {
            options: head.options,
            steps: head.steps,
            stream,
        }
    }

    /// Returns the fuzzer input that [`from_fuzz_input`](Self::from_fuzz_input) reads as this
    /// script (the encoding of `arbitrary` 1.x: integers little-endian, each `Vec` element
    /// preceded by a `1` byte and the list ended by a `0` byte).
    pub fn to_fuzz_input(&self) -> Vec<u8> {
        let mut out = vec![self.options];
        for s in &self.steps {
            out.push(1);
            out.extend_from_slice(&s.len.to_le_bytes());
            out.extend_from_slice(&s.tick_ms.to_le_bytes());
            out.push(s.action);
        }
        out.push(0);
        out.extend_from_slice(&self.stream);
        out
    }

    /// Returns the steps used (at most [`MAX_STEPS`](Self::MAX_STEPS)).
    fn used_steps(&self) -> &[Step] {
        &self.steps[..self.steps.len().min(Self::MAX_STEPS)]
    }

    /// Cuts the stream into one read per step plus a final read with the rest (possibly
    /// empty).
    pub fn chunks(&self) -> Vec<&[u8]> {
        let mut rest = &self.stream[..];
        let mut out = Vec::with_capacity(self.used_steps().len() + 1);
        for s in self.used_steps() {
            let (a, b) = rest.split_at(usize::from(s.len).min(rest.len()));
            out.push(a);
            rest = b;
        }
        out.push(rest);
        out
    }
}

/// A fixed epoch for the scripts. Only differences of instants matter to the sessions, so
/// which instant this is changes nothing.
#[allow(clippy::disallowed_methods)] // the one clock read: the sessions never see it
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The users every session script's [`State`] starts with: (name, password, privilege).
pub const SCRIPT_USERS: [(&[u8], &[u8], Privilege); 3] = [
    (b"admin", b"secret", Privilege::Admin),
    (b"bob", b"hunter2", Privilege::User),
    (b"root", b"toor", Privilege::Admin),
];

/// Returns a fresh [`State`] with the [`SCRIPT_USERS`].
pub fn script_state(allow_anonymous: bool) -> Arc<State> {
    let state = Arc::new(State::new(
        epoch(),
        &Config {
            allow_anonymous,
            ..Config::default()
        },
    ));
    for (name, password, privilege) in SCRIPT_USERS {
        let m = Mutation::AddUser {
            name: Bytes::from_static(name),
            password: Bytes::from_static(password),
            privilege,
        };
        assert_eq!(state.apply(None, &m), crate::state::Outcome::Applied);
    }
    state
}

// ---------------------------------------------------------------------------------------------
// SOCKS5 session
// ---------------------------------------------------------------------------------------------

/// What a [`Socks5Handshake`] did over a whole script.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Socks5Transcript {
    out: Vec<u8>,
    events: Vec<socks5::Event>,
    /// Input the session left unread.
    unread: Vec<u8>,
}

/// Options of the SOCKS5 script, from [`Script::options`].
#[derive(Debug, Clone, Copy)]
struct Socks5Options {
    anonymous: bool,
    eof_at_end: bool,
    result: Result<SocketAddr, ReplyCode>,
}

impl Socks5Options {
    fn new(bits: u8) -> Self {
        let result = match bits >> 4 {
            0 => Ok(SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 40000)),
            1 => Ok(SocketAddr::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7).into(),
                443,
            )),
            code => Err(ReplyCode::from_u8(code - 2).unwrap_or(ReplyCode::GeneralFailure)),
        };
        Self {
            anonymous: bits & 1 != 0,
            eof_at_end: bits & 2 != 0,
            result,
        }
    }
}

/// Drives one [`Socks5Handshake`] and checks its per-call invariants.
struct Socks5Driver {
    s: Socks5Handshake,
    conn: crate::state::Connection,
    input: BytesMut,
    t: Socks5Transcript,
    t0: Instant,
}

impl Socks5Driver {
    fn new(anonymous: bool) -> Self {
        let t0 = epoch();
        let conn = script_state(anonymous).open(ConnKind::Proxy, t0);
        Self {
            s: Socks5Handshake::new(t0),
            conn,
            input: BytesMut::new(),
            t: Socks5Transcript {
                out: Vec::new(),
                events: Vec::new(),
                unread: Vec::new(),
            },
            t0,
        }
    }

    fn connect_pending(&self) -> bool {
        let connects = self
            .t
            .events
            .iter()
            .filter(|e| matches!(e, socks5::Event::Connect { .. }))
            .count();
        let replied = self
            .t
            .events
            .iter()
            .any(|e| matches!(e, socks5::Event::Replied { .. }));
        connects == 1 && !replied && !self.s.is_done()
    }

    /// Drains outputs and checks what holds after every call.
    fn drain(&mut self) {
        let was_done = self.t.events.iter().any(|e| {
            matches!(
                e,
                socks5::Event::Closed { .. } | socks5::Event::Established { .. }
            )
        });
        let (n_out, n_ev) = (self.t.out.len(), self.t.events.len());
        while let Some(b) = self.s.poll_transmit() {
            assert!(!b.is_empty(), "poll_transmit returned empty bytes");
            self.t.out.extend_from_slice(&b);
        }
        while let Some(e) = self.s.poll_event() {
            self.t.events.push(e);
        }
        if was_done {
            assert_eq!(
                (self.t.out.len(), self.t.events.len()),
                (n_out, n_ev),
                "a done session must stay silent"
            );
        }
        // Bounded: a method selection, an RFC 1929 reply and one reply; at most four events.
        assert!(self.t.out.len() <= 2 + 2 + socks5::Reply::MAX_IP_LEN);
        assert!(self.t.events.len() <= 4, "{:?}", self.t.events);
        let closed = self
            .t
            .events
            .iter()
            .position(|e| matches!(e, socks5::Event::Closed { .. }));
        if let Some(i) = closed {
            assert_eq!(i, self.t.events.len() - 1, "Closed must be the last event");
        }
        let established = self
            .t
            .events
            .iter()
            .any(|e| matches!(e, socks5::Event::Established { .. }));
        assert_eq!(self.s.is_closed(), closed.is_some());
        assert_eq!(self.s.is_established(), established);
        assert!(!(self.s.is_closed() && established));
        assert_eq!(self.s.is_done(), self.s.is_closed() || established);
        let deadline = (!self.s.is_done()).then(|| self.t0 + HANDSHAKE_TIMEOUT);
        assert_eq!(self.s.poll_timeout(), deadline);
        if !self.s.is_done() {
            // Partial messages are bounded by the longest message; once the request is in,
            // everything goes to the early-data buffer.
            if self.connect_pending() {
                assert!(self.input.is_empty(), "early data must be taken");
            } else {
                assert!(self.input.len() < UserPassRequest::MAX_LEN);
            }
        }
    }

    fn feed(&mut self, now: Instant, chunk: &[u8]) {
        self.input.extend_from_slice(chunk);
        let before = self.input.clone();
        let done = self.s.is_done();
        self.s.handle_input(now, &mut self.input, &self.conn);
        if done {
            assert_eq!(
                self.input, before,
                "a done session must leave input untouched"
            );
        }
        self.drain();
    }

    fn result(&mut self, now: Instant, r: Result<SocketAddr, ReplyCode>) {
        self.s.handle_connect_result(now, r);
        self.drain();
    }

    fn finish(mut self, opts: Socks5Options, now: Instant) -> Socks5Transcript {
        if self.connect_pending() {
            self.result(now, opts.result);
        }
        if opts.eof_at_end {
            self.s.handle_eof(now);
            self.drain();
        }
        self.t.unread = self.input.to_vec();
        self.t
    }
}

/// Runs the script's stream cut into `chunks` with the clock stopped, then the connect result
/// (if a `Connect` is pending) and the EOF (if asked for).
fn socks5_frozen(opts: Socks5Options, chunks: &[&[u8]]) -> Socks5Transcript {
    let mut d = Socks5Driver::new(opts.anonymous);
    let t0 = d.t0;
    for c in chunks {
        d.feed(t0, c);
    }
    d.finish(opts, t0)
}

/// Checks a transcript against the stream the client sent: what the server sent is a
/// well-formed sequence of server messages, each answering a client message that was
/// received, consistent with the events and with the users the state knows.
///
/// `complete`: the session saw the whole stream before any timeout or EOF, so every complete
/// client message must have been answered.
fn socks5_check_transcript(
    opts: Socks5Options,
    stream: &[u8],
    t: &Socks5Transcript,
    complete: bool,
) {
    let mut out = BytesMut::from(&t.out[..]);
    let mut rest = stream;
    let events = &t.events;
    let closed_reason = events.iter().find_map(|e| match e {
        socks5::Event::Closed { reason } => Some(reason.clone()),
        _ => None,
    });
    // Greeting -> method selection.
    let Some(selection) = MethodSelection::decode(&mut out).expect("method selection") else {
        assert!(
            out.is_empty(),
            "server sent {:02x?} without a selection",
            t.out
        );
        if let (true, Ok(Some(_))) = (complete, Greeting::check(rest)) {
            panic!("a complete greeting went unanswered: {events:?}");
        }
        return;
    };
    let glen = Greeting::check(rest)
        .ok()
        .flatten()
        .expect("a selection answers a complete greeting");
    let methods = &rest[2..glen];
    rest = &rest[glen..];
    let expected = if methods.contains(&Method::USER_PASS.0) {
        Method::USER_PASS
    } else if methods.contains(&Method::NO_AUTH.0) && opts.anonymous {
        Method::NO_AUTH
    } else {
        Method::NO_ACCEPTABLE
    };
    assert_eq!(selection.method, expected, "selection for {methods:02x?}");
    if expected == Method::NO_ACCEPTABLE {
        assert!(out.is_empty());
        assert!(matches!(closed_reason, Some(CloseReason::Peer(_))));
        return;
    }
    // RFC 1929.
    if expected == Method::USER_PASS {
        let Some(reply) = UserPassReply::decode(&mut out).expect("RFC 1929 reply") else {
            assert!(out.is_empty());
            assert!(
                !complete || matches!(UserPassRequest::check(rest), Ok(None)),
                "an authentication request went unanswered"
            );
            return;
        };
        let ok = match UserPassRequest::check(rest) {
            Ok(Some(n)) => {
                let ulen = usize::from(rest[1]);
                let (user, password) = (&rest[2..2 + ulen], &rest[3 + ulen..n]);
                rest = &rest[n..];
                SCRIPT_USERS
                    .iter()
                    .any(|(u, p, _)| *u == user && *p == password)
            }
            Ok(None) => panic!("an RFC 1929 reply to an incomplete request"),
            Err(_) => false,
        };
        assert_eq!(reply.status, u8::from(!ok), "RFC 1929 status");
        if !ok {
            assert!(out.is_empty());
            assert!(closed_reason.is_some());
            return;
        }
    }
    // Request -> reply.
    let connect = events.iter().find_map(|e| match e {
        socks5::Event::Connect { target } => Some(target.clone()),
        _ => None,
    });
    let replied = events.iter().find_map(|e| match e {
        socks5::Event::Replied { target, code } => Some((target.clone(), *code)),
        _ => None,
    });
    let Some(reply) = socks5::Reply::decode(&mut out).expect("SOCKS5 reply") else {
        assert!(out.is_empty());
        assert!(replied.is_none(), "Replied without a reply");
        if complete && connect.is_none() {
            assert!(
                matches!(Request::check(rest), Ok(None)),
                "a request went unanswered"
            );
        }
        return;
    };
    assert!(out.is_empty(), "bytes after the reply: {:02x?}", &out[..]);
    let request_len = match Request::check(rest) {
        Ok(Some(n)) => Some(n),
        Ok(None) => panic!("a reply to an incomplete request"),
        Err(_) => None,
    };
    if let Some((_, code)) = &replied {
        assert_eq!(reply.code, *code, "Replied carries the code sent");
    }
    if let Some(target) = &connect {
        assert_eq!(Some(target), replied.as_ref().map(|r| &r.0));
    }
    if reply.code == ReplyCode::Succeeded {
        let n = request_len.expect("success answers a complete request");
        let target = connect.expect("success follows Connect");
        let req = Request::decode(&mut BytesMut::from(rest)).expect("a connect request");
        assert_eq!(req.map(|r| r.target), Some(target));
        assert_eq!(Ok(reply.bound), opts.result.map(TargetAddr::Ip));
        let leftover = events.iter().find_map(|e| match e {
            socks5::Event::Established { leftover } => Some(leftover.clone()),
            _ => None,
        });
        let leftover = leftover.expect("Established after success");
        let mut after = leftover.to_vec();
        after.extend_from_slice(&t.unread);
        assert_eq!(
            after,
            &rest[n..],
            "leftover and unread input are what follows the request"
        );
    } else {
        assert!(closed_reason.is_some(), "a failure reply closes");
    }
}

/// Fuzz body `socks5_session`: a [`Socks5Handshake`] run by a [`Script`].
///
/// `options`: bit 0 allows anonymous use; bit 1 sends EOF at the end; bits 4..8 choose the
/// dial outcome (0: IPv4 local address, 1: IPv6, n ≥ 2: failure with reply code n - 2).
/// `Step::action`: bit 0 delivers the dial outcome after the read (if a `Connect` is
/// pending); bit 1 sends EOF after the read.
///
/// Checks: with the clock stopped, the transcript is the same for the script's cuts, one
/// read, and one read per byte; with the script's clock and actions every per-call invariant
/// holds (bounded output, `Closed` last, silence once done, timers armed exactly while the
/// handshake runs) and the output is well-formed and answers only what was received; when
/// the script's clock and actions cannot matter, that run equals the frozen one.
pub fn socks5_session(data: &[u8]) {
    let script = Script::from_fuzz_input(data);
    let opts = Socks5Options::new(script.options);
    let chunks = script.chunks();

    let frozen = socks5_frozen(opts, &chunks);
    socks5_check_transcript(opts, &script.stream, &frozen, true);
    assert_eq!(
        frozen,
        socks5_frozen(opts, &[&script.stream]),
        "one read vs the script's reads"
    );
    if script.stream.len() <= 4096 {
        let bytes: Vec<&[u8]> = script.stream.chunks(1).collect();
        assert_eq!(frozen, socks5_frozen(opts, &bytes), "one read per byte");
    }

    // The script's clock and actions.
    let mut d = Socks5Driver::new(opts.anonymous);
    let mut now = d.t0;
    let mut plain = true;
    for (i, chunk) in chunks.iter().enumerate() {
        let step = script.used_steps().get(i).copied().unwrap_or(Step {
            len: 0,
            tick_ms: 0,
            action: 0,
        });
        now += Duration::from_millis(u64::from(step.tick_ms));
        d.s.handle_timeout(now);
        d.drain();
        if now >= d.t0 + HANDSHAKE_TIMEOUT {
            assert!(d.s.is_done(), "the handshake timer must have fired");
            plain = false;
        }
        d.feed(now, chunk);
        if step.action & 1 != 0 && d.connect_pending() {
            d.result(now, opts.result);
            plain = false;
        }
        if step.action & 2 != 0 {
            d.s.handle_eof(now);
            d.drain();
            plain = false;
        }
    }
    let timed = d.finish(opts, now);
    socks5_check_transcript(opts, &script.stream, &timed, false);
    if plain {
        assert_eq!(timed, frozen, "the clock and no actions must not matter");
    }
}

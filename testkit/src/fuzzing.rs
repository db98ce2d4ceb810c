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

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};

use socks5d_core::admin::msg::{
    AdminRequest, AdminResponse, ListedUser, Modify, ModifyCmd, Query, RequestType, ValueCmd,
};
use socks5d_core::admin::{self, AdminSession, Dialect, Framing};
use socks5d_core::error::{CloseReason, DecodeError};
use socks5d_core::sniff::{Credential, Sniffer, MAX_QUEUED};
use socks5d_core::socks5::{
    self, Attempt, Command, Greeting, HandshakeLimits, Method, MethodSelection, ReplyCode, Request,
    Socks5Handshake, TargetAddr,
};
use socks5d_core::state::{
    CloseCause, Config, ConnKind, Mutation, Outcome, Privilege, State, HANDSHAKE_TIMEOUT,
};
use socks5d_core::{UserPassReply, UserPassRequest};

// ---------------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------------

type DecodeFn<'f, M> = &'f dyn Fn(&mut BytesMut) -> Result<Option<M>, DecodeError>;
type CheckFn<'f> = &'f dyn Fn(&[u8]) -> Result<Option<usize>, DecodeError>;

/// One message type under test: how to decode, encode and frame it, and its longest encoding.
struct Codec<'f, M> {
    name: &'static str,
    decode: DecodeFn<'f, M>,
    encode: &'f dyn Fn(&M, &mut BytesMut),
    check: Option<CheckFn<'f>>,
    max_len: usize,
}

impl<M: PartialEq + std::fmt::Debug> Codec<'_, M> {
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
        // Every strict prefix (a sample of them for long messages: a user list can be 64 KiB).
        let stride = consumed / 512 + 1;
        for i in (0..consumed).step_by(stride) {
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
    codec: &Codec<'_, M>,
    data: &'a [u8],
) {
    if let Ok(msg) = M::arbitrary(&mut Unstructured::new(data)) {
        codec.check_value(&msg);
    }
}

fn greeting_codec() -> Codec<'static, Greeting> {
    Codec {
        name: "Greeting",
        decode: &Greeting::decode,
        encode: &|m, b| m.encode(b),
        check: Some(&Greeting::check),
        max_len: Greeting::MAX_LEN,
    }
}

fn method_selection_codec() -> Codec<'static, MethodSelection> {
    Codec {
        name: "MethodSelection",
        decode: &MethodSelection::decode,
        encode: &|m, b| m.encode(b),
        check: Some(&MethodSelection::check),
        max_len: MethodSelection::LEN,
    }
}

fn userpass_codec() -> Codec<'static, UserPassRequest> {
    Codec {
        name: "UserPassRequest",
        decode: &UserPassRequest::decode,
        encode: &|m, b| m.encode(b),
        check: Some(&UserPassRequest::check),
        max_len: UserPassRequest::MAX_LEN,
    }
}

fn userpass_reply_codec() -> Codec<'static, UserPassReply> {
    Codec {
        name: "UserPassReply",
        decode: &UserPassReply::decode,
        encode: &|m, b| m.encode(b),
        check: None,
        max_len: UserPassReply::LEN,
    }
}

fn request_codec() -> Codec<'static, Request> {
    Codec {
        name: "Request",
        decode: &Request::decode,
        encode: &|m, b| m.encode(b),
        check: Some(&Request::check),
        max_len: Request::MAX_LEN,
    }
}

fn reply_codec() -> Codec<'static, socks5::Reply> {
    Codec {
        name: "Reply",
        decode: &socks5::Reply::decode,
        encode: &|m, b| m.encode(b),
        check: Some(&socks5::Reply::check),
        max_len: socks5::Reply::MAX_LEN,
    }
}

/// Checks `data` against both messages of one exchange, as bytes and as `Arbitrary` values.
fn check_pair<'a, Q, R>(q: &Codec<'_, Q>, r: &Codec<'_, R>, data: &'a [u8])
where
    Q: Arbitrary<'a> + PartialEq + std::fmt::Debug,
    R: Arbitrary<'a> + PartialEq + std::fmt::Debug,
{
    q.check_bytes(data);
    r.check_bytes(data);
    check_arbitrary(q, data);
    check_arbitrary(r, data);
}

/// Fuzz body `socks5_greeting`: the SOCKS5 greeting (client) and method selection (server).
pub fn socks5_greeting(data: &[u8]) {
    check_pair(&greeting_codec(), &method_selection_codec(), data);
}

/// Fuzz body `socks5_userpass`: the RFC 1929 request and reply (also the admin
/// authentication messages).
pub fn socks5_userpass(data: &[u8]) {
    check_pair(&userpass_codec(), &userpass_reply_codec(), data);
}

/// Fuzz body `socks5_request`: the SOCKS5 request (client) and reply (server).
pub fn socks5_request(data: &[u8]) {
    check_pair(&request_codec(), &reply_codec(), data);
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

use crate::epoch::epoch;

/// The users every session script's [`State`] starts with: (name, password, privilege).
pub const SCRIPT_USERS: [(&[u8], &[u8], Privilege); 3] = [
    (b"admin", b"secret", Privilege::Admin),
    (b"bob", b"hunter2", Privilege::User),
    (b"root", b"toor", Privilege::Admin),
];

/// The user stored hashed that every session script's [`State`] also has: (name, PHC string,
/// password, privilege). The scripts' verifier ([`script_verify`]) accepts exactly that
/// password for that PHC string.
pub const SCRIPT_HASHED_USER: (&[u8], &[u8], &[u8], Privilege) =
    (b"carol", b"$script$carol", b"letmein", Privilege::Admin);

/// The session scripts' stand-in for argon2: whether `password` verifies against `phc`.
pub fn script_verify(phc: &[u8], password: &[u8]) -> bool {
    let (_, p, pw, _) = SCRIPT_HASHED_USER;
    phc == p && password == pw
}

/// Whether `user`/`password` is a login of a script user with at least `required` privilege.
fn script_login_ok(user: &[u8], password: &[u8], required: Privilege) -> bool {
    let (hu, _, hp, hpr) = SCRIPT_HASHED_USER;
    SCRIPT_USERS
        .iter()
        .any(|(u, p, pr)| *u == user && *p == password && *pr >= required)
        || (hu == user && hp == password && hpr >= required)
}

/// Returns a fresh [`State`] with the [`SCRIPT_USERS`] and the [`SCRIPT_HASHED_USER`].
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
            password: password.into(),
            privilege,
        };
        assert_eq!(state.apply(None, &m), Outcome::Applied);
    }
    let (name, phc, _, privilege) = SCRIPT_HASHED_USER;
    let m = Mutation::AddHashedUser {
        name: Bytes::from_static(name),
        phc: Bytes::from_static(phc),
        privilege,
    };
    assert_eq!(state.apply(None, &m), Outcome::Applied);
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

/// The addresses the `socks5_session` world's resolver knows (ports are the request's).
const WORLD_ADDRS: [SocketAddr; 4] = [
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 80),
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 80),
    SocketAddr::new(
        std::net::IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        80,
    ),
    SocketAddr::new(
        std::net::IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        80,
    ),
];
/// Where the world's BIND listener listens, and its UDP socket is bound.
const WORLD_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 40999);
const WORLD_UDP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 5353);
/// A BIND peer that is never the one expected (DST.ADDR is never this in the checks).
const WORLD_STRANGER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 20);

/// Whether a BIND to `dst` must accept [`WORLD_STRANGER`] after all: DST.ADDR all zeros, or
/// the stranger's own IP address (the port is not compared; IPv4-mapped IPv6 counts as IPv4),
/// which the fuzzer can write.
fn stranger_expected(dst: &TargetAddr) -> bool {
    match dst {
        TargetAddr::Ip(a) => {
            let ip = a.ip().to_canonical();
            ip.is_unspecified() || ip == WORLD_STRANGER.ip()
        }
        TargetAddr::Domain(..) => false,
    }
}

/// Failure kinds cycled through by the worlds that fail.
const WORLD_FAILURES: [io::ErrorKind; 5] = [
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::NetworkUnreachable,
    io::ErrorKind::TimedOut,
    io::ErrorKind::HostUnreachable,
    io::ErrorKind::PermissionDenied,
];

/// How the transport's world answers, from the script's options.
#[derive(Debug, Clone, Copy)]
struct World {
    /// 0: the four [`WORLD_ADDRS`]; 1: the IPv6 ones only; 2: no address; 3: an error.
    resolve: u8,
    /// 0: every dial connects; 1: every dial fails (kinds cycled); 2: IPv6 dials fail
    /// (network unreachable), IPv4 ones connect; 3: even attempts fail, odd ones connect.
    dial: u8,
}

impl World {
    fn resolved(self, port: u16) -> Result<Vec<SocketAddr>, io::ErrorKind> {
        let with_port = |a: &SocketAddr| SocketAddr::new(a.ip(), port);
        match self.resolve & 3 {
            0 => Ok(WORLD_ADDRS.iter().map(with_port).collect()),
            1 => Ok(WORLD_ADDRS[2..].iter().map(with_port).collect()),
            2 => Ok(Vec::new()),
            _ => Err(io::ErrorKind::NotFound),
        }
    }

    /// The local address of attempt `a`'s connection (distinct per attempt).
    fn local(a: Attempt, addr: SocketAddr) -> SocketAddr {
        let port = 40000 + (a.0 % 1000) as u16;
        match addr {
            SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::new(192, 0, 2, 100).into(), port),
            SocketAddr::V6(_) => SocketAddr::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100).into(),
                port,
            ),
        }
    }

    fn dialed(self, a: Attempt, addr: SocketAddr) -> Result<SocketAddr, io::ErrorKind> {
        let fail = WORLD_FAILURES[a.0 as usize % WORLD_FAILURES.len()];
        let ok = match self.dial & 3 {
            0 => true,
            1 => false,
            2 => addr.is_ipv4(),
            _ => a.0 % 2 == 1,
        };
        if ok {
            Ok(Self::local(a, addr))
        } else if self.dial & 3 == 2 {
            Err(io::ErrorKind::NetworkUnreachable)
        } else {
            Err(fail)
        }
    }
}

/// Options of the SOCKS5 script, from [`Script::options`].
#[derive(Debug, Clone, Copy)]
struct Socks5Options {
    anonymous: bool,
    eof_at_end: bool,
    limits: HandshakeLimits,
    world: World,
}

impl Socks5Options {
    fn new(bits: u8) -> Self {
        Self {
            anonymous: bits & 1 != 0,
            eof_at_end: bits & 2 != 0,
            limits: HandshakeLimits {
                allow_bind: bits & 4 != 0,
                allow_udp: bits & 8 != 0,
                ..HandshakeLimits::default()
            },
            world: World {
                resolve: (bits >> 4) & 3,
                dial: bits >> 6,
            },
        }
    }
}

/// Something the session asked of the transport that has no answer yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// A password to verify, and the verifier's answer.
    Verify {
        ok: bool,
    },
    Resolve {
        port: u16,
    },
    Dial(Attempt, SocketAddr),
    Listen,
    Accept,
    BindUdp,
}

/// Drives one [`Socks5Handshake`] against a [`World`] and checks its per-call invariants.
struct Socks5Driver {
    s: Socks5Handshake,
    conn: socks5d_core::state::Connection,
    input: BytesMut,
    t: Socks5Transcript,
    t0: Instant,
    world: World,
    /// Unanswered requests, oldest first.
    asked: Vec<Asked>,
    /// The resolver's answer, once given (for checking the order of the dials).
    resolved: Option<Vec<SocketAddr>>,
    /// Start time of each attempt.
    started: Vec<Instant>,
    /// Failures reported to the session or deadlines it fired, by reply code.
    failures: Vec<ReplyCode>,
    /// The successful dial result being reported.
    answering: Option<(Attempt, SocketAddr)>,
    /// Whether any timer came due while the script ran (the clock then matters).
    timer_fired: bool,
    /// An attempt ended (failed or passed its deadline) in the current call.
    just_failed: bool,
    /// The DST of the stream's request, if it is a BIND.
    bind_dst: Option<TargetAddr>,
}

impl Socks5Driver {
    fn new(opts: Socks5Options, stream: &[u8]) -> Self {
        let t0 = epoch();
        let bind_dst = socks5_request_in(stream, opts.anonymous)
            .filter(|r| r.command == Command::Bind)
            .map(|r| r.target);
        let conn = script_state(opts.anonymous).open(ConnKind::Proxy, t0);
        Self {
            s: Socks5Handshake::new(t0, opts.limits),
            conn,
            input: BytesMut::new(),
            t: Socks5Transcript {
                out: Vec::new(),
                events: Vec::new(),
                unread: Vec::new(),
            },
            t0,
            world: opts.world,
            asked: Vec::new(),
            resolved: None,
            started: Vec::new(),
            failures: Vec::new(),
            answering: None,
            timer_fired: false,
            just_failed: false,
            bind_dst,
        }
    }

    fn has(&self, f: impl Fn(&socks5::Event) -> bool) -> bool {
        self.t.events.iter().any(f)
    }

    /// Whether the request has been read and awaits the transport (its bytes then belong to
    /// the destination, or are discarded).
    fn request_taken(&self) -> bool {
        self.has(|e| {
            matches!(
                e,
                socks5::Event::Resolve { .. }
                    | socks5::Event::Dial { .. }
                    | socks5::Event::Listen
                    | socks5::Event::BindUdp
            )
        })
    }

    /// Drains outputs and checks what holds after every call.
    fn drain(&mut self, now: Instant) {
        let was_done = self.has(|e| {
            matches!(
                e,
                socks5::Event::Closed { .. } | socks5::Event::Established { .. }
            )
        });
        let was_associated = self.has(|e| matches!(e, socks5::Event::Associated { .. }));
        let (n_out, n_ev) = (self.t.out.len(), self.t.events.len());
        while let Some(b) = self.s.poll_transmit() {
            assert!(!b.is_empty(), "poll_transmit returned empty bytes");
            self.t.out.extend_from_slice(&b);
        }
        while let Some(e) = self.s.poll_event() {
            match self.t.events.last() {
                Some(socks5::Event::Closed { .. }) => panic!("an event after Closed: {e:?}"),
                Some(socks5::Event::Established { .. } | socks5::Event::Associated { .. }) => {
                    assert!(
                        matches!(e, socks5::Event::Closed { .. }),
                        "{e:?} after success"
                    );
                }
                _ => {}
            }
            self.on_event(now, &e);
            self.t.events.push(e);
        }
        self.answering = None;
        self.just_failed = false;
        if was_done || was_associated {
            assert_eq!(self.t.out.len(), n_out, "no reply after the last one");
        }
        if was_done && !self.s.is_closed() {
            assert_eq!(self.t.events.len(), n_ev, "a done session stays silent");
        }
        // Bounded: a method selection, an RFC 1929 reply and two replies (BIND); a resolve,
        // a dial and a cancel per address, a command event, Replied, a success and Closed.
        assert!(self.t.out.len() <= 2 + 2 + 2 * socks5::Reply::MAX_IP_LEN);
        assert!(self.t.events.len() <= 6 + 2 * socks5::connect::MAX_ADDRESSES);
        let closed = self
            .t
            .events
            .iter()
            .position(|e| matches!(e, socks5::Event::Closed { .. }));
        if let Some(i) = closed {
            assert_eq!(i, self.t.events.len() - 1, "Closed must be the last event");
        }
        let established = self.has(|e| matches!(e, socks5::Event::Established { .. }));
        let associated = self.has(|e| matches!(e, socks5::Event::Associated { .. }));
        assert_eq!(self.s.is_closed(), closed.is_some());
        assert_eq!(self.s.is_established(), established && closed.is_none());
        assert_eq!(self.s.is_associated(), associated && closed.is_none());
        assert_eq!(
            self.s.is_done(),
            closed.is_some() || established || associated
        );
        let dials = self
            .asked
            .iter()
            .filter(|a| matches!(a, Asked::Dial(..)))
            .count();
        assert!(
            dials <= socks5d_core::timer::Timer::ATTEMPT_SLOTS,
            "too many dials in flight"
        );
        if self.s.is_done() {
            assert_eq!(
                self.s.poll_timeout(),
                None,
                "a done session has no deadline"
            );
            assert_eq!(dials, 0, "every dial answered or cancelled once done");
        } else {
            let t = self
                .s
                .poll_timeout()
                .expect("a running session has a deadline");
            let accepting = self.asked.contains(&Asked::Accept);
            if !accepting {
                assert!(
                    t <= self.t0 + HANDSHAKE_TIMEOUT,
                    "the handshake deadline bounds all"
                );
            }
            if self.request_taken() {
                assert!(self.input.is_empty(), "early data must be taken");
            } else if !self.asked.iter().any(|a| matches!(a, Asked::Verify { .. })) {
                // While verifying, the session reads nothing: what follows waits here.
                assert!(self.input.len() < UserPassRequest::MAX_LEN);
            }
        }
    }

    /// Checks one event against what was asked, and records what it asks.
    fn on_event(&mut self, now: Instant, e: &socks5::Event) {
        match e {
            socks5::Event::Resolve { host, port } => {
                assert!(
                    std::str::from_utf8(host).is_ok(),
                    "only UTF-8 names are resolved"
                );
                assert!(!self.request_taken(), "one request");
                self.asked.push(Asked::Resolve { port: *port });
            }
            socks5::Event::Dial { attempt, addr } => {
                assert_eq!(attempt.0 as usize, self.started.len(), "attempts in order");
                if let Some(list) = &self.resolved {
                    let order = socks5::connect::happy_eyeballs_order(list);
                    assert_eq!(
                        order.get(attempt.0 as usize),
                        Some(addr),
                        "Happy Eyeballs order"
                    );
                } else {
                    assert_eq!(attempt.0, 0, "an IP target has one address");
                }
                // Stagger: the attempt delay after the previous start, or at once after a
                // failure.
                if let Some(prev) = self.started.last() {
                    assert!(
                        now >= *prev + socks5::CONNECTION_ATTEMPT_DELAY || self.just_failed,
                        "attempt {attempt:?} started early"
                    );
                }
                self.started.push(now);
                self.asked.push(Asked::Dial(*attempt, *addr));
            }
            socks5::Event::CancelDial { attempt } => {
                let i = self
                    .asked
                    .iter()
                    .position(|a| matches!(a, Asked::Dial(x, _) if x == attempt))
                    .unwrap_or_else(|| panic!("CancelDial of {attempt:?}, not in flight"));
                self.asked.remove(i);
                // A cancel that is not part of the end is an attempt's deadline.
                self.failures.push(ReplyCode::TtlExpired);
                self.just_failed = true;
            }
            socks5::Event::Verify { phc, password, .. } => {
                assert!(
                    self.asked.is_empty(),
                    "Verify comes before any other question"
                );
                let ok = script_verify(phc, password.expose());
                self.asked.push(Asked::Verify { ok });
            }
            socks5::Event::Listen => self.asked.push(Asked::Listen),
            socks5::Event::BindUdp => self.asked.push(Asked::BindUdp),
            socks5::Event::Established { attempt, .. } => match attempt {
                Some(a) => assert_eq!(
                    self.answering.map(|x| x.0),
                    Some(*a),
                    "the winner is the success just reported"
                ),
                None => assert!(self.has(|e| matches!(e, socks5::Event::Listen))),
            },
            socks5::Event::Closed { reason } => {
                // Every attempt failed: the reply is the most informative failure.
                if let (CloseReason::RequestFailed(c), false) = (reason, self.started.is_empty()) {
                    let best = self
                        .failures
                        .iter()
                        .copied()
                        .max_by_key(|c| socks5::connect::informativeness(*c));
                    assert_eq!(best.map(|b| b as u8), Some(*c), "{:?}", self.failures);
                }
                // The transport drops whatever is pending.
                self.asked.clear();
            }
            _ => {}
        }
    }

    fn feed(&mut self, now: Instant, chunk: &[u8]) {
        self.input.extend_from_slice(chunk);
        let before = self.input.clone();
        let stays = self.s.is_established() || self.s.is_closed();
        self.s.handle_input(now, &mut self.input, &self.conn);
        if stays {
            assert_eq!(
                self.input, before,
                "an established or closed session leaves input untouched"
            );
        }
        if self.s.is_associated() {
            assert!(
                self.input.is_empty(),
                "an association discards control bytes"
            );
        }
        self.drain(now);
    }

    fn tick(&mut self, now: Instant) {
        if self.s.poll_timeout().is_some_and(|t| t <= now) {
            self.timer_fired = true;
        }
        self.s.handle_timeout(now);
        self.drain(now);
        if let Some(t) = self.s.poll_timeout() {
            assert!(t > now, "a fired timer must not stay due");
        }
    }

    /// Answers request `i` of `asked` as the world does (`stranger`: a BIND peer from
    /// elsewhere).
    fn answer(&mut self, now: Instant, i: usize, stranger: bool) {
        if self.s.poll_timeout().is_some_and(|t| t <= now) {
            self.timer_fired = true;
        }
        let asked = self.asked.remove(i);
        match asked {
            Asked::Verify { ok } => {
                self.s.handle_verified(now, ok, &self.conn);
                self.drain(now);
                // As a driver does: the input kept meanwhile goes in again.
                self.s.handle_input(now, &mut self.input, &self.conn);
            }
            Asked::Resolve { port } => {
                let r = self.world.resolved(port);
                self.resolved = Some(r.clone().unwrap_or_default());
                self.s.handle_resolved(now, r);
            }
            Asked::Dial(a, addr) => {
                let r = self.world.dialed(a, addr);
                match r {
                    Ok(local) => self.answering = Some((a, local)),
                    Err(kind) => {
                        self.failures.push(ReplyCode::from_io_error(kind));
                        self.just_failed = true;
                    }
                }
                self.s.handle_dial_result(now, a, r);
            }
            Asked::Listen => {
                self.s.handle_listening(now, Ok(WORLD_LISTEN));
                if !self.s.is_closed() {
                    self.asked.push(Asked::Accept);
                }
            }
            Asked::Accept => {
                let peer = if stranger {
                    WORLD_STRANGER
                } else {
                    self.expected_peer()
                };
                self.s.handle_accepted(now, peer);
            }
            Asked::BindUdp => self.s.handle_udp_bound(now, Ok(WORLD_UDP)),
        }
        self.drain(now);
    }

    /// The BIND peer the client expects: DST.ADDR, or some address if it is all zeros.
    fn expected_peer(&self) -> SocketAddr {
        match &self.bind_dst {
            Some(TargetAddr::Ip(a)) if !a.ip().is_unspecified() => SocketAddr::new(a.ip(), 20),
            _ => SocketAddr::new(Ipv4Addr::new(203, 0, 113, 5).into(), 20),
        }
    }

    fn eof(&mut self, now: Instant) {
        self.s.handle_eof(now);
        self.drain(now);
    }

    /// Answers everything pending, oldest first, until nothing is.
    fn settle(&mut self, now: Instant) {
        let mut rounds = 0;
        while !self.asked.is_empty() {
            self.answer(now, 0, false);
            rounds += 1;
            assert!(
                rounds <= 5 + 2 * socks5::connect::MAX_ADDRESSES,
                "settling never ends"
            );
        }
    }

    fn finish(mut self, opts: Socks5Options, now: Instant) -> Socks5Transcript {
        self.settle(now);
        if opts.eof_at_end {
            self.eof(now);
        }
        self.t.unread = self.input.to_vec();
        self.t
    }
}

/// Runs the script's stream cut into `chunks` with the clock stopped, then answers what is
/// pending and sends the EOF (if asked for).
fn socks5_frozen(opts: Socks5Options, stream: &[u8], chunks: &[&[u8]]) -> Socks5Transcript {
    let mut d = Socks5Driver::new(opts, stream);
    let t0 = d.t0;
    for c in chunks {
        d.feed(t0, c);
    }
    d.finish(opts, t0)
}

/// The request in a client stream, if the greeting, the authentication (whatever its
/// outcome) and the request are complete and well-formed.
fn socks5_request_in(stream: &[u8], anonymous: bool) -> Option<Request> {
    let glen = Greeting::check(stream).ok()??;
    let methods = &stream[2..glen];
    let mut rest = &stream[glen..];
    if methods.contains(&Method::USER_PASS.0) {
        let n = UserPassRequest::check(rest).ok()??;
        rest = &rest[n..];
    } else if !(methods.contains(&Method::NO_AUTH.0) && anonymous) {
        return None;
    }
    Request::decode(&mut BytesMut::from(rest)).ok()?
}

/// The address a CONNECT target is dialled at without resolving, if any.
fn socks5_literal(target: &TargetAddr) -> Option<SocketAddr> {
    match target {
        TargetAddr::Ip(a) => Some(*a),
        TargetAddr::Domain(name, port) => std::str::from_utf8(name)
            .ok()?
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, *port)),
    }
}

/// Checks a transcript against the stream the client sent: what the server sent is a
/// well-formed sequence of server messages, each answering a client message that was
/// received, consistent with the events, with the users the state knows and with the world.
///
/// `complete`: the session saw the whole stream before any timeout, EOF or close, and every
/// question was answered, so every complete client message must have been answered.
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
                script_login_ok(user, password, Privilege::User)
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
    // Request -> reply (two for BIND).
    let replied = events.iter().find_map(|e| match e {
        socks5::Event::Replied { target, code } => Some((target.clone(), *code)),
        _ => None,
    });
    let request = Request::decode(&mut BytesMut::from(rest));
    let Some(reply) = socks5::Reply::decode(&mut out).expect("SOCKS5 reply") else {
        assert!(out.is_empty());
        assert!(replied.is_none(), "Replied without a reply");
        if complete {
            assert!(
                matches!(Request::check(rest), Ok(None)),
                "a request went unanswered: {events:?}"
            );
        }
        return;
    };
    let request_len = match Request::check(rest) {
        Ok(Some(n)) => Some(n),
        Ok(None) => panic!("a reply to an incomplete request"),
        Err(_) => None,
    };
    let second = socks5::Reply::decode(&mut out).expect("second SOCKS5 reply");
    assert!(out.is_empty(), "bytes after the replies: {:02x?}", &out[..]);
    let last = second.as_ref().unwrap_or(&reply);
    if let Some((_, code)) = &replied {
        assert_eq!(last.code, *code, "Replied carries the last code sent");
    }
    let dials: Vec<(Attempt, SocketAddr)> = events
        .iter()
        .filter_map(|e| match e {
            socks5::Event::Dial { attempt, addr } => Some((*attempt, *addr)),
            _ => None,
        })
        .collect();
    match request {
        Ok(Some(req)) => {
            match &replied {
                Some((target, _)) => assert_eq!(target, &req.target),
                // Only a BIND's first reply is not logged: the second would be.
                None => assert!(
                    req.command == Command::Bind
                        && reply.code == ReplyCode::Succeeded
                        && second.is_none()
                        && !complete,
                    "a reply without Replied"
                ),
            }
            let cmd_event = match req.command {
                Command::Connect => None,
                Command::Bind => Some(socks5::Event::Listen),
                Command::UdpAssociate => Some(socks5::Event::BindUdp),
            };
            let allowed = match req.command {
                Command::Connect => true,
                Command::Bind => opts.limits.allow_bind,
                Command::UdpAssociate => opts.limits.allow_udp,
            };
            if !allowed {
                assert_eq!(reply.code, ReplyCode::CommandNotSupported);
            }
            if let Some(ev) = cmd_event {
                assert_eq!(
                    events.contains(&ev),
                    allowed
                        && (req.command == Command::UdpAssociate
                            || matches!(req.target, TargetAddr::Ip(_))),
                    "BIND to a name is refused before listening"
                );
                assert!(dials.is_empty());
            }
            if req.command == Command::Connect {
                let resolves = events
                    .iter()
                    .filter(|e| matches!(e, socks5::Event::Resolve { .. }))
                    .count();
                match (&req.target, socks5_literal(&req.target)) {
                    (_, Some(a)) => {
                        assert_eq!(resolves, 0);
                        assert!(dials.iter().all(|d| d.1 == a) && dials.len() <= 1);
                    }
                    (TargetAddr::Domain(name, _), None) => {
                        let utf8 = std::str::from_utf8(name).is_ok();
                        assert_eq!(resolves, usize::from(utf8), "resolve UTF-8 names only");
                        if !utf8 {
                            assert_eq!(reply.code, ReplyCode::HostUnreachable);
                        }
                    }
                    _ => unreachable!(),
                }
            }
            if reply.code == ReplyCode::Succeeded {
                let n = request_len.expect("success answers a complete request");
                match req.command {
                    Command::Connect => {
                        let winner = events.iter().find_map(|e| match e {
                            socks5::Event::Established { attempt, .. } => *attempt,
                            _ => None,
                        });
                        let winner = winner.expect("a CONNECT success names its attempt");
                        let (_, addr) = dials[winner.0 as usize];
                        assert_eq!(reply.bound, TargetAddr::Ip(World::local(winner, addr)));
                        assert!(second.is_none());
                    }
                    Command::Bind => {
                        assert_eq!(reply.bound, TargetAddr::Ip(WORLD_LISTEN));
                        if let Some(second) = &second {
                            if second.code == ReplyCode::Succeeded
                                && !stranger_expected(&req.target)
                            {
                                assert_ne!(second.bound, TargetAddr::Ip(WORLD_STRANGER));
                            }
                        }
                    }
                    Command::UdpAssociate => {
                        assert_eq!(reply.bound, TargetAddr::Ip(WORLD_UDP));
                        assert!(second.is_none());
                        assert!(events.contains(&socks5::Event::Associated {
                            client: req.target.clone()
                        }));
                    }
                }
                let relayed = match req.command {
                    Command::Connect => true,
                    Command::Bind => second.is_some(),
                    Command::UdpAssociate => false,
                };
                if relayed && last.code == ReplyCode::Succeeded {
                    let leftover = events.iter().find_map(|e| match e {
                        socks5::Event::Established { leftover, .. } => Some(leftover.clone()),
                        _ => None,
                    });
                    let leftover = leftover.expect("Established after the last success");
                    let mut after = leftover.to_vec();
                    after.extend_from_slice(&t.unread);
                    assert_eq!(
                        after,
                        &rest[n..],
                        "leftover and unread input are what follows the request"
                    );
                }
            } else {
                assert!(second.is_none(), "nothing after a failure reply");
            }
        }
        _ => {
            // Malformed, unknown command: a failure, nothing asked of the transport.
            assert_ne!(reply.code, ReplyCode::Succeeded);
            assert!(second.is_none());
            assert!(dials.is_empty());
        }
    }
    if last.code != ReplyCode::Succeeded {
        assert!(closed_reason.is_some(), "a failure reply closes");
    }
}

/// Fuzz body `socks5_session`: a [`Socks5Handshake`] run by a [`Script`] against a scripted
/// transport ("world").
///
/// `options`: bit 0 allows anonymous use; bit 1 sends EOF at the end; bit 2 enables BIND,
/// bit 3 UDP ASSOCIATE; bits 4-5 the resolver's answer (the four world addresses, two
/// IPv6 ones, none, an error); bits 6-7 the dial outcomes (all connect, all fail, IPv6
/// fails and IPv4 connects, odd attempts connect).
/// `Step::action` (after the step's read): bit 0 answers the oldest question pending (a
/// password to verify, a resolve, a dial, a listen, an accept, a UDP bind); bit 5 the newest instead (an accept
/// from a stranger); bit 1 sends EOF; bit 2 a close request (bits 3-4: user removed, idle,
/// shutdown); bit 6 reports a result nobody asked for (which must change nothing).
///
/// Checks: with the clock stopped, the transcript is the same for the script's cuts, one
/// read, and one read per byte; with the script's clock and actions every per-call invariant
/// holds (bounded output, `Closed` last, silence once done, dials in Happy Eyeballs order
/// and stagger, cancels only of dials in flight, nothing left in flight once done, deadlines
/// that move on after firing) and the output is well-formed and answers only what was
/// received; when the script's clock and actions cannot matter, that run equals the frozen
/// one.
pub fn socks5_session(data: &[u8]) {
    let script = Script::from_fuzz_input(data);
    let opts = Socks5Options::new(script.options);
    let chunks = script.chunks();
    let stream = &script.stream[..];

    let frozen = socks5_frozen(opts, stream, &chunks);
    socks5_check_transcript(opts, stream, &frozen, true);
    assert_eq!(
        frozen,
        socks5_frozen(opts, stream, &[stream]),
        "one read vs the script's reads"
    );
    if stream.len() <= 4096 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            frozen,
            socks5_frozen(opts, stream, &bytes),
            "one read per byte"
        );
    }

    // The script's clock and actions.
    let mut d = Socks5Driver::new(opts, stream);
    let mut now = d.t0;
    let mut plain = true;
    for (i, chunk) in chunks.iter().enumerate() {
        let step = script.used_steps().get(i).copied().unwrap_or(Step {
            len: 0,
            tick_ms: 0,
            action: 0,
        });
        now += Duration::from_millis(u64::from(step.tick_ms));
        d.tick(now);
        if now >= d.t0 + HANDSHAKE_TIMEOUT && !d.asked.contains(&Asked::Accept) {
            assert!(d.s.is_done(), "the handshake timer must have fired");
        }
        d.feed(now, chunk);
        if step.action & 0x21 != 0 && !d.asked.is_empty() {
            let newest = step.action & 0x20 != 0;
            let i = if newest { d.asked.len() - 1 } else { 0 };
            d.answer(now, i, newest);
            plain = false;
        }
        if step.action & 0x40 != 0 {
            let before = (d.t.clone(), d.s.poll_timeout());
            d.s.handle_dial_result(now, Attempt(u32::MAX), Ok(WORLD_LISTEN));
            if !d.asked.contains(&Asked::Accept) {
                d.s.handle_accepted(now, WORLD_STRANGER);
            }
            if !d.asked.iter().any(|a| matches!(a, Asked::Resolve { .. })) {
                d.s.handle_resolved(now, Ok(WORLD_ADDRS.to_vec()));
            }
            if !d.asked.contains(&Asked::BindUdp) {
                d.s.handle_udp_bound(now, Ok(WORLD_UDP));
            }
            if !d.asked.contains(&Asked::Listen) {
                d.s.handle_listening(now, Ok(WORLD_LISTEN));
            }
            if !d.asked.iter().any(|a| matches!(a, Asked::Verify { .. })) {
                d.s.handle_verified(now, true, &d.conn);
            }
            d.drain(now);
            assert_eq!(
                (d.t.clone(), d.s.poll_timeout()),
                before,
                "an unasked result changed something"
            );
        }
        if step.action & 2 != 0 {
            d.eof(now);
            plain = false;
        }
        if step.action & 4 != 0 {
            let cause = match (step.action >> 3) & 3 {
                0 => CloseCause::UserRemoved,
                1 => CloseCause::Idle,
                _ => CloseCause::Shutdown,
            };
            d.s.handle_close_request(now, cause);
            d.drain(now);
            assert!(d.s.is_closed());
            plain = false;
        }
    }
    if d.s.poll_timeout().is_some_and(|t| t <= now) {
        d.timer_fired = true;
    }
    let fired = d.timer_fired;
    let timed = d.finish(opts, now);
    socks5_check_transcript(opts, stream, &timed, false);
    if plain && !fired {
        assert_eq!(timed, frozen, "the clock and no actions must not matter");
    }
}

// ---------------------------------------------------------------------------------------------
// Admin protocol: messages
// ---------------------------------------------------------------------------------------------

fn dialect_of(bit: u8) -> Dialect {
    if bit & 1 == 0 {
        Dialect::Draft
    } else {
        Dialect::Final
    }
}

fn admin_request_codec() -> Codec<'static, AdminRequest> {
    Codec {
        name: "AdminRequest",
        decode: &AdminRequest::decode,
        encode: &|m, b| m.encode(b),
        check: Some(&AdminRequest::check),
        max_len: AdminRequest::MAX_LEN,
    }
}

/// Returns a request that `resp` can answer (any, for the error replies).
fn request_answered_by(resp: &AdminResponse) -> AdminRequest {
    match resp {
        AdminResponse::Users(_) => AdminRequest::Query(Query::ListUsers),
        AdminResponse::Value { cmd, .. } => AdminRequest::Query(match cmd {
            ValueCmd::HistoricConnections => Query::HistoricConnections,
            ValueCmd::CurrentConnections => Query::CurrentConnections,
            ValueCmd::MaxConcurrentConnections => Query::MaxConcurrentConnections,
            ValueCmd::BytesSent => Query::BytesSent,
            ValueCmd::BytesReceived => Query::BytesReceived,
            ValueCmd::UsersConnected => Query::UsersConnected,
            ValueCmd::UserCount => Query::UserCount,
            ValueCmd::BufferSize => Query::BufferSize,
            ValueCmd::SelectorTimeout => Query::SelectorTimeout,
            ValueCmd::ConnectionTimeout(d) => Query::ConnectionTimeout(*d),
            ValueCmd::UserConnections(d) => Query::UserConnections {
                cmd: *d,
                name: Bytes::from_static(b"u"),
            },
        }),
        AdminResponse::Status { cmd, .. } => AdminRequest::Modify(match cmd {
            ModifyCmd::AddUser => Modify::AddUser {
                name: Bytes::from_static(b"u"),
                password: Bytes::from_static(b"p"),
                privilege: 0,
            },
            ModifyCmd::RemoveUser => Modify::RemoveUser {
                name: Bytes::from_static(b"u"),
            },
            ModifyCmd::SetSniffing => Modify::SetSniffing(1),
            ModifyCmd::SetCleanup => Modify::SetCleanup(1),
            ModifyCmd::SetBufferSize => Modify::SetBufferSize(50),
            ModifyCmd::SetSelectorTimeout => Modify::SetSelectorTimeout(1),
            ModifyCmd::SetConnectionTimeout => Modify::SetConnectionTimeout(1),
        }),
        AdminResponse::InvalidCommand {
            ty: RequestType::Modify,
        } => AdminRequest::Modify(Modify::SetCleanup(1)),
        AdminResponse::InvalidType
        | AdminResponse::InvalidCommand { .. }
        | AdminResponse::QueryError { .. } => AdminRequest::Query(Query::UserCount),
    }
}

/// Returns what `resp` decodes as after being encoded in `dialect`: values saturate to their
/// field, user lists stop at 255 entries and carry a privilege in the final dialect only.
fn admin_response_on_wire(resp: &AdminResponse, dialect: Dialect) -> AdminResponse {
    match resp {
        AdminResponse::Value { cmd, value } => {
            let width = cmd.width(dialect);
            let max = if width == 8 {
                u64::MAX
            } else {
                (1 << (8 * width)) - 1
            };
            AdminResponse::Value {
                cmd: *cmd,
                value: (*value).min(max),
            }
        }
        AdminResponse::Users(users) => AdminResponse::Users(
            users
                .iter()
                .take(255)
                .map(|u| ListedUser {
                    name: u.name.clone(),
                    privilege: match dialect {
                        Dialect::Draft => None,
                        Dialect::Final => Some(u.privilege.unwrap_or(Privilege::User)),
                    },
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Fuzz body `admin_request`: admin requests, and responses in the dialect chosen by bit 0 of
/// the first byte. The rest of the input is decoded as a request; the bytes after that request
/// as its response. The input read as an arbitrary request and an arbitrary response must
/// round-trip (responses as they look on the wire: saturated, see `admin_response_on_wire`).
pub fn admin_request(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let dialect = dialect_of(sel);
    let q = admin_request_codec();
    q.check_bytes(rest);
    check_arbitrary(&q, rest);

    let mut src = BytesMut::from(rest);
    if let Ok(Some(req)) = AdminRequest::decode(&mut src) {
        let decode = |b: &mut BytesMut| AdminResponse::decode(b, dialect, &req);
        let encode = |m: &AdminResponse, b: &mut BytesMut| m.encode(dialect, b);
        let check = |b: &[u8]| AdminResponse::check(b, dialect, &req);
        let r = Codec {
            name: "AdminResponse",
            decode: &decode,
            encode: &encode,
            check: Some(&check),
            max_len: AdminResponse::MAX_LEN,
        };
        r.check_bytes(&src);
    }

    if let Ok(resp) = AdminResponse::arbitrary(&mut Unstructured::new(rest)) {
        let req = request_answered_by(&resp);
        let mut enc = BytesMut::new();
        resp.encode(dialect, &mut enc);
        assert!(enc.len() <= AdminResponse::MAX_LEN);
        let n = enc.len();
        enc.extend_from_slice(b"\x00");
        assert_eq!(AdminResponse::check(&enc, dialect, &req), Ok(Some(n)));
        assert_eq!(
            AdminResponse::decode(&mut enc, dialect, &req),
            Ok(Some(admin_response_on_wire(&resp, dialect))),
            "{resp:?} in {dialect:?}"
        );
        assert_eq!(&enc[..], b"\x00");
    }
}

// ---------------------------------------------------------------------------------------------
// Admin protocol: session
// ---------------------------------------------------------------------------------------------

/// What an [`AdminSession`] did over a whole script.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AdminTranscript {
    /// Every byte sent.
    out: Vec<u8>,
    /// [`Framing::Message`]: each polled item (one SCTP message each). Empty for streams,
    /// where the grouping of bytes into items carries no meaning.
    items: Vec<Vec<u8>>,
    events: Vec<admin::Event>,
}

/// Drives one [`AdminSession`] as the one driver does (drain, answer each Apply, continue
/// while no input is wanted) and checks its per-call invariants.
struct AdminDriver {
    s: AdminSession,
    state: Arc<State>,
    conn: socks5d_core::state::Connection,
    framing: Framing,
    t: AdminTranscript,
    auth_deadline: Instant,
    /// Answer the next Apply with [`Outcome::Failed`] (a failing store) instead of applying.
    fail_next: bool,
    /// Bytes polled since the last `handle_*` call.
    polled: usize,
}

impl AdminDriver {
    fn new(opts: AdminOptions) -> Self {
        let t0 = epoch();
        let state = script_state(false);
        if opts.short_timeout {
            let m = Mutation::SetConnectionTimeout(2);
            assert_eq!(state.apply(None, &m), Outcome::Applied);
        }
        let conn = state.open(ConnKind::Admin, t0);
        let auth_timeout = state.settings().auth_timeout();
        Self {
            s: AdminSession::new(t0, opts.dialect, opts.framing, auth_timeout),
            state,
            conn,
            framing: opts.framing,
            t: AdminTranscript {
                out: Vec::new(),
                items: Vec::new(),
                events: Vec::new(),
            },
            auth_deadline: t0 + auth_timeout,
            fail_next: false,
            polled: 0,
        }
    }

    fn closed_event(&self) -> bool {
        self.t
            .events
            .iter()
            .any(|e| matches!(e, admin::Event::Closed { .. }))
    }

    /// Drains outputs, answering each Apply at once, and checks what holds after every call.
    fn drain(&mut self, now: Instant) {
        loop {
            let was_closed = self.closed_event();
            while let Some(b) = self.s.poll_transmit() {
                assert!(!b.is_empty(), "poll_transmit returned empty bytes");
                assert!(!was_closed, "bytes after Closed");
                self.polled += b.len();
                self.t.out.extend_from_slice(&b);
                if self.framing == Framing::Message {
                    self.t.items.push(b.to_vec());
                }
            }
            // Back-pressure bounds what one call can produce.
            assert!(
                self.polled <= AdminSession::HIGH_WATER + AdminResponse::MAX_LEN,
                "{} bytes produced by one call",
                self.polled
            );
            let mut apply = None;
            let mut verify = None;
            while let Some(e) = self.s.poll_event() {
                assert!(!was_closed, "event after Closed: {e:?}");
                if let admin::Event::Verify { phc, password, .. } = &e {
                    assert!(
                        !self.s.wants_input(),
                        "input wanted while a Verify is pending"
                    );
                    verify = Some(script_verify(phc, password.expose()));
                    self.t.events.push(e);
                    break;
                }
                if let admin::Event::Apply(m) = &e {
                    assert!(
                        !self.s.wants_input(),
                        "input wanted while an Apply is pending"
                    );
                    apply = Some(m.clone());
                }
                self.t.events.push(e);
                if apply.is_some() {
                    break;
                }
            }
            if let Some(ok) = verify {
                self.polled = 0;
                self.s.handle_verified(now, ok, &self.conn);
                continue;
            }
            let Some(m) = apply else { break };
            let outcome = if std::mem::take(&mut self.fail_next) {
                Outcome::Failed
            } else {
                self.state.apply(self.conn.user().map(|u| &u[..]), &m)
            };
            self.polled = 0;
            self.s.handle_apply_result(now, outcome, &self.conn);
        }
        let closed = self
            .t
            .events
            .iter()
            .position(|e| matches!(e, admin::Event::Closed { .. }));
        if let Some(i) = closed {
            assert_eq!(i, self.t.events.len() - 1, "Closed must be the last event");
            assert!(self.s.is_closed());
        }
        if self.s.is_closed() {
            assert!(!self.s.wants_input(), "a closed session wants no input");
        }
        let auths = self
            .t
            .events
            .iter()
            .filter(|e| matches!(e, admin::Event::Authenticated { .. }))
            .count();
        assert!(auths <= 1, "authenticated twice");
        let deadline = (auths == 0 && !self.s.is_closed()).then_some(self.auth_deadline);
        assert_eq!(self.s.poll_timeout(), deadline, "authentication timer");
    }

    /// The driver loop after an input: drain, then `handle_continue` while the session wants
    /// no input, which must make progress every time (no spin).
    fn settle(&mut self, now: Instant) {
        self.drain(now);
        let mut rounds = 0;
        while !self.s.wants_input() && !self.s.is_closed() {
            let before = (self.t.out.len(), self.t.events.len());
            self.polled = 0;
            self.s.handle_continue(now, &self.conn);
            self.drain(now);
            assert!(
                (self.t.out.len(), self.t.events.len()) != before
                    || self.s.wants_input()
                    || self.s.is_closed(),
                "handle_continue made no progress: the driver would spin"
            );
            rounds += 1;
            assert!(rounds < 1 << 20, "handle_continue never settles");
        }
    }

    /// One read: `end` is whether it ends an SCTP message (ignored on a stream).
    fn feed(&mut self, now: Instant, chunk: &[u8], end: bool) {
        self.polled = 0;
        match self.framing {
            Framing::Stream => self.s.handle_input(now, chunk, &self.conn),
            Framing::Message => self.s.handle_message(now, chunk, end, &self.conn),
        }
        self.settle(now);
    }

    fn close_request(&mut self, now: Instant, cause: socks5d_core::state::CloseCause) {
        self.polled = 0;
        self.s.handle_close_request(now, cause);
        self.settle(now);
        assert!(self.s.is_closed());
    }

    fn eof(&mut self, now: Instant) {
        self.polled = 0;
        self.s.handle_eof(now);
        self.settle(now);
        assert!(self.s.is_closed() && self.closed_event());
    }
}

/// Options of the admin script, from [`Script::options`].
#[derive(Debug, Clone, Copy)]
struct AdminOptions {
    dialect: Dialect,
    framing: Framing,
    eof_at_end: bool,
    /// Authenticate as `admin` first (prepended to the stream), so the fuzzer starts in the
    /// request phase.
    login: bool,
    /// Connection timeout 2 s, so authentication must complete within 2 s (not 10 s).
    short_timeout: bool,
}

impl AdminOptions {
    fn new(bits: u8) -> Self {
        Self {
            dialect: dialect_of(bits),
            framing: if bits & 2 == 0 {
                Framing::Stream
            } else {
                Framing::Message
            },
            eof_at_end: bits & 4 != 0,
            login: bits & 8 != 0,
            short_timeout: bits & 16 != 0,
        }
    }
}

/// The authentication request `login` prepends.
pub const ADMIN_LOGIN: &[u8] = b"\x01\x05admin\x06secret";

/// Splits `stream` into SCTP messages: one per group of reads ending with an end-of-message
/// action (`Step::action` bit 0), plus the rest (left open). Each message is a list of reads.
fn admin_messages<'a>(script: &'a Script, chunks: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut messages = vec![Vec::new()];
    for (i, c) in chunks.iter().enumerate() {
        messages.last_mut().expect("non-empty").push(*c);
        if script
            .used_steps()
            .get(i)
            .is_some_and(|s| s.action & 1 != 0)
        {
            messages.push(Vec::new());
        }
    }
    messages
}

/// Runs the messages (each a list of reads; every message but the last ends with
/// end-of-message on its last read) with the clock stopped; with [`Framing::Stream`] the
/// message ends are ignored.
fn admin_frozen(opts: AdminOptions, messages: &[Vec<&[u8]>]) -> AdminTranscript {
    let mut d = AdminDriver::new(opts);
    let t0 = epoch();
    if opts.login {
        d.feed(t0, ADMIN_LOGIN, false);
    }
    let n = messages.len();
    for (i, m) in messages.iter().enumerate() {
        let ends = i + 1 < n;
        if m.is_empty() && ends {
            d.feed(t0, &[], true);
        }
        for (j, c) in m.iter().enumerate() {
            d.feed(t0, c, ends && j + 1 == m.len());
        }
    }
    if opts.eof_at_end {
        d.eof(t0);
    }
    d.t
}

/// What [`admin_check_transcript`] learnt from the client's side.
struct AdminSummary {
    /// An unframable request was answered (after which SCTP message boundaries matter).
    unframable: bool,
}

/// Checks what the session sent against the requests in `messages` (a client's view):
/// the output is exactly a sequence of responses, each to the next request received, in
/// order, requests reassembled across SCTP messages, the rest of a message discarded after an
/// unframable request, and (when `complete`) every complete request answered. With
/// [`Framing::Message`] each polled item is one response. The events agree: one `Apply` per
/// modification that forms a [`Mutation`], one `Applied` per status `0x00`, one `AuthFailed`
/// per `01 01`.
///
/// `users_fixed`: nobody else changed the users, so the authentication answer is known.
fn admin_check_transcript(
    opts: AdminOptions,
    messages: &[Vec<u8>],
    t: &AdminTranscript,
    complete: bool,
    users_fixed: bool,
) -> AdminSummary {
    let dialect = opts.dialect;
    let login: &[u8] = if opts.login { ADMIN_LOGIN } else { &[] };
    let stream: Vec<u8> = [login, &messages.concat()].concat();
    // Where messages end in `stream` (the last one is open).
    let mut ends = Vec::new();
    if opts.framing == Framing::Message {
        let mut at = login.len();
        for m in &messages[..messages.len().saturating_sub(1)] {
            at += m.len();
            ends.push(at);
        }
    }
    let mut out = BytesMut::from(&t.out[..]);
    let mut items = t.items.iter();
    let mut authenticated = false;
    let (mut applies, mut applied, mut auth_failed) = (0, 0, 0);
    let mut closed_by_error = false;
    let mut unframable = false;
    // Takes the next response: the next item with Message framing (which must be exactly one
    // response), the next bytes of the stream otherwise.
    let mut take =
        |decode: &dyn Fn(&mut BytesMut) -> Result<Option<AdminResponse>, DecodeError>,
         what: &str|
         -> Option<AdminResponse> {
            let mut one;
            let b = match opts.framing {
                Framing::Stream => {
                    if out.is_empty() {
                        return None;
                    }
                    &mut out
                }
                Framing::Message => {
                    one = BytesMut::from(&items.next()?[..]);
                    &mut one
                }
            };
            let r = decode(b)
                .unwrap_or_else(|e| panic!("{what}: undecodable response: {e}"))
                .unwrap_or_else(|| panic!("{what}: truncated response"));
            if opts.framing == Framing::Message {
                assert!(b.is_empty(), "{what}: one SCTP message, one response");
            }
            Some(r)
        };
    let auth_reply = |b: &mut BytesMut| -> Result<Option<AdminResponse>, DecodeError> {
        // Carried as a Status so that `take` has one type.
        Ok(UserPassReply::decode(b)?.map(|r| AdminResponse::Status {
            cmd: ModifyCmd::AddUser,
            status: r.status,
        }))
    };
    let mut answered_all = true;
    let mut pos = 0;
    loop {
        let rest = &stream[pos..];
        if !authenticated {
            let status = match UserPassRequest::check(rest) {
                Ok(None) => break,
                Ok(Some(n)) => {
                    let ulen = usize::from(rest[1]);
                    let (user, password) = (&rest[2..2 + ulen], &rest[3 + ulen..n]);
                    pos += n;
                    let ok = script_login_ok(user, password, Privilege::Admin);
                    u8::from(!ok)
                }
                Err(_) => 2,
            };
            let Some(r) = take(&auth_reply, "auth") else {
                answered_all = false;
                break;
            };
            let AdminResponse::Status { status: got, .. } = r else {
                unreachable!()
            };
            if users_fixed || status == 2 {
                assert_eq!(got, status, "authentication status");
            } else {
                assert!(
                    got <= 1 && (status == 0 || got == 1),
                    "authentication status"
                );
            }
            auth_failed += usize::from(got == 1);
            if got != 0 {
                closed_by_error = true;
                break;
            }
            authenticated = true;
            continue;
        }
        match AdminRequest::check(rest) {
            Ok(None) => break,
            Ok(Some(n)) => {
                let req = AdminRequest::decode(&mut BytesMut::from(&rest[..n]))
                    .expect("checked")
                    .expect("complete");
                pos += n;
                let decode = |b: &mut BytesMut| AdminResponse::decode(b, dialect, &req);
                let Some(resp) = take(&decode, "request") else {
                    answered_all = false;
                    break;
                };
                match (&req, &resp) {
                    (AdminRequest::Modify(m), AdminResponse::Status { status, .. }) => {
                        applies += usize::from(m.to_mutation().is_some());
                        applied += usize::from(*status == 0);
                    }
                    (AdminRequest::Query(Query::ListUsers), AdminResponse::Users(_))
                    | (AdminRequest::Query(_), AdminResponse::Value { .. }) => {}
                    (
                        AdminRequest::Query(Query::UserConnections { name, .. }),
                        AdminResponse::QueryError { status: 0xFE },
                    ) if name.is_empty() && dialect == Dialect::Final => {}
                    _ => panic!("{resp:?} does not answer {req:?}"),
                }
            }
            Err(e) => {
                let (expected, read) = match e {
                    DecodeError::UnknownType(_) => (AdminResponse::InvalidType, 1),
                    DecodeError::UnknownCommand { ty, .. } => (
                        AdminResponse::InvalidCommand {
                            ty: if ty == 0 {
                                RequestType::Query
                            } else {
                                RequestType::Modify
                            },
                        },
                        2,
                    ),
                    other => panic!("admin request error {other:?}"),
                };
                let req = request_answered_by(&expected);
                let decode = |b: &mut BytesMut| AdminResponse::decode(b, dialect, &req);
                let Some(resp) = take(&decode, "unframable") else {
                    answered_all = false;
                    break;
                };
                assert_eq!(resp, expected);
                unframable = true;
                if opts.framing == Framing::Stream {
                    closed_by_error = true;
                    break;
                }
                // The rest of the SCTP message holding the offending byte is discarded; the
                // next message starts a new request (the last message is still open).
                match ends.iter().find(|&&end| end >= pos + read) {
                    Some(&end) => pos = end,
                    None => break,
                }
            }
        }
    }
    match opts.framing {
        Framing::Stream => assert!(out.is_empty(), "bytes answering nothing: {:02x?}", &out[..]),
        Framing::Message => assert_eq!(t.items.concat(), t.out),
    }
    assert_eq!(items.next(), None, "a message that answers nothing");
    if complete {
        assert!(answered_all, "a complete request went unanswered");
    }
    let count = |f: fn(&admin::Event) -> bool| t.events.iter().filter(|e| f(e)).count();
    assert_eq!(
        count(|e| matches!(e, admin::Event::Apply(_))),
        applies,
        "one Apply per modification answered"
    );
    assert_eq!(
        count(|e| matches!(e, admin::Event::Applied(_))),
        applied,
        "one Applied per successful modification"
    );
    assert_eq!(
        count(|e| matches!(e, admin::Event::AuthFailed { .. })),
        auth_failed,
        "one AuthFailed per failed login"
    );
    if closed_by_error {
        assert!(
            matches!(
                t.events.last(),
                Some(admin::Event::Closed {
                    reason: CloseReason::Peer(_)
                })
            ),
            "{:?}",
            t.events
        );
    }
    AdminSummary { unframable }
}

fn owned(messages: &[Vec<&[u8]>]) -> Vec<Vec<u8>> {
    messages.iter().map(|m| m.concat()).collect()
}

/// Fuzz body `admin_session`: an [`AdminSession`] run by a [`Script`].
///
/// `options`: bit 0 final dialect; bit 1 [`Framing::Message`]; bit 2 EOF at the end; bit 3
/// authenticate as `admin` first; bit 4 connection timeout 2 s (authentication deadline 2 s).
/// `Step::action`: bit 0 ends an SCTP message after the read; bit 1 sends EOF after the read;
/// bit 2 closes the connection (clean-up routine) before the read, passed on as a close
/// request; bit 3 has another administrator remove user `admin` before the read (the session
/// sees it at its next request; the close request follows the read); bit 4 fails the next
/// Apply ([`Outcome::Failed`]).
///
/// Checks: with the clock stopped, the transcript is the same for the script's reads, one
/// read per SCTP message, and one read per byte; on SCTP without unframable requests, also
/// for the whole stream in one message and for one message per byte; the output is exactly
/// one response per request received, in order (every complete request answered), with the
/// events that go with them; with the script's clock and actions every per-call invariant
/// holds (bounded output, `Closed` last, timers, no spin) and the output is a prefix of that.
pub fn admin_session(data: &[u8]) {
    let script = Script::from_fuzz_input(data);
    let opts = AdminOptions::new(script.options);
    let chunks = script.chunks();
    let messages = admin_messages(&script, &chunks);

    let frozen = admin_frozen(opts, &messages);
    let joined = owned(&messages);
    let summary = admin_check_transcript(opts, &joined, &frozen, true, true);
    let per_message: Vec<Vec<&[u8]>> = joined.iter().map(|m| vec![&m[..]]).collect();
    assert_eq!(
        frozen,
        admin_frozen(opts, &per_message),
        "one read per message vs the script's reads"
    );
    if script.stream.len() <= 4096 {
        let per_byte: Vec<Vec<&[u8]>> = joined.iter().map(|m| m.chunks(1).collect()).collect();
        assert_eq!(frozen, admin_frozen(opts, &per_byte), "one read per byte");
    }
    if opts.framing == Framing::Message && !summary.unframable {
        // Requests are reassembled across messages: the boundaries change nothing.
        let stream = joined.concat();
        assert_eq!(
            frozen,
            admin_frozen(opts, &[vec![&stream[..]]]),
            "one message vs the script's messages"
        );
        if stream.len() <= 4096 {
            let mut per_byte: Vec<Vec<&[u8]>> = stream.chunks(1).map(|c| vec![c]).collect();
            per_byte.push(Vec::new());
            assert_eq!(
                frozen,
                admin_frozen(opts, &per_byte),
                "one message per byte vs the script's messages"
            );
        }
    }

    // The script's clock and actions.
    let mut d = AdminDriver::new(opts);
    let mut now = epoch();
    let mut users_fixed = true;
    if opts.login {
        d.feed(now, ADMIN_LOGIN, false);
    }
    let mut fed: Vec<Vec<u8>> = vec![Vec::new()];
    for (i, chunk) in chunks.iter().enumerate() {
        let step = script.used_steps().get(i).copied().unwrap_or(Step {
            len: 0,
            tick_ms: 0,
            action: 0,
        });
        now += Duration::from_millis(u64::from(step.tick_ms));
        d.polled = 0;
        d.s.handle_timeout(now);
        d.settle(now);
        if step.action & 4 != 0 {
            d.conn.close(CloseCause::Idle);
            if !d.s.is_closed() {
                d.close_request(now, CloseCause::Idle);
            }
        }
        if step.action & 8 != 0 {
            let m = Mutation::RemoveUser {
                name: Bytes::from_static(b"admin"),
            };
            d.state.apply(Some(b"root"), &m);
            users_fixed = false;
        }
        if step.action & 16 != 0 {
            d.fail_next = true;
        }
        let end = step.action & 1 != 0;
        d.feed(now, chunk, end);
        fed.last_mut().expect("non-empty").extend_from_slice(chunk);
        if end {
            fed.push(Vec::new());
        }
        if let Some(cause) = d.conn.close_cause() {
            if !d.s.is_closed() {
                d.close_request(now, cause);
            }
        }
        if step.action & 2 != 0 && !d.s.is_closed() {
            d.eof(now);
        }
    }
    if opts.eof_at_end && !d.s.is_closed() {
        d.eof(now);
    }
    if opts.framing == Framing::Stream {
        fed = vec![fed.concat()];
    }
    admin_check_transcript(opts, &fed, &d.t, false, users_fixed);
}

/// Fuzz body `admin_auth`: an [`AdminSession`]'s authentication (the RFC 1929 message shared
/// with SOCKS5, then the admin answers). The first byte chooses the dialect (bit 0), the
/// framing (bit 1) and an EOF at the end (bit 2); the rest is the stream.
///
/// Checks the message codec as `socks5_userpass` does, then that the session answers `01 00`
/// exactly for an administrator's right credentials, `01 02` for a bad version and `01 01`
/// otherwise, answers nothing before the request is complete, and does so however the stream
/// is cut (on SCTP also across one message per byte).
pub fn admin_auth(data: &[u8]) {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    userpass_codec().check_bytes(stream);
    userpass_reply_codec().check_bytes(stream);
    let opts = AdminOptions {
        login: false,
        ..AdminOptions::new(sel & 7)
    };
    let whole = admin_frozen(opts, &[vec![stream]]);
    admin_check_transcript(opts, &[stream.to_vec()], &whole, true, true);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(whole, admin_frozen(opts, &[bytes]), "one read per byte");
    if opts.framing == Framing::Message && stream.len() <= 4096 {
        let mut messages: Vec<Vec<&[u8]>> = stream.chunks(1).map(|c| vec![c]).collect();
        messages.push(Vec::new());
        let t = admin_frozen(opts, &messages);
        let owned_messages = owned(&messages);
        let summary = admin_check_transcript(opts, &owned_messages, &t, true, true);
        if !summary.unframable {
            assert_eq!(whole, t, "one message per byte");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Credential sniffer
// ---------------------------------------------------------------------------------------------

/// Destination ports the `sniffer` script chooses from (`options & 7`).
pub const SNIFF_PORTS: [u16; 8] = [80, 110, 21, 143, 8080, 995, 587, 25];

/// Feeds `(server?, bytes)` pieces in order, draining after each call; returns the
/// credentials and the final `is_done`.
fn sniff_run(port: u16, pieces: &[(bool, &[u8])]) -> (Vec<Credential>, bool) {
    let mut s = Sniffer::new(port);
    let mut found = Vec::new();
    let mut done = false;
    for (server, b) in pieces {
        if *server {
            s.on_server(b);
        } else {
            s.on_client(b);
        }
        let before = found.len();
        while let Some(c) = s.poll_credential() {
            assert!(
                !c.user.is_empty() || !c.password.is_empty(),
                "empty credential"
            );
            found.push(c);
        }
        assert!(found.len() - before <= MAX_QUEUED, "queue bound");
        if done {
            assert!(s.is_done(), "is_done went back to false");
            assert_eq!(found.len(), before, "credential after giving up");
        }
        done = s.is_done();
    }
    (found, done)
}

/// Fuzz body `sniffer`: a [`Sniffer`] fed both directions of one connection.
///
/// The stream is cut by the script's steps; `Step::action` bit 0 sends a piece from the
/// server, otherwise from the client (the rest after the last step comes from the client).
/// `options & 7` picks the destination port from [`SNIFF_PORTS`].
///
/// Checks: the credentials found and the final `is_done` are the same when the pieces arrive
/// as scripted, one byte per call, and with consecutive pieces of one direction merged (the
/// causal order of the two directions is kept); at most [`MAX_QUEUED`] credentials come out of
/// one call; once the sniffer gives up it stays done and finds nothing more.
pub fn sniffer(data: &[u8]) {
    let script = Script::from_fuzz_input(data);
    let port = SNIFF_PORTS[usize::from(script.options & 7)];
    let chunks = script.chunks();
    let pieces: Vec<(bool, &[u8])> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let server = script
                .used_steps()
                .get(i)
                .is_some_and(|s| s.action & 1 != 0);
            (server, *c)
        })
        .collect();
    let want = sniff_run(port, &pieces);
    let bytes: Vec<(bool, &[u8])> = pieces
        .iter()
        .flat_map(|(d, b)| b.chunks(1).map(move |c| (*d, c)))
        .collect();
    assert_eq!(sniff_run(port, &bytes), want, "one byte per call");
    let mut merged: Vec<(bool, Vec<u8>)> = Vec::new();
    for (d, b) in &pieces {
        match merged.last_mut() {
            Some((last, buf)) if last == d => buf.extend_from_slice(b),
            _ => merged.push((*d, b.to_vec())),
        }
    }
    let merged: Vec<(bool, &[u8])> = merged.iter().map(|(d, b)| (*d, &b[..])).collect();
    assert_eq!(
        sniff_run(port, &merged),
        want,
        "one call per direction change"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: fn(&[u8]), options: u8, steps: &[(u16, u16, u8)], stream: &[u8]) {
        let steps = steps
            .iter()
            .map(|&(len, tick_ms, action)| Step {
                len,
                tick_ms,
                action,
            })
            .collect();
        body(
            &Script {
                options,
                steps,
                stream: stream.to_vec(),
            }
            .to_fuzz_input(),
        );
    }

    /// The oracles' hashed-user path: the verifier answers in the same call, later, after
    /// the deadline, after EOF or a close request; right and wrong passwords.
    #[test]
    fn oracles_take_the_hashed_user() {
        const GREET: &[u8] = b"\x05\x01\x02";
        const CONNECT: &[u8] = b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50";
        for auth in [
            &b"\x01\x05carol\x07letmein"[..],
            b"\x01\x05carol\x07letmeout",
        ] {
            let stream = [GREET, auth, CONNECT, b"early"].concat();
            let (g, a) = (GREET.len() as u16, auth.len() as u16);
            for steps in [
                &[][..],
                &[(g, 0, 0), (a, 5, 0), (10, 5, 1), (5, 5, 1)],
                &[(g + a, 0, 0), (3, 10_000, 1)],
                &[(g + a, 0, 2)],
                &[(g + a, 0, 0x0c)],
                &[(g + a, 0, 0x40), (0, 1, 1), (0, 1, 1)],
            ] {
                run(socks5_session, 0, steps, &stream);
                run(socks5_session, 1, steps, &stream);
            }
        }
        for auth in [&b"\x01\x05carol\x07letmein"[..], b"\x01\x05carol\x01x"] {
            let stream = [auth, b"\x00\x07\x00\x00"].concat();
            for options in [0, 1, 2, 4, 16] {
                for steps in [&[][..], &[(3, 0, 1), (40, 0, 2)], &[(20, 3000, 4)]] {
                    run(admin_session, options, steps, &stream);
                }
            }
        }
    }
}

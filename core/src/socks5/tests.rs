//! Unit tests: golden bytes per message (RFC 1928 §3-§6, RFC 1929 §2), then session scripts.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::state::{CloseCause, Config, ConnKind, Mutation, State};

// ---------------------------------------------------------------------------------------------
// Golden vectors
// ---------------------------------------------------------------------------------------------

const V4_TARGET: &[u8] = b"\x01\x7f\x00\x00\x01\x00\x50"; // 127.0.0.1:80
const V6_TARGET: &[u8] =
    b"\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\xbb"; // [2001:db8::1]:443
const NAME_TARGET: &[u8] = b"\x03\x0bexample.com\x00\x50"; // example.com:80

fn v4() -> TargetAddr {
    TargetAddr::Ip(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 80))
}
fn v6() -> TargetAddr {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    TargetAddr::Ip(SocketAddr::V6(SocketAddrV6::new(ip, 443, 0, 0)))
}
fn name() -> TargetAddr {
    TargetAddr::Domain(Bytes::from_static(b"example.com"), 80)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decodes `bytes` (must be exactly one message), checks every strict prefix is partial and
/// left untouched, and checks the value re-encodes to `bytes`.
macro_rules! golden {
    ($ty:ty, $bytes:expr, $value:expr) => {{
        let bytes: &[u8] = &$bytes;
        let value: $ty = $value;
        for i in 0..bytes.len() {
            let mut b = BytesMut::from(&bytes[..i]);
            assert_eq!(
                <$ty>::decode(&mut b),
                Ok(None),
                "prefix {i} of {bytes:02x?}"
            );
            assert_eq!(b.len(), i, "partial input must be left untouched");
        }
        assert_eq!(<$ty>::check(bytes), Ok(Some(bytes.len())));
        let mut b = BytesMut::from(bytes);
        b.extend_from_slice(b"tail");
        assert_eq!(
            <$ty>::decode(&mut b),
            Ok(Some(value.clone())),
            "{bytes:02x?}"
        );
        assert_eq!(&b[..], b"tail", "decode consumes exactly one message");
        let mut out = BytesMut::new();
        value.encode(&mut out);
        assert_eq!(&out[..], bytes, "re-encodes to the same bytes");
    }};
}

/// Decoding `bytes` fails with `err` and leaves the input untouched.
macro_rules! bad {
    ($ty:ty, $bytes:expr, $err:expr) => {{
        let bytes: &[u8] = &$bytes;
        let mut b = BytesMut::from(bytes);
        assert_eq!(<$ty>::decode(&mut b), Err($err), "{bytes:02x?}");
        assert_eq!(&b[..], bytes, "an error leaves the input untouched");
    }};
}

#[test]
fn greeting_golden() {
    golden!(
        Greeting,
        *b"\x05\x01\x00",
        Greeting::new(&[Method::NO_AUTH])
    );
    golden!(
        Greeting,
        *b"\x05\x02\x00\x02",
        Greeting::new(&[Method::NO_AUTH, Method::USER_PASS])
    );
    golden!(Greeting, *b"\x05\x00", Greeting::new(&[]));
    let all: Vec<u8> = (0..=254).collect();
    golden!(
        Greeting,
        cat(&[b"\x05\xff", &all]),
        Greeting {
            methods: Bytes::from(all.clone())
        }
    );
    let g = Greeting::new(&[Method::GSSAPI, Method::USER_PASS]);
    assert!(g.offers(Method::USER_PASS) && !g.offers(Method::NO_AUTH));
}

#[test]
fn greeting_errors() {
    bad!(Greeting, *b"\x04", DecodeError::UnsupportedVersion(4));
    bad!(
        Greeting,
        *b"GET / HTTP/1.1\r\n",
        DecodeError::UnsupportedVersion(b'G')
    );
}

#[test]
fn method_selection_golden() {
    for m in [
        Method::NO_AUTH,
        Method::GSSAPI,
        Method::USER_PASS,
        Method::NO_ACCEPTABLE,
    ] {
        golden!(MethodSelection, [5, m.0], MethodSelection { method: m });
    }
    bad!(
        MethodSelection,
        *b"\x01\x00",
        DecodeError::UnsupportedVersion(1)
    );
}

#[test]
fn request_golden() {
    let cases: [(&[u8], TargetAddr); 3] =
        [(V4_TARGET, v4()), (V6_TARGET, v6()), (NAME_TARGET, name())];
    for (cmd, command) in [
        (1u8, Command::Connect),
        (2, Command::Bind),
        (3, Command::UdpAssociate),
    ] {
        for (addr, target) in &cases {
            golden!(
                Request,
                cat(&[&[5, cmd, 0], addr]),
                Request {
                    command,
                    target: target.clone()
                }
            );
        }
    }
    // The longest request: a 255-byte name.
    let long = [b'a'; 255];
    let bytes = cat(&[b"\x05\x01\x00\x03\xff", &long, b"\xff\xff"]);
    assert_eq!(bytes.len(), Request::MAX_LEN);
    golden!(
        Request,
        bytes,
        Request {
            command: Command::Connect,
            target: TargetAddr::Domain(Bytes::copy_from_slice(&long), 0xffff)
        }
    );
}

#[test]
fn request_errors() {
    bad!(Request, *b"\x04", DecodeError::UnsupportedVersion(4));
    bad!(Request, *b"\x05\x01\x01", DecodeError::Reserved(1));
    bad!(
        Request,
        *b"\x05\x01\x00\x02",
        DecodeError::BadAddressType(2)
    );
    bad!(Request, *b"\x05\x01\x00\x03\x00", DecodeError::EmptyField);
    // An unknown CMD is reported once the whole request is there (so that it can be answered
    // with its target), and is partial before.
    let unknown = cat(&[b"\x05\x09\x00", V4_TARGET]);
    for i in 0..unknown.len() {
        assert_eq!(Request::check(&unknown[..i]), Ok(None));
    }
    bad!(Request, unknown, DecodeError::UnknownSocksCommand(9));
}

#[test]
fn reply_golden_every_code() {
    let bnd = TargetAddr::Ip("10.0.0.1:50000".parse().unwrap());
    for rep in 0x00..=0x08u8 {
        let code = ReplyCode::from_u8(rep).unwrap();
        assert_eq!(code as u8, rep);
        golden!(
            Reply,
            cat(&[&[5, rep, 0], b"\x01\x0a\x00\x00\x01\xc3\x50"]),
            Reply {
                code,
                bound: bnd.clone()
            }
        );
        golden!(
            Reply,
            cat(&[&[5, rep, 0], b"\x01\x00\x00\x00\x00\x00\x00"]),
            Reply::failure(code)
        );
    }
    golden!(
        Reply,
        cat(&[b"\x05\x00\x00", V6_TARGET]),
        Reply {
            code: ReplyCode::Succeeded,
            bound: v6()
        }
    );
    golden!(
        Reply,
        cat(&[b"\x05\x00\x00", NAME_TARGET]),
        Reply {
            code: ReplyCode::Succeeded,
            bound: name()
        }
    );
    assert_eq!(ReplyCode::from_u8(9), None);
}

#[test]
fn reply_errors() {
    bad!(Reply, *b"\x00", DecodeError::UnsupportedVersion(0));
    bad!(Reply, *b"\x05\x09", DecodeError::InvalidValue(9));
    bad!(Reply, *b"\x05\x00\x07", DecodeError::Reserved(7));
    bad!(Reply, *b"\x05\x00\x00\x05", DecodeError::BadAddressType(5));
    bad!(Reply, *b"\x05\x00\x00\x03\x00", DecodeError::EmptyField);
}

#[test]
fn userpass_golden_rfc1929() {
    golden!(
        UserPassRequest,
        *b"\x01\x03bob\x07hunter2",
        UserPassRequest {
            user: Bytes::from_static(b"bob"),
            password: Bytes::from_static(b"hunter2")
        }
    );
    for status in [0, 1] {
        let mut out = BytesMut::new();
        UserPassReply { status }.encode(&mut out);
        assert_eq!(&out[..], [1, status]);
        assert_eq!(
            UserPassReply::decode(&mut out),
            Ok(Some(UserPassReply { status }))
        );
    }
}

/// Every generated message encodes, decodes back to itself, and re-encodes to the same
/// bytes (the fuzzers and proptests rely on generated values being encodable).
#[cfg(feature = "arbitrary")]
#[test]
fn arbitrary_messages_round_trip() {
    fn round_trip<T>(
        u: &mut arbitrary::Unstructured<'_>,
        encode: impl Fn(&T, &mut BytesMut),
        decode: impl Fn(&mut BytesMut) -> Result<Option<T>, DecodeError>,
    ) where
        T: for<'a> arbitrary::Arbitrary<'a> + PartialEq + std::fmt::Debug,
    {
        let v: T = u.arbitrary().unwrap();
        let mut b = BytesMut::new();
        encode(&v, &mut b);
        let bytes = b.clone();
        assert_eq!(decode(&mut b), Ok(Some(v)), "{bytes:02x?}");
        assert!(b.is_empty());
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..2000 {
        let seed: Vec<u8> = (0..600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut u = arbitrary::Unstructured::new(&seed);
        round_trip(&mut u, Greeting::encode, Greeting::decode);
        round_trip(&mut u, MethodSelection::encode, MethodSelection::decode);
        round_trip(&mut u, Request::encode, Request::decode);
        round_trip(&mut u, Reply::encode, Reply::decode);
        round_trip(&mut u, UserPassRequest::encode, UserPassRequest::decode);
    }
}

// ---------------------------------------------------------------------------------------------
// Session scripts
// ---------------------------------------------------------------------------------------------

const GREET_UP: &[u8] = b"\x05\x01\x02";
const AUTH_BOB: &[u8] = b"\x01\x03bob\x07hunter2";
const LOCAL: &str = "10.0.0.1:50000";
const REPLY_OK_LOCAL: &[u8] = b"\x05\x00\x00\x01\x0a\x00\x00\x01\xc3\x50";

fn failure(code: u8) -> Vec<u8> {
    vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

fn connect(target: &[u8]) -> Vec<u8> {
    cat(&[b"\x05\x01\x00", target])
}

fn local() -> SocketAddr {
    LOCAL.parse().unwrap()
}

fn peer(e: DecodeError) -> CloseReason {
    CloseReason::Peer(ProtocolError::Decode(e))
}

/// The one address `example.com` resolves to in [`Server::settle`].
fn name_addr() -> SocketAddr {
    "192.0.2.10:80".parse().unwrap()
}

/// A server session with its shared state, its connection and the transport's read buffer,
/// recording everything it outputs. Checks the drain-contract invariants on every step, and
/// keeps track of what the session asked the transport to do and has not had an answer to.
struct Server {
    state: Arc<State>,
    conn: Connection,
    hs: Socks5Handshake,
    t0: Instant,
    input: BytesMut,
    out: Vec<u8>,
    events: Vec<Event>,
    /// Every event since creation (`events` is cleared by `expect`).
    all: Vec<Event>,
    /// Dials asked for, neither answered nor cancelled, in order.
    in_flight: Vec<(Attempt, SocketAddr)>,
    /// The attempt whose result is being reported (still in `in_flight` until drained).
    answering: Option<Attempt>,
    /// A `Resolve`, `Listen` or `BindUdp` awaits its answer.
    resolving: bool,
    listening: bool,
    binding_udp: bool,
}

impl Server {
    fn new(allow_anonymous: bool) -> Self {
        Self::with_limits(allow_anonymous, HandshakeLimits::default())
    }

    /// A server with BIND and UDP ASSOCIATE enabled.
    fn all_commands() -> Self {
        Self::with_limits(
            false,
            HandshakeLimits {
                allow_bind: true,
                allow_udp: true,
                ..HandshakeLimits::default()
            },
        )
    }

    fn with_limits(allow_anonymous: bool, limits: HandshakeLimits) -> Self {
        let t0 = crate::epoch::epoch();
        let config = Config {
            allow_anonymous,
            connection_timeout: 30,
            ..Config::default()
        };
        let state = Arc::new(State::new(t0, &config));
        let m = Mutation::AddUser {
            name: Bytes::from_static(b"bob"),
            password: "hunter2".into(),
            privilege: Privilege::User,
        };
        assert_eq!(state.apply(None, &m), crate::state::Outcome::Applied);
        Self::with_state(state, t0, limits)
    }

    fn with_state(state: Arc<State>, t0: Instant, limits: HandshakeLimits) -> Self {
        let conn = state.open(ConnKind::Proxy, t0);
        let hs = Socks5Handshake::new(t0, limits);
        assert_eq!(hs.poll_timeout(), Some(t0 + limits.handshake_timeout));
        Self {
            state,
            conn,
            hs,
            t0,
            input: BytesMut::new(),
            out: Vec::new(),
            events: Vec::new(),
            all: Vec::new(),
            in_flight: Vec::new(),
            answering: None,
            resolving: false,
            listening: false,
            binding_udp: false,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Drains in contract order and checks: nothing after `Closed`, only `Closed` after
    /// `Established`/`Associated`, nothing left to poll, a done session has no deadline and
    /// no dial in flight, `CancelDial` names a dial in flight.
    fn drain(&mut self) {
        while let Some(b) = self.hs.poll_transmit() {
            assert!(!b.is_empty(), "poll_transmit never returns empty bytes");
            self.out.extend_from_slice(&b);
        }
        let before = self.events.len();
        while let Some(e) = self.hs.poll_event() {
            match self.all.last() {
                Some(Event::Closed { .. }) => panic!("nothing after Closed, got {e:?}"),
                Some(Event::Established { .. } | Event::Associated { .. }) => assert!(
                    matches!(e, Event::Closed { .. }),
                    "only Closed after Established/Associated, got {e:?}"
                ),
                _ => {}
            }
            match &e {
                Event::Dial { attempt, addr } => {
                    assert!(
                        self.all
                            .iter()
                            .all(|x| !matches!(x, Event::Dial { attempt: a, .. } if a >= attempt)),
                        "attempts are numbered in order"
                    );
                    self.in_flight.push((*attempt, *addr));
                }
                Event::CancelDial { attempt } => {
                    let i = self.in_flight.iter().position(|(a, _)| a == attempt);
                    let i = i.unwrap_or_else(|| panic!("cancel of {attempt:?}, not in flight"));
                    self.in_flight.remove(i);
                }
                Event::Resolve { .. } => self.resolving = true,
                Event::Listen => self.listening = true,
                Event::BindUdp => self.binding_udp = true,
                Event::Established {
                    attempt: Some(w), ..
                } => {
                    assert_eq!(
                        Some(*w),
                        self.answering,
                        "the winner is the one just reported"
                    );
                }
                _ => {}
            }
            self.all.push(e.clone());
            self.events.push(e);
        }
        assert!(
            self.hs.poll_transmit().is_none(),
            "no bytes after the events"
        );
        if let Some(a) = self.answering.take() {
            self.in_flight.retain(|(x, _)| *x != a);
        }
        if self.hs.is_done() {
            assert_eq!(self.hs.poll_timeout(), None);
            assert_eq!(
                self.in_flight,
                [],
                "every dial answered or cancelled when done"
            );
        }
        for e in &self.events[before..] {
            match e {
                Event::Closed { .. } => assert!(self.hs.is_closed()),
                Event::Established { .. } => {
                    assert!(self.hs.is_established() || self.hs.is_closed());
                }
                Event::Associated { .. } => {
                    assert!(self.hs.is_associated() || self.hs.is_closed());
                }
                _ => {}
            }
        }
    }

    fn feed(&mut self, ms: u64, bytes: &[u8]) -> &mut Self {
        self.input.extend_from_slice(bytes);
        let now = self.at(ms);
        self.hs.handle_input(now, &mut self.input, &self.conn);
        self.drain();
        self
    }

    fn resolved(&mut self, ms: u64, r: Result<Vec<SocketAddr>, io::ErrorKind>) -> &mut Self {
        self.resolving = false;
        let now = self.at(ms);
        self.hs.handle_resolved(now, r);
        self.drain();
        self
    }

    fn dialed(&mut self, ms: u64, a: u32, r: Result<SocketAddr, io::ErrorKind>) -> &mut Self {
        self.answering = Some(Attempt(a));
        let now = self.at(ms);
        self.hs.handle_dial_result(now, Attempt(a), r);
        self.drain();
        self
    }

    fn listening(&mut self, ms: u64, r: Result<SocketAddr, io::ErrorKind>) -> &mut Self {
        self.listening = false;
        let now = self.at(ms);
        self.hs.handle_listening(now, r);
        self.drain();
        self
    }

    fn accepted(&mut self, ms: u64, peer: &str) -> &mut Self {
        let now = self.at(ms);
        self.hs.handle_accepted(now, peer.parse().unwrap());
        self.drain();
        self
    }

    fn udp_bound(&mut self, ms: u64, r: Result<SocketAddr, io::ErrorKind>) -> &mut Self {
        self.binding_udp = false;
        let now = self.at(ms);
        self.hs.handle_udp_bound(now, r);
        self.drain();
        self
    }

    fn close_request(&mut self, ms: u64, cause: CloseCause) -> &mut Self {
        let now = self.at(ms);
        self.hs.handle_close_request(now, cause);
        self.drain();
        self
    }

    /// Answers what is pending as a transport whose world has one outcome: a `Resolve` with
    /// [`name_addr`], every dial in flight (oldest first) with `dial`, until nothing is
    /// pending.
    fn settle(&mut self, ms: u64, dial: Result<SocketAddr, io::ErrorKind>) -> &mut Self {
        if self.resolving {
            self.resolved(ms, Ok(vec![name_addr()]));
        }
        while let Some(&(a, _)) = self.in_flight.first() {
            self.dialed(ms, a.0, dial);
        }
        self
    }

    /// Fires timers at `ms` and checks the next deadline moved past it.
    fn timeout(&mut self, ms: u64) -> &mut Self {
        let now = self.at(ms);
        self.hs.handle_timeout(now);
        self.drain();
        if let Some(t) = self.hs.poll_timeout() {
            assert!(t > now, "a fired timer must not stay due (busy loop)");
        }
        self
    }

    /// Fires timers at every deadline up to `ms`, as a transport sleeping until
    /// `poll_timeout` would.
    fn run_until(&mut self, ms: u64) -> &mut Self {
        let end = self.at(ms);
        while let Some(t) = self.hs.poll_timeout().filter(|t| *t <= end) {
            let ms = u64::try_from((t - self.t0).as_millis()).unwrap();
            assert_eq!(
                self.at(ms),
                t,
                "these scripts' deadlines are whole milliseconds"
            );
            self.timeout(ms);
        }
        self
    }

    fn eof(&mut self, ms: u64) -> &mut Self {
        let now = self.at(ms);
        self.hs.handle_eof(now);
        self.drain();
        self
    }

    fn expect(&mut self, out: &[u8], events: &[Event]) -> &mut Self {
        assert_eq!(self.out, out, "output bytes");
        assert_eq!(self.events, events, "events");
        self.out.clear();
        self.events.clear();
        self
    }
}

fn ev_resolve(host: &'static [u8], port: u16) -> Event {
    Event::Resolve {
        host: Bytes::from_static(host),
        port,
    }
}
fn ev_dial(attempt: u32, addr: SocketAddr) -> Event {
    Event::Dial {
        attempt: Attempt(attempt),
        addr,
    }
}
fn ev_cancel(attempt: u32) -> Event {
    Event::CancelDial {
        attempt: Attempt(attempt),
    }
}
fn ip(t: &TargetAddr) -> SocketAddr {
    match t {
        TargetAddr::Ip(a) => *a,
        TargetAddr::Domain(..) => panic!("not an IP target"),
    }
}
fn ev_replied(target: TargetAddr, code: ReplyCode) -> Event {
    Event::Replied { target, code }
}
fn ev_established(attempt: Option<u32>, leftover: &[u8]) -> Event {
    Event::Established {
        attempt: attempt.map(Attempt),
        leftover: Bytes::copy_from_slice(leftover),
    }
}
fn ev_closed(reason: CloseReason) -> Event {
    Event::Closed { reason }
}

#[test]
fn happy_path_ipv4_step_by_step() {
    let mut s = Server::new(false);
    s.feed(0, GREET_UP).expect(b"\x05\x02", &[]);
    s.feed(1, AUTH_BOB).expect(b"\x01\x00", &[]);
    assert_eq!(s.conn.user().map(|u| &u[..]), Some(&b"bob"[..]));
    assert_eq!(s.state.counters().users_connected, 1);
    s.feed(2, &connect(V4_TARGET))
        .expect(b"", &[ev_dial(0, ip(&v4()))]);
    assert!(!s.hs.is_done());
    // One address: its attempt may use all that is left of the handshake.
    assert_eq!(s.hs.poll_timeout(), Some(s.t0 + HANDSHAKE_TIMEOUT));
    s.dialed(3, 0, Ok(local())).expect(
        REPLY_OK_LOCAL,
        &[
            ev_replied(v4(), ReplyCode::Succeeded),
            ev_established(Some(0), b""),
        ],
    );
    assert!(s.hs.is_established() && !s.hs.is_closed());
    assert!(s.input.is_empty());
    // Nothing after it is done; input is left alone.
    s.feed(4, b"more").expect(b"", &[]);
    assert_eq!(&s.input[..], b"more");
    s.eof(5).timeout(20_000).expect(b"", &[]);
    s.dialed(6, 0, Ok(local())).expect(b"", &[]);
    assert!(s.hs.is_established());
}

#[test]
fn happy_path_ipv6_and_domain() {
    for (addr, target) in [(V6_TARGET, v6()), (NAME_TARGET, name())] {
        let mut s = Server::new(false);
        let bound: SocketAddr = "[2001:db8::2]:1234".parse().unwrap();
        s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &connect(addr)]));
        if let TargetAddr::Domain(..) = target {
            s.expect(b"\x05\x02\x01\x00", &[ev_resolve(b"example.com", 80)])
                .resolved(1, Ok(vec![name_addr()]))
                .expect(b"", &[ev_dial(0, name_addr())]);
        } else {
            s.expect(b"\x05\x02\x01\x00", &[ev_dial(0, ip(&target))]);
        }
        let mut reply = BytesMut::new();
        Reply {
            code: ReplyCode::Succeeded,
            bound: TargetAddr::Ip(bound),
        }
        .encode(&mut reply);
        assert_eq!(reply.len(), Reply::MAX_IP_LEN);
        s.dialed(1, 0, Ok(bound)).expect(
            &reply,
            &[
                ev_replied(target, ReplyCode::Succeeded),
                ev_established(Some(0), b""),
            ],
        );
    }
}

#[test]
fn all_in_one_slice_with_payload_is_leftover() {
    let payload = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let all = cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET), payload]);
    let mut s = Server::new(false);
    s.feed(0, &all)
        .expect(b"\x05\x02\x01\x00", &[ev_resolve(b"example.com", 80)]);
    assert!(
        s.input.is_empty(),
        "pipelined bytes are taken, not left behind"
    );
    // More bytes while the dial runs are kept too.
    s.feed(1, b"second write").expect(b"", &[]);
    s.settle(2, Ok(local())).expect(
        REPLY_OK_LOCAL,
        &[
            ev_dial(0, name_addr()),
            ev_replied(name(), ReplyCode::Succeeded),
            ev_established(Some(0), &cat(&[payload, b"second write"])),
        ],
    );
}

/// Runs a whole script with the client bytes cut into the given chunks; returns what the
/// transport saw.
fn transcript(
    chunks: &[&[u8]],
    result: Result<SocketAddr, io::ErrorKind>,
) -> (Vec<u8>, Vec<Event>) {
    let mut s = Server::new(true);
    let mut out = Vec::new();
    let mut events = Vec::new();
    for c in chunks {
        s.feed(0, c);
        out.append(&mut s.out);
        events.append(&mut s.events);
    }
    s.settle(1, result);
    out.append(&mut s.out);
    events.append(&mut s.events);
    (out, events)
}

#[test]
fn every_split_gives_the_same_transcript() {
    let scripts: Vec<Vec<u8>> = vec![
        cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET), b"payload"]),
        cat(&[b"\x05\x02\x00\x02", AUTH_BOB, &connect(V6_TARGET)]),
        cat(&[b"\x05\x01\x00", &connect(V4_TARGET), b"xy"]),
        cat(&[GREET_UP, b"\x01\x03bob\x05wrong", b"junk"]),
        cat(&[GREET_UP, AUTH_BOB, b"\x05\x02\x00", V4_TARGET]),
        cat(&[GREET_UP, AUTH_BOB, b"\x05\x01\x00\x09rest"]),
        b"\x05\x01\x01".to_vec(),
        b"\x04\x01\x00\x50\x7f\x00\x00\x01user\x00".to_vec(),
    ];
    for all in &scripts {
        for result in [Ok(local()), Err(io::ErrorKind::HostUnreachable)] {
            let whole = transcript(&[all], result);
            assert!(
                whole
                    .1
                    .iter()
                    .any(|e| matches!(e, Event::Closed { .. } | Event::Established { .. })),
                "every script ends: {whole:?}"
            );
            for i in 0..=all.len() {
                for j in i..=all.len() {
                    let split = transcript(&[&all[..i], &all[i..j], &all[j..]], result);
                    assert_eq!(split, whole, "split at {i},{j} of {all:02x?}");
                }
            }
            let bytewise: Vec<&[u8]> = all.chunks(1).collect();
            assert_eq!(transcript(&bytewise, result), whole);
        }
    }
}

#[test]
fn wrong_credentials_fail_alike() {
    for auth in [
        &b"\x01\x03bob\x07hunter3"[..],
        b"\x01\x03eve\x07hunter2",
        b"\x01\x00\x00",
        b"\x01\x03bob\x00",
    ] {
        let mut s = Server::new(true);
        s.feed(0, &cat(&[GREET_UP, auth, &connect(V4_TARGET)]))
            .expect(
                b"\x05\x02\x01\x01",
                &[ev_closed(CloseReason::Peer(ProtocolError::AuthFailed))],
            );
        assert_eq!(s.conn.user(), None);
        assert_eq!(s.state.counters().users_connected, 0);
    }
}

#[test]
fn auth_with_bad_version_fails() {
    let mut s = Server::new(false);
    s.feed(0, GREET_UP).feed(1, b"\x05\x03bob").expect(
        b"\x05\x02\x01\x01",
        &[ev_closed(peer(DecodeError::UnsupportedVersion(5)))],
    );
}

#[test]
fn no_acceptable_method() {
    for greeting in [&b"\x05\x01\x01"[..], b"\x05\x00", b"\x05\x02\x03\x80"] {
        let mut s = Server::new(true);
        s.feed(0, greeting).expect(
            b"\x05\xff",
            &[ev_closed(CloseReason::Peer(
                ProtocolError::NoAcceptableMethod,
            ))],
        );
    }
}

#[test]
fn anonymous_only_when_allowed_and_no_userpass_offered() {
    // Allowed, only 0x00 offered: no authentication, straight to the request.
    let mut s = Server::new(true);
    s.feed(0, &cat(&[b"\x05\x01\x00", &connect(V4_TARGET)]))
        .expect(b"\x05\x00", &[ev_dial(0, ip(&v4()))]);
    s.dialed(1, 0, Ok(local())).expect(
        REPLY_OK_LOCAL,
        &[
            ev_replied(v4(), ReplyCode::Succeeded),
            ev_established(Some(0), b""),
        ],
    );
    assert_eq!(s.conn.user(), None, "anonymous use is not a user");
    assert_eq!(s.state.counters().users_connected, 0);

    // Allowed, but 0x02 offered too: 0x02 wins.
    let mut s = Server::new(true);
    s.feed(0, b"\x05\x02\x00\x02").expect(b"\x05\x02", &[]);

    // Not allowed.
    let mut s = Server::new(false);
    s.feed(0, b"\x05\x01\x00").expect(
        b"\x05\xff",
        &[ev_closed(CloseReason::Peer(
            ProtocolError::NoAcceptableMethod,
        ))],
    );
}

#[test]
fn userpass_selected_even_without_users() {
    let t0 = crate::epoch::epoch();
    let state = Arc::new(State::new(t0, &Config::default()));
    let mut s = Server::with_state(state, t0, HandshakeLimits::default());
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB])).expect(
        b"\x05\x02\x01\x01",
        &[ev_closed(CloseReason::Peer(ProtocolError::AuthFailed))],
    );
}

#[test]
fn bind_udp_and_unknown_commands_get_07() {
    let cases = [
        (2u8, CloseReason::RequestFailed(7)),
        (3, CloseReason::RequestFailed(7)),
        (0, peer(DecodeError::UnknownSocksCommand(0))),
        (0xff, peer(DecodeError::UnknownSocksCommand(0xff))),
    ];
    for (cmd, reason) in cases {
        let mut s = Server::new(false);
        s.feed(
            0,
            &cat(&[GREET_UP, AUTH_BOB, &[5, cmd, 0], NAME_TARGET, b"data"]),
        )
        .expect(
            &cat(&[b"\x05\x02\x01\x00", &failure(7)]),
            &[
                ev_replied(name(), ReplyCode::CommandNotSupported),
                ev_closed(reason),
            ],
        );
    }
}

#[test]
fn malformed_requests() {
    let cases: [(&[u8], u8, DecodeError); 4] = [
        (b"\x05\x01\x00\x02\x00", 8, DecodeError::BadAddressType(2)),
        (b"\x05\x01\x00\xff", 8, DecodeError::BadAddressType(0xff)),
        (b"\x05\x01\x07\x01", 1, DecodeError::Reserved(7)),
        (b"\x04\x01\x00\x01", 1, DecodeError::UnsupportedVersion(4)),
    ];
    for (req, code, e) in cases {
        let mut s = Server::new(false);
        s.feed(0, &cat(&[GREET_UP, AUTH_BOB, req])).expect(
            &cat(&[b"\x05\x02\x01\x00", &failure(code)]),
            &[ev_closed(peer(e))],
        );
    }
    let mut s = Server::new(false);
    s.feed(
        0,
        &cat(&[GREET_UP, AUTH_BOB, b"\x05\x01\x00\x03\x00\x00\x50"]),
    )
    .expect(
        &cat(&[b"\x05\x02\x01\x00", &failure(1)]),
        &[ev_closed(peer(DecodeError::EmptyField))],
    );
}

#[test]
fn connect_failures_carry_their_code() {
    use io::ErrorKind as K;
    let cases = [
        (K::ConnectionRefused, 5),
        (K::TimedOut, 6),
        (K::NetworkUnreachable, 3),
        (K::NetworkDown, 3),
        (K::HostUnreachable, 4),
        (K::PermissionDenied, 2),
        (K::AddrNotAvailable, 1),
        (K::ConnectionReset, 1),
        (K::Other, 1),
    ];
    for (kind, rep) in cases {
        assert_eq!(ReplyCode::from_io_error(kind) as u8, rep, "{kind:?}");
        let code = ReplyCode::from_u8(rep).unwrap();
        let mut s = Server::new(false);
        s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &connect(V4_TARGET), b"lost"]))
            .expect(b"\x05\x02\x01\x00", &[ev_dial(0, ip(&v4()))]);
        s.dialed(1, 0, Err(kind)).expect(
            &failure(rep),
            &[
                ev_replied(v4(), code),
                ev_closed(CloseReason::RequestFailed(rep)),
            ],
        );
    }
}

#[test]
fn not_socks5_closes_without_reply() {
    let cases: [(&[u8], u8); 4] = [
        (b"\x04\x01\x00\x50\x7f\x00\x00\x01bob\x00", 4),
        (b"GET / HTTP/1.1\r\n\r\n", b'G'),
        (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", b'C'),
        (b"\x16\x03\x01\x02\x00", 0x16),
    ];
    for (bytes, v) in cases {
        let mut s = Server::new(true);
        s.feed(0, bytes)
            .expect(b"", &[ev_closed(peer(DecodeError::UnsupportedVersion(v)))]);
    }
}

#[test]
fn random_garbage_never_panics_and_answers_only_socks() {
    // xorshift: deterministic, no dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut closed = 0;
    for round in 0..3000 {
        let len = (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias towards getting past each stage.
        match round % 4 {
            1 => bytes.splice(0..0, GREET_UP.iter().copied()).for_each(drop),
            2 => bytes
                .splice(0..0, b"\x05\x01\x00\x05".iter().copied())
                .for_each(drop),
            3 => bytes
                .splice(0..0, cat(&[GREET_UP, AUTH_BOB, b"\x05"]))
                .for_each(drop),
            _ => {}
        }
        let mut s = Server::new(round % 2 == 0);
        let cut = if bytes.is_empty() {
            0
        } else {
            (next() as usize) % bytes.len()
        };
        s.feed(0, &bytes[..cut]).feed(1, &bytes[cut..]);
        s.settle(2, Err(io::ErrorKind::ConnectionRefused));
        s.timeout(10_000);
        assert!(s.hs.is_closed(), "{bytes:02x?}");
        closed += 1;
        // Whatever was sent parses as server messages.
        let mut out = BytesMut::from(&s.out[..]);
        if out.is_empty() {
            continue;
        }
        let sel = MethodSelection::decode(&mut out).unwrap().unwrap();
        if sel.method == Method::USER_PASS && !out.is_empty() {
            UserPassReply::decode(&mut out).unwrap().unwrap();
        }
        if !out.is_empty() {
            Reply::decode(&mut out).unwrap().unwrap();
        }
        assert!(out.is_empty(), "{:02x?}", s.out);
    }
    assert_eq!(closed, 3000);
}

#[test]
fn handshake_timeout() {
    let mut s = Server::new(false);
    s.feed(0, GREET_UP)
        .feed(1, b"\x01\x03bo")
        .expect(b"\x05\x02", &[]);
    let deadline = s.t0 + HANDSHAKE_TIMEOUT;
    assert_eq!(
        s.hs.poll_timeout(),
        Some(deadline),
        "input does not extend it"
    );
    s.timeout(9_999).expect(b"", &[]);
    assert_eq!(
        s.hs.poll_timeout(),
        Some(deadline),
        "early calls do nothing"
    );
    s.timeout(10_000)
        .expect(b"", &[ev_closed(CloseReason::HandshakeTimeout)]);
    assert_eq!(s.hs.poll_timeout(), None, "a fired timer does not stay due");
    s.timeout(10_001)
        .feed(10_002, b"b\x07hunter2")
        .expect(b"", &[]);
}

#[test]
fn handshake_timeout_covers_the_dial() {
    let mut s = Server::new(false);
    s.feed(
        0,
        &cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET), b"early"]),
    )
    .expect(b"\x05\x02\x01\x00", &[ev_resolve(b"example.com", 80)]);
    s.timeout(10_000).expect(
        &failure(6),
        &[
            ev_replied(name(), ReplyCode::TtlExpired),
            ev_closed(CloseReason::HandshakeTimeout),
        ],
    );
    // The late resolution changes nothing.
    s.resolved(10_001, Ok(vec![name_addr()])).expect(b"", &[]);
}

#[test]
fn eof_before_done_closes() {
    let mut s = Server::new(false);
    s.eof(0).expect(b"", &[ev_closed(CloseReason::PeerEof)]);
    assert_eq!(s.hs.poll_timeout(), None);

    let mut s = Server::new(false);
    s.feed(0, &cat(&[GREET_UP, b"\x01"]))
        .eof(1)
        .expect(b"\x05\x02", &[ev_closed(CloseReason::PeerEof)]);

    let mut s = Server::new(false);
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &connect(V4_TARGET)]))
        .eof(1)
        .dialed(2, 0, Ok(local()))
        .expect(
            b"\x05\x02\x01\x00",
            &[
                ev_dial(0, ip(&v4())),
                ev_cancel(0),
                ev_closed(CloseReason::PeerEof),
            ],
        );
}

#[test]
fn early_data_limit() {
    let head = cat(&[GREET_UP, AUTH_BOB, &connect(V4_TARGET)]);
    // Exactly the limit, in two writes: kept whole.
    let mut s = Server::new(false);
    let big = vec![0xab; MAX_EARLY_DATA];
    s.feed(0, &cat(&[&head, &big[..1000]]))
        .feed(1, &big[1000..]);
    s.dialed(2, 0, Ok(local())).expect(
        &cat(&[b"\x05\x02\x01\x00", REPLY_OK_LOCAL]),
        &[
            ev_dial(0, ip(&v4())),
            ev_replied(v4(), ReplyCode::Succeeded),
            ev_established(Some(0), &big),
        ],
    );
    // One byte more: refused.
    let mut s = Server::new(false);
    s.feed(0, &cat(&[&head, &big])).feed(1, b"!").expect(
        &cat(&[b"\x05\x02\x01\x00", &failure(1)]),
        &[
            ev_dial(0, ip(&v4())),
            ev_cancel(0),
            ev_replied(v4(), ReplyCode::GeneralFailure),
            ev_closed(CloseReason::Peer(ProtocolError::InputLimit)),
        ],
    );
    // All at once, too.
    let mut s = Server::new(false);
    s.feed(0, &cat(&[&head, &big, b"!"])).expect(
        &cat(&[b"\x05\x02\x01\x00", &failure(1)]),
        &[
            ev_dial(0, ip(&v4())),
            ev_cancel(0),
            ev_replied(v4(), ReplyCode::GeneralFailure),
            ev_closed(CloseReason::Peer(ProtocolError::InputLimit)),
        ],
    );
}

#[test]
fn no_lock_is_held_between_calls() {
    let mut s = Server::new(false);
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB]));
    // Taking the users write lock right after would deadlock if the session held a read lock.
    let rm = Mutation::RemoveUser {
        name: Bytes::from_static(b"bob"),
    };
    assert_eq!(s.state.apply(None, &rm), crate::state::Outcome::Applied);
    assert_eq!(s.conn.close_cause(), Some(CloseCause::UserRemoved));
}

/// A client written with the message API, talking to the server session in memory.
#[test]
fn client_side_api_against_the_server() {
    let mut s = Server::new(false);
    let mut c2s = BytesMut::new();
    Greeting::new(&[Method::NO_AUTH, Method::USER_PASS]).encode(&mut c2s);
    UserPassRequest {
        user: Bytes::from_static(b"bob"),
        password: Bytes::from_static(b"hunter2"),
    }
    .encode(&mut c2s);
    let req = Request {
        command: Command::Connect,
        target: v6(),
    };
    req.encode(&mut c2s);
    s.feed(0, &c2s);
    s.dialed(1, 0, Ok(local()));

    let mut s2c = BytesMut::from(&s.out[..]);
    assert_eq!(
        MethodSelection::decode(&mut s2c),
        Ok(Some(MethodSelection {
            method: Method::USER_PASS
        }))
    );
    assert_eq!(
        UserPassReply::decode(&mut s2c),
        Ok(Some(UserPassReply { status: 0 }))
    );
    assert_eq!(
        Reply::decode(&mut s2c),
        Ok(Some(Reply {
            code: ReplyCode::Succeeded,
            bound: TargetAddr::Ip(local())
        }))
    );
    assert!(s2c.is_empty());
    assert_eq!(
        s.events,
        [
            ev_dial(0, ip(&req.target)),
            ev_replied(req.target, ReplyCode::Succeeded),
            ev_established(Some(0), b"")
        ]
    );
}

mod commands;
mod happy_eyeballs;
mod verify;

#[test]
fn a_pending_request_can_be_refused_by_policy() {
    // CONNECT to an address: refused at its first dial, which is cancelled.
    let mut s = Server::new(false);
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB]));
    assert!(s.hs.pending_request().is_none(), "no request yet");
    s.out.clear();
    s.events.clear();
    s.feed(1, &connect(V4_TARGET))
        .expect(b"", &[ev_dial(0, ip(&v4()))]);
    assert_eq!(s.hs.pending_request(), Some((Command::Connect, &v4())));
    s.hs.refuse_pending(s.at(2), ReplyCode::NotAllowed);
    s.drain();
    s.expect(
        &failure(2),
        &[
            ev_cancel(0),
            ev_replied(v4(), ReplyCode::NotAllowed),
            ev_closed(CloseReason::RequestFailed(2)),
        ],
    );
    assert!(s.hs.is_closed() && s.hs.pending_request().is_none());
    // A late dial result changes nothing.
    s.dialed(3, 0, Ok(local())).expect(b"", &[]);
    // Refusing again does nothing.
    s.hs.refuse_pending(s.at(4), ReplyCode::NotAllowed);
    s.drain();
    s.expect(b"", &[]);

    // CONNECT to a name, refused while resolving (0x03: egress); the resolution is ignored.
    let mut s = Server::new(false);
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET)]));
    s.out.clear();
    s.events.clear();
    assert_eq!(s.hs.pending_request(), Some((Command::Connect, &name())));
    s.hs.refuse_pending(s.at(1), ReplyCode::NetworkUnreachable);
    s.drain();
    s.resolving = false;
    s.expect(
        &failure(3),
        &[
            ev_replied(name(), ReplyCode::NetworkUnreachable),
            ev_closed(CloseReason::RequestFailed(3)),
        ],
    );
    s.resolved(2, Ok(vec![name_addr()])).expect(b"", &[]);

    // BIND and UDP ASSOCIATE name their command; refused before their socket exists.
    for (cmd, command) in [(2u8, Command::Bind), (3, Command::UdpAssociate)] {
        let mut s = Server::all_commands();
        s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &[5, cmd, 0], V4_TARGET]));
        s.out.clear();
        s.events.clear();
        assert_eq!(s.hs.pending_request(), Some((command, &v4())));
        s.hs.refuse_pending(s.at(1), ReplyCode::NotAllowed);
        s.drain();
        s.listening = false;
        s.binding_udp = false;
        s.expect(
            &failure(2),
            &[
                ev_replied(v4(), ReplyCode::NotAllowed),
                ev_closed(CloseReason::RequestFailed(2)),
            ],
        );
    }
    // "Succeeded" is no refusal: sent as a general failure.
    let mut s = Server::new(false);
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &connect(V4_TARGET)]));
    s.out.clear();
    s.events.clear();
    s.hs.refuse_pending(s.at(1), ReplyCode::Succeeded);
    s.drain();
    assert_eq!(s.out, failure(1));
}

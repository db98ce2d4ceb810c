//! Unit tests: the RFC 1928 §7 header (golden bytes, prefixes, errors), then association
//! scripts, one or more per rule of the module docs.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::error::DecodeError;
use crate::socks5::TargetAddr;

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/// 192.0.2.1:53, "hi".
const V4: &[u8] = b"\x00\x00\x00\x01\xc0\x00\x02\x01\x00\x35hi";
/// [2001:db8::1]:443, "hello".
const V6: &[u8] = b"\x00\x00\x00\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\xbbhello";
/// example.com:80, "GET".
const NAME: &[u8] = b"\x00\x00\x00\x03\x0bexample.com\x00\x50GET";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> TargetAddr {
    TargetAddr::Ip(sa(s))
}

fn name(host: &str, port: u16) -> TargetAddr {
    TargetAddr::Domain(Bytes::copy_from_slice(host.as_bytes()), port)
}

/// Checks a golden datagram: its header decodes to `addr` with `payload` as a zero-copy
/// slice, re-encodes to the same bytes, every strict prefix of the header is truncated and
/// every longer prefix decodes with a shorter payload.
fn golden(bytes: &'static [u8], addr: TargetAddr, payload: &[u8]) {
    let hlen = bytes.len() - payload.len();
    let datagram = Bytes::from_static(bytes);
    let (h, p) = Header::decode(&datagram).unwrap();
    assert_eq!(h, Header::new(addr));
    assert_eq!(&p[..], payload);
    assert_eq!(
        p.as_ptr(),
        datagram[hlen..].as_ptr(),
        "payload is zero-copy"
    );
    assert_eq!(Header::check(bytes), Ok(hlen));
    assert_eq!(h.encoded_len(), hlen);
    let mut out = BytesMut::new();
    h.encode(&mut out);
    out.put_slice(&p);
    assert_eq!(&out[..], bytes, "re-encodes to the same bytes");
    for i in 0..hlen {
        assert_eq!(
            Header::decode(&datagram.slice(..i)),
            Err(HeaderError::Truncated { len: i }),
            "prefix {i}"
        );
    }
    for i in hlen..=bytes.len() {
        let (h2, p2) = Header::decode(&datagram.slice(..i)).unwrap();
        assert_eq!(h2, h);
        assert_eq!(&p2[..], &payload[..i - hlen]);
    }
}

#[test]
fn header_golden() {
    golden(V4, ip("192.0.2.1:53"), b"hi");
    golden(V6, ip("[2001:db8::1]:443"), b"hello");
    golden(NAME, name("example.com", 80), b"GET");
}

#[test]
fn header_lengths() {
    assert_eq!(Header::new(ip("192.0.2.1:53")).encoded_len(), 10);
    assert_eq!(Header::new(name("a", 53)).encoded_len(), Header::MIN_LEN);
    assert_eq!(
        Header::check(b"\x00\x00\x00\x03\x01a\x00\x35"),
        Ok(Header::MIN_LEN)
    );
    let long = TargetAddr::Domain(Bytes::from(vec![b'a'; 255]), 1);
    let h = Header::new(long);
    assert_eq!(h.encoded_len(), Header::MAX_LEN);
    let mut out = BytesMut::new();
    h.encode(&mut out);
    assert_eq!(out.len(), Header::MAX_LEN);
    assert_eq!(Header::decode(&out.freeze()).unwrap().0, h);
}

#[test]
fn header_frag_decodes() {
    for frag in [1, 0x7f, 0x81, 0xff] {
        let mut b = V4.to_vec();
        b[2] = frag;
        let (h, p) = Header::decode(&Bytes::from(b.clone())).unwrap();
        assert_eq!(h.frag, frag);
        let mut out = BytesMut::new();
        h.encode(&mut out);
        out.put_slice(&p);
        assert_eq!(&out[..], &b[..]);
    }
}

#[test]
fn header_errors() {
    let bad = |b: &[u8], e: HeaderError| {
        assert_eq!(Header::check(b), Err(e), "{b:02x?}");
        assert_eq!(Header::decode(&Bytes::copy_from_slice(b)), Err(e));
    };
    let dec = HeaderError::Decode;
    bad(b"", HeaderError::Truncated { len: 0 });
    // Reported as soon as the byte is there, however short the datagram.
    bad(b"\x01", dec(DecodeError::Reserved(1)));
    bad(b"\x00\x07\x00\x01", dec(DecodeError::Reserved(7)));
    bad(
        b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
        dec(DecodeError::Reserved(5)),
    );
    bad(
        b"\x00\x00\x00\x02abcdef",
        dec(DecodeError::BadAddressType(2)),
    );
    bad(b"\x00\x00\x00\x00", dec(DecodeError::BadAddressType(0)));
    bad(
        b"\x00\x00\x00\x03\x00\x00\x50",
        dec(DecodeError::EmptyField),
    );
    bad(
        b"\x00\x00\x00\x03\x05abc",
        HeaderError::Truncated { len: 8 },
    );
    bad(b"GET / HTTP/1.1\r\n", dec(DecodeError::Reserved(b'G')));
}

#[test]
fn header_empty_payload() {
    let d = Bytes::from_static(&V4[..10]);
    let (h, p) = Header::decode(&d).unwrap();
    assert_eq!(h.addr, ip("192.0.2.1:53"));
    assert!(p.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Association scripts
// ---------------------------------------------------------------------------------------------

/// The client's control connection comes from here.
const CONTROL: &str = "10.0.0.2:40000";
const CLIENT: &str = "10.0.0.2:5000";

struct Fixture {
    a: Association,
    t0: Instant,
    now: Instant,
}

fn fixture(control: &str, requested: TargetAddr, limits: UdpLimits) -> Fixture {
    let t0 = crate::epoch::epoch();
    Fixture {
        a: Association::new(t0, sa(control), &requested, limits),
        t0,
        now: t0,
    }
}

/// The usual association: control from 10.0.0.2, client port 5000.
fn usual() -> Fixture {
    fixture(CONTROL, ip("0.0.0.0:5000"), UdpLimits::default())
}

/// A client datagram to `to` with `payload`.
fn dg(to: &TargetAddr, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    Header::new(to.clone()).encode(&mut b);
    b.put_slice(payload);
    b.freeze()
}

fn remote(to: &str, payload: &[u8]) -> UdpEvent {
    UdpEvent::ToRemote {
        to: sa(to),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A reply to the client at `to` from `source`.
fn client(to: &str, source: &str, payload: &[u8]) -> UdpEvent {
    UdpEvent::ToClient {
        to: sa(to),
        datagram: dg(&ip(source), payload),
    }
}

fn dropped(reason: DropReason, from: &str) -> UdpEvent {
    UdpEvent::Dropped {
        reason,
        from: sa(from),
    }
}

fn resolve(host: &str, port: u16) -> UdpEvent {
    UdpEvent::Resolve {
        host: Bytes::copy_from_slice(host.as_bytes()),
        port,
    }
}

impl Fixture {
    /// Moves time to `t0 + ms`.
    fn at(&mut self, ms: u64) -> &mut Self {
        self.now = self.t0 + Duration::from_millis(ms);
        self
    }

    fn drain(&mut self) -> Vec<UdpEvent> {
        let events: Vec<_> = std::iter::from_fn(|| self.a.poll_event()).collect();
        if let Some(t) = self.a.poll_timeout() {
            assert!(t > self.now, "the next deadline must be in the future");
        }
        events
    }

    /// Hands in a raw datagram from `from` and returns the events.
    fn raw(&mut self, from: &str, datagram: Bytes) -> Vec<UdpEvent> {
        self.a.handle_datagram(self.now, sa(from), datagram);
        self.drain()
    }

    /// Hands in a datagram with a header for `to` from `from`.
    fn send(&mut self, from: &str, to: &TargetAddr, payload: &[u8]) -> Vec<UdpEvent> {
        self.raw(from, dg(to, payload))
    }

    /// Hands in a reply (no header) from `from`.
    fn reply(&mut self, from: &str, payload: &[u8]) -> Vec<UdpEvent> {
        self.raw(from, Bytes::copy_from_slice(payload))
    }

    fn resolved(&mut self, host: &str, r: Result<Vec<SocketAddr>, io::ErrorKind>) -> Vec<UdpEvent> {
        let host = Bytes::copy_from_slice(host.as_bytes());
        self.a.handle_resolved(self.now, &host, r);
        self.drain()
    }

    fn tick(&mut self) -> Vec<UdpEvent> {
        self.a.handle_timeout(self.now);
        self.drain()
    }
}

#[test]
fn relays_client_datagrams_zero_copy() {
    let mut f = usual();
    let d = dg(&ip("192.0.2.1:53"), b"query");
    f.a.handle_datagram(f.now, sa(CLIENT), d.clone());
    let Some(UdpEvent::ToRemote { to, payload }) = f.a.poll_event() else {
        panic!("expected ToRemote");
    };
    assert_eq!(to, sa("192.0.2.1:53"));
    assert_eq!(&payload[..], b"query");
    assert_eq!(payload.as_ptr(), d[10..].as_ptr(), "payload is zero-copy");
    assert_eq!(f.a.poll_event(), None);
    assert_eq!(f.a.client(), Some(sa(CLIENT)));
    let s = f.a.stats();
    assert_eq!(s.received.datagrams, 1);
    assert_eq!(s.received.bytes, 15);
    assert_eq!((s.to_remote.datagrams, s.to_remote.bytes), (1, 5));
    assert_eq!(s.destinations, 1);
    // IPv6 destination from an IPv4 client: the driver picks the socket.
    assert_eq!(
        f.send(CLIENT, &ip("[2001:db8::1]:443"), b"x"),
        [remote("[2001:db8::1]:443", b"x")]
    );
}

#[test]
fn only_the_client_port_named_in_the_request() {
    let mut f = usual();
    let to = ip("192.0.2.1:53");
    assert_eq!(
        f.send("10.0.0.2:5001", &to, b"q"),
        [dropped(DropReason::Foreign, "10.0.0.2:5001")]
    );
    assert_eq!(
        f.send("10.0.0.3:5000", &to, b"q"),
        [dropped(DropReason::Foreign, "10.0.0.3:5000")]
    );
    assert_eq!(
        f.send(CONTROL, &to, b"q"),
        [dropped(DropReason::Foreign, CONTROL)]
    );
    assert_eq!(f.send(CLIENT, &to, b"q"), [remote("192.0.2.1:53", b"q")]);
    assert_eq!(f.a.stats().dropped(DropReason::Foreign), 3);
    assert_eq!(f.a.stats().dropped_total(), 3);
}

#[test]
fn the_requested_address_is_ignored() {
    // A client behind NAT names its private address; the control connection's IP counts.
    let mut f = fixture(CONTROL, ip("192.168.1.7:5000"), UdpLimits::default());
    let to = ip("192.0.2.1:53");
    assert_eq!(
        f.send("192.168.1.7:5000", &to, b"q"),
        [dropped(DropReason::Foreign, "192.168.1.7:5000")]
    );
    assert_eq!(f.send(CLIENT, &to, b"q"), [remote("192.0.2.1:53", b"q")]);
    // A domain name in the request: only its port is used.
    let mut f = fixture(CONTROL, name("client.example", 5000), UdpLimits::default());
    assert_eq!(f.send(CLIENT, &to, b"q"), [remote("192.0.2.1:53", b"q")]);
    assert_eq!(
        f.send("10.0.0.2:5001", &to, b"q"),
        [dropped(DropReason::Foreign, "10.0.0.2:5001")]
    );
}

#[test]
fn port_zero_learns_the_first_well_formed_datagram() {
    let mut f = fixture(CONTROL, ip("0.0.0.0:0"), UdpLimits::default());
    let to = ip("192.0.2.1:53");
    assert_eq!(f.a.client(), None);
    // Garbage does not claim the association.
    assert_eq!(
        f.reply("10.0.0.2:6000", b"\x01\x02\x03"),
        [dropped(DropReason::Malformed, "10.0.0.2:6000")]
    );
    // Nor does another IP.
    assert_eq!(
        f.send("10.0.0.9:6000", &to, b"q"),
        [dropped(DropReason::Foreign, "10.0.0.9:6000")]
    );
    assert_eq!(f.a.client(), None);
    assert_eq!(
        f.send("10.0.0.2:6001", &to, b"1"),
        [remote("192.0.2.1:53", b"1")]
    );
    assert_eq!(f.a.client(), Some(sa("10.0.0.2:6001")));
    assert_eq!(
        f.send("10.0.0.2:6000", &to, b"2"),
        [dropped(DropReason::Foreign, "10.0.0.2:6000")]
    );
    assert_eq!(
        f.send("10.0.0.2:6001", &to, b"3"),
        [remote("192.0.2.1:53", b"3")]
    );
    // A fragment is well formed: it fixes the port too (and is dropped).
    let mut f = fixture(CONTROL, ip("[::]:0"), UdpLimits::default());
    let mut frag = dg(&to, b"f").to_vec();
    frag[2] = 1;
    assert_eq!(
        f.raw("10.0.0.2:7000", frag.into()),
        [dropped(DropReason::Fragmented, "10.0.0.2:7000")]
    );
    assert_eq!(
        f.send("10.0.0.2:7001", &to, b"q"),
        [dropped(DropReason::Foreign, "10.0.0.2:7001")]
    );
}

#[test]
fn mapped_addresses_are_the_same_as_ipv4() {
    // Control over IPv4, datagrams through a dual-stack socket.
    let mut f = usual();
    let mapped_client = "[::ffff:10.0.0.2]:5000";
    assert_eq!(
        f.send(mapped_client, &ip("[::ffff:192.0.2.1]:53"), b"q"),
        [remote("192.0.2.1:53", b"q")],
        "ToRemote::to is never IPv4-mapped"
    );
    assert_eq!(f.a.client(), Some(sa(mapped_client)));
    // The reply comes in mapped form too; the client gets it where it sent from, and the
    // header names the destination as IPv4.
    assert_eq!(
        f.reply("[::ffff:192.0.2.1]:53", b"a"),
        [client(mapped_client, "192.0.2.1:53", b"a")]
    );
    assert_eq!(
        f.reply("192.0.2.1:53", b"b"),
        [client(mapped_client, "192.0.2.1:53", b"b")]
    );
    // Control over a dual-stack listener (mapped), datagrams over IPv4.
    let mut f = fixture(
        "[::ffff:10.0.0.2]:40000",
        ip("0.0.0.0:5000"),
        UdpLimits::default(),
    );
    assert_eq!(
        f.send(CLIENT, &ip("192.0.2.1:53"), b"q"),
        [remote("192.0.2.1:53", b"q")]
    );
}

#[test]
fn replies_from_destinations_go_to_the_client() {
    let mut f = usual();
    f.send(CLIENT, &ip("192.0.2.1:53"), b"q");
    f.send(CLIENT, &ip("[2001:db8::1]:443"), b"q");
    assert_eq!(
        f.reply("192.0.2.1:53", b"answer"),
        [client(CLIENT, "192.0.2.1:53", b"answer")]
    );
    assert_eq!(
        f.reply("[2001:db8::1]:443", b""),
        [client(CLIENT, "[2001:db8::1]:443", b"")]
    );
    // The flow info and scope id a socket reports are not on the wire.
    let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
        "2001:db8::1".parse().unwrap(),
        443,
        7,
        3,
    ));
    f.a.handle_datagram(f.now, scoped, Bytes::from_static(b"s"));
    assert_eq!(f.drain(), [client(CLIENT, "[2001:db8::1]:443", b"s")]);
    // Same IP, another port; never sent to: dropped.
    assert_eq!(
        f.reply("192.0.2.1:54", b"x"),
        [dropped(DropReason::Foreign, "192.0.2.1:54")]
    );
    assert_eq!(
        f.reply("198.51.100.1:53", b"x"),
        [dropped(DropReason::Foreign, "198.51.100.1:53")]
    );
    let s = f.a.stats();
    assert_eq!((s.to_client.datagrams, s.to_client.bytes), (3, 7));
}

#[test]
fn the_client_can_talk_to_its_own_host() {
    let mut f = usual();
    f.send(CLIENT, &ip("10.0.0.2:53"), b"q");
    assert_eq!(
        f.reply("10.0.0.2:53", b"a"),
        [client(CLIENT, "10.0.0.2:53", b"a")]
    );
    // The client's own address is never a destination: a datagram from it is a request.
    f.send(CLIENT, &ip(CLIENT), b"self");
    assert_eq!(
        f.reply(CLIENT, b"self"),
        [dropped(DropReason::Malformed, CLIENT)]
    );
}

#[test]
fn the_reply_goes_to_the_latest_client_address() {
    let mut f = usual();
    f.send(CLIENT, &ip("192.0.2.1:53"), b"q");
    f.send("[::ffff:10.0.0.2]:5000", &ip("192.0.2.1:53"), b"q");
    assert_eq!(
        f.reply("192.0.2.1:53", b"a"),
        [client("[::ffff:10.0.0.2]:5000", "192.0.2.1:53", b"a")]
    );
}

#[test]
fn fragments_are_dropped() {
    let mut f = usual();
    for frag in [1u8, 0x7f, 0x80, 0x81, 0xff] {
        let mut d = dg(&ip("192.0.2.1:53"), b"part").to_vec();
        d[2] = frag;
        assert_eq!(
            f.raw(CLIENT, d.into()),
            [dropped(DropReason::Fragmented, CLIENT)]
        );
    }
    assert_eq!(f.a.stats().dropped(DropReason::Fragmented), 5);
    assert_eq!(f.a.stats().destinations, 0);
    assert_eq!(
        f.reply("192.0.2.1:53", b"x"),
        [dropped(DropReason::Foreign, "192.0.2.1:53")]
    );
}

#[test]
fn malformed_headers_are_dropped() {
    let mut f = usual();
    for d in [
        &b""[..],
        b"\x00",
        b"\x00\x00\x00\x01\xc0\x00\x02\x01\x00",
        b"\x00\x01\x00\x01\xc0\x00\x02\x01\x00\x35",
        b"\x00\x00\x00\x02\xc0\x00\x02\x01\x00\x35",
        b"\x00\x00\x00\x03\x00\x00\x35",
        b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
    ] {
        assert_eq!(
            f.raw(CLIENT, Bytes::from_static(d)),
            [dropped(DropReason::Malformed, CLIENT)],
            "{d:02x?}"
        );
    }
    assert_eq!(f.a.stats().dropped(DropReason::Malformed), 7);
}

#[test]
fn empty_data_is_relayed() {
    let mut f = usual();
    assert_eq!(
        f.send(CLIENT, &ip("192.0.2.1:9"), b""),
        [remote("192.0.2.1:9", b"")]
    );
}

#[test]
fn bad_destinations_are_dropped() {
    let mut f = usual();
    let bad = DropReason::BadDestination;
    for to in [
        ip("192.0.2.1:0"),
        ip("0.0.0.0:53"),
        ip("[::]:53"),
        ip("[::ffff:0.0.0.0]:53"),
        name("example.com", 0),
        TargetAddr::Domain(Bytes::from_static(b"\xffbad"), 53),
    ] {
        assert_eq!(f.send(CLIENT, &to, b"q"), [dropped(bad, CLIENT)], "{to:?}");
    }
    assert_eq!(f.a.stats().dropped(bad), 6);
    assert_eq!(f.a.stats().names, 0);
    // A name that resolves to an unspecified address.
    f.send(CLIENT, &name("sinkhole.example", 53), b"q");
    assert_eq!(
        f.resolved("sinkhole.example", Ok(vec![sa("0.0.0.0:0")])),
        [dropped(bad, CLIENT)]
    );
}

#[test]
fn names_are_resolved_once_and_cached() {
    let mut f = usual();
    assert_eq!(
        f.send(CLIENT, &name("example.com", 53), b"1"),
        [resolve("example.com", 53)]
    );
    assert_eq!(f.a.poll_timeout(), Some(f.t0 + Duration::from_secs(10)));
    f.at(100);
    assert_eq!(f.send(CLIENT, &name("example.com", 80), b"22"), []);
    let s = f.a.stats();
    assert_eq!((s.queued, s.queued_bytes, s.names), (2, 3, 1));
    // The first address, whatever the client's family; the answer's ports are ignored.
    f.at(200);
    assert_eq!(
        f.resolved(
            "example.com",
            Ok(vec![sa("[2001:db8::5]:1"), sa("192.0.2.9:0")])
        ),
        [
            remote("[2001:db8::5]:53", b"1"),
            remote("[2001:db8::5]:80", b"22")
        ]
    );
    let s = f.a.stats();
    assert_eq!((s.queued, s.queued_bytes, s.names), (0, 0, 1));
    assert_eq!(
        f.a.poll_timeout(),
        Some(f.t0 + Duration::from_millis(60_200))
    );
    // Replies name the address, not the name.
    assert_eq!(
        f.reply("[2001:db8::5]:53", b"a"),
        [client(CLIENT, "[2001:db8::5]:53", b"a")]
    );
    f.at(60_199);
    assert_eq!(f.tick(), []);
    assert_eq!(
        f.send(CLIENT, &name("example.com", 53), b"3"),
        [remote("[2001:db8::5]:53", b"3")]
    );
    // Expired: resolved again.
    f.at(60_200);
    assert_eq!(f.tick(), []);
    assert_eq!(f.a.stats().names, 0);
    assert_eq!(f.a.poll_timeout(), None);
    assert_eq!(
        f.send(CLIENT, &name("example.com", 53), b"4"),
        [resolve("example.com", 53)]
    );
    // A resolved IPv4-mapped address is used as IPv4.
    assert_eq!(
        f.resolved("example.com", Ok(vec![sa("[::ffff:192.0.2.9]:0")])),
        [remote("192.0.2.9:53", b"4")]
    );
}

#[test]
fn failed_resolutions_drop_and_are_remembered() {
    let mut f = usual();
    let failed = DropReason::ResolveFailed;
    f.send(CLIENT, &name("nx.example", 53), b"1");
    f.send(CLIENT, &name("nx.example", 53), b"2");
    assert_eq!(
        f.resolved("nx.example", Err(io::ErrorKind::NotFound)),
        [dropped(failed, CLIENT), dropped(failed, CLIENT)]
    );
    assert_eq!(f.a.stats().queued, 0);
    assert_eq!(f.a.poll_timeout(), Some(f.t0 + Duration::from_secs(5)));
    f.at(4_999);
    assert_eq!(
        f.send(CLIENT, &name("nx.example", 53), b"3"),
        [dropped(failed, CLIENT)]
    );
    f.at(5_000);
    assert_eq!(f.tick(), []);
    assert_eq!(
        f.send(CLIENT, &name("nx.example", 53), b"4"),
        [resolve("nx.example", 53)]
    );
    // An empty answer is a failure.
    assert_eq!(
        f.resolved("nx.example", Ok(vec![])),
        [dropped(failed, CLIENT)]
    );
    assert_eq!(f.a.stats().dropped(failed), 4);
}

#[test]
fn resolutions_time_out() {
    let mut f = usual();
    f.send(CLIENT, &name("slow.example", 53), b"1");
    f.at(9_999);
    assert_eq!(f.tick(), []);
    f.at(10_000);
    assert_eq!(f.tick(), [dropped(DropReason::ResolveFailed, CLIENT)]);
    // The failure is remembered; the late answer changes nothing.
    assert_eq!(f.a.poll_timeout(), Some(f.t0 + Duration::from_secs(15)));
    assert_eq!(f.resolved("slow.example", Ok(vec![sa("192.0.2.1:0")])), []);
    assert_eq!(
        f.send(CLIENT, &name("slow.example", 53), b"2"),
        [dropped(DropReason::ResolveFailed, CLIENT)]
    );
}

#[test]
fn deadlines_fire_without_handle_timeout() {
    // A driver late with handle_timeout: the next input fires what passed first.
    let mut f = usual();
    f.send(CLIENT, &name("slow.example", 53), b"1");
    f.at(11_000);
    assert_eq!(
        f.send(CLIENT, &ip("192.0.2.1:53"), b"2"),
        [
            dropped(DropReason::ResolveFailed, CLIENT),
            remote("192.0.2.1:53", b"2")
        ]
    );
}

#[test]
fn unexpected_answers_are_ignored() {
    let mut f = usual();
    assert_eq!(f.resolved("never.example", Ok(vec![sa("192.0.2.1:0")])), []);
    assert_eq!(f.a.stats().names, 0);
    f.send(CLIENT, &name("example.com", 53), b"1");
    assert_eq!(
        f.resolved("example.com", Ok(vec![sa("192.0.2.1:0")])),
        [remote("192.0.2.1:53", b"1")]
    );
    // A duplicate answer does not replace the cached address.
    assert_eq!(f.resolved("example.com", Ok(vec![sa("192.0.2.2:0")])), []);
    assert_eq!(f.resolved("example.com", Err(io::ErrorKind::Other)), []);
    assert_eq!(
        f.send(CLIENT, &name("example.com", 53), b"2"),
        [remote("192.0.2.1:53", b"2")]
    );
}

#[test]
fn the_resolution_queue_is_bounded_by_count() {
    let limits = UdpLimits {
        max_queued: 2,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:5000"), limits);
    f.send(CLIENT, &name("a.example", 53), b"1");
    assert_eq!(
        f.send(CLIENT, &name("b.example", 53), b"2"),
        [resolve("b.example", 53)]
    );
    // Full, for waiting names and for new ones (no resolution is started for nothing).
    assert_eq!(
        f.send(CLIENT, &name("a.example", 53), b"3"),
        [dropped(DropReason::QueueFull, CLIENT)]
    );
    assert_eq!(
        f.send(CLIENT, &name("c.example", 53), b"4"),
        [dropped(DropReason::QueueFull, CLIENT)]
    );
    assert_eq!(f.a.stats().names, 2);
    f.resolved("a.example", Ok(vec![sa("192.0.2.1:0")]));
    assert_eq!(f.send(CLIENT, &name("b.example", 53), b"5"), []);
    assert_eq!(f.a.stats().queued, 2);
}

#[test]
fn the_resolution_queue_is_bounded_by_bytes() {
    let limits = UdpLimits {
        max_queued_bytes: 10,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:5000"), limits);
    f.send(CLIENT, &name("a.example", 53), b"123456");
    assert_eq!(
        f.send(CLIENT, &name("a.example", 53), b"123456"),
        [dropped(DropReason::QueueFull, CLIENT)]
    );
    assert_eq!(f.send(CLIENT, &name("a.example", 53), b"1234"), []);
    let s = f.a.stats();
    assert_eq!((s.queued, s.queued_bytes), (2, 10));
    assert_eq!(
        f.send(CLIENT, &name("b.example", 53), b"x"),
        [dropped(DropReason::QueueFull, CLIENT)]
    );
    // An empty datagram still fits.
    assert_eq!(f.send(CLIENT, &name("a.example", 53), b""), []);
}

#[test]
fn the_name_cache_is_bounded() {
    let limits = UdpLimits {
        max_names: 2,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:5000"), limits);
    f.send(CLIENT, &name("a.example", 53), b"1");
    f.at(1_000);
    f.send(CLIENT, &name("b.example", 53), b"2");
    // Both slots wait for an answer.
    assert_eq!(
        f.send(CLIENT, &name("c.example", 53), b"3"),
        [dropped(DropReason::QueueFull, CLIENT)]
    );
    f.resolved("b.example", Ok(vec![sa("192.0.2.2:0")]));
    f.at(2_000);
    f.resolved("a.example", Ok(vec![sa("192.0.2.1:0")]));
    // The cached name that expires first (b, resolved earlier) makes room.
    assert_eq!(
        f.send(CLIENT, &name("c.example", 53), b"4"),
        [resolve("c.example", 53)]
    );
    assert_eq!(f.a.stats().names, 2);
    assert_eq!(
        f.send(CLIENT, &name("a.example", 53), b"5"),
        [remote("192.0.2.1:53", b"5")]
    );
    // b is resolved again, in a's place; then both slots wait again.
    assert_eq!(
        f.send(CLIENT, &name("b.example", 53), b"6"),
        [resolve("b.example", 53)]
    );
    assert_eq!(
        f.send(CLIENT, &name("d.example", 53), b"7"),
        [dropped(DropReason::QueueFull, CLIENT)]
    );
    assert_eq!(f.a.stats().names, 2);
    // Both resolutions time out.
    f.at(12_000);
    assert_eq!(
        f.tick(),
        [
            dropped(DropReason::ResolveFailed, CLIENT),
            dropped(DropReason::ResolveFailed, CLIENT)
        ]
    );
    assert_eq!(f.a.poll_timeout(), Some(f.t0 + Duration::from_secs(17)));
    // No cache at all: every name is dropped.
    let limits = UdpLimits {
        max_names: 0,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:5000"), limits);
    assert_eq!(
        f.send(CLIENT, &name("a.example", 53), b"1"),
        [dropped(DropReason::QueueFull, CLIENT)]
    );
}

#[test]
fn destinations_are_bounded_least_recently_used_first() {
    let limits = UdpLimits {
        max_destinations: 2,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:5000"), limits);
    let (a, b, c) = ("192.0.2.1:1", "192.0.2.2:2", "192.0.2.3:3");
    f.send(CLIENT, &ip(a), b"q");
    f.send(CLIENT, &ip(b), b"q");
    f.reply(a, b"refresh");
    f.send(CLIENT, &ip(c), b"q");
    assert_eq!(f.a.stats().destinations, 2);
    assert_eq!(f.reply(b, b"late"), [dropped(DropReason::Foreign, b)]);
    assert_eq!(f.reply(a, b"r"), [client(CLIENT, a, b"r")]);
    assert_eq!(f.reply(c, b"r"), [client(CLIENT, c, b"r")]);
    // Remembering none: no reply is accepted.
    let limits = UdpLimits {
        max_destinations: 0,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:5000"), limits);
    assert_eq!(f.send(CLIENT, &ip(a), b"q"), [remote(a, b"q")]);
    assert_eq!(f.a.stats().destinations, 0);
    assert_eq!(f.reply(a, b"r"), [dropped(DropReason::Foreign, a)]);
}

#[test]
fn replies_too_large_for_the_client_are_dropped() {
    let mut f = usual();
    f.send(CLIENT, &ip("192.0.2.1:53"), b"q");
    f.send(CLIENT, &ip("[2001:db8::1]:53"), b"q");
    // IPv4 client: 65 507 bytes at most, header of an IPv4 source 10, of IPv6 22.
    let fits = vec![0u8; 65_507 - 10];
    assert!(matches!(
        &f.reply("192.0.2.1:53", &fits)[..],
        [UdpEvent::ToClient { datagram, .. }] if datagram.len() == 65_507
    ));
    let big = vec![0u8; 65_507 - 10 + 1];
    assert_eq!(
        f.reply("192.0.2.1:53", &big),
        [dropped(DropReason::TooLarge, "192.0.2.1:53")]
    );
    assert_eq!(
        f.reply("[2001:db8::1]:53", &fits),
        [dropped(DropReason::TooLarge, "[2001:db8::1]:53")]
    );
    // IPv6 client: 65 527.
    let mut f = fixture("[2001:db8::2]:40000", ip("[::]:5000"), UdpLimits::default());
    f.send("[2001:db8::2]:5000", &ip("[2001:db8::1]:53"), b"q");
    let fits = vec![0u8; 65_527 - 22];
    assert_eq!(f.reply("[2001:db8::1]:53", &fits).len(), 1);
    assert_eq!(f.a.stats().to_client.datagrams, 1);
}

#[test]
fn every_datagram_is_accounted_for() {
    let limits = UdpLimits {
        max_queued: 1,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:0"), limits);
    f.send(CLIENT, &ip("192.0.2.1:53"), b"q");
    f.reply("192.0.2.1:53", b"a");
    f.reply("192.0.2.1:99", b"a");
    f.send(CLIENT, &name("a.example", 53), b"q");
    f.send(CLIENT, &name("a.example", 53), b"q");
    let s = f.a.stats();
    assert_eq!(s.received.datagrams, 5);
    assert_eq!(
        s.received.datagrams,
        s.to_remote.datagrams + s.to_client.datagrams + s.dropped_total() + s.queued as u64
    );
    assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
        assert!(!r.to_string().is_empty());
    }
}

#[test]
fn zero_durations_keep_the_deadline_in_the_future() {
    let limits = UdpLimits {
        name_ttl: Duration::ZERO,
        negative_ttl: Duration::ZERO,
        resolve_timeout: Duration::ZERO,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:5000"), limits);
    // The resolution is asked for and times out at once; nothing is remembered.
    assert_eq!(
        f.send(CLIENT, &name("a.example", 53), b"1"),
        [
            resolve("a.example", 53),
            dropped(DropReason::ResolveFailed, CLIENT)
        ]
    );
    assert_eq!(f.a.poll_timeout(), None);
    assert_eq!(f.a.stats().names, 0);
    assert_eq!(f.resolved("a.example", Ok(vec![sa("192.0.2.1:0")])), []);
    // With a resolver that answers in the same instant, the answer is used once.
    let limits = UdpLimits {
        name_ttl: Duration::ZERO,
        ..UdpLimits::default()
    };
    let mut f = fixture(CONTROL, ip("0.0.0.0:5000"), limits);
    f.send(CLIENT, &name("a.example", 53), b"1");
    assert_eq!(
        f.resolved("a.example", Ok(vec![sa("192.0.2.1:0")])),
        [remote("192.0.2.1:53", b"1")]
    );
    assert_eq!(f.a.poll_timeout(), None);
    assert_eq!(
        f.send(CLIENT, &name("a.example", 53), b"2"),
        [resolve("a.example", 53)]
    );
}

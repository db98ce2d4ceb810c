//! UNSTABLE: the fuzz bodies of the `udp_header` and `udp_association` targets, for the fuzz
//! crate and for the corpus replay in `tests/`. Each takes the raw fuzzer input and panics
//! when an invariant breaks:
//!
//! - [`udp_header`]: `check` and `decode` agree; a decoded header re-encodes, with its DATA,
//!   to the very datagram (one encoding per header); every strict prefix of a header is
//!   [`HeaderError::Truncated`]; an error other than truncation is reported from the bytes
//!   read so far; the input read as an arbitrary [`Header`] survives a round trip.
//! - [`udp_association`]: the input is a [`Script`] (datagrams from a pool of addresses that
//!   includes the client's, destinations and strangers; resolver answers; ticks). No panic;
//!   every queue within its [`UdpLimits`]; never a `ToRemote` or `Resolve` for a datagram
//!   from anyone but the client; every `ToClient` goes to the client, re-decodes, names the
//!   address the reply came from, carries the reply unchanged and answers a destination that
//!   was sent to; counters agree with the events and account for every datagram; the next
//!   deadline is in the future.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{BufMut, Bytes, BytesMut};

use socks5d_core::socks5::TargetAddr;
use socks5d_core::udp::{Association, DropReason, Header, HeaderError, UdpEvent, UdpLimits};

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/// Fuzz body of `udp_header`: `data` is one datagram from a client.
pub fn udp_header(data: &[u8]) {
    let datagram = Bytes::copy_from_slice(data);
    match (Header::check(data), Header::decode(&datagram)) {
        (Ok(n), Ok((header, payload))) => {
            assert!((Header::MIN_LEN..=Header::MAX_LEN).contains(&n), "{n}");
            assert_eq!(header.encoded_len(), n);
            assert_eq!(&payload[..], &data[n..]);
            let mut out = BytesMut::new();
            header.encode(&mut out);
            out.put_slice(&payload);
            assert_eq!(&out[..], data, "{header:?} must re-encode to its bytes");
            for i in 0..n {
                assert_eq!(
                    Header::check(&data[..i]),
                    Err(HeaderError::Truncated { len: i }),
                    "strict prefix {i} of {:02x?}",
                    &data[..n]
                );
            }
            check_value(&header, &payload);
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "check vs decode error");
            match a {
                HeaderError::Truncated { len } => {
                    assert_eq!(len, data.len());
                    assert!(len < Header::MAX_LEN);
                }
                // Reported from the bytes read so far: appending bytes changes nothing.
                HeaderError::Decode(_) => {
                    let mut longer = data.to_vec();
                    longer.extend_from_slice(&[0; Header::MAX_LEN]);
                    assert_eq!(Header::check(&longer), Err(a));
                }
                // `HeaderError` is non-exhaustive: a new kind needs its invariant here.
                other => panic!("unchecked header error {other:?}"),
            }
        }
        (c, d) => panic!("check gave {c:?}, decode gave {d:?}"),
    }
    if let Ok(header) = Header::arbitrary(&mut Unstructured::new(data)) {
        check_value(&header, &Bytes::from_static(b"\x00data"));
    }
}

/// Checks that `header` followed by `payload` decodes back to both.
fn check_value(header: &Header, payload: &Bytes) {
    let mut out = BytesMut::new();
    header.encode(&mut out);
    assert_eq!(out.len(), header.encoded_len());
    out.put_slice(payload);
    let back = Header::decode(&out.freeze());
    assert!(
        matches!(&back, Ok((h, p)) if h == header && p == payload),
        "{header:?} decoded as {back:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Association
// ---------------------------------------------------------------------------------------------

/// The control connection's IP in every script.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Addresses datagrams come from (and IP destinations, and resolver answers), by index.
fn pool(i: u8) -> SocketAddr {
    const POOL: [&str; 11] = [
        "10.0.0.2:5000",
        "[::ffff:10.0.0.2]:5000",
        "10.0.0.2:5001",
        "10.0.0.2:53",
        "192.0.2.1:53",
        "[::ffff:192.0.2.1]:53",
        "[2001:db8::1]:443",
        "198.51.100.7:9",
        "203.0.113.9:5000",
        "192.0.2.1:54",
        "0.0.0.0:0",
    ];
    match usize::from(i) % (POOL.len() + 1) {
        // A link-local address with a scope id, as a socket reports it.
        n if n == POOL.len() => SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().expect("valid"),
            443,
            0,
            3,
        )),
        n => POOL[n].parse().expect("valid"),
    }
}

/// Domain names destinations can have, by index.
const NAMES: [&[u8]; 4] = [b"a.example", b"b.example", b"c.example", b"\xff.example"];

/// A destination for [`Op::Send`]: pool addresses first, then names.
fn destination(i: u8, port: u16) -> TargetAddr {
    let n = NAMES.len() as u8 + 12;
    match i % n {
        i if i < 12 => TargetAddr::Ip(pool(i)),
        i => TargetAddr::Domain(Bytes::from_static(NAMES[usize::from(i - 12)]), port),
    }
}

/// One step of a [`Script`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A datagram of arbitrary bytes from pool address `from`.
    Raw {
        /// Index into the address pool.
        from: u8,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// A datagram with a valid header (FRAG `frag`, destination `dest` and `port`) and
    /// `len` bytes of DATA, from pool address `from`.
    Send {
        /// Index into the address pool.
        from: u8,
        /// FRAG.
        frag: u8,
        /// Index into the pool addresses, then the names.
        dest: u8,
        /// DST.PORT for a name.
        port: u16,
        /// Length of DATA.
        len: u8,
    },
    /// The resolver answers for name `name`: `None` an error, otherwise these pool
    /// addresses (possibly none).
    Resolved {
        /// Index into the names.
        name: u8,
        /// The answer.
        addrs: Option<Vec<u8>>,
    },
    /// Time passes by `ms`, then `handle_timeout`.
    Tick {
        /// Milliseconds.
        ms: u16,
    },
}

/// The input of `udp_association`: options, then steps.
///
/// Options: bits 0-1 the request's DST (`0.0.0.0:0`, `0.0.0.0:5000`, `[::]:0`, the name
/// `c.example` port 5000); bit 2 the control connection's address in IPv4-mapped form; bit 3
/// small limits (so that every bound is reached); with small limits, bit 4: failures are not
/// remembered at all, bit 5: resolutions time out at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// See the type docs.
    pub options: u8,
    /// The steps, in order.
    pub ops: Vec<Op>,
}

impl Script {
    /// Returns the fuzz input that [`udp_association`] reads as this script.
    pub fn to_fuzz_input(&self) -> Vec<u8> {
        let mut b = vec![self.options];
        for op in &self.ops {
            match op {
                Op::Raw { from, bytes } => {
                    b.extend_from_slice(&[0, *from]);
                    b.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                    b.extend_from_slice(bytes);
                }
                Op::Send {
                    from,
                    frag,
                    dest,
                    port,
                    len,
                } => {
                    b.extend_from_slice(&[1, *from, *frag, *dest]);
                    b.extend_from_slice(&port.to_be_bytes());
                    b.push(*len);
                }
                Op::Resolved { name, addrs } => {
                    b.extend_from_slice(&[2, *name]);
                    match addrs {
                        None => b.push(0),
                        Some(a) => {
                            b.push(a.len() as u8 + 1);
                            b.extend_from_slice(a);
                        }
                    }
                }
                Op::Tick { ms } => {
                    b.push(3);
                    b.extend_from_slice(&ms.to_be_bytes());
                }
            }
        }
        b
    }

    /// Reads a fuzz input (any bytes): the inverse of [`to_fuzz_input`](Self::to_fuzz_input)
    /// on its outputs; missing bytes read as zero, extra tag values wrap around.
    pub fn from_fuzz_input(data: &[u8]) -> Self {
        let mut r = Reader(data);
        let options = r.u8();
        let mut ops = Vec::new();
        while !r.0.is_empty() {
            let op = match r.u8() % 4 {
                0 => {
                    let from = r.u8();
                    let len = usize::from(r.u16());
                    Op::Raw {
                        from,
                        bytes: r.take(len).to_vec(),
                    }
                }
                1 => Op::Send {
                    from: r.u8(),
                    frag: r.u8(),
                    dest: r.u8(),
                    port: r.u16(),
                    len: r.u8(),
                },
                2 => {
                    let name = r.u8();
                    let addrs = match r.u8() {
                        0 => None,
                        n => Some(r.take(usize::from(n - 1)).to_vec()),
                    };
                    Op::Resolved { name, addrs }
                }
                _ => Op::Tick { ms: r.u16() },
            };
            ops.push(op);
        }
        Self { options, ops }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        (u16::from(self.u8()) << 8) | u16::from(self.u8())
    }
}

/// Event counts, to compare with the stats.
#[derive(Default)]
struct Seen {
    to_remote: u64,
    to_client: u64,
    dropped: [u64; DropReason::COUNT],
}

/// Fuzz body of `udp_association`: `data` is a [`Script`].
pub fn udp_association(data: &[u8]) {
    let script = Script::from_fuzz_input(data);
    let o = script.options;
    let requested = match o & 3 {
        0 => TargetAddr::Ip("0.0.0.0:0".parse().expect("valid")),
        1 => TargetAddr::Ip("0.0.0.0:5000".parse().expect("valid")),
        2 => TargetAddr::Ip("[::]:0".parse().expect("valid")),
        _ => TargetAddr::Domain(Bytes::from_static(b"c.example"), 5000),
    };
    let control = if o & 4 != 0 {
        SocketAddr::new(CLIENT_IP.to_ipv6_mapped().into(), 40000)
    } else {
        SocketAddr::new(CLIENT_IP.into(), 40000)
    };
    let limits = if o & 8 != 0 {
        UdpLimits {
            max_destinations: 2,
            max_names: 2,
            name_ttl: Duration::from_millis(1000),
            negative_ttl: Duration::from_millis(if o & 16 != 0 { 0 } else { 500 }),
            resolve_timeout: Duration::from_millis(if o & 32 != 0 { 0 } else { 2000 }),
            max_queued: 3,
            max_queued_bytes: 64,
        }
    } else {
        UdpLimits::default()
    };
    let mut now = crate::epoch::epoch();
    let mut a = Association::new(now, control, &requested, limits);
    let mut client_port = Some(requested.port()).filter(|p| *p != 0);
    let mut sent_to: BTreeSet<(IpAddr, u16)> = BTreeSet::new();
    let mut pending: BTreeMap<Bytes, Instant> = BTreeMap::new();
    let mut seen = Seen::default();

    for op in script.ops {
        let before = a.stats();
        let events: Vec<UdpEvent>;
        match op {
            Op::Raw { .. } | Op::Send { .. } => {
                let (from, datagram) = match op {
                    Op::Raw { from, bytes } => (pool(from), Bytes::from(bytes)),
                    Op::Send {
                        from,
                        frag,
                        dest,
                        port,
                        len,
                    } => {
                        let mut b = BytesMut::new();
                        Header {
                            frag,
                            addr: destination(dest, port),
                        }
                        .encode(&mut b);
                        b.put_bytes(len, usize::from(len));
                        (pool(from), b.freeze())
                    }
                    _ => unreachable!(),
                };
                let decoded = Header::decode(&datagram);
                let (ip, port) = (from.ip().to_canonical(), from.port());
                let is_client = ip == IpAddr::from(CLIENT_IP)
                    && match client_port {
                        Some(p) => p == port,
                        None => decoded.is_ok(),
                    };
                if is_client {
                    client_port = Some(port);
                }
                a.handle_datagram(now, from, datagram.clone());
                events = std::iter::from_fn(|| a.poll_event()).collect();
                for e in &events {
                    match e {
                        UdpEvent::ToRemote { to, payload } => {
                            assert!(is_client, "ToRemote for a datagram from {from}");
                            let (h, p) = decoded.as_ref().expect("relayed a malformed header");
                            assert_eq!(h.frag, 0, "relayed a fragment");
                            assert_eq!(payload, p);
                            assert_eq!(to.port(), h.addr.port());
                            if let TargetAddr::Ip(dst) = &h.addr {
                                assert_eq!(to.ip(), dst.ip().to_canonical());
                            }
                        }
                        UdpEvent::ToClient { to, datagram: out } => {
                            assert!(!is_client, "a client datagram sent back to the client");
                            assert!(
                                sent_to.contains(&(ip, port)),
                                "reply from {from}, never sent to"
                            );
                            assert_eq!(Some(*to), a.client());
                            assert_eq!(to.ip().to_canonical(), IpAddr::from(CLIENT_IP));
                            let (h, p) = Header::decode(out).expect("ToClient re-decodes");
                            assert_eq!(h.frag, 0);
                            assert_eq!(h.addr, TargetAddr::Ip(SocketAddr::new(ip, port)));
                            assert_eq!(p, datagram);
                        }
                        UdpEvent::Resolve { .. } => assert!(is_client, "Resolve for {from}"),
                        UdpEvent::Dropped { .. } => {}
                        // `UdpEvent` is non-exhaustive: a new event needs its invariant here.
                        other => panic!("unchecked event {other:?}"),
                    }
                }
                let own = events
                    .iter()
                    .filter(|e| {
                        !matches!(
                            e,
                            UdpEvent::Dropped {
                                reason: DropReason::ResolveFailed,
                                ..
                            }
                        )
                    })
                    .count();
                assert!(own <= 1, "one event per datagram: {events:?}");
            }
            Op::Resolved { name, addrs } => {
                let host = Bytes::from_static(NAMES[usize::from(name) % NAMES.len()]);
                let result = addrs
                    .map(|v| v.into_iter().map(pool).collect())
                    .ok_or(io::ErrorKind::NotFound);
                a.handle_resolved(now, &host, result);
                pending.remove(&host);
                events = std::iter::from_fn(|| a.poll_event()).collect();
                let relayed = events
                    .iter()
                    .filter(|e| matches!(e, UdpEvent::ToRemote { .. }))
                    .count();
                assert!(relayed <= before.queued, "released more than was queued");
                for e in &events {
                    assert!(
                        matches!(e, UdpEvent::ToRemote { .. } | UdpEvent::Dropped { .. }),
                        "{e:?} after a resolution"
                    );
                }
            }
            Op::Tick { ms } => {
                now += Duration::from_millis(u64::from(ms));
                a.handle_timeout(now);
                events = std::iter::from_fn(|| a.poll_event()).collect();
                for e in &events {
                    assert!(
                        matches!(
                            e,
                            UdpEvent::Dropped {
                                reason: DropReason::ResolveFailed,
                                ..
                            }
                        ),
                        "{e:?} on a tick"
                    );
                }
            }
        }

        for e in &events {
            match e {
                UdpEvent::ToRemote { to, .. } => {
                    assert!(!to.ip().is_unspecified() && to.port() != 0, "sent to {to}");
                    assert!(
                        !matches!(to, SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some()),
                        "ToRemote to a mapped address {to}"
                    );
                    sent_to.insert((to.ip().to_canonical(), to.port()));
                    seen.to_remote += 1;
                }
                UdpEvent::ToClient { .. } => seen.to_client += 1,
                UdpEvent::Resolve { host, .. } => {
                    assert!(std::str::from_utf8(host).is_ok() && !host.is_empty());
                    if let Some(deadline) = pending.get(host) {
                        assert!(*deadline <= now, "{host:?} resolved twice at once");
                    }
                    pending.insert(host.clone(), now + limits.resolve_timeout);
                }
                UdpEvent::Dropped { reason, .. } => seen.dropped[*reason as usize] += 1,
                other => panic!("unchecked event {other:?}"),
            }
        }

        let s = a.stats();
        assert!(
            events.len() <= limits.max_queued + 1,
            "{} events",
            events.len()
        );
        assert!(s.queued <= limits.max_queued);
        assert!(s.queued_bytes <= limits.max_queued_bytes);
        assert!(s.destinations <= limits.max_destinations);
        assert!(s.names <= limits.max_names);
        assert!(s.queued > 0 || s.queued_bytes == 0);
        assert_eq!(s.to_remote.datagrams, seen.to_remote);
        assert_eq!(s.to_client.datagrams, seen.to_client);
        for r in DropReason::ALL {
            assert_eq!(s.dropped(r), seen.dropped[r as usize], "{r:?}");
        }
        assert_eq!(
            s.received.datagrams,
            s.to_remote.datagrams + s.to_client.datagrams + s.dropped_total() + s.queued as u64,
            "every datagram is relayed, dropped or queued"
        );
        if let Some(t) = a.poll_timeout() {
            assert!(t > now, "the next deadline is not in the future");
        }
    }
}

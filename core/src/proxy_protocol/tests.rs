//! Golden bytes from haproxy's proxy-protocol.txt (§2.1, §2.2), refusals, prefixes.
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use bytes::BytesMut;

use super::*;

fn tcp4(s: [u8; 4], sp: u16, d: [u8; 4], dp: u16) -> Addresses {
    Addresses::Tcp4 {
        source: SocketAddrV4::new(Ipv4Addr::from(s), sp),
        destination: SocketAddrV4::new(Ipv4Addr::from(d), dp),
    }
}

fn tcp6(s: &str, sp: u16, d: &str, dp: u16) -> Addresses {
    let ip = |t: &str| t.parse::<Ipv6Addr>().unwrap();
    Addresses::Tcp6 {
        source: SocketAddrV6::new(ip(s), sp, 0, 0),
        destination: SocketAddrV6::new(ip(d), dp, 0, 0),
    }
}

/// `bytes` is exactly one header: every strict prefix is partial and left untouched,
/// `check` gives its length, `decode` takes it and leaves what follows.
fn golden(bytes: &[u8], version: Version, addresses: Addresses) {
    for i in 0..bytes.len() {
        let mut b = BytesMut::from(&bytes[..i]);
        assert_eq!(
            ProxyHeader::decode(&mut b),
            Ok(None),
            "prefix {i} of {bytes:02x?}"
        );
        assert_eq!(b.len(), i, "partial input is left untouched");
    }
    assert_eq!(ProxyHeader::check(bytes), Ok(Some(bytes.len())));
    let mut b = BytesMut::from(bytes);
    b.extend_from_slice(b"\x05\x01\x02");
    let want = ProxyHeader { version, addresses };
    assert_eq!(ProxyHeader::decode(&mut b), Ok(Some(want)), "{bytes:02x?}");
    assert_eq!(
        &b[..],
        b"\x05\x01\x02",
        "the SOCKS5 greeting after it stays"
    );
    // The canonical encoding decodes to the same header.
    let mut enc = BytesMut::new();
    want.encode(&mut enc);
    assert_eq!(ProxyHeader::parse(&enc), Ok(Some((want, enc.len()))));
}

/// `bytes` is refused with `err`, and its last byte is the one that rules it out (every
/// strict prefix is partial), unless `early` is false.
fn bad(bytes: &[u8], err: ProxyError, early: bool) {
    let mut b = BytesMut::from(bytes);
    assert_eq!(
        ProxyHeader::decode(&mut b),
        Err(err),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(&b[..], bytes, "an error leaves the input untouched");
    if early {
        let prefix = &bytes[..bytes.len() - 1];
        assert_eq!(ProxyHeader::parse(prefix), Ok(None), "{prefix:02x?}");
    }
}

fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let len = u16::try_from(block.len()).unwrap().to_be_bytes();
    [&V2_SIGNATURE[..], &[ver_cmd, fam], &len, block].concat()
}

// Version 1 (§2.1), the specification's own lines.

#[test]
fn v1_spec_example() {
    golden(
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        Version::V1,
        tcp4([192, 168, 0, 1], 56324, [192, 168, 0, 11], 443),
    );
}

#[test]
fn v1_longest_lines() {
    let v4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(v4.len(), 56);
    golden(v4, Version::V1, tcp4([255; 4], 65535, [255; 4], 65535));
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let v6 = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
    assert_eq!(v6.len(), 104);
    golden(v6.as_bytes(), Version::V1, tcp6(f, 65535, f, 65535));
    golden(b"PROXY UNKNOWN\r\n", Version::V1, Addresses::Unknown);
    let worst = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
    assert_eq!(worst.len(), MAX_V1_LEN);
    golden(worst.as_bytes(), Version::V1, Addresses::Unknown);
}

#[test]
fn v1_other_forms() {
    golden(
        b"PROXY TCP4 0.0.0.0 10.0.0.1 0 1080\r\n",
        Version::V1,
        tcp4([0; 4], 0, [10, 0, 0, 1], 1080),
    );
    golden(
        b"PROXY TCP6 ::1 2001:DB8::a 1 2\r\n",
        Version::V1,
        tcp6("::1", 1, "2001:db8::a", 2),
    );
    golden(
        b"PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 40000 1080\r\n",
        Version::V1,
        tcp6("::ffff:192.0.2.1", 40000, "::ffff:192.0.2.2", 1080),
    );
    // "the receiver must ignore anything presented before the CRLF"
    golden(
        b"PROXY UNKNOWN whatever \x01\xff\r\n",
        Version::V1,
        Addresses::Unknown,
    );
}

#[test]
fn v1_garbage_is_refused_at_once() {
    bad(b"G", ProxyError::NotProxy, true);
    bad(b"\x05", ProxyError::NotProxy, true);
    bad(b"\x16\x03\x01", ProxyError::NotProxy, false);
    bad(b"PROXZ", ProxyError::NotProxy, true);
    bad(
        b"PROXYX",
        ProxyError::Malformed("no space after PROXY"),
        true,
    );
    bad(
        b"PROXY\r",
        ProxyError::Malformed("line ends inside PROXY"),
        true,
    );
    bad(
        b"PROXY TCP5",
        ProxyError::Malformed("protocol is not TCP4, TCP6 or UNKNOWN"),
        true,
    );
    bad(
        b"PROXY  ",
        ProxyError::Malformed("protocol is not TCP4, TCP6 or UNKNOWN"),
        true,
    );
    bad(
        b"PROXY UNKNOWNX",
        ProxyError::Malformed("protocol is not TCP4, TCP6 or UNKNOWN"),
        true,
    );
    let ipv4 = ProxyError::Malformed("bad IPv4 address");
    bad(b"PROXY TCP4 01", ipv4, true);
    bad(b"PROXY TCP4 256", ipv4, true);
    bad(b"PROXY TCP4 1.2.3.4.", ipv4, true);
    bad(b"PROXY TCP4 1..", ipv4, true);
    bad(b"PROXY TCP4 1.2.3 ", ipv4, true);
    bad(b"PROXY TCP4 :", ipv4, true);
    bad(b"PROXY TCP4 1.2.3.4  ", ipv4, true);
    bad(
        b"PROXY TCP6 ::g",
        ProxyError::Malformed("bad IPv6 address"),
        true,
    );
    bad(
        b"PROXY TCP6 1.2.3.4 ",
        ProxyError::Malformed("bad IPv6 address"),
        true,
    );
    bad(
        b"PROXY TCP6 ::1%",
        ProxyError::Malformed("bad IPv6 address"),
        true,
    );
    let port = ProxyError::Malformed("bad port");
    bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 01", port, true);
    bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536", port, true);
    bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 +", port, true);
    bad(
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ",
        ProxyError::Malformed("more than four fields after the protocol"),
        true,
    );
    bad(
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",
        ProxyError::Malformed("more than four fields after the protocol"),
        false,
    );
    bad(
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r",
        ProxyError::Malformed("fewer than four fields after the protocol"),
        true,
    );
    bad(
        b"PROXY TCP4\r",
        ProxyError::Malformed("fewer than four fields after the protocol"),
        true,
    );
}

#[test]
fn v1_line_end_must_be_crlf() {
    // "The receiver must not tolerate a single CR or LF character to end the line".
    bad(
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        ProxyError::Malformed("LF without CR"),
        true,
    );
    bad(
        b"PROXY UNKNOWN\n",
        ProxyError::Malformed("LF without CR"),
        true,
    );
    bad(
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        ProxyError::Malformed("CR without LF"),
        true,
    );
    // "If the CRLF sequence is not found in the first 107 characters, the receiver should
    // declare the line invalid."
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(MAX_V1_LEN - 1, b'a');
    bad(&long, ProxyError::LineTooLong, true);
    long.extend_from_slice(b"\r\n");
    assert_eq!(ProxyHeader::parse(&long), Err(ProxyError::LineTooLong));
}

// Version 2 (§2.2), headers built from the specification's layout.

#[test]
fn v2_tcp4_and_tcp6() {
    let block = [192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb];
    golden(
        &v2(0x21, 0x11, &block),
        Version::V2,
        tcp4([192, 168, 0, 1], 56324, [192, 168, 0, 11], 443),
    );
    let mut block = Vec::new();
    block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&[0x9c, 0x40, 0x04, 0x38]);
    golden(
        &v2(0x21, 0x21, &block),
        Version::V2,
        tcp6("2001:db8::1", 40000, "2001:db8::2", 1080),
    );
}

#[test]
fn v2_tlvs_are_skipped() {
    // PP2_TYPE_NOOP (0x04) with four bytes, PP2_TYPE_AUTHORITY (0x02) "example.com".
    let mut block = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
    block.extend_from_slice(b"\x04\x00\x04\x00\x00\x00\x00\x02\x00\x0bexample.com");
    golden(
        &v2(0x21, 0x11, &block),
        Version::V2,
        tcp4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2),
    );
}

#[test]
fn v2_local_and_fallbacks() {
    golden(&v2(0x20, 0x00, &[]), Version::V2, Addresses::Local);
    // LOCAL with an address block: "discard the protocol block including the family".
    golden(&v2(0x20, 0x11, &[1; 12]), Version::V2, Addresses::Local);
    golden(&v2(0x20, 0x21, &[]), Version::V2, Addresses::Local);
    // PROXY for UNSPEC, UDP and UNIX: the connection's own addresses.
    golden(&v2(0x21, 0x00, &[]), Version::V2, Addresses::Unknown);
    golden(&v2(0x21, 0x12, &[1; 12]), Version::V2, Addresses::Unknown);
    golden(&v2(0x21, 0x22, &[1; 36]), Version::V2, Addresses::Unknown);
    golden(&v2(0x21, 0x31, &[0; 216]), Version::V2, Addresses::Unknown);
    golden(&v2(0x21, 0x32, &[0; 216]), Version::V2, Addresses::Unknown);
}

#[test]
fn v2_bad_values_are_refused_at_once() {
    let sig = &V2_SIGNATURE[..];
    bad(b"\r\n\r\nX", ProxyError::NotProxy, true);
    bad(
        &[sig, &[0x11]].concat(),
        ProxyError::UnsupportedVersion(0x11),
        true,
    );
    bad(
        &[sig, &[0x31]].concat(),
        ProxyError::UnsupportedVersion(0x31),
        true,
    );
    bad(
        &[sig, &[0x22]].concat(),
        ProxyError::UnknownCommand(0x22),
        true,
    );
    bad(
        &[sig, &[0x21, 0x41]].concat(),
        ProxyError::UnknownFamily(0x41),
        true,
    );
    bad(
        &[sig, &[0x21, 0x13]].concat(),
        ProxyError::UnknownFamily(0x13),
        true,
    );
    bad(
        &[sig, &[0x20, 0x13]].concat(),
        ProxyError::UnknownFamily(0x13),
        true,
    );
    bad(
        &[sig, &[0x21, 0x11, 0x00, 0x0b]].concat(),
        ProxyError::AddressLength {
            family: 0x11,
            len: 11,
        },
        true,
    );
    bad(
        &[sig, &[0x21, 0x21, 0x00, 0x0c]].concat(),
        ProxyError::AddressLength {
            family: 0x21,
            len: 12,
        },
        true,
    );
    bad(
        &[sig, &[0x21, 0x11, 0xff, 0xff]].concat(),
        ProxyError::TooLong {
            len: 16 + 0xffff,
            max: MAX_V2_LEN,
        },
        true,
    );
    // The longest accepted header is accepted.
    let max = v2(0x21, 0x11, &vec![0; MAX_V2_LEN - 16]);
    assert_eq!(ProxyHeader::check(&max), Ok(Some(MAX_V2_LEN)));
}

#[test]
fn headers_are_never_guessed() {
    // A SOCKS5 greeting from a source that must send a header is refused, not served.
    bad(b"\x05\x01\x00", ProxyError::NotProxy, false);
    assert_eq!(ProxyHeader::parse(b""), Ok(None));
}

#[test]
fn accessors() {
    let h = ProxyHeader {
        version: Version::V2,
        addresses: tcp4([1, 2, 3, 4], 5, [6, 7, 8, 9], 10),
    };
    assert_eq!(h.source(), Some("1.2.3.4:5".parse().unwrap()));
    assert_eq!(h.destination(), Some("6.7.8.9:10".parse().unwrap()));
    let l = ProxyHeader {
        version: Version::V2,
        addresses: Addresses::Local,
    };
    assert_eq!((l.source(), l.destination()), (None, None));
}

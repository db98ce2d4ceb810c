//! The fuzz body of the `proxy_protocol` target.

use bytes::BytesMut;

use socks5d_core::proxy_protocol::{Addresses, ProxyError, ProxyHeader, Version, MAX_LEN};

/// Fuzz body of `proxy_protocol`: `data` is the start of a connection from a trusted
/// source. Panics when an invariant breaks:
///
/// - `check`, `parse` and `decode` agree; `Ok(None)` and errors leave the input untouched;
///   a partial input is shorter than [`MAX_LEN`]; a header is at most [`MAX_LEN`] bytes;
/// - the outcome is decided by the bytes read: a prefix that errors errors for every
///   longer input, a prefix that decodes decodes the same header of the same length, and
///   every strict prefix of a header is partial;
/// - a decoded header re-encodes to a header that decodes to it (v1 `UNKNOWN` lines and
///   v2 TLVs have many encodings; the canonical one is checked); a version 1 TCP4 line
///   re-encodes to its very bytes (IPv4 has one notation);
/// - the input read as a header value survives an encode/decode round trip.
pub fn proxy_protocol(data: &[u8]) {
    let outcome = ProxyHeader::parse(data);
    let mut src = BytesMut::from(data);
    let decoded = ProxyHeader::decode(&mut src);
    assert_eq!(
        ProxyHeader::check(data),
        outcome.map(|o| o.map(|(_, n)| n)),
        "check vs parse"
    );
    assert_eq!(
        decoded,
        outcome.map(|o| o.map(|(h, _)| h)),
        "decode vs parse"
    );
    match outcome {
        Ok(Some((header, n))) => {
            assert!((1..=MAX_LEN).contains(&n), "header of {n} bytes");
            assert_eq!(&src[..], &data[n..], "decode consumes the header only");
            // Every strict prefix of the header is partial (a sample past 512 bytes).
            for i in (0..n).step_by(n / 512 + 1) {
                assert_eq!(ProxyHeader::parse(&data[..i]), Ok(None), "prefix {i}");
            }
            let mut enc = BytesMut::new();
            header.encode(&mut enc);
            let back = ProxyHeader::parse(&enc);
            assert_eq!(
                back,
                Ok(Some((header, enc.len()))),
                "re-encoding of {header:?}"
            );
            if header.version == Version::V1 && matches!(header.addresses, Addresses::Tcp4 { .. }) {
                assert_eq!(&enc[..], &data[..n], "one TCP4 line per header");
            }
        }
        Ok(None) => {
            assert_eq!(&src[..], data, "Ok(None) leaves the input untouched");
            assert!(data.len() < MAX_LEN, "{} bytes still partial", data.len());
            for i in (0..data.len()).step_by(data.len() / 512 + 1) {
                assert_eq!(ProxyHeader::parse(&data[..i]), Ok(None), "prefix {i}");
            }
        }
        Err(e) => {
            assert_eq!(&src[..], data, "Err leaves the input untouched");
            if e == ProxyError::NotProxy {
                assert!(!data.starts_with(b"PROXY "), "{data:02x?} is not NotProxy");
            }
            // The shortest prefix that errors: every longer one errors too.
            let first = (1..=data.len())
                .find(|&i| ProxyHeader::parse(&data[..i]).is_err())
                .expect("the whole input errors");
            for i in (first..=data.len()).step_by((data.len() - first) / 512 + 1) {
                assert!(
                    ProxyHeader::parse(&data[..i]).is_err(),
                    "prefix {i} of an error"
                );
            }
        }
    }
    check_value(data);
}

/// Builds a header from the input's bytes and checks it round-trips.
fn check_value(data: &[u8]) {
    let b = |i: usize| data.get(i).copied().unwrap_or(0);
    let ip4 = |at: usize| std::net::Ipv4Addr::new(b(at), b(at + 1), b(at + 2), b(at + 3));
    let ip6 = |at: usize| std::net::Ipv6Addr::from(std::array::from_fn::<u8, 16, _>(|k| b(at + k)));
    let port = |at: usize| u16::from_be_bytes([b(at), b(at + 1)]);
    let addresses = match b(0) % 4 {
        0 => Addresses::Tcp4 {
            source: std::net::SocketAddrV4::new(ip4(1), port(9)),
            destination: std::net::SocketAddrV4::new(ip4(5), port(11)),
        },
        1 => Addresses::Tcp6 {
            source: std::net::SocketAddrV6::new(ip6(1), port(33), 0, 0),
            destination: std::net::SocketAddrV6::new(ip6(17), port(35), 0, 0),
        },
        2 => Addresses::Local,
        _ => Addresses::Unknown,
    };
    for version in [Version::V1, Version::V2] {
        let header = ProxyHeader { version, addresses };
        let mut enc = BytesMut::new();
        header.encode(&mut enc);
        enc.extend_from_slice(b"\x05\x01\x02");
        let want = match (version, addresses) {
            // Version 1 cannot say LOCAL: it encodes as UNKNOWN.
            (Version::V1, Addresses::Local) => ProxyHeader {
                version,
                addresses: Addresses::Unknown,
            },
            _ => header,
        };
        assert_eq!(
            ProxyHeader::decode(&mut enc),
            Ok(Some(want)),
            "round trip of {header:?}"
        );
        assert_eq!(&enc[..], b"\x05\x01\x02", "the bytes after the header stay");
    }
}

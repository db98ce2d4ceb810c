//! The PROXY protocol header (haproxy's `proxy-protocol.txt`, versions 1 and 2) that a load
//! balancer puts in front of a relayed TCP connection, so that the server learns the real
//! client's address.
//!
//! This module only parses. Whether a connection must carry a header is the operator's
//! decision, never guessed from the bytes: the specification (§1, §5) requires the receiver to
//! be "configured to only receive the protocol" and not to "try to guess whether the protocol
//! header is present or not", because a client allowed to send one could pose as anyone. The
//! driver therefore requires a header from the configured trusted sources, and from them
//! only, and refuses a connection whose first bytes are not one.
//!
//! [`ProxyHeader::check`] and [`ProxyHeader::decode`] follow the crate's parser contract:
//! `Ok(None)` means "need more bytes" and leaves the input untouched; an error is reported as
//! soon as the bytes read so far rule out a valid header (the specification recommends
//! aborting "as soon as possible"), so a client that is not a PROXY sender is refused at its
//! first byte. The bytes after the header (the SOCKS5 greeting, usually in the same segment)
//! stay in the input.
//!
//! What is accepted:
//!
//! - **Version 1** (§2.1): `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, at most
//!   [`MAX_V1_LEN`] bytes with the CRLF, exactly one space between fields, IPv4 addresses as
//!   four decimal numbers without leading zeroes, IPv6 addresses as `std` parses them, ports
//!   `0..=65535` without leading zeroes, both addresses of the family named. `PROXY UNKNOWN`
//!   followed by anything up to the CRLF is [`Addresses::Unknown`]. A bare CR or LF is an
//!   error, and so is a CRLF not found in the first 107 bytes.
//! - **Version 2** (§2.2): the 12-byte signature, version 2, command LOCAL
//!   ([`Addresses::Local`]) or PROXY, then the family byte: TCP over IPv4 (`0x11`) and over
//!   IPv6 (`0x21`) carry addresses; every other valid family and protocol (UNSPEC, UDP, UNIX)
//!   falls back to the connection's own addresses ([`Addresses::Unknown`]), as §2.2 allows.
//!   Unassigned version, command, family or protocol values are errors, as is an address block
//!   too short for its family. TLVs (and any bytes past the addresses) are skipped unread,
//!   as §2.2 allows ("a receiver may choose to skip over and ignore those bytes"); a header
//!   longer than [`MAX_V2_LEN`] is refused before it is buffered.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};

/// The longest version 1 header accepted, in bytes, CRLF included (the specification's worst
/// case, `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const MAX_V1_LEN: usize = 107;

/// The longest version 2 header accepted, in bytes: the 16-byte fixed part and up to 4 KiB of
/// addresses and TLVs. The length field allows 64 KiB; real senders (haproxy, cloud load
/// balancers) put a few dozen bytes of TLVs there, and this bounds what a connection may make
/// the server buffer before its SOCKS5 greeting.
pub const MAX_V2_LEN: usize = V2_FIXED_LEN + 4096;

/// The longest header of either version, in bytes.
pub const MAX_LEN: usize = MAX_V2_LEN;

/// The version 2 signature (§2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The version 1 header starts with these bytes (§2.1: "PROXY" and one space).
const V1_PREFIX: &[u8] = b"PROXY ";
/// Signature, version and command, family and protocol, length.
const V2_FIXED_LEN: usize = 16;
/// Longest IPv4 address in a version 1 line (`255.255.255.255`).
const V1_MAX_V4: usize = 15;
/// Longest IPv6 address in a version 1 line (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const V1_MAX_V6: usize = 45;

/// A PROXY protocol header could not be decoded. The connection must be closed (§2.1: "Any
/// sequence which does not exactly match the protocol must be discarded and cause the
/// receiver to abort the connection").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The first bytes are neither `PROXY ` nor the version 2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// Version 2: the version nibble (high half of byte 13) is not 2; the byte as sent.
    #[error("unsupported PROXY protocol version byte {0:#04x}")]
    UnsupportedVersion(u8),
    /// Version 2: the command nibble is neither LOCAL (0) nor PROXY (1); the byte as sent.
    #[error("unknown PROXY protocol command byte {0:#04x}")]
    UnknownCommand(u8),
    /// Version 2: the address family (above 3) or transport protocol (above 2) is unassigned;
    /// the byte as sent.
    #[error("unknown PROXY protocol family/protocol byte {0:#04x}")]
    UnknownFamily(u8),
    /// Version 2, PROXY command: the address block is shorter than the family needs.
    #[error("PROXY protocol address block of {len} bytes for family {family:#04x}")]
    AddressLength {
        /// The family and protocol byte.
        family: u8,
        /// The length announced.
        len: u16,
    },
    /// Version 2: the announced header is longer than [`MAX_V2_LEN`].
    #[error("PROXY protocol header of {len} bytes, at most {max} accepted")]
    TooLong {
        /// The header length announced (16 + the length field).
        len: usize,
        /// The longest accepted.
        max: usize,
    },
    /// Version 1: no CRLF within the first [`MAX_V1_LEN`] bytes.
    #[error("PROXY protocol v1 line longer than 107 bytes")]
    LineTooLong,
    /// Version 1: the line does not match the grammar; what is wrong.
    #[error("malformed PROXY protocol v1 line: {0}")]
    Malformed(&'static str),
}

/// The header's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The human-readable line (§2.1).
    V1,
    /// The binary header (§2.2).
    V2,
}

/// What a header says about the connection it precedes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// TCP over IPv4: the client's address and the address it connected to.
    Tcp4 {
        /// The client (source) address.
        source: SocketAddrV4,
        /// The address the client connected to (destination).
        destination: SocketAddrV4,
    },
    /// TCP over IPv6 (flow information and scope are zero).
    Tcp6 {
        /// The client (source) address.
        source: SocketAddrV6,
        /// The address the client connected to (destination).
        destination: SocketAddrV6,
    },
    /// Version 2 LOCAL: the load balancer itself (a health check); use the connection's own
    /// addresses.
    Local,
    /// Version 1 `UNKNOWN`, or version 2 PROXY for something other than TCP over IPv4/IPv6
    /// (UNSPEC, UDP, UNIX): use the connection's own addresses.
    Unknown,
}

/// A decoded PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// Which of the two formats it came in.
    pub version: Version,
    /// The addresses it carries, if any.
    pub addresses: Addresses,
}

impl ProxyHeader {
    /// Returns the real client's address, `None` when the connection's own peer address is
    /// to be used ([`Addresses::Local`], [`Addresses::Unknown`]).
    pub fn source(&self) -> Option<SocketAddr> {
        match self.addresses {
            Addresses::Tcp4 { source, .. } => Some(source.into()),
            Addresses::Tcp6 { source, .. } => Some(source.into()),
            Addresses::Local | Addresses::Unknown => None,
        }
    }

    /// Returns the address the real client connected to, `None` as for
    /// [`source`](Self::source).
    pub fn destination(&self) -> Option<SocketAddr> {
        match self.addresses {
            Addresses::Tcp4 { destination, .. } => Some(destination.into()),
            Addresses::Tcp6 { destination, .. } => Some(destination.into()),
            Addresses::Local | Addresses::Unknown => None,
        }
    }

    /// Returns the length of the complete header at the start of `src`, `None` if more bytes
    /// are needed.
    ///
    /// # Errors
    ///
    /// As soon as the bytes read rule a header out (see [`ProxyError`]).
    pub fn check(src: &[u8]) -> Result<Option<usize>, ProxyError> {
        Ok(Self::parse(src)?.map(|(_, len)| len))
    }

    /// Parses the header at the start of `src` without consuming it: the header and its length
    /// in bytes, `None` if more bytes are needed.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    pub fn parse(src: &[u8]) -> Result<Option<(Self, usize)>, ProxyError> {
        match src.first() {
            None => Ok(None),
            Some(b'P') => parse_v1(src),
            Some(b'\r') => parse_v2(src),
            Some(_) => Err(ProxyError::NotProxy),
        }
    }

    /// Decodes the header at the front of `src`, consuming it (and nothing after it);
    /// `Ok(None)` and errors leave `src` untouched.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, ProxyError> {
        let Some((header, len)) = Self::parse(src)? else {
            return Ok(None);
        };
        let _ = src.split_to(len);
        Ok(Some(header))
    }

    /// Appends the canonical encoding to `dst`: version 1 writes `std`'s address notation
    /// and, for [`Addresses::Local`] (which version 1 cannot say), `PROXY UNKNOWN\r\n`;
    /// version 2 writes no TLVs and, for [`Addresses::Unknown`], PROXY with family UNSPEC.
    pub fn encode(&self, dst: &mut impl BufMut) {
        match self.version {
            Version::V1 => {
                // A std `Display` is canonical and parses back; a `String` here is fine
                // (encoding is for tests and load balancer simulations, not the hot path).
                let line = match self.addresses {
                    Addresses::Tcp4 {
                        source: s,
                        destination: d,
                    } => format!(
                        "PROXY TCP4 {} {} {} {}\r\n",
                        s.ip(),
                        d.ip(),
                        s.port(),
                        d.port()
                    ),
                    Addresses::Tcp6 {
                        source: s,
                        destination: d,
                    } => format!(
                        "PROXY TCP6 {} {} {} {}\r\n",
                        s.ip(),
                        d.ip(),
                        s.port(),
                        d.port()
                    ),
                    Addresses::Local | Addresses::Unknown => "PROXY UNKNOWN\r\n".to_owned(),
                };
                dst.put_slice(line.as_bytes());
            }
            Version::V2 => {
                dst.put_slice(&V2_SIGNATURE);
                let (cmd, fam, len) = match self.addresses {
                    Addresses::Tcp4 { .. } => (0x21, 0x11, 12),
                    Addresses::Tcp6 { .. } => (0x21, 0x21, 36),
                    Addresses::Local => (0x20, 0x00, 0),
                    Addresses::Unknown => (0x21, 0x00, 0),
                };
                dst.put_u8(cmd);
                dst.put_u8(fam);
                dst.put_u16(len);
                match self.addresses {
                    Addresses::Tcp4 {
                        source: s,
                        destination: d,
                    } => {
                        dst.put_slice(&s.ip().octets());
                        dst.put_slice(&d.ip().octets());
                        dst.put_u16(s.port());
                        dst.put_u16(d.port());
                    }
                    Addresses::Tcp6 {
                        source: s,
                        destination: d,
                    } => {
                        dst.put_slice(&s.ip().octets());
                        dst.put_slice(&d.ip().octets());
                        dst.put_u16(s.port());
                        dst.put_u16(d.port());
                    }
                    Addresses::Local | Addresses::Unknown => {}
                }
            }
        }
    }
}

/// Version 2 (§2.2):
///
/// ```text
/// +--------------+---------+-----+-----+-----------------------------+
/// | signature 12 | ver_cmd | fam | len | addresses, then TLVs (len)  |
/// +--------------+---------+-----+-----+-----------------------------+
///                  0x2?      0x11 (TCP4) / 0x21 (TCP6) / ...
/// ```
fn parse_v2(src: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let sig = src.len().min(V2_SIGNATURE.len());
    if src[..sig] != V2_SIGNATURE[..sig] {
        return Err(ProxyError::NotProxy);
    }
    let Some(&ver_cmd) = src.get(12) else {
        return Ok(None);
    };
    // "it must always be sent as \x2 and the receiver must only accept this value"
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::UnsupportedVersion(ver_cmd));
    }
    // "Receivers must drop connections presenting unexpected values here."
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::UnknownCommand(ver_cmd)),
    };
    let Some(&fam) = src.get(13) else {
        return Ok(None);
    };
    // Families above AF_UNIX (3) and protocols above DGRAM (2) "must be rejected as invalid
    // by receivers". Checked for LOCAL too: the byte must still be a valid one.
    if fam >> 4 > 3 || fam & 0x0f > 2 {
        return Err(ProxyError::UnknownFamily(fam));
    }
    let Some(len) = src.get(14..16) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([len[0], len[1]]);
    let total = V2_FIXED_LEN + usize::from(len);
    if total > MAX_V2_LEN {
        return Err(ProxyError::TooLong {
            len: total,
            max: MAX_V2_LEN,
        });
    }
    // LOCAL: "discard the protocol block including the family which is ignored".
    let need = match (local, fam) {
        (false, 0x11) => 12,
        (false, 0x21) => 36,
        _ => 0,
    };
    if usize::from(len) < need {
        return Err(ProxyError::AddressLength { family: fam, len });
    }
    // "The receiver must not start to parse an address before the whole address block is
    // received": nor accept a header before its TLVs are in.
    let Some(block) = src.get(V2_FIXED_LEN..total) else {
        return Ok(None);
    };
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    let addresses = match (local, fam) {
        (true, _) => Addresses::Local,
        (false, 0x11) => {
            let ip =
                |at: usize| Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]);
            Addresses::Tcp4 {
                source: SocketAddrV4::new(ip(0), port(8)),
                destination: SocketAddrV4::new(ip(4), port(10)),
            }
        }
        (false, 0x21) => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&block[at..at + 16]);
                Ipv6Addr::from(o)
            };
            Addresses::Tcp6 {
                source: SocketAddrV6::new(ip(0), port(32), 0, 0),
                destination: SocketAddrV6::new(ip(16), port(34), 0, 0),
            }
        }
        // UNSPEC, UDP, UNIX: "falls back to the UNSPEC mode".
        (false, _) => Addresses::Unknown,
    };
    Ok(Some((
        ProxyHeader {
            version: Version::V2,
            addresses,
        },
        total,
    )))
}

/// Version 1 (§2.1): one line, `PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n`.
///
/// The line so far is checked field by field; a field the input may still extend (the last
/// one, before any CR or LF) is checked as a prefix, so garbage is refused at once.
fn parse_v1(src: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    // Where the line ends: the first CR or LF. A CR at index 105 gives the longest line.
    let window = &src[..src.len().min(MAX_V1_LEN - 1)];
    let end = window.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &window[..end.unwrap_or(window.len())];
    let complete = end.is_some();

    let prefix = line.len().min(V1_PREFIX.len());
    if line[..prefix] != V1_PREFIX[..prefix] {
        return Err(if line.len() > 5 && line[..5] == V1_PREFIX[..5] {
            ProxyError::Malformed("no space after PROXY")
        } else {
            ProxyError::NotProxy
        });
    }
    let addresses = if line.len() < V1_PREFIX.len() {
        if complete {
            return Err(ProxyError::Malformed("line ends inside PROXY"));
        }
        None
    } else {
        v1_fields(&line[V1_PREFIX.len()..], complete)?
    };

    let Some(cr) = end else {
        return if src.len() >= MAX_V1_LEN - 1 {
            Err(ProxyError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    // "The receiver must not tolerate a single CR or LF character to end the line".
    if src[cr] == b'\n' {
        return Err(ProxyError::Malformed("LF without CR"));
    }
    match src.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => {
            // A complete line was checked whole: its addresses are known.
            let addresses = addresses.ok_or(ProxyError::Malformed("incomplete line"))?;
            Ok(Some((
                ProxyHeader {
                    version: Version::V1,
                    addresses,
                },
                cr + 2,
            )))
        }
        Some(_) => Err(ProxyError::Malformed("CR without LF")),
    }
}

/// Checks the fields after `PROXY `; `complete` says the line ended (CR or LF) after `rest`.
/// Returns the addresses for a complete line, `None` for a valid prefix of one.
fn v1_fields(rest: &[u8], complete: bool) -> Result<Option<Addresses>, ProxyError> {
    let mut fields = rest.split(|&b| b == b' ');
    let count = rest.iter().filter(|&&b| b == b' ').count() + 1;
    // A field the input may still extend.
    let open = |i: usize| !complete && i + 1 == count;

    let proto = fields.next().expect("split yields at least one field");
    let v6 = match proto {
        b"TCP4" => false,
        b"TCP6" => true,
        // "the receiver must ignore anything presented before the CRLF"
        b"UNKNOWN" => return Ok(complete.then_some(Addresses::Unknown)),
        p if open(0)
            && [&b"TCP4"[..], b"TCP6", b"UNKNOWN"]
                .iter()
                .any(|k| k.starts_with(p)) =>
        {
            return Ok(None)
        }
        _ => {
            return Err(ProxyError::Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let mut ips = [None, None];
    let mut ports = [0u16; 2];
    for (i, field) in fields.enumerate().map(|(i, f)| (i + 1, f)) {
        let open = open(i);
        match i {
            1 | 2 => {
                ips[i - 1] = if v6 {
                    v1_ipv6(field, open)?.map(std::net::IpAddr::V6)
                } else {
                    v1_ipv4(field, open)?.map(std::net::IpAddr::V4)
                };
            }
            3 | 4 => {
                if let Some(p) = v1_port(field, open)? {
                    ports[i - 3] = p;
                }
            }
            _ => {
                return Err(ProxyError::Malformed(
                    "more than four fields after the protocol",
                ))
            }
        }
    }
    if !complete {
        return Ok(None);
    }
    if count < 5 {
        return Err(ProxyError::Malformed(
            "fewer than four fields after the protocol",
        ));
    }
    Ok(Some(match ips {
        [Some(std::net::IpAddr::V4(s)), Some(std::net::IpAddr::V4(d))] => Addresses::Tcp4 {
            source: SocketAddrV4::new(s, ports[0]),
            destination: SocketAddrV4::new(d, ports[1]),
        },
        [Some(std::net::IpAddr::V6(s)), Some(std::net::IpAddr::V6(d))] => Addresses::Tcp6 {
            source: SocketAddrV6::new(s, ports[0], 0, 0),
            destination: SocketAddrV6::new(d, ports[1], 0, 0),
        },
        _ => return Err(ProxyError::Malformed("address missing")),
    }))
}

/// An IPv4 address of a version 1 line: "exactly 4 integers in the range [0..255] ... Heading
/// zeroes are not permitted". `open`: the field may still grow (check it as a prefix).
fn v1_ipv4(field: &[u8], open: bool) -> Result<Option<Ipv4Addr>, ProxyError> {
    const BAD: ProxyError = ProxyError::Malformed("bad IPv4 address");
    if field.len() > V1_MAX_V4 {
        return Err(BAD);
    }
    let parts = field.iter().filter(|&&b| b == b'.').count() + 1;
    if parts > 4 {
        return Err(BAD);
    }
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in field.split(|&b| b == b'.') {
        let last = open && n + 1 == parts;
        match decimal(part, 255, last) {
            Some(v) => octets[n] = u8::try_from(v).expect("at most 255"),
            None => return Err(BAD),
        }
        n += 1;
    }
    if open {
        return Ok(None);
    }
    if n != 4 {
        return Err(BAD);
    }
    Ok(Some(Ipv4Addr::from(octets)))
}

/// An IPv6 address of a version 1 line, as `std` parses it (hexadecimal groups, one `::`,
/// optionally a dotted IPv4 tail). `open`: check only the characters.
fn v1_ipv6(field: &[u8], open: bool) -> Result<Option<Ipv6Addr>, ProxyError> {
    const BAD: ProxyError = ProxyError::Malformed("bad IPv6 address");
    if field.len() > V1_MAX_V6
        || !field
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err(BAD);
    }
    if open {
        return Ok(None);
    }
    let text = std::str::from_utf8(field).map_err(|_| BAD)?;
    text.parse().map(Some).map_err(|_| BAD)
}

/// A port of a version 1 line: decimal, `0..=65535`, no leading zeroes.
fn v1_port(field: &[u8], open: bool) -> Result<Option<u16>, ProxyError> {
    match decimal(field, 65535, open) {
        None => Err(ProxyError::Malformed("bad port")),
        Some(_) if open => Ok(None),
        Some(v) => Ok(Some(u16::try_from(v).expect("at most 65535"))),
    }
}

/// Reads a decimal number of at most `max` without leading zeroes. `open`: `digits` may be a
/// prefix of the number (empty is fine). `None`: not valid (nor a valid prefix).
fn decimal(digits: &[u8], max: u32, open: bool) -> Option<u32> {
    if digits.is_empty() {
        return open.then_some(0);
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    if open && digits == b"0" {
        // "0" cannot be extended, but it is complete as it is.
        return Some(0);
    }
    let mut v: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
        if v > max {
            return None;
        }
    }
    Some(v)
}

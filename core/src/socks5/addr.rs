//! SOCKS5 addresses and reply codes (RFC 1928 §5, §6).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes};

use crate::codec::{put_lv, Check};
use crate::error::DecodeError;

/// A destination as the client named it: `ATYP DST.ADDR DST.PORT` (RFC 1928 §4, §5).
///
/// ```text
/// ATYP 0x01: 4 bytes IPv4 | ATYP 0x03: 1 byte length, name | ATYP 0x04: 16 bytes IPv6
/// followed by a 2-byte port in network order
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum TargetAddr {
    /// An IPv4 or IPv6 address and port. (The wire has no IPv6 flow info or scope id: a
    /// decoded address has them zero.)
    Ip(#[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_wire_addr))] SocketAddr),
    /// A domain name (1 to 255 bytes, as sent; not necessarily UTF-8) and port.
    Domain(
        #[cfg_attr(
            feature = "arbitrary",
            arbitrary(with = crate::codec::arbitrary_field::<1>)
        )]
        Bytes,
        u16,
    ),
}

impl TargetAddr {
    /// ATYP of an IPv4 address.
    pub const ATYP_IPV4: u8 = 0x01;
    /// ATYP of a domain name.
    pub const ATYP_DOMAIN: u8 = 0x03;
    /// ATYP of an IPv6 address.
    pub const ATYP_IPV6: u8 = 0x04;
    /// Longest encoding: ATYP, length, 255 bytes of name, port.
    pub const MAX_LEN: usize = 1 + 1 + 255 + 2;

    /// Returns the port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(a) => a.port(),
            Self::Domain(_, p) => *p,
        }
    }

    /// Checks an encoded address at the front of `c`; `Ok(None)` means more bytes are needed.
    pub(crate) fn check(c: &mut Check<'_>) -> Result<Option<()>, DecodeError> {
        let Some(atyp) = c.u8() else { return Ok(None) };
        let ok = match atyp {
            Self::ATYP_IPV4 => c.take(4 + 2).is_some(),
            Self::ATYP_IPV6 => c.take(16 + 2).is_some(),
            Self::ATYP_DOMAIN => {
                let Some(len) = c.u8() else { return Ok(None) };
                if len == 0 {
                    return Err(DecodeError::EmptyField);
                }
                c.take(usize::from(len) + 2).is_some()
            }
            other => return Err(DecodeError::BadAddressType(other)),
        };
        Ok(ok.then_some(()))
    }

    /// Decodes an address that [`check`](Self::check) accepted from `frame[at..]`; returns the
    /// address and the offset after it.
    pub(crate) fn decode_checked(frame: &Bytes, at: usize) -> (Self, usize) {
        let port_at = |i: usize| u16::from_be_bytes([frame[i], frame[i + 1]]);
        match frame[at] {
            Self::ATYP_IPV4 => {
                let ip: [u8; 4] = frame[at + 1..at + 5].try_into().expect("checked length");
                (
                    Self::Ip(SocketAddr::new(Ipv4Addr::from(ip).into(), port_at(at + 5))),
                    at + 7,
                )
            }
            Self::ATYP_IPV6 => {
                let ip: [u8; 16] = frame[at + 1..at + 17].try_into().expect("checked length");
                (
                    Self::Ip(SocketAddr::new(Ipv6Addr::from(ip).into(), port_at(at + 17))),
                    at + 19,
                )
            }
            _ => {
                let len = usize::from(frame[at + 1]);
                let name = frame.slice(at + 2..at + 2 + len);
                (Self::Domain(name, port_at(at + 2 + len)), at + 4 + len)
            }
        }
    }

    /// Appends `ATYP ADDR PORT`.
    ///
    /// # Panics
    ///
    /// If a domain name is longer than 255 bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        match self {
            Self::Ip(SocketAddr::V4(a)) => {
                dst.put_u8(Self::ATYP_IPV4);
                dst.put_slice(&a.ip().octets());
            }
            Self::Ip(SocketAddr::V6(a)) => {
                dst.put_u8(Self::ATYP_IPV6);
                dst.put_slice(&a.ip().octets());
            }
            Self::Domain(name, _) => {
                dst.put_u8(Self::ATYP_DOMAIN);
                put_lv(dst, name);
            }
        }
        dst.put_u16(self.port());
    }
}

/// Generates an address as the wire can carry it (IPv6 flow info and scope id zero), so that
/// generated values survive an encode/decode round trip.
#[cfg(feature = "arbitrary")]
fn arbitrary_wire_addr(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<SocketAddr> {
    let mut a: SocketAddr = u.arbitrary()?;
    if let SocketAddr::V6(v6) = &mut a {
        v6.set_flowinfo(0);
        v6.set_scope_id(0);
    }
    Ok(a)
}

/// Shows the host part as the client sent it (name, or IP address), without the port, as the
/// access log wants it. Non-printable bytes of a name, and `\`, are shown as `\xNN`, so the
/// output is unambiguous.
impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(a) => write!(f, "{}", a.ip()),
            Self::Domain(name, _) => {
                for &b in name.iter() {
                    if b.is_ascii_graphic() && b != b'\\' {
                        write!(f, "{}", b as char)?;
                    } else {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The REP field of a SOCKS5 reply (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum ReplyCode {
    /// `0x00` succeeded.
    Succeeded = 0x00,
    /// `0x01` general SOCKS server failure.
    GeneralFailure = 0x01,
    /// `0x02` connection not allowed by ruleset.
    NotAllowed = 0x02,
    /// `0x03` network unreachable.
    NetworkUnreachable = 0x03,
    /// `0x04` host unreachable (also: the name did not resolve).
    HostUnreachable = 0x04,
    /// `0x05` connection refused.
    ConnectionRefused = 0x05,
    /// `0x06` TTL expired (used for connect timeouts).
    TtlExpired = 0x06,
    /// `0x07` command not supported.
    CommandNotSupported = 0x07,
    /// `0x08` address type not supported.
    AddressTypeNotSupported = 0x08,
}

impl ReplyCode {
    /// Returns the code for a byte, `None` for unassigned values.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x00 => Self::Succeeded,
            0x01 => Self::GeneralFailure,
            0x02 => Self::NotAllowed,
            0x03 => Self::NetworkUnreachable,
            0x04 => Self::HostUnreachable,
            0x05 => Self::ConnectionRefused,
            0x06 => Self::TtlExpired,
            0x07 => Self::CommandNotSupported,
            0x08 => Self::AddressTypeNotSupported,
            _ => return None,
        })
    }

    /// Maps the error kind of a failed outgoing connect (or listen, or UDP bind) to the reply
    /// code that describes it best. This and [`from_resolve_error`](Self::from_resolve_error)
    /// are the crate's only mapping from I/O errors to RFC 1928 codes; a transport passes
    /// `err.kind()` (std maps `ENETUNREACH`, `EHOSTUNREACH`, `ECONNREFUSED`, `ETIMEDOUT`,
    /// `EACCES`/`EPERM` to the kinds matched here).
    ///
    /// | kind | code |
    /// |---|---|
    /// | `ConnectionRefused` | `0x05` connection refused |
    /// | `TimedOut` | `0x06` TTL expired |
    /// | `NetworkUnreachable`, `NetworkDown` | `0x03` network unreachable |
    /// | `HostUnreachable` | `0x04` host unreachable |
    /// | `PermissionDenied` | `0x02` not allowed (a local firewall rule) |
    /// | anything else | `0x01` general failure |
    pub fn from_io_error(kind: io::ErrorKind) -> Self {
        match kind {
            io::ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            io::ErrorKind::TimedOut => Self::TtlExpired,
            io::ErrorKind::NetworkUnreachable | io::ErrorKind::NetworkDown => {
                Self::NetworkUnreachable
            }
            io::ErrorKind::HostUnreachable => Self::HostUnreachable,
            io::ErrorKind::PermissionDenied => Self::NotAllowed,
            _ => Self::GeneralFailure,
        }
    }

    /// Maps the error kind of a failed name resolution to a reply code: `0x04` host
    /// unreachable, whatever the kind (resolvers report "no such name", "no address" and
    /// "temporary failure" with kinds that differ per platform and runtime; for the client
    /// they all mean the host cannot be reached by that name).
    pub fn from_resolve_error(_kind: io::ErrorKind) -> Self {
        Self::HostUnreachable
    }
}

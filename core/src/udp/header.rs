//! The UDP request header of RFC 1928 §7.

use bytes::{BufMut, Bytes};

use crate::codec::Check;
use crate::error::DecodeError;
use crate::socks5::TargetAddr;

/// A UDP datagram's header could not be decoded.
///
/// A datagram is always whole (the socket hands it over in one piece), so a datagram that
/// ends inside its header is an error, [`Truncated`](Self::Truncated), and never "need more
/// bytes" as it is for the TCP messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The datagram ends inside its header.
    #[error("datagram of {len} bytes ends inside its header")]
    Truncated {
        /// Length of the datagram.
        len: usize,
    },
    /// A header field is invalid (RSV not zero, unknown ATYP, empty domain name).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The header every relayed datagram carries between client and relay, both ways
/// (RFC 1928 §7):
///
/// ```text
/// +----+------+------+----------+----------+----------+
/// |RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
/// +----+------+------+----------+----------+----------+
/// | 2  |  1   |  1   | Variable |    2     | Variable |
/// +----+------+------+----------+----------+----------+
/// ```
///
/// From the client, `addr` is where DATA goes; towards the client, it is where DATA came
/// from. DATA is not part of this value: [`decode`](Self::decode) returns it beside the header
/// as a zero-copy slice of the datagram. Any FRAG value decodes; what to do with a fragment is
/// the [`Association`](super::Association)'s decision (it drops them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Header {
    /// FRAG: `0x00` for a standalone datagram, otherwise a fragment's position (high bit:
    /// last fragment).
    pub frag: u8,
    /// ATYP, DST.ADDR, DST.PORT.
    pub addr: TargetAddr,
}

impl Header {
    /// The shortest encoding, in bytes: RSV, FRAG, a one-byte domain name and port.
    pub const MIN_LEN: usize = 3 + 1 + 1 + 1 + 2;
    /// The longest encoding, in bytes: RSV, FRAG, then the longest address (a 255-byte name).
    pub const MAX_LEN: usize = 3 + TargetAddr::MAX_LEN;
    /// Offset of ATYP.
    const ADDR_AT: usize = 3;

    /// Returns the header for a datagram to or from `addr` (FRAG zero).
    pub fn new(addr: TargetAddr) -> Self {
        Self { frag: 0, addr }
    }

    /// Returns the length of the header at the front of `datagram` (DATA starts there; it may
    /// be empty).
    ///
    /// # Errors
    ///
    /// As soon as the offending byte is read: [`DecodeError::Reserved`] (the first non-zero
    /// RSV byte), [`DecodeError::BadAddressType`], [`DecodeError::EmptyField`] (a domain name
    /// of length zero), each wrapped in [`HeaderError::Decode`]; then
    /// [`HeaderError::Truncated`] if the datagram ends before the header does.
    pub fn check(datagram: &[u8]) -> Result<usize, HeaderError> {
        let truncated = HeaderError::Truncated {
            len: datagram.len(),
        };
        let mut c = Check::new(datagram);
        for _ in 0..2 {
            let rsv = c.u8().ok_or(truncated)?;
            // RFC 1928 §7: "RSV  Reserved X'0000'".
            if rsv != 0 {
                return Err(DecodeError::Reserved(rsv).into());
            }
        }
        c.u8().ok_or(truncated)?; // FRAG
        match TargetAddr::check(&mut c)? {
            Some(()) => Ok(c.pos()),
            None => Err(truncated),
        }
    }

    /// Decodes the header of `datagram`; returns it with DATA, a zero-copy slice of
    /// `datagram`.
    ///
    /// # Errors
    ///
    /// See [`check`](Self::check).
    pub fn decode(datagram: &Bytes) -> Result<(Self, Bytes), HeaderError> {
        let len = Self::check(datagram)?;
        let (addr, end) = TargetAddr::decode_checked(datagram, Self::ADDR_AT);
        debug_assert_eq!(end, len);
        let header = Self {
            frag: datagram[2],
            addr,
        };
        Ok((header, datagram.slice(len..)))
    }

    /// Returns the length of the encoding.
    pub fn encoded_len(&self) -> usize {
        Self::ADDR_AT
            + match &self.addr {
                TargetAddr::Ip(a) if a.is_ipv4() => 1 + 4 + 2,
                TargetAddr::Ip(_) => 1 + 16 + 2,
                TargetAddr::Domain(name, _) => 1 + 1 + name.len() + 2,
            }
    }

    /// Appends the encoding to `dst` (DATA follows it; the caller appends it).
    ///
    /// # Panics
    ///
    /// If a domain name is longer than 255 bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u16(0);
        dst.put_u8(self.frag);
        self.addr.encode(dst);
    }
}

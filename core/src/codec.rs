//! Shared decoding helpers and the username/password message that RFC 1929 and the admin
//! protocol (draft §2.2) have in common.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// A non-allocating reader over a prefix of the input, used by every `check` function.
/// Each getter returns `None` when the input ends first ("need more bytes").
#[derive(Debug)]
pub(crate) struct Check<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Check<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Returns how many bytes have been read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    /// Reads a one-byte length and that many bytes; returns the range of the bytes.
    pub(crate) fn lv(&mut self) -> Option<std::ops::Range<usize>> {
        let len = usize::from(self.u8()?);
        let start = self.pos;
        self.take(len)?;
        Some(start..start + len)
    }
}

/// Puts `field` with a one-byte length prefix.
///
/// # Panics
///
/// If `field` is longer than 255 bytes (a value type that allowed that is a bug).
pub(crate) fn put_lv(dst: &mut impl BufMut, field: &[u8]) {
    let len = u8::try_from(field.len()).expect("length-prefixed field longer than 255 bytes");
    dst.put_u8(len);
    dst.put_slice(field);
}

/// The username/password request of RFC 1929 §2, which is also the admin authentication
/// request of the draft, §2.2:
///
/// ```text
/// +-----+------+----------+------+----------+
/// | VER | ULEN |  UNAME   | PLEN |  PASSWD  |
/// +-----+------+----------+------+----------+
/// |  1  |  1   | 1 to 255 |  1   | 1 to 255 |
/// +-----+------+----------+------+----------+
/// ```
///
/// Empty fields decode (the sessions answer them with an authentication failure, which keeps
/// "unknown user" and "malformed" indistinguishable to the peer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UserPassRequest {
    /// UNAME, as sent.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
    pub user: Bytes,
    /// PASSWD, as sent.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
    pub password: Bytes,
}

impl UserPassRequest {
    /// VER of this sub-negotiation.
    pub const VERSION: u8 = 0x01;
    /// The longest encoding: VER, ULEN, 255 bytes, PLEN, 255 bytes.
    pub const MAX_LEN: usize = 3 + 255 + 255;

    /// Returns the length of the complete message at the start of `src`, `None` if more bytes
    /// are needed.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnsupportedVersion`] as soon as the first byte is not `0x01`.
    pub fn check(src: &[u8]) -> Result<Option<usize>, DecodeError> {
        let mut c = Check::new(src);
        let Some(ver) = c.u8() else { return Ok(None) };
        if ver != Self::VERSION {
            return Err(DecodeError::UnsupportedVersion(ver));
        }
        if c.lv().is_none() || c.lv().is_none() {
            return Ok(None);
        }
        Ok(Some(c.pos()))
    }

    /// Decodes one message from the front of `src`, consuming it; `Ok(None)` leaves `src`
    /// untouched.
    ///
    /// # Errors
    ///
    /// See [`check`](Self::check).
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        let Some(len) = Self::check(src)? else {
            return Ok(None);
        };
        let frame = src.split_to(len).freeze();
        let ulen = usize::from(frame[1]);
        let user = frame.slice(2..2 + ulen);
        let password = frame.slice(3 + ulen..len);
        Ok(Some(Self { user, password }))
    }

    /// Appends the encoding to `dst`.
    ///
    /// # Panics
    ///
    /// If a field is longer than 255 bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(Self::VERSION);
        put_lv(dst, &self.user);
        put_lv(dst, &self.password);
    }
}

/// The reply to a [`UserPassRequest`]: `VER STATUS`, VER always `0x01` (RFC 1929 §2; the
/// original socks5d sent `0x05` on the SOCKS side, which clients reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UserPassReply {
    /// STATUS: `0x00` success; anything else is failure (admin: `0x01` failed, `0x02` bad version).
    pub status: u8,
}

impl UserPassReply {
    /// Length of the encoding.
    pub const LEN: usize = 2;

    /// Decodes one reply from the front of `src`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnsupportedVersion`] if VER is not `0x01`.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        let Some(&ver) = src.first() else {
            return Ok(None);
        };
        if ver != UserPassRequest::VERSION {
            return Err(DecodeError::UnsupportedVersion(ver));
        }
        if src.len() < Self::LEN {
            return Ok(None);
        }
        let status = src[1];
        let _ = src.split_to(Self::LEN);
        Ok(Some(Self { status }))
    }

    /// Appends the encoding to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(UserPassRequest::VERSION);
        dst.put_u8(self.status);
    }
}

/// Compares two byte strings in time that depends only on their lengths, so that a password
/// check does not reveal how long a prefix matched.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Generates a byte field of `MIN..=255` bytes, so that generated messages always encode.
#[cfg(feature = "arbitrary")]
pub(crate) fn arbitrary_field<const MIN: usize>(
    u: &mut arbitrary::Unstructured<'_>,
) -> arbitrary::Result<Bytes> {
    let mut field = vec![0; u.int_in_range(MIN..=255)?];
    // Pads with zeros once the input runs out, rather than failing.
    u.fill_buffer(&mut field)?;
    Ok(Bytes::from(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &[u8] = b"\x01\x04user\x06secret";

    #[test]
    fn userpass_golden() {
        let mut b = BytesMut::from(GOLDEN);
        let m = UserPassRequest::decode(&mut b).unwrap().unwrap();
        assert!(b.is_empty());
        assert_eq!(&m.user[..], b"user");
        assert_eq!(&m.password[..], b"secret");
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(&out[..], GOLDEN);
    }

    #[test]
    fn userpass_every_prefix_is_partial() {
        for i in 0..GOLDEN.len() {
            let mut b = BytesMut::from(&GOLDEN[..i]);
            assert_eq!(UserPassRequest::decode(&mut b), Ok(None), "prefix {i}");
            assert_eq!(b.len(), i, "partial input must be left untouched");
        }
    }

    #[test]
    fn userpass_bad_version_on_first_byte() {
        let mut b = BytesMut::from(&b"\x05"[..]);
        assert_eq!(
            UserPassRequest::decode(&mut b),
            Err(DecodeError::UnsupportedVersion(5))
        );
    }

    #[test]
    fn userpass_empty_fields_decode() {
        let mut b = BytesMut::from(&b"\x01\x00\x00"[..]);
        let m = UserPassRequest::decode(&mut b).unwrap().unwrap();
        assert!(m.user.is_empty() && m.password.is_empty());
    }

    #[test]
    fn reply_golden() {
        let mut out = BytesMut::new();
        UserPassReply { status: 0 }.encode(&mut out);
        assert_eq!(&out[..], b"\x01\x00");
        assert_eq!(
            UserPassReply::decode(&mut out),
            Ok(Some(UserPassReply { status: 0 }))
        );
        assert_eq!(
            UserPassReply::decode(&mut BytesMut::from(&b"\x01"[..])),
            Ok(None)
        );
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

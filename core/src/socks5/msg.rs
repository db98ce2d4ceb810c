//! The SOCKS5 messages of RFC 1928, both directions, so that a server, a client (tests, a
//! load generator, an embedder) and the fuzzers share one codec. The username/password
//! sub-negotiation of RFC 1929 is [`UserPassRequest`](crate::UserPassRequest) /
//! [`UserPassReply`](crate::UserPassReply), shared with the admin protocol.
//!
//! Every message has a non-allocating `check(&[u8]) -> Result<Option<usize>, DecodeError>`
//! (the length of the complete message at the front, `None` for "need more bytes"), a
//! `decode(&mut BytesMut)` that consumes exactly that message (and leaves `src` untouched
//! on `Ok(None)` and on `Err`), and an `encode(&self, &mut impl BufMut)`.
//!
//! Errors are reported as soon as the offending byte is available, except where the rest of
//! the message is needed to report it usefully (an unknown CMD in a [`Request`]).

use std::net::{Ipv4Addr, SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::addr::{ReplyCode, TargetAddr};
use crate::codec::{put_lv, Check};
use crate::error::DecodeError;

/// VER of every SOCKS5 message (RFC 1928 §3).
pub const VERSION: u8 = 0x05;

/// An authentication method number (RFC 1928 §3). Any byte can appear on the wire; the
/// constants name the ones this crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Method(pub u8);

impl Method {
    /// `0x00` no authentication required.
    pub const NO_AUTH: Self = Self(0x00);
    /// `0x01` GSSAPI (RFC 1961; never selected by this server).
    pub const GSSAPI: Self = Self(0x01);
    /// `0x02` username/password (RFC 1929).
    pub const USER_PASS: Self = Self(0x02);
    /// `0xFF` no acceptable methods: the client must close the connection.
    pub const NO_ACCEPTABLE: Self = Self(0xFF);
}

/// The client's version identifier / method selection message (RFC 1928 §3):
///
/// ```text
/// +----+----------+----------+
/// |VER | NMETHODS | METHODS  |
/// +----+----------+----------+
/// | 1  |    1     | 1 to 255 |
/// +----+----------+----------+
/// ```
///
/// `NMETHODS = 0` decodes (to an empty `methods`): it is well framed and offers nothing, so a
/// server answers it with [`Method::NO_ACCEPTABLE`] like any other greeting it cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Greeting {
    /// The METHOD bytes offered, in the client's order (at most 255).
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
    pub methods: Bytes,
}

impl Greeting {
    /// The longest encoding: VER, NMETHODS, 255 methods.
    pub const MAX_LEN: usize = 2 + 255;

    /// Returns a greeting offering `methods` (as a client sends it).
    ///
    /// # Panics
    ///
    /// If more than 255 methods are given.
    pub fn new(methods: &[Method]) -> Self {
        assert!(methods.len() <= 255, "at most 255 methods");
        Self {
            methods: methods.iter().map(|m| m.0).collect(),
        }
    }

    /// Returns whether the client offers `m`.
    pub fn offers(&self, m: Method) -> bool {
        self.methods.contains(&m.0)
    }

    /// Returns the length of the complete greeting at the front of `src`, `None` if more
    /// bytes are needed.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnsupportedVersion`] as soon as the first byte is not `0x05` (a SOCKS4
    /// client, an HTTP request, noise).
    pub fn check(src: &[u8]) -> Result<Option<usize>, DecodeError> {
        let mut c = Check::new(src);
        let Some(ver) = c.u8() else { return Ok(None) };
        if ver != VERSION {
            return Err(DecodeError::UnsupportedVersion(ver));
        }
        Ok(c.lv().map(|_| c.pos()))
    }

    /// Decodes one greeting from the front of `src`, consuming it; `Ok(None)` and `Err` leave
    /// `src` untouched.
    ///
    /// # Errors
    ///
    /// See [`check`](Self::check).
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        let Some(len) = Self::check(src)? else {
            return Ok(None);
        };
        let frame = src.split_to(len).freeze();
        Ok(Some(Self {
            methods: frame.slice(2..),
        }))
    }

    /// Appends the encoding to `dst`.
    ///
    /// # Panics
    ///
    /// If `methods` is longer than 255 bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(VERSION);
        put_lv(dst, &self.methods);
    }
}

/// The server's METHOD selection message (RFC 1928 §3):
///
/// ```text
/// +----+--------+
/// |VER | METHOD |
/// +----+--------+
/// | 1  |   1    |
/// +----+--------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct MethodSelection {
    /// The method chosen, or [`Method::NO_ACCEPTABLE`].
    pub method: Method,
}

impl MethodSelection {
    /// Length of the encoding.
    pub const LEN: usize = 2;

    /// Returns [`LEN`](Self::LEN) if a complete message is at the front of `src`, `None` if
    /// more bytes are needed.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnsupportedVersion`] as soon as the first byte is not `0x05`.
    pub fn check(src: &[u8]) -> Result<Option<usize>, DecodeError> {
        match src.first() {
            None => Ok(None),
            Some(&VERSION) => Ok((src.len() >= Self::LEN).then_some(Self::LEN)),
            Some(&ver) => Err(DecodeError::UnsupportedVersion(ver)),
        }
    }

    /// Decodes one message from the front of `src`, consuming it; `Ok(None)` and `Err` leave
    /// `src` untouched.
    ///
    /// # Errors
    ///
    /// See [`check`](Self::check).
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        let Some(len) = Self::check(src)? else {
            return Ok(None);
        };
        let method = Method(src[1]);
        src.advance(len);
        Ok(Some(Self { method }))
    }

    /// Appends the encoding to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(VERSION);
        dst.put_u8(self.method.0);
    }
}

/// The CMD field of a [`Request`] (RFC 1928 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum Command {
    /// `0x01` CONNECT.
    Connect = 0x01,
    /// `0x02` BIND (not supported by this server: answered with `0x07`).
    Bind = 0x02,
    /// `0x03` UDP ASSOCIATE (not supported by this server: answered with `0x07`).
    UdpAssociate = 0x03,
}

impl Command {
    /// Returns the command for a CMD byte, `None` for unassigned values.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(Self::Connect),
            0x02 => Some(Self::Bind),
            0x03 => Some(Self::UdpAssociate),
            _ => None,
        }
    }
}

/// The client's request (RFC 1928 §4):
///
/// ```text
/// +----+-----+-------+------+----------+----------+
/// |VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
/// +----+-----+-------+------+----------+----------+
/// | 1  |  1  | X'00' |  1   | Variable |    2     |
/// +----+-----+-------+------+----------+----------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Request {
    /// CMD.
    pub command: Command,
    /// ATYP, DST.ADDR, DST.PORT.
    pub target: TargetAddr,
}

/// A request whose framing is valid; its CMD byte may still be unassigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestFrame {
    /// Length of the whole request.
    pub(crate) len: usize,
    /// The CMD byte as sent.
    pub(crate) cmd: u8,
}

impl RequestFrame {
    /// Offset of ATYP in a request.
    pub(crate) const ADDR_AT: usize = 3;

    /// Finds the end of the request at the front of `src`. Checks everything the framing
    /// depends on (VER, RSV, ATYP, a non-empty name) as soon as it arrives, and leaves CMD to
    /// the caller, so that an unknown command can still be answered and logged with its
    /// target.
    pub(crate) fn check(src: &[u8]) -> Result<Option<Self>, DecodeError> {
        let mut c = Check::new(src);
        let Some(ver) = c.u8() else { return Ok(None) };
        if ver != VERSION {
            return Err(DecodeError::UnsupportedVersion(ver));
        }
        let Some(cmd) = c.u8() else { return Ok(None) };
        let Some(rsv) = c.u8() else { return Ok(None) };
        // RFC 1928 §3: "Fields marked RESERVED (RSV) must be set to X'00'."
        if rsv != 0 {
            return Err(DecodeError::Reserved(rsv));
        }
        Ok(TargetAddr::check(&mut c)?.map(|()| Self { len: c.pos(), cmd }))
    }
}

impl Request {
    /// The longest encoding: VER CMD RSV, then the longest address.
    pub const MAX_LEN: usize = 3 + TargetAddr::MAX_LEN;

    /// Returns the length of the complete request at the front of `src`, `None` if more bytes
    /// are needed.
    ///
    /// # Errors
    ///
    /// As soon as the byte is available: [`DecodeError::UnsupportedVersion`] (VER not
    /// `0x05`), [`DecodeError::Reserved`] (RSV not zero), [`DecodeError::BadAddressType`],
    /// [`DecodeError::EmptyField`] (a domain name of length zero). Once the whole request is
    /// there: [`DecodeError::UnknownSocksCommand`].
    pub fn check(src: &[u8]) -> Result<Option<usize>, DecodeError> {
        let Some(f) = RequestFrame::check(src)? else {
            return Ok(None);
        };
        match Command::from_u8(f.cmd) {
            Some(_) => Ok(Some(f.len)),
            None => Err(DecodeError::UnknownSocksCommand(f.cmd)),
        }
    }

    /// Decodes one request from the front of `src`, consuming it; `Ok(None)` and `Err` leave
    /// `src` untouched.
    ///
    /// # Errors
    ///
    /// See [`check`](Self::check).
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        let Some(len) = Self::check(src)? else {
            return Ok(None);
        };
        let command = Command::from_u8(src[1]).ok_or(DecodeError::UnknownSocksCommand(src[1]))?;
        let frame = src.split_to(len).freeze();
        let (target, _) = TargetAddr::decode_checked(&frame, RequestFrame::ADDR_AT);
        Ok(Some(Self { command, target }))
    }

    /// Appends the encoding to `dst`.
    ///
    /// # Panics
    ///
    /// If a domain name is longer than 255 bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_slice(&[VERSION, self.command as u8, 0]);
        self.target.encode(dst);
    }
}

/// The server's reply to a [`Request`] (RFC 1928 §6):
///
/// ```text
/// +----+-----+-------+------+----------+----------+
/// |VER | REP |  RSV  | ATYP | BND.ADDR | BND.PORT |
/// +----+-----+-------+------+----------+----------+
/// | 1  |  1  | X'00' |  1   | Variable |    2     |
/// +----+-----+-------+------+----------+----------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Reply {
    /// REP.
    pub code: ReplyCode,
    /// ATYP, BND.ADDR, BND.PORT: for CONNECT, the address the server bound for the outgoing
    /// connection.
    pub bound: TargetAddr,
}

impl Reply {
    /// The longest encoding: VER REP RSV, then the longest address.
    pub const MAX_LEN: usize = 3 + TargetAddr::MAX_LEN;
    /// The longest encoding with an IP address (IPv6): what this server ever sends.
    pub const MAX_IP_LEN: usize = 3 + 1 + 16 + 2;
    /// BND of a failure reply: RFC 1928 gives it no meaning there, so `0.0.0.0:0`.
    pub const UNSPECIFIED: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

    /// Returns a failure reply with `code` and BND `0.0.0.0:0`.
    pub fn failure(code: ReplyCode) -> Self {
        Self {
            code,
            bound: TargetAddr::Ip(Self::UNSPECIFIED),
        }
    }

    /// Returns the length of the complete reply at the front of `src`, `None` if more bytes
    /// are needed.
    ///
    /// # Errors
    ///
    /// As soon as the byte is available: [`DecodeError::UnsupportedVersion`] (VER not
    /// `0x05`), [`DecodeError::InvalidValue`] (REP not `0x00..=0x08`),
    /// [`DecodeError::Reserved`], [`DecodeError::BadAddressType`],
    /// [`DecodeError::EmptyField`].
    pub fn check(src: &[u8]) -> Result<Option<usize>, DecodeError> {
        let mut c = Check::new(src);
        let Some(ver) = c.u8() else { return Ok(None) };
        if ver != VERSION {
            return Err(DecodeError::UnsupportedVersion(ver));
        }
        let Some(rep) = c.u8() else { return Ok(None) };
        if ReplyCode::from_u8(rep).is_none() {
            return Err(DecodeError::InvalidValue(rep));
        }
        let Some(rsv) = c.u8() else { return Ok(None) };
        if rsv != 0 {
            return Err(DecodeError::Reserved(rsv));
        }
        Ok(TargetAddr::check(&mut c)?.map(|()| c.pos()))
    }

    /// Decodes one reply from the front of `src`, consuming it; `Ok(None)` and `Err` leave
    /// `src` untouched.
    ///
    /// # Errors
    ///
    /// See [`check`](Self::check).
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        let Some(len) = Self::check(src)? else {
            return Ok(None);
        };
        let code = ReplyCode::from_u8(src[1]).ok_or(DecodeError::InvalidValue(src[1]))?;
        let frame = src.split_to(len).freeze();
        let (bound, _) = TargetAddr::decode_checked(&frame, 3);
        Ok(Some(Self { code, bound }))
    }

    /// Appends the encoding to `dst`.
    ///
    /// # Panics
    ///
    /// If a domain name is longer than 255 bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_slice(&[VERSION, self.code as u8, 0]);
        self.bound.encode(dst);
    }
}

//! Error types shared by the protocol state machines.

/// A message could not be decoded. "Need more bytes" is never an error (decoders return
/// `Ok(None)` for that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The version byte is not the one this message carries.
    #[error("unsupported version {0:#04x}")]
    UnsupportedVersion(u8),
    /// The SOCKS5 address type is not IPv4 (1), domain name (3) or IPv6 (4).
    #[error("unsupported address type {0:#04x}")]
    BadAddressType(u8),
    /// A field that must not be empty is empty.
    #[error("empty field")]
    EmptyField,
    /// The admin TYPE byte is unknown.
    #[error("unknown request type {0:#04x}")]
    UnknownType(u8),
    /// The admin CMD byte is unknown for its TYPE.
    #[error("unknown command {cmd:#04x} for type {ty:#04x}")]
    UnknownCommand {
        /// The (known) TYPE byte.
        ty: u8,
        /// The unknown CMD byte.
        cmd: u8,
    },
    /// The SOCKS5 command byte is not CONNECT, BIND or UDP ASSOCIATE.
    #[error("unknown SOCKS command {0:#04x}")]
    UnknownSocksCommand(u8),
    /// A reserved byte is not zero.
    #[error("reserved byte is {0:#04x}, not zero")]
    Reserved(u8),
    /// A field is longer than allowed.
    #[error("field of {len} bytes, at most {max} allowed")]
    TooLong {
        /// The length found.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// A field has a value outside its range.
    #[error("invalid value {0:#04x}")]
    InvalidValue(u8),
}

/// The peer broke the protocol; the session answered what the protocol says and is closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A message could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Authentication failed (unknown user, wrong password, or not allowed).
    #[error("authentication failed")]
    AuthFailed,
    /// No authentication method offered by the client is acceptable.
    #[error("no acceptable authentication method")]
    NoAcceptableMethod,
    /// The peer sent more bytes than the largest message without completing one.
    #[error("input limit exceeded")]
    InputLimit,
    /// The peer sent bytes when none were expected.
    #[error("unexpected message")]
    UnexpectedMessage,
}

/// Why a session closed, carried by its `Closed` event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer broke the protocol.
    Peer(ProtocolError),
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The connection was idle for longer than the connection timeout.
    IdleTimeout,
    /// The peer closed its side.
    PeerEof,
    /// The user of this connection was removed by an administrator.
    UserRemoved,
    /// The SOCKS request failed; the reply carried this code.
    RequestFailed(u8),
    /// The session is done by the protocol's own rules.
    Done,
}

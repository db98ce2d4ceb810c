//! Typed messages of the administration protocol, after authentication (draft §3 to §5).
//!
//! Requests have one wire format in both dialects (PROTOCOL.md gives Get User Total Current
//! Connections its `ULEN UNAME` in both, and both dialects accept both CMD codes of the two
//! renumbered queries), so [`AdminRequest`] is decoded and encoded without a [`Dialect`]; the
//! CMD code a request used is kept in it, because its response must echo it.
//!
//! Responses differ per dialect (counter widths, the PRIVILEGE byte of List Users), so
//! [`AdminResponse`] takes the dialect, and its decoder also takes the request it answers:
//! a response does not say how wide its RESPONSE field is.
//!
//! Decoding never allocates except for [`AdminResponse::Users`]; names are zero-copy slices of
//! the input (`frame.slice(..)`).

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Dialect;
use crate::codec::{put_lv, Check};
use crate::error::DecodeError;
use crate::state::{Mutation, Outcome, Privilege};

/// TYPE of a query (draft §3).
pub const TYPE_QUERY: u8 = 0x00;
/// TYPE of a modification (draft §3).
pub const TYPE_MODIFY: u8 = 0x01;
/// TYPE and CMD value of the error replies (final §3): `FF FF` for an unknown TYPE, `TYPE FF`
/// for an unknown CMD.
pub const INVALID: u8 = 0xFF;
/// CMD of the final revision's query error reply `00 FE STATUS` (final §5.2.13).
pub const CMD_QUERY_ERROR: u8 = 0xFE;
/// STATUS of a query error: invalid parameter (final §5.2.13).
pub const QUERY_ERROR_INVALID_PARAMETER: u8 = 0xFE;
/// STATUS of a query error: general server error (final §5.2.13).
pub const QUERY_ERROR_GENERAL: u8 = 0xFF;

/// The known TYPE values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum RequestType {
    /// `0x00`: data retrieval.
    Query = TYPE_QUERY,
    /// `0x01`: changes the server's configuration.
    Modify = TYPE_MODIFY,
}

/// A request (draft §3): `TYPE CMD` and the command's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum AdminRequest {
    /// TYPE `0x00`.
    Query(Query),
    /// TYPE `0x01`.
    Modify(Modify),
}

/// A query request (draft §5.1): `TYPE CMD`, except Get User Total Current Connections,
/// which is `TYPE CMD ULEN UNAME` (final §5.1.12, PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Query {
    /// `0x00` List Users.
    ListUsers,
    /// `0x01` Get Total Historic Connections.
    HistoricConnections,
    /// `0x02` Get Current Connections.
    CurrentConnections,
    /// `0x03` Get Max. Concurrent Connections.
    MaxConcurrentConnections,
    /// `0x04` Get Total Sent Bytes.
    BytesSent,
    /// `0x05` Get Total Received Bytes.
    BytesReceived,
    /// `0x06` Get Number of Users Connected.
    UsersConnected,
    /// `0x07` Get Total User Count.
    UserCount,
    /// `0x08` Get I/O Buffer Sizes.
    BufferSize,
    /// `0x09` Get Selector Timeout.
    SelectorTimeout,
    /// Get Connection Timeout: CMD `0x10` ([`Dialect::Draft`] numbering) or `0x0A`
    /// ([`Dialect::Final`] numbering); both dialects accept both.
    ConnectionTimeout(Dialect),
    /// Get User Total Current Connections: CMD `0x11` ([`Dialect::Draft`] numbering) or `0x0B`
    /// ([`Dialect::Final`]), then `ULEN UNAME`.
    UserConnections {
        /// Which numbering the CMD byte used.
        cmd: Dialect,
        /// UNAME, as sent (possibly empty or invalid; the session answers that).
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        name: Bytes,
    },
}

/// A modification request (draft §4.1). Enumerated fields are kept as raw wire bytes so that
/// an invalid value can be answered with the dialect's status.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Modify {
    /// `0x00` Add User: `ULEN UNAME PLEN PASSWD PRIVILEGE`.
    AddUser {
        /// UNAME, as sent.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        name: Bytes,
        /// PASSWD, as sent.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        password: Bytes,
        /// PRIVILEGE byte: `0x00` user, `0x01` administrator, anything else invalid.
        privilege: u8,
    },
    /// `0x01` Remove User: `ULEN UNAME`.
    RemoveUser {
        /// UNAME, as sent.
        #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
        name: Bytes,
    },
    /// `0x02` Enable/Disable Password Spoofing: ACTION byte (`0x00` off, `0x01` on).
    SetSniffing(u8),
    /// `0x03` Enable/Disable Connection Clean-up Routine: ACTION byte.
    SetCleanup(u8),
    /// `0x04` Set I/O Buffer Sizes: BUFSIZE, 4 bytes in network order.
    SetBufferSize(u32),
    /// `0x05` Set Selector Timeout: seconds.
    SetSelectorTimeout(u8),
    /// `0x06` Set Connection Timeout: seconds.
    SetConnectionTimeout(u8),
}

/// The CMD of a modification, without its arguments; the status of its response depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum ModifyCmd {
    /// `0x00` Add User.
    AddUser = 0x00,
    /// `0x01` Remove User.
    RemoveUser = 0x01,
    /// `0x02` Enable/Disable Password Spoofing.
    SetSniffing = 0x02,
    /// `0x03` Enable/Disable Connection Clean-up Routine.
    SetCleanup = 0x03,
    /// `0x04` Set I/O Buffer Sizes.
    SetBufferSize = 0x04,
    /// `0x05` Set Selector Timeout.
    SetSelectorTimeout = 0x05,
    /// `0x06` Set Connection Timeout.
    SetConnectionTimeout = 0x06,
}

/// The CMD of a query answered by one unsigned number; it fixes the number's width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ValueCmd {
    /// `0x01`.
    HistoricConnections,
    /// `0x02`.
    CurrentConnections,
    /// `0x03`.
    MaxConcurrentConnections,
    /// `0x04`.
    BytesSent,
    /// `0x05`.
    BytesReceived,
    /// `0x06`.
    UsersConnected,
    /// `0x07`.
    UserCount,
    /// `0x08`.
    BufferSize,
    /// `0x09`.
    SelectorTimeout,
    /// `0x10` (draft numbering) or `0x0A` (final numbering).
    ConnectionTimeout(Dialect),
    /// `0x11` (draft numbering) or `0x0B` (final numbering).
    UserConnections(Dialect),
}

impl ValueCmd {
    /// Returns the CMD byte.
    pub fn cmd(self) -> u8 {
        match self {
            Self::HistoricConnections => 0x01,
            Self::CurrentConnections => 0x02,
            Self::MaxConcurrentConnections => 0x03,
            Self::BytesSent => 0x04,
            Self::BytesReceived => 0x05,
            Self::UsersConnected => 0x06,
            Self::UserCount => 0x07,
            Self::BufferSize => 0x08,
            Self::SelectorTimeout => 0x09,
            Self::ConnectionTimeout(Dialect::Draft) => 0x10,
            Self::ConnectionTimeout(Dialect::Final) => 0x0A,
            Self::UserConnections(Dialect::Draft) => 0x11,
            Self::UserConnections(Dialect::Final) => 0x0B,
        }
    }

    /// Returns the width in bytes of the RESPONSE field in `dialect` (the PROTOCOL.md table).
    pub fn width(self, dialect: Dialect) -> usize {
        match (self, dialect) {
            (Self::HistoricConnections | Self::BytesSent | Self::BytesReceived, _)
            | (Self::UsersConnected, Dialect::Draft) => 8,
            (Self::BufferSize, _) => 4,
            (Self::CurrentConnections | Self::MaxConcurrentConnections, _)
            | (Self::UserConnections(_), Dialect::Final) => 2,
            (
                Self::UserCount
                | Self::SelectorTimeout
                | Self::ConnectionTimeout(_)
                | Self::UsersConnected
                | Self::UserConnections(_),
                _,
            ) => 1,
        }
    }
}

impl Query {
    /// Returns the CMD byte this request uses.
    pub fn cmd(&self) -> u8 {
        match self.value_cmd() {
            None => 0x00,
            Some(v) => v.cmd(),
        }
    }

    /// Returns the CMD of the numeric answer, `None` for List Users.
    pub fn value_cmd(&self) -> Option<ValueCmd> {
        Some(match self {
            Self::ListUsers => return None,
            Self::HistoricConnections => ValueCmd::HistoricConnections,
            Self::CurrentConnections => ValueCmd::CurrentConnections,
            Self::MaxConcurrentConnections => ValueCmd::MaxConcurrentConnections,
            Self::BytesSent => ValueCmd::BytesSent,
            Self::BytesReceived => ValueCmd::BytesReceived,
            Self::UsersConnected => ValueCmd::UsersConnected,
            Self::UserCount => ValueCmd::UserCount,
            Self::BufferSize => ValueCmd::BufferSize,
            Self::SelectorTimeout => ValueCmd::SelectorTimeout,
            Self::ConnectionTimeout(d) => ValueCmd::ConnectionTimeout(*d),
            Self::UserConnections { cmd, .. } => ValueCmd::UserConnections(*cmd),
        })
    }
}

impl ModifyCmd {
    /// Returns the STATUS byte for `outcome` in `dialect` (draft §4.2 and the PROTOCOL.md table).
    ///
    /// `0xFF` (General Server Error) is returned for outcomes a command cannot have.
    pub fn status(self, dialect: Dialect, outcome: Outcome) -> u8 {
        use Dialect::{Draft, Final};
        match (self, outcome, dialect) {
            (_, Outcome::Applied, _) => 0x00,
            (Self::AddUser, Outcome::NameTaken, _) | (Self::RemoveUser, Outcome::NoSuchUser, _) => {
                0x01
            }
            (Self::AddUser, Outcome::TooManyUsers, Draft) => 0xFF,
            (Self::AddUser, Outcome::TooManyUsers, Final) => 0x02,
            (Self::AddUser | Self::RemoveUser, Outcome::InvalidParameter, Draft) => 0x02,
            (Self::AddUser | Self::RemoveUser, Outcome::InvalidParameter, Final) => 0xFE,
            // "50..=1 048 576 bytes, else STATUS 0x01 (zero included)"; timeouts "1..=255, else
            // 0x01" (PROTOCOL.md, both dialects).
            (
                Self::SetBufferSize | Self::SetSelectorTimeout | Self::SetConnectionTimeout,
                Outcome::InvalidParameter,
                _,
            ) => 0x01,
            (Self::SetSniffing | Self::SetCleanup, Outcome::InvalidParameter, Draft) => 0xFF,
            (Self::SetSniffing | Self::SetCleanup, Outcome::InvalidParameter, Final) => 0xFE,
            _ => 0xFF,
        }
    }

    /// Returns what a STATUS byte received in `dialect` means: the inverse of
    /// [`status`](Self::status), for clients. `None` for General Server Error (`0xFF`, except
    /// where the draft uses it for "255 users already") and for values this command does not
    /// define.
    pub fn outcome(self, dialect: Dialect, status: u8) -> Option<Outcome> {
        use Dialect::{Draft, Final};
        Some(match (self, status, dialect) {
            (_, 0x00, _) => Outcome::Applied,
            (Self::AddUser, 0x01, _) => Outcome::NameTaken,
            (Self::RemoveUser, 0x01, _) => Outcome::NoSuchUser,
            (Self::AddUser, 0xFF, Draft) | (Self::AddUser, 0x02, Final) => Outcome::TooManyUsers,
            (Self::AddUser | Self::RemoveUser, 0x02, Draft)
            | (
                Self::SetBufferSize | Self::SetSelectorTimeout | Self::SetConnectionTimeout,
                0x01,
                _,
            )
            | (_, 0xFE, Final) => Outcome::InvalidParameter,
            _ => return None,
        })
    }
}

impl Modify {
    /// Returns the CMD of this modification.
    pub fn cmd(&self) -> ModifyCmd {
        match self {
            Self::AddUser { .. } => ModifyCmd::AddUser,
            Self::RemoveUser { .. } => ModifyCmd::RemoveUser,
            Self::SetSniffing(_) => ModifyCmd::SetSniffing,
            Self::SetCleanup(_) => ModifyCmd::SetCleanup,
            Self::SetBufferSize(_) => ModifyCmd::SetBufferSize,
            Self::SetSelectorTimeout(_) => ModifyCmd::SetSelectorTimeout,
            Self::SetConnectionTimeout(_) => ModifyCmd::SetConnectionTimeout,
        }
    }

    /// Converts to the typed [`Mutation`]; `None` if an enumerated wire value (PRIVILEGE,
    /// ACTION) is out of range. Range checks of everything else are [`State::apply`]'s.
    ///
    /// [`State::apply`]: crate::state::State::apply
    pub fn to_mutation(&self) -> Option<Mutation> {
        let toggle = |action: u8| match action {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        Some(match self {
            Self::AddUser {
                name,
                password,
                privilege,
            } => Mutation::AddUser {
                name: name.clone(),
                password: password.clone(),
                privilege: Privilege::try_from(*privilege).ok()?,
            },
            Self::RemoveUser { name } => Mutation::RemoveUser { name: name.clone() },
            Self::SetSniffing(a) => Mutation::SetSniffing(toggle(*a)?),
            Self::SetCleanup(a) => Mutation::SetCleanup(toggle(*a)?),
            Self::SetBufferSize(n) => Mutation::SetBufferSize(*n),
            Self::SetSelectorTimeout(t) => Mutation::SetSelectorTimeout(*t),
            Self::SetConnectionTimeout(t) => Mutation::SetConnectionTimeout(*t),
        })
    }
}

impl AdminRequest {
    /// The longest request: Add User, `2 + (1 + 255) + (1 + 255) + 1` bytes.
    pub const MAX_LEN: usize = 515;

    /// Returns the TYPE.
    pub fn request_type(&self) -> RequestType {
        match self {
            Self::Query(_) => RequestType::Query,
            Self::Modify(_) => RequestType::Modify,
        }
    }

    /// Returns the CMD byte.
    pub fn cmd(&self) -> u8 {
        match self {
            Self::Query(q) => q.cmd(),
            Self::Modify(m) => m.cmd() as u8,
        }
    }

    /// Returns the length of the complete request at the start of `src`, `None` if more bytes
    /// are needed. Does not allocate.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownType`] as soon as TYPE is neither `0x00` nor `0x01`;
    /// [`DecodeError::UnknownCommand`] as soon as CMD is unknown for its TYPE. Both dialects
    /// accept `0x0A`/`0x10` and `0x0B`/`0x11`.
    pub fn check(src: &[u8]) -> Result<Option<usize>, DecodeError> {
        let mut c = Check::new(src);
        let Some(ty) = c.u8() else { return Ok(None) };
        if ty > TYPE_MODIFY {
            return Err(DecodeError::UnknownType(ty));
        }
        let Some(cmd) = c.u8() else { return Ok(None) };
        let complete = match (ty, cmd) {
            (TYPE_QUERY, 0x00..=0x0A | 0x10) => true,
            (TYPE_QUERY, 0x0B | 0x11) | (TYPE_MODIFY, 0x01) => c.lv().is_some(),
            (TYPE_MODIFY, 0x00) => c.lv().is_some() && c.lv().is_some() && c.u8().is_some(),
            (TYPE_MODIFY, 0x02 | 0x03 | 0x05 | 0x06) => c.u8().is_some(),
            (TYPE_MODIFY, 0x04) => c.take(4).is_some(),
            _ => return Err(DecodeError::UnknownCommand { ty, cmd }),
        };
        Ok(complete.then(|| c.pos()))
    }

    /// Decodes one request from the front of `src`, consuming it; `Ok(None)` leaves `src`
    /// untouched. Names are zero-copy slices of `src`'s buffer.
    ///
    /// # Errors
    ///
    /// See [`check`](Self::check); on error `src` is left untouched.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        let Some(len) = Self::check(src)? else {
            return Ok(None);
        };
        Ok(Some(Self::decode_checked(src, len)))
    }

    /// Decodes the request of `len` bytes (as returned by [`check`](Self::check)) at the front
    /// of `src` and consumes it.
    pub(crate) fn decode_checked(src: &mut BytesMut, len: usize) -> Self {
        // Only requests that carry names take the frame as `Bytes`; the rest just advance, so
        // the common fixed-size requests cost no reference-count traffic.
        let lv1 = |f: &[u8]| 3..3 + usize::from(f[2]);
        let req = match (src[0], src[1]) {
            (TYPE_QUERY, cmd @ (0x0B | 0x11)) => {
                let frame = src.split_to(len).freeze();
                return Self::Query(Query::UserConnections {
                    cmd: if cmd == 0x11 {
                        Dialect::Draft
                    } else {
                        Dialect::Final
                    },
                    name: frame.slice(lv1(&frame)),
                });
            }
            (TYPE_MODIFY, 0x00) => {
                let frame = src.split_to(len).freeze();
                let name: Range<usize> = lv1(&frame);
                let plen = usize::from(frame[name.end]);
                let pass = name.end + 1..name.end + 1 + plen;
                return Self::Modify(Modify::AddUser {
                    name: frame.slice(name),
                    privilege: frame[pass.end],
                    password: frame.slice(pass),
                });
            }
            (TYPE_MODIFY, 0x01) => {
                let frame = src.split_to(len).freeze();
                return Self::Modify(Modify::RemoveUser {
                    name: frame.slice(lv1(&frame)),
                });
            }
            (TYPE_QUERY, cmd) => Self::Query(match cmd {
                0x00 => Query::ListUsers,
                0x01 => Query::HistoricConnections,
                0x02 => Query::CurrentConnections,
                0x03 => Query::MaxConcurrentConnections,
                0x04 => Query::BytesSent,
                0x05 => Query::BytesReceived,
                0x06 => Query::UsersConnected,
                0x07 => Query::UserCount,
                0x08 => Query::BufferSize,
                0x09 => Query::SelectorTimeout,
                0x10 => Query::ConnectionTimeout(Dialect::Draft),
                _ => Query::ConnectionTimeout(Dialect::Final),
            }),
            (_, cmd) => Self::Modify(match cmd {
                0x02 => Modify::SetSniffing(src[2]),
                0x03 => Modify::SetCleanup(src[2]),
                0x04 => Modify::SetBufferSize(u32::from_be_bytes([src[2], src[3], src[4], src[5]])),
                0x05 => Modify::SetSelectorTimeout(src[2]),
                _ => Modify::SetConnectionTimeout(src[2]),
            }),
        };
        src.advance(len);
        req
    }

    /// Appends the encoding to `dst`.
    ///
    /// # Panics
    ///
    /// If a name or password is longer than 255 bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.request_type() as u8);
        dst.put_u8(self.cmd());
        match self {
            Self::Query(Query::UserConnections { name, .. })
            | Self::Modify(Modify::RemoveUser { name }) => put_lv(dst, name),
            Self::Query(_) => {}
            Self::Modify(Modify::AddUser {
                name,
                password,
                privilege,
            }) => {
                put_lv(dst, name);
                put_lv(dst, password);
                dst.put_u8(*privilege);
            }
            Self::Modify(
                Modify::SetSniffing(b)
                | Modify::SetCleanup(b)
                | Modify::SetSelectorTimeout(b)
                | Modify::SetConnectionTimeout(b),
            ) => dst.put_u8(*b),
            Self::Modify(Modify::SetBufferSize(n)) => dst.put_u32(*n),
        }
    }
}

/// One entry of a List Users response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ListedUser {
    /// UNAME.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::codec::arbitrary_field::<0>))]
    pub name: Bytes,
    /// PRIVILEGE: on the wire in [`Dialect::Final`] only, so `None` when decoded in
    /// [`Dialect::Draft`]. Encoding `None` in the final dialect writes `0x00`.
    pub privilege: Option<Privilege>,
}

/// A response (draft §4.2, §5.2; final §3, §5.2.13).
///
/// ```text
/// List Users   TYPE CMD USRLEN (ULEN UNAME [PRIVILEGE, final only])*
/// number       TYPE CMD RESPONSE (1, 2, 4 or 8 bytes, network order, per ValueCmd::width)
/// modification TYPE CMD STATUS
/// errors       FF FF | TYPE FF | 00 FE STATUS
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum AdminResponse {
    /// `00 00 USRLEN` and the users.
    Users(Vec<ListedUser>),
    /// `00 CMD RESPONSE`: the value, saturated to the field's width when encoded.
    Value {
        /// Which query (and so which CMD byte and width).
        cmd: ValueCmd,
        /// The value.
        value: u64,
    },
    /// `01 CMD STATUS`.
    Status {
        /// Which modification.
        cmd: ModifyCmd,
        /// STATUS (see [`ModifyCmd::status`]).
        status: u8,
    },
    /// `FF FF`: unknown TYPE.
    InvalidType,
    /// `TYPE FF`: known TYPE, unknown CMD.
    InvalidCommand {
        /// The TYPE of the request.
        ty: RequestType,
    },
    /// `00 FE STATUS`: the final revision's query error (an invalid field value in a query).
    QueryError {
        /// [`QUERY_ERROR_INVALID_PARAMETER`] or [`QUERY_ERROR_GENERAL`].
        status: u8,
    },
}

/// Appends a List Users response for `users` to `dst`. USRLEN is one byte: at most 255 users
/// are written (the state never holds more).
///
/// # Panics
///
/// If a name is longer than 255 bytes.
pub(crate) fn encode_users<'a>(
    dialect: Dialect,
    users: impl ExactSizeIterator<Item = (&'a [u8], Option<Privilege>)>,
    dst: &mut impl BufMut,
) {
    dst.put_u8(TYPE_QUERY);
    dst.put_u8(0x00);
    let n = users.len().min(255);
    dst.put_u8(n as u8);
    for (name, privilege) in users.take(n) {
        put_lv(dst, name);
        if dialect == Dialect::Final {
            dst.put_u8(privilege.map_or(0, |p| p as u8));
        }
    }
}

impl AdminResponse {
    /// The longest response: List Users in the final dialect, `3 + 255 * (1 + 255 + 1)` bytes.
    pub const MAX_LEN: usize = 3 + 255 * 257;

    /// Returns the length of the complete response to `request` at the start of `src`, `None`
    /// if more bytes are needed.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownType`] / [`DecodeError::UnknownCommand`] if TYPE / CMD match
    /// neither `request` nor an error reply; [`DecodeError::InvalidValue`] for a PRIVILEGE byte
    /// other than `0x00`/`0x01` in a final-dialect user list.
    pub fn check(
        src: &[u8],
        dialect: Dialect,
        request: &AdminRequest,
    ) -> Result<Option<usize>, DecodeError> {
        let mut c = Check::new(src);
        let Some(ty) = c.u8() else { return Ok(None) };
        let expected_ty = request.request_type() as u8;
        if ty != expected_ty && ty != INVALID {
            return Err(DecodeError::UnknownType(ty));
        }
        let Some(cmd) = c.u8() else { return Ok(None) };
        if cmd == INVALID {
            return Ok(Some(2));
        }
        if ty == INVALID {
            return Err(DecodeError::UnknownCommand { ty, cmd });
        }
        if ty == TYPE_QUERY && cmd == CMD_QUERY_ERROR {
            return Ok(c.u8().map(|_| 3));
        }
        if cmd != request.cmd() {
            return Err(DecodeError::UnknownCommand { ty, cmd });
        }
        let complete = match request {
            AdminRequest::Modify(_) => c.u8().is_some(),
            AdminRequest::Query(q) => match q.value_cmd() {
                Some(v) => c.take(v.width(dialect)).is_some(),
                None => {
                    let Some(n) = c.u8() else { return Ok(None) };
                    for _ in 0..n {
                        if c.lv().is_none() {
                            return Ok(None);
                        }
                        if dialect == Dialect::Final {
                            let Some(p) = c.u8() else { return Ok(None) };
                            if Privilege::try_from(p).is_err() {
                                return Err(DecodeError::InvalidValue(p));
                            }
                        }
                    }
                    true
                }
            },
        };
        Ok(complete.then(|| c.pos()))
    }

    /// Decodes the response to `request` from the front of `src`, consuming it; `Ok(None)`
    /// leaves `src` untouched. `dialect` fixes the widths (PROTOCOL.md). Error replies
    /// (`FF FF`, `TYPE FF`, `00 FE STATUS`) are accepted in both dialects.
    ///
    /// # Errors
    ///
    /// See [`check`](Self::check); on error `src` is left untouched.
    pub fn decode(
        src: &mut BytesMut,
        dialect: Dialect,
        request: &AdminRequest,
    ) -> Result<Option<Self>, DecodeError> {
        let Some(len) = Self::check(src, dialect, request)? else {
            return Ok(None);
        };
        let (ty, cmd) = (src[0], src[1]);
        let resp = if cmd == INVALID {
            match ty {
                TYPE_QUERY => Self::InvalidCommand {
                    ty: RequestType::Query,
                },
                TYPE_MODIFY => Self::InvalidCommand {
                    ty: RequestType::Modify,
                },
                _ => Self::InvalidType,
            }
        } else if ty == TYPE_QUERY && cmd == CMD_QUERY_ERROR {
            Self::QueryError { status: src[2] }
        } else {
            match request {
                AdminRequest::Modify(m) => Self::Status {
                    cmd: m.cmd(),
                    status: src[2],
                },
                AdminRequest::Query(q) => match q.value_cmd() {
                    Some(v) => Self::Value {
                        cmd: v,
                        value: src[2..len]
                            .iter()
                            .fold(0, |acc, &b| acc << 8 | u64::from(b)),
                    },
                    None => {
                        let frame = src.split_to(len).freeze();
                        let mut users = Vec::with_capacity(usize::from(frame[2]));
                        let mut pos = 3;
                        for _ in 0..frame[2] {
                            let end = pos + 1 + usize::from(frame[pos]);
                            let name = frame.slice(pos + 1..end);
                            pos = end;
                            let privilege = if dialect == Dialect::Final {
                                pos += 1;
                                Privilege::try_from(frame[end]).ok()
                            } else {
                                None
                            };
                            users.push(ListedUser { name, privilege });
                        }
                        return Ok(Some(Self::Users(users)));
                    }
                },
            }
        };
        src.advance(len);
        Ok(Some(resp))
    }

    /// Appends the encoding in `dialect` to `dst`. Values wider than their field are saturated
    /// (the field's maximum is sent).
    ///
    /// # Panics
    ///
    /// If a listed name is longer than 255 bytes.
    pub fn encode(&self, dialect: Dialect, dst: &mut impl BufMut) {
        match self {
            Self::Users(users) => encode_users(
                dialect,
                users.iter().map(|u| (&u.name[..], u.privilege)),
                dst,
            ),
            Self::Value { cmd, value } => {
                dst.put_u8(TYPE_QUERY);
                dst.put_u8(cmd.cmd());
                let width = cmd.width(dialect);
                let max = if width == 8 {
                    u64::MAX
                } else {
                    (1 << (8 * width)) - 1
                };
                dst.put_uint((*value).min(max), width);
            }
            Self::Status { cmd, status } => {
                dst.put_u8(TYPE_MODIFY);
                dst.put_u8(*cmd as u8);
                dst.put_u8(*status);
            }
            Self::InvalidType => {
                dst.put_u8(INVALID);
                dst.put_u8(INVALID);
            }
            Self::InvalidCommand { ty } => {
                dst.put_u8(*ty as u8);
                dst.put_u8(INVALID);
            }
            Self::QueryError { status } => {
                dst.put_u8(TYPE_QUERY);
                dst.put_u8(CMD_QUERY_ERROR);
                dst.put_u8(*status);
            }
        }
    }
}

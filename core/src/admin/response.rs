//! Responses (draft §4.2, §5.2; final §3, §5.2.13): [`AdminResponse`] and the CMD types that
//! fix a response's shape, [`ValueCmd`] and [`ModifyCmd`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::command::{
    Command, RequestType, CMD_QUERY_ERROR, INVALID, STATUS_GENERAL_ERROR, TYPE_MODIFY, TYPE_QUERY,
};
use super::request::{AdminRequest, Query};
use super::Dialect;
use crate::codec::{put_lv, Check};
use crate::error::DecodeError;
use crate::state::{Outcome, Privilege};

/// The CMD of a modification, without its arguments; the status of its response depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ModifyCmd {
    /// `0x00` Add User.
    AddUser,
    /// `0x01` Remove User.
    RemoveUser,
    /// `0x02` Enable/Disable Password Spoofing.
    SetSniffing,
    /// `0x03` Enable/Disable Connection Clean-up Routine.
    SetCleanup,
    /// `0x04` Set I/O Buffer Sizes.
    SetBufferSize,
    /// `0x05` Set Selector Timeout.
    SetSelectorTimeout,
    /// `0x06` Set Connection Timeout.
    SetConnectionTimeout,
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
    /// Returns the command (for the CMD byte, see [`Command::cmd`]).
    pub fn command(self) -> Command {
        use Dialect::{Draft, Final};
        match self {
            Self::HistoricConnections => Command::HistoricConnections,
            Self::CurrentConnections => Command::CurrentConnections,
            Self::MaxConcurrentConnections => Command::MaxConcurrentConnections,
            Self::BytesSent => Command::BytesSent,
            Self::BytesReceived => Command::BytesReceived,
            Self::UsersConnected => Command::UsersConnected,
            Self::UserCount => Command::UserCount,
            Self::BufferSize => Command::BufferSize,
            Self::SelectorTimeout => Command::SelectorTimeout,
            Self::ConnectionTimeout(Draft) => Command::ConnectionTimeoutDraft,
            Self::ConnectionTimeout(Final) => Command::ConnectionTimeoutFinal,
            Self::UserConnections(Draft) => Command::UserConnectionsDraft,
            Self::UserConnections(Final) => Command::UserConnectionsFinal,
        }
    }

    /// Returns the CMD byte.
    pub fn cmd(self) -> u8 {
        self.command().cmd()
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

    /// Returns the largest value the field holds in `dialect` (larger values saturate).
    pub fn max_value(self, dialect: Dialect) -> u64 {
        u64::MAX >> (64 - 8 * self.width(dialect))
    }
}

impl Query {
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
    /// Returns the command.
    pub fn command(self) -> Command {
        match self {
            Self::AddUser => Command::AddUser,
            Self::RemoveUser => Command::RemoveUser,
            Self::SetSniffing => Command::SetSniffing,
            Self::SetCleanup => Command::SetCleanup,
            Self::SetBufferSize => Command::SetBufferSize,
            Self::SetSelectorTimeout => Command::SetSelectorTimeout,
            Self::SetConnectionTimeout => Command::SetConnectionTimeout,
        }
    }

    /// Returns the CMD byte.
    pub fn cmd(self) -> u8 {
        self.command().cmd()
    }

    /// Returns the STATUS byte for `outcome` in `dialect` (draft §4.2 and the PROTOCOL.md table).
    ///
    /// [`Outcome::Failed`], and outcomes a command cannot have, are General Server Error
    /// (`0xFF`).
    pub fn status(self, dialect: Dialect, outcome: Outcome) -> u8 {
        use Outcome as O;
        let by_dialect = |draft: u8, final_: u8| match dialect {
            Dialect::Draft => draft,
            Dialect::Final => final_,
        };
        const GENERAL: u8 = STATUS_GENERAL_ERROR;
        match self {
            Self::AddUser => match outcome {
                O::Applied => 0x00,
                O::NameTaken => 0x01,
                O::TooManyUsers => by_dialect(0xFF, 0x02),
                O::InvalidParameter => by_dialect(0x02, 0xFE),
                O::NoSuchUser | O::Failed => GENERAL,
            },
            Self::RemoveUser => match outcome {
                O::Applied => 0x00,
                O::NoSuchUser => 0x01,
                O::InvalidParameter => by_dialect(0x02, 0xFE),
                O::NameTaken | O::TooManyUsers | O::Failed => GENERAL,
            },
            Self::SetSniffing | Self::SetCleanup => match outcome {
                O::Applied => 0x00,
                // "toggles: ACTION > 1": draft 0xFF, final 0xFE.
                O::InvalidParameter => by_dialect(0xFF, 0xFE),
                O::NameTaken | O::NoSuchUser | O::TooManyUsers | O::Failed => GENERAL,
            },
            Self::SetBufferSize | Self::SetSelectorTimeout | Self::SetConnectionTimeout => {
                match outcome {
                    O::Applied => 0x00,
                    // "50..=1 048 576 bytes, else STATUS 0x01 (zero included)"; timeouts
                    // "1..=255, else 0x01" (PROTOCOL.md, both dialects).
                    O::InvalidParameter => 0x01,
                    O::NameTaken | O::NoSuchUser | O::TooManyUsers | O::Failed => GENERAL,
                }
            }
        }
    }

    /// Returns what a STATUS byte received in `dialect` means: the inverse of
    /// [`status`](Self::status), for clients. `0xFF` is [`Outcome::Failed`] (General Server
    /// Error), except where the draft uses it for "255 users already"; `None` for values this
    /// command does not define.
    pub fn outcome(self, dialect: Dialect, status: u8) -> Option<Outcome> {
        use Dialect::{Draft, Final};
        use Outcome as O;
        if status == 0x00 {
            return Some(O::Applied);
        }
        let general = (status == STATUS_GENERAL_ERROR).then_some(O::Failed);
        match (self, dialect, status) {
            (Self::AddUser, _, 0x01) => Some(O::NameTaken),
            (Self::AddUser, Draft, 0xFF) | (Self::AddUser, Final, 0x02) => Some(O::TooManyUsers),
            (Self::AddUser | Self::RemoveUser, Draft, 0x02)
            | (Self::AddUser | Self::RemoveUser, Final, 0xFE) => Some(O::InvalidParameter),
            (Self::AddUser, Draft | Final, 0x00..=0xFF) => general,
            (Self::RemoveUser, _, 0x01) => Some(O::NoSuchUser),
            (Self::RemoveUser, Draft | Final, 0x00..=0xFF) => general,
            (Self::SetSniffing | Self::SetCleanup, Final, 0xFE) => Some(O::InvalidParameter),
            (Self::SetSniffing | Self::SetCleanup, Draft, 0xFF) => Some(O::InvalidParameter),
            (Self::SetSniffing | Self::SetCleanup, Draft | Final, 0x00..=0xFF) => general,
            (
                Self::SetBufferSize | Self::SetSelectorTimeout | Self::SetConnectionTimeout,
                _,
                0x01,
            ) => Some(O::InvalidParameter),
            (
                Self::SetBufferSize | Self::SetSelectorTimeout | Self::SetConnectionTimeout,
                Draft | Final,
                0x00..=0xFF,
            ) => general,
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
        /// [`QUERY_ERROR_INVALID_PARAMETER`](super::command::QUERY_ERROR_INVALID_PARAMETER) or
        /// [`QUERY_ERROR_GENERAL`](super::command::QUERY_ERROR_GENERAL).
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
                0x02..=0xFF => Self::InvalidType,
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
                dst.put_uint((*value).min(cmd.max_value(dialect)), cmd.width(dialect));
            }
            Self::Status { cmd, status } => {
                dst.put_u8(TYPE_MODIFY);
                dst.put_u8(cmd.cmd());
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

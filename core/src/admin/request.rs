//! Requests (draft §4.1, §5.1): [`AdminRequest`], [`Query`], [`Modify`] and their codec.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::command::{Args, Command, RequestType};
use super::response::ModifyCmd;
use super::Dialect;
use crate::codec::{put_lv, Check};
use crate::error::DecodeError;
use crate::state::{Mutation, Privilege, Secret};

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
/// an invalid value can be answered with the dialect's status. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Hash)]
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

impl fmt::Debug for Modify {
    // By hand, so that a logged request never shows a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddUser {
                name, privilege, ..
            } => f
                .debug_struct("AddUser")
                .field("name", name)
                .field("password", &Secret::default())
                .field("privilege", privilege)
                .finish(),
            Self::RemoveUser { name } => f.debug_struct("RemoveUser").field("name", name).finish(),
            Self::SetSniffing(v) => f.debug_tuple("SetSniffing").field(v).finish(),
            Self::SetCleanup(v) => f.debug_tuple("SetCleanup").field(v).finish(),
            Self::SetBufferSize(v) => f.debug_tuple("SetBufferSize").field(v).finish(),
            Self::SetSelectorTimeout(v) => f.debug_tuple("SetSelectorTimeout").field(v).finish(),
            Self::SetConnectionTimeout(v) => {
                f.debug_tuple("SetConnectionTimeout").field(v).finish()
            }
        }
    }
}

impl Query {
    /// Returns the command (the CMD alias this request used, for the renumbered ones).
    pub fn command(&self) -> Command {
        use Dialect::{Draft, Final};
        match self {
            Self::ListUsers => Command::ListUsers,
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
            Self::UserConnections { cmd: Draft, .. } => Command::UserConnectionsDraft,
            Self::UserConnections { cmd: Final, .. } => Command::UserConnectionsFinal,
        }
    }

    /// Returns the CMD byte this request uses.
    pub fn cmd(&self) -> u8 {
        self.command().cmd()
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
            2..=u8::MAX => None,
        };
        Some(match self {
            Self::AddUser {
                name,
                password,
                privilege,
            } => Mutation::AddUser {
                name: name.clone(),
                password: Secret::new(password.clone()),
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
    pub const MAX_LEN: usize = Command::MAX_REQUEST_LEN;

    /// Returns the command.
    pub fn command(&self) -> Command {
        match self {
            Self::Query(q) => q.command(),
            Self::Modify(m) => m.cmd().command(),
        }
    }

    /// Returns the TYPE.
    pub fn request_type(&self) -> RequestType {
        self.command().request_type()
    }

    /// Returns the CMD byte.
    pub fn cmd(&self) -> u8 {
        self.command().cmd()
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
        if ty > super::command::TYPE_MODIFY {
            return Err(DecodeError::UnknownType(ty));
        }
        let Some(cmd) = c.u8() else { return Ok(None) };
        let complete = match Command::from_code(ty, cmd)?.args() {
            Args::None => true,
            Args::Name => c.lv().is_some(),
            Args::AddUser => c.lv().is_some() && c.lv().is_some() && c.u8().is_some(),
            Args::Byte => c.u8().is_some(),
            Args::U32 => c.take(4).is_some(),
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
        use Dialect::{Draft, Final};
        let command = Command::from_code(src[0], src[1]).expect("checked request");
        // Only requests that carry names take the frame as `Bytes`; the rest just advance, so
        // the common fixed-size requests cost no reference-count traffic.
        let named = |src: &mut BytesMut| {
            let frame = src.split_to(len).freeze();
            let name = frame.slice(3..3 + usize::from(frame[2]));
            (frame, name)
        };
        let byte = |src: &mut BytesMut| {
            let b = src[2];
            src.advance(len);
            b
        };
        let none = |src: &mut BytesMut, q: Query| {
            src.advance(len);
            Self::Query(q)
        };
        match command {
            Command::ListUsers => none(src, Query::ListUsers),
            Command::HistoricConnections => none(src, Query::HistoricConnections),
            Command::CurrentConnections => none(src, Query::CurrentConnections),
            Command::MaxConcurrentConnections => none(src, Query::MaxConcurrentConnections),
            Command::BytesSent => none(src, Query::BytesSent),
            Command::BytesReceived => none(src, Query::BytesReceived),
            Command::UsersConnected => none(src, Query::UsersConnected),
            Command::UserCount => none(src, Query::UserCount),
            Command::BufferSize => none(src, Query::BufferSize),
            Command::SelectorTimeout => none(src, Query::SelectorTimeout),
            Command::ConnectionTimeoutDraft => none(src, Query::ConnectionTimeout(Draft)),
            Command::ConnectionTimeoutFinal => none(src, Query::ConnectionTimeout(Final)),
            Command::UserConnectionsDraft | Command::UserConnectionsFinal => {
                let cmd = if command == Command::UserConnectionsDraft {
                    Draft
                } else {
                    Final
                };
                Self::Query(Query::UserConnections {
                    cmd,
                    name: named(src).1,
                })
            }
            Command::AddUser => {
                let (frame, name) = named(src);
                let pass_at = 3 + name.len() + 1;
                let pass = pass_at..pass_at + usize::from(frame[pass_at - 1]);
                Self::Modify(Modify::AddUser {
                    name,
                    privilege: frame[pass.end],
                    password: frame.slice(pass),
                })
            }
            Command::RemoveUser => Self::Modify(Modify::RemoveUser { name: named(src).1 }),
            Command::SetSniffing => Self::Modify(Modify::SetSniffing(byte(src))),
            Command::SetCleanup => Self::Modify(Modify::SetCleanup(byte(src))),
            Command::SetBufferSize => {
                let n = u32::from_be_bytes([src[2], src[3], src[4], src[5]]);
                src.advance(len);
                Self::Modify(Modify::SetBufferSize(n))
            }
            Command::SetSelectorTimeout => Self::Modify(Modify::SetSelectorTimeout(byte(src))),
            Command::SetConnectionTimeout => Self::Modify(Modify::SetConnectionTimeout(byte(src))),
        }
    }

    /// Appends the encoding to `dst`.
    ///
    /// # Panics
    ///
    /// If a name or password is longer than 255 bytes.
    pub fn encode(&self, dst: &mut impl BufMut) {
        let command = self.command();
        dst.put_u8(command.request_type() as u8);
        dst.put_u8(command.cmd());
        match self {
            Self::Query(Query::UserConnections { name, .. })
            | Self::Modify(Modify::RemoveUser { name }) => put_lv(dst, name),
            Self::Query(
                Query::ListUsers
                | Query::HistoricConnections
                | Query::CurrentConnections
                | Query::MaxConcurrentConnections
                | Query::BytesSent
                | Query::BytesReceived
                | Query::UsersConnected
                | Query::UserCount
                | Query::BufferSize
                | Query::SelectorTimeout
                | Query::ConnectionTimeout(_),
            ) => {}
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

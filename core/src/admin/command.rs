//! The command table: every (TYPE, CMD) pair of the administration protocol, written once.
//!
//! [`Command`] has one variant per pair a request may carry, so the two renumbered queries
//! appear twice (draft and final numbering; both dialects accept both, PROTOCOL.md). The
//! `command_table!` invocation below is the only place where a CMD byte is tied to a
//! command; decoding looks the pair up in a table built from it at compile time (which also
//! rejects a pair given twice), and every conversion from [`Command`] to a typed message is an
//! exhaustive `match`, so a new command fails to compile until it is handled everywhere
//! rather than decoding as an old one.

use crate::error::DecodeError;

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
/// STATUS of a modification: General Server Error (draft §4.2).
pub const STATUS_GENERAL_ERROR: u8 = 0xFF;

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

/// What follows `TYPE CMD` in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Args {
    /// Nothing.
    None,
    /// `ULEN UNAME`.
    Name,
    /// `ULEN UNAME PLEN PASSWD PRIVILEGE` (Add User).
    AddUser,
    /// One byte (ACTION, or seconds).
    Byte,
    /// Four bytes in network order (BUFSIZE).
    U32,
}

impl Args {
    /// The longest argument bytes of this shape.
    pub const fn max_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::Name => 1 + 255,
            Self::AddUser => 2 * (1 + 255) + 1,
            Self::Byte => 1,
            Self::U32 => 4,
        }
    }
}

/// Defines [`Command`] and its table from one list of `Name = TYPE CMD Args;` lines.
macro_rules! command_table {
    ($( $(#[doc = $doc:literal])* $name:ident = $ty:ident $cmd:literal $args:ident; )*) => {
        /// One (TYPE, CMD) pair of a request: the command table, written once. Decoding looks
        /// pairs up in a table built from it; every conversion to a typed message is an
        /// exhaustive `match`, so a new command does not compile until it is handled.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        pub enum Command {
            $( $(#[doc = $doc])* $name, )*
        }

        impl Command {
            /// Every command, in table order.
            pub const ALL: &'static [Self] = &[$(Self::$name),*];

            /// Returns the TYPE.
            pub const fn request_type(self) -> RequestType {
                match self { $(Self::$name => RequestType::$ty,)* }
            }

            /// Returns the CMD byte.
            pub const fn cmd(self) -> u8 {
                match self { $(Self::$name => $cmd,)* }
            }

            /// Returns the shape of the arguments.
            pub const fn args(self) -> Args {
                match self { $(Self::$name => Args::$args,)* }
            }
        }
    };
}

command_table! {
    /// `00 00` List Users (draft §5.1.1).
    ListUsers = Query 0x00 None;
    /// `00 01` Get Total Historic Connections.
    HistoricConnections = Query 0x01 None;
    /// `00 02` Get Current Connections.
    CurrentConnections = Query 0x02 None;
    /// `00 03` Get Max. Concurrent Connections.
    MaxConcurrentConnections = Query 0x03 None;
    /// `00 04` Get Total Sent Bytes.
    BytesSent = Query 0x04 None;
    /// `00 05` Get Total Received Bytes.
    BytesReceived = Query 0x05 None;
    /// `00 06` Get Number of Users Connected.
    UsersConnected = Query 0x06 None;
    /// `00 07` Get Total User Count.
    UserCount = Query 0x07 None;
    /// `00 08` Get I/O Buffer Sizes.
    BufferSize = Query 0x08 None;
    /// `00 09` Get Selector Timeout.
    SelectorTimeout = Query 0x09 None;
    /// `00 10` Get Connection Timeout, draft numbering.
    ConnectionTimeoutDraft = Query 0x10 None;
    /// `00 0A` Get Connection Timeout, final numbering.
    ConnectionTimeoutFinal = Query 0x0A None;
    /// `00 11 ULEN UNAME` Get User Total Current Connections, draft numbering.
    UserConnectionsDraft = Query 0x11 Name;
    /// `00 0B ULEN UNAME` Get User Total Current Connections, final numbering.
    UserConnectionsFinal = Query 0x0B Name;
    /// `01 00 ULEN UNAME PLEN PASSWD PRIVILEGE` Add User (draft §4.1.1).
    AddUser = Modify 0x00 AddUser;
    /// `01 01 ULEN UNAME` Remove User.
    RemoveUser = Modify 0x01 Name;
    /// `01 02 ACTION` Enable/Disable Password Spoofing.
    SetSniffing = Modify 0x02 Byte;
    /// `01 03 ACTION` Enable/Disable Connection Clean-up Routine.
    SetCleanup = Modify 0x03 Byte;
    /// `01 04 BUFSIZE` Set I/O Buffer Sizes.
    SetBufferSize = Modify 0x04 U32;
    /// `01 05 SECONDS` Set Selector Timeout.
    SetSelectorTimeout = Modify 0x05 Byte;
    /// `01 06 SECONDS` Set Connection Timeout.
    SetConnectionTimeout = Modify 0x06 Byte;
}

/// (TYPE, CMD) to command, built from [`Command::ALL`] at compile time.
static LOOKUP: [[Option<Command>; 256]; 2] = build_lookup();

const fn build_lookup() -> [[Option<Command>; 256]; 2] {
    let mut table = [[None; 256]; 2];
    let mut i = 0;
    while i < Command::ALL.len() {
        let c = Command::ALL[i];
        let (ty, cmd) = (c.request_type() as usize, c.cmd() as usize);
        assert!(
            table[ty][cmd].is_none(),
            "a (TYPE, CMD) pair is in the table twice"
        );
        assert!(
            cmd != INVALID as usize,
            "CMD 0xFF is reserved for error replies"
        );
        assert!(
            !(ty == TYPE_QUERY as usize && cmd == CMD_QUERY_ERROR as usize),
            "CMD 0xFE of TYPE 0x00 is reserved for the query error reply"
        );
        table[ty][cmd] = Some(c);
        i += 1;
    }
    table
}

impl Command {
    /// The longest request of any command (Add User): `2 + (1 + 255) + (1 + 255) + 1` bytes.
    pub const MAX_REQUEST_LEN: usize = max_request_len();

    /// Returns the command of a request's TYPE and CMD bytes.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownType`] if TYPE is neither `0x00` nor `0x01`,
    /// [`DecodeError::UnknownCommand`] if CMD is not in the table for that TYPE.
    pub fn from_code(ty: u8, cmd: u8) -> Result<Self, DecodeError> {
        let row = LOOKUP
            .get(usize::from(ty))
            .ok_or(DecodeError::UnknownType(ty))?;
        row[usize::from(cmd)].ok_or(DecodeError::UnknownCommand { ty, cmd })
    }
}

const fn max_request_len() -> usize {
    let mut max = 0;
    let mut i = 0;
    while i < Command::ALL.len() {
        let n = 2 + Command::ALL[i].args().max_len();
        if n > max {
            max = n;
        }
        i += 1;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_decodes_to_its_command_and_nothing_else_does() {
        let mut known = 0;
        for ty in 0..=255u8 {
            for cmd in 0..=255u8 {
                match Command::from_code(ty, cmd) {
                    Ok(c) => {
                        assert_eq!((c.request_type() as u8, c.cmd()), (ty, cmd));
                        known += 1;
                    }
                    Err(DecodeError::UnknownType(t)) => {
                        assert!(ty > TYPE_MODIFY);
                        assert_eq!(t, ty);
                    }
                    Err(DecodeError::UnknownCommand { ty: t, cmd: c }) => {
                        assert!(ty <= TYPE_MODIFY);
                        assert_eq!((t, c), (ty, cmd));
                        assert!(!Command::ALL
                            .iter()
                            .any(|k| (k.request_type() as u8, k.cmd()) == (ty, cmd)));
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(known, Command::ALL.len());
        assert_eq!(
            Command::ALL.len(),
            21,
            "12 queries, 2 aliases, 7 modifications"
        );
    }

    #[test]
    fn both_aliases_of_the_renumbered_queries() {
        let code = |c: Command| (c.request_type() as u8, c.cmd());
        assert_eq!(code(Command::ConnectionTimeoutDraft), (0x00, 0x10));
        assert_eq!(code(Command::ConnectionTimeoutFinal), (0x00, 0x0A));
        assert_eq!(code(Command::UserConnectionsDraft), (0x00, 0x11));
        assert_eq!(code(Command::UserConnectionsFinal), (0x00, 0x0B));
        assert_eq!(Command::MAX_REQUEST_LEN, 515);
    }

    /// No `_ =>` arm matches on a command anywhere in the admin module: every match on
    /// [`Command`], the query and modification enums is exhaustive, so a new command cannot be
    /// served as an old one. (This reads the sources; the compiler checks the rest.)
    #[test]
    fn no_catch_all_arms_on_commands() {
        let sources = [
            ("command.rs", include_str!("command.rs")),
            ("request.rs", include_str!("request.rs")),
            ("response.rs", include_str!("response.rs")),
            ("session.rs", include_str!("session.rs")),
        ];
        for (file, src) in sources {
            // Only the code, not this test's own text.
            let code = src.split("#[cfg(test)]").next().unwrap_or(src);
            for (i, line) in code.lines().enumerate() {
                let t = line.trim_start();
                assert!(
                    !t.starts_with("_ =>") && !t.contains(" _ =>"),
                    "{file}:{}: catch-all arm: {line}",
                    i + 1
                );
            }
        }
    }
}

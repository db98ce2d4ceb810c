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
//!
//! The items live in three files: `command.rs` (the command table, [`Command`]),
//! `request.rs` and `response.rs`; this module gathers them under one path.
//!
//! [`Dialect`]: super::Dialect

pub use super::command::{
    Args, Command, RequestType, CMD_QUERY_ERROR, INVALID, QUERY_ERROR_GENERAL,
    QUERY_ERROR_INVALID_PARAMETER, STATUS_GENERAL_ERROR, TYPE_MODIFY, TYPE_QUERY,
};
pub use super::request::{AdminRequest, Modify, Query};
pub(crate) use super::response::encode_users;
pub use super::response::{AdminResponse, ListedUser, ModifyCmd, ValueCmd};

//! The access-log and credentials-log lines of PROTOCOL.md, as pure functions.
//!
//! SKELETON: signatures fixed, bodies to be written (issue 3).

use std::net::SocketAddr;
use std::time::Duration;

use crate::sniff::Credential;
use crate::socks5::{ReplyCode, TargetAddr};

/// Formats one access-log line (no trailing newline): time, user (`-` if anonymous), `A`,
/// source IP, source port, destination, destination port, reply code. `unix_time` is the
/// time since the Unix epoch.
pub fn access_line(
    _unix_time: Duration,
    _user: Option<&[u8]>,
    _source: SocketAddr,
    _target: &TargetAddr,
    _code: ReplyCode,
) -> String {
    todo!("issue 3")
}

/// Formats one credentials-log line (no trailing newline): time, user, `P`, protocol,
/// destination, destination port, captured user, captured password.
pub fn credential_line(
    _unix_time: Duration,
    _user: Option<&[u8]>,
    _target: &TargetAddr,
    _credential: &Credential,
) -> String {
    todo!("issue 3")
}

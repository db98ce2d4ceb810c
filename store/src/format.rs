//! The users file: one JSON object per line (documented in the crate docs).

use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{validate_user, Snapshot, StoreError, StoredSettings, StoredUser, MAX_USERS};

/// The `format` field of every users file.
const FORMAT_NAME: &str = "socks5d-users";
/// The newest format version this build reads, and the one it writes.
pub const FORMAT_VERSION: u64 = 1;
/// A users file larger than this, in bytes, is refused (255 users take about 40 KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    format_version: u64,
    version: u64,
    users: usize,
    #[serde(default)]
    settings: Settings,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sniffing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cleanup: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    buffer_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    selector_timeout: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connection_timeout: Option<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    name: String,
    hash: String,
    privilege: u8,
}

/// Writes `snap` in the users file format (the store file, the export).
///
/// # Errors
///
/// What `w` returns.
pub fn write_users(snap: &Snapshot, mut w: impl Write) -> io::Result<()> {
    w.write_all(&encode(snap))?;
    w.flush()
}

pub(crate) fn encode(snap: &Snapshot) -> Vec<u8> {
    let s = &snap.settings;
    let header = Header {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        version: snap.version,
        users: snap.users.len(),
        settings: Settings {
            sniffing: s.sniffing,
            cleanup: s.cleanup,
            buffer_size: s.buffer_size,
            selector_timeout: s.selector_timeout,
            connection_timeout: s.connection_timeout,
        },
    };
    // Serialising these plain structs cannot fail: no maps with non-string keys, no
    // fallible `Serialize` impls.
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    for u in &snap.users {
        let line = User {
            // Stored names are validated printable ASCII.
            name: String::from_utf8_lossy(&u.name).into_owned(),
            hash: u.hash.clone(),
            privilege: u.privilege,
        };
        out.extend(serde_json::to_vec(&line).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

/// Why a users file was refused.
pub(crate) enum ParseError {
    /// `format_version` above [`FORMAT_VERSION`].
    Newer(u64),
    /// Anything else: the 1-based line (0: the whole file) and a reason.
    Bad(usize, String),
}

/// Parses a users file. Every field is validated; nothing of a user line is echoed in the
/// reason except the line number (a hash is no password, but need not be printed either).
pub(crate) fn parse(bytes: &[u8]) -> Result<Snapshot, ParseError> {
    let bad = |line: usize, reason: String| ParseError::Bad(line, reason);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        bad(line, "not UTF-8".into())
    })?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err(bad(
            0,
            "empty, or the last line does not end with a newline".into(),
        ));
    };
    let mut lines = body.split('\n');
    let first = lines.next().unwrap_or_default();

    // The version first, before any field this version might not know.
    let value: serde_json::Value =
        serde_json::from_str(first).map_err(|e| bad(1, format!("header is not JSON ({e})")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(bad(
            1,
            format!("header has no \"format\":\"{FORMAT_NAME}\""),
        ));
    }
    let Some(format_version) = value.get("format_version").and_then(|v| v.as_u64()) else {
        return Err(bad(1, "header has no numeric format_version".into()));
    };
    if format_version > FORMAT_VERSION {
        return Err(ParseError::Newer(format_version));
    }
    if format_version != FORMAT_VERSION {
        return Err(bad(1, format!("unknown format_version {format_version}")));
    }
    let header: Header =
        serde_json::from_value(value).map_err(|e| bad(1, format!("bad header ({e})")))?;
    if header.users > MAX_USERS {
        return Err(bad(
            1,
            format!(
                "header announces {} users, at most {MAX_USERS}",
                header.users
            ),
        ));
    }
    let s = header.settings;
    let settings = StoredSettings {
        sniffing: s.sniffing,
        cleanup: s.cleanup,
        buffer_size: s.buffer_size,
        selector_timeout: s.selector_timeout,
        connection_timeout: s.connection_timeout,
    };
    settings
        .validate()
        .map_err(|e| bad(1, format!("bad setting: {e}")))?;

    let mut users = Vec::with_capacity(header.users);
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        if users.len() == header.users {
            return Err(bad(
                n,
                format!("more user lines than the {} announced", header.users),
            ));
        }
        let u: User = serde_json::from_str(line)
            .map_err(|e| bad(n, format!("not a user line ({})", describe(&e))))?;
        let user = StoredUser {
            name: u.name.into_bytes(),
            hash: u.hash,
            privilege: u.privilege,
        };
        validate_user(&user).map_err(|reason| bad(n, reason))?;
        if users.iter().any(|p: &StoredUser| p.name == user.name) {
            return Err(bad(n, format!("user {:?} appears twice", u_name(&user))));
        }
        users.push(user);
    }
    if users.len() != header.users {
        return Err(bad(
            0,
            format!(
                "{} user lines, the header announces {} (truncated?)",
                users.len(),
                header.users
            ),
        ));
    }
    Ok(Snapshot {
        users,
        settings,
        version: header.version,
    })
}

/// A serde_json error on a user line, without the offending input: only "missing field" and
/// "unknown field" messages (which quote field names) are kept whole; for the others, the
/// kind and the column, as a value could be a password pasted in the wrong place.
fn describe(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("missing field") || msg.starts_with("unknown field") {
        return msg;
    }
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "JSON syntax error",
        serde_json::error::Category::Data => "wrong value type or range",
        serde_json::error::Category::Eof => "unexpected end of line",
    };
    format!("{kind} at column {}", e.column())
}

fn u_name(u: &StoredUser) -> String {
    String::from_utf8_lossy(&u.name).into_owned()
}

/// Reads a users file at most [`MAX_FILE_BYTES`] long.
pub(crate) fn read_bounded(mut f: impl Read) -> io::Result<Result<Vec<u8>, ()>> {
    let mut buf = Vec::new();
    f.by_ref().take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    Ok(if buf.len() as u64 > MAX_FILE_BYTES {
        Err(())
    } else {
        Ok(buf)
    })
}

/// Reads and validates the users file at `path`, as written by
/// [`Store::export`](crate::Store::export) (a store file is one too). Apply it with
/// [`Change::Replace`](crate::Change::Replace).
///
/// # Errors
///
/// [`StoreError::Io`] if it cannot be read, [`StoreError::BadImport`] with the first bad line
/// if it is no valid users file (newer format versions included).
pub fn import(path: &Path) -> Result<Snapshot, StoreError> {
    let f = std::fs::File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let bad = |line, reason| StoreError::BadImport {
        path: path.into(),
        line,
        reason,
    };
    let bytes = read_bounded(f)
        .map_err(|e| StoreError::io("read", path, e))?
        .map_err(|()| bad(0, format!("larger than {MAX_FILE_BYTES} bytes")))?;
    parse(&bytes).map_err(|e| match e {
        ParseError::Newer(v) => bad(
            1,
            format!("format_version {v} is newer than this socks5d's {FORMAT_VERSION}"),
        ),
        ParseError::Bad(line, reason) => bad(line, reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    #[test]
    fn round_trip_and_golden_header() {
        let empty = Snapshot::default();
        assert_eq!(
            encode(&empty),
            b"{\"format\":\"socks5d-users\",\"format_version\":1,\"version\":0,\"users\":0,\"settings\":{}}\n"
        );
        let snap = Snapshot {
            users: vec![
                StoredUser {
                    name: b"a b".to_vec(),
                    hash: HASH.into(),
                    privilege: 1,
                },
                StoredUser {
                    name: b"~\"\\".to_vec(),
                    hash: HASH.into(),
                    privilege: 0,
                },
            ],
            settings: StoredSettings {
                cleanup: Some(false),
                buffer_size: Some(50),
                ..Default::default()
            },
            version: u64::MAX,
        };
        let bytes = encode(&snap);
        assert!(bytes.starts_with(
            b"{\"format\":\"socks5d-users\",\"format_version\":1,\"version\":18446744073709551615,\"users\":2,\"settings\":{\"cleanup\":false,\"buffer_size\":50}}\n"
        ));
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 3);
        assert!(matches!(parse(&bytes), Ok(s) if s == snap));
    }

    #[test]
    fn non_ascii_name_is_refused() {
        let text = format!(
            "{{\"format\":\"socks5d-users\",\"format_version\":1,\"version\":0,\"users\":1}}\n{{\"name\":\"\u{e9}\",\"hash\":\"{HASH}\",\"privilege\":0}}\n"
        );
        assert!(matches!(parse(text.as_bytes()), Err(ParseError::Bad(2, _))));
        assert!(matches!(parse(b"{}\n\xff\n"), Err(ParseError::Bad(2, _))));
    }
}

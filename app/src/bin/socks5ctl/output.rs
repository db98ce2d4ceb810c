//! Turns responses into text for people and JSON for programs.

use serde_json::{json, Map, Value};
use socks5d_core::admin::msg::{AdminResponse, ListedUser, ModifyCmd, ValueCmd};
use socks5d_core::admin::Dialect;
use socks5d_core::state::{Outcome, Privilege, MAX_BUFFER_SIZE, MAX_USERS, MIN_BUFFER_SIZE};

use crate::Failure;

/// A successful result.
#[derive(Debug)]
pub(crate) struct Rendered {
    /// For people (no trailing newline).
    pub(crate) human: String,
    /// For `--json`.
    pub(crate) json: Value,
}

enum Unit {
    Count,
    Bytes,
    Seconds,
}

/// Returns the JSON key, the label and the unit of a numeric answer.
fn describe(cmd: ValueCmd) -> (&'static str, &'static str, Unit) {
    match cmd {
        ValueCmd::HistoricConnections => {
            ("historic_connections", "Historic connections", Unit::Count)
        }
        ValueCmd::CurrentConnections => ("current_connections", "Current connections", Unit::Count),
        ValueCmd::MaxConcurrentConnections => (
            "max_concurrent_connections",
            "Max. concurrent connections",
            Unit::Count,
        ),
        ValueCmd::BytesSent => ("bytes_sent", "Bytes sent", Unit::Bytes),
        ValueCmd::BytesReceived => ("bytes_received", "Bytes received", Unit::Bytes),
        ValueCmd::UsersConnected => ("users_connected", "Users connected", Unit::Count),
        ValueCmd::UserCount => ("user_count", "Users", Unit::Count),
        ValueCmd::BufferSize => ("buffer_size", "Buffer size", Unit::Bytes),
        ValueCmd::SelectorTimeout => ("selector_timeout", "Selector timeout", Unit::Seconds),
        ValueCmd::ConnectionTimeout(_) => {
            ("connection_timeout", "Connection timeout", Unit::Seconds)
        }
        ValueCmd::UserConnections(_) => ("connections", "Connections", Unit::Count),
    }
}

/// Formats a byte count as "1536 bytes (1.5 KiB)".
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{n} bytes ({v:.1} {})", UNITS[unit])
}

fn value_text(value: u64, unit: &Unit) -> String {
    match unit {
        Unit::Count => value.to_string(),
        Unit::Bytes => bytes(value),
        Unit::Seconds => format!("{value} s"),
    }
}

/// Shows a name the server sent without letting it drive the terminal: printable ASCII as
/// is, anything else as `\xNN`.
pub(crate) fn shown(name: &[u8]) -> String {
    let mut s = String::with_capacity(name.len());
    for &b in name {
        if (0x20..=0x7e).contains(&b) && b != b'\\' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

fn json_name(name: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(name).into_owned())
}

/// The error replies any request may get instead of its answer.
pub(crate) fn not_answered(response: &AdminResponse, what: &str) -> Failure {
    match response {
        AdminResponse::QueryError { status } => Failure::Refused {
            message: format!("{what}: {}", query_error(*status)),
            details: json!({ "status": status, "reason": query_error(*status) }),
        },
        AdminResponse::InvalidType | AdminResponse::InvalidCommand { .. } => Failure::Protocol(
            format!("{what}: the server does not know this request (is --admin-dialect right?)"),
        ),
        other => Failure::Protocol(format!("{what}: unexpected response {other:?}")),
    }
}

fn query_error(status: u8) -> &'static str {
    match status {
        socks5d_core::admin::msg::QUERY_ERROR_INVALID_PARAMETER => "invalid parameter",
        socks5d_core::admin::msg::QUERY_ERROR_GENERAL => "general server error",
        _ => "query refused (unknown status)",
    }
}

/// Renders the answer to List Users.
pub(crate) fn users(dialect: Dialect, response: &AdminResponse) -> Result<Rendered, Failure> {
    let AdminResponse::Users(list) = response else {
        return Err(not_answered(response, "cannot list the users"));
    };
    let privilege = |u: &ListedUser| match u.privilege {
        Some(Privilege::Admin) => "administrator",
        Some(Privilege::User) => "user",
        None => "",
    };
    let names: Vec<String> = list.iter().map(|u| shown(&u.name)).collect();
    let width = names.iter().map(String::len).max().unwrap_or(0).max(4);
    let mut human = String::new();
    if dialect == Dialect::Final {
        human.push_str(&format!("{:<width$}  PRIVILEGE", "USER"));
        for (u, name) in list.iter().zip(&names) {
            human.push_str(&format!("\n{name:<width$}  {}", privilege(u)));
        }
    } else {
        human.push_str("USER");
        for name in &names {
            human.push('\n');
            human.push_str(name);
        }
    }
    human.push_str(&format!(
        "\n({} user{})",
        list.len(),
        if list.len() == 1 { "" } else { "s" }
    ));
    let json_users: Vec<Value> = list
        .iter()
        .map(|u| {
            let mut o = Map::new();
            o.insert("name".into(), json_name(&u.name));
            if dialect == Dialect::Final {
                o.insert(
                    "privilege".into(),
                    Value::String(
                        match u.privilege {
                            Some(Privilege::Admin) => "admin",
                            _ => "user",
                        }
                        .into(),
                    ),
                );
            }
            Value::Object(o)
        })
        .collect();
    Ok(Rendered {
        human,
        json: json!({ "users": json_users }),
    })
}

/// Returns the JSON key, the label and the text (with its unit) of a numeric answer.
pub(crate) fn field(cmd: ValueCmd, value: u64) -> (&'static str, &'static str, String) {
    let (key, label, unit) = describe(cmd);
    (key, label, value_text(value, &unit))
}

/// Returns the number a query was answered with, or the failure its error reply means.
pub(crate) fn number(response: &AdminResponse, what: &str) -> Result<(ValueCmd, u64), Failure> {
    match response {
        AdminResponse::Value { cmd, value } => Ok((*cmd, *value)),
        other => Err(not_answered(other, what)),
    }
}

/// Renders several numeric answers, aligned (one is a single line "Label: value").
pub(crate) fn values(responses: &[AdminResponse]) -> Result<Rendered, Failure> {
    let mut rows = Vec::with_capacity(responses.len());
    let mut obj = Map::new();
    for r in responses {
        let (cmd, value) = number(r, "query failed")?;
        let (key, label, unit) = describe(cmd);
        rows.push((label, value_text(value, &unit)));
        obj.insert(key.into(), Value::from(value));
    }
    let human = if let [(label, text)] = &rows[..] {
        format!("{label}: {text}")
    } else {
        let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(l, t)| format!("{l:<width$}  {t}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(Rendered {
        human,
        json: Value::Object(obj),
    })
}

/// Renders the answer to Get User Total Current Connections.
pub(crate) fn user_connections(name: &str, response: &AdminResponse) -> Result<Rendered, Failure> {
    let what = format!("cannot count the connections of {}", shown(name.as_bytes()));
    let (_, value) = match response {
        // The server's only reason to refuse this query is a name that is no user.
        AdminResponse::QueryError {
            status: socks5d_core::admin::msg::QUERY_ERROR_INVALID_PARAMETER,
        } => {
            return Err(Failure::Refused {
                message: format!("{what}: no such user (invalid parameter)"),
                details: json!({ "status": 0xFE, "reason": "invalid parameter" }),
            })
        }
        r => number(r, &what)?,
    };
    Ok(Rendered {
        human: format!(
            "{} has {value} open connection{}",
            shown(name.as_bytes()),
            if value == 1 { "" } else { "s" }
        ),
        json: json!({ "user": name, "connections": value }),
    })
}

/// What a refused modification's STATUS means, for `cmd`.
fn refusal(cmd: ModifyCmd, dialect: Dialect, status: u8) -> String {
    match cmd.outcome(dialect, status) {
        Some(Outcome::NameTaken) => "username already taken".into(),
        Some(Outcome::NoSuchUser) => "no such user".into(),
        Some(Outcome::TooManyUsers) => format!("maximum number of users reached ({MAX_USERS})"),
        Some(Outcome::InvalidParameter) => match cmd {
            ModifyCmd::AddUser => "invalid parameter (a user name is 1 to 255 printable ASCII \
                                   characters without ':', a password 1 to 255 bytes)"
                .into(),
            ModifyCmd::RemoveUser => {
                "invalid parameter (you cannot remove yourself or the last administrator)".into()
            }
            ModifyCmd::SetBufferSize => format!(
                "unsupported buffer size (the server accepts {MIN_BUFFER_SIZE} to \
                 {MAX_BUFFER_SIZE} bytes)"
            ),
            ModifyCmd::SetSelectorTimeout | ModifyCmd::SetConnectionTimeout => {
                "unsupported timeout (1 to 255 seconds)".into()
            }
            ModifyCmd::SetSniffing | ModifyCmd::SetCleanup => "invalid parameter".into(),
        },
        Some(Outcome::Failed) => "general server error".into(),
        // Applied (status 0) is the caller's business; anything else is unknown.
        _ => format!("refused with unknown status {status:#04x}"),
    }
}

/// Renders the answer to a modification: `done` on success, `attempt` names it on refusal.
pub(crate) fn modification(
    dialect: Dialect,
    response: &AdminResponse,
    done: &str,
    attempt: &str,
) -> Result<Rendered, Failure> {
    let AdminResponse::Status { cmd, status } = response else {
        return Err(not_answered(response, attempt));
    };
    if *status == 0 {
        return Ok(Rendered {
            human: done.into(),
            json: json!({ "ok": true, "status": 0, "message": done }),
        });
    }
    let error = refusal(*cmd, dialect, *status);
    Err(Failure::Refused {
        message: format!("{attempt}: {error}"),
        details: json!({ "status": status, "reason": error }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1023), "1023 bytes");
        assert_eq!(bytes(1536), "1536 bytes (1.5 KiB)");
        assert_eq!(bytes(16384), "16384 bytes (16.0 KiB)");
        assert_eq!(bytes(3 << 30), "3221225472 bytes (3.0 GiB)");
        assert!(bytes(u64::MAX).ends_with("(16.0 EiB)"));
    }

    #[test]
    fn names_cannot_drive_the_terminal() {
        assert_eq!(shown(b"bob"), "bob");
        assert_eq!(shown(b"a\x1b[2Jb\\"), "a\\x1b[2Jb\\x5c");
    }

    #[test]
    fn refusals_per_dialect() {
        use Dialect::{Draft, Final};
        assert_eq!(
            refusal(ModifyCmd::AddUser, Draft, 1),
            "username already taken"
        );
        assert!(refusal(ModifyCmd::AddUser, Draft, 0xFF).starts_with("maximum number of users"));
        assert!(refusal(ModifyCmd::AddUser, Final, 2).starts_with("maximum number of users"));
        assert!(refusal(ModifyCmd::AddUser, Draft, 2).starts_with("invalid parameter"));
        assert!(refusal(ModifyCmd::AddUser, Final, 0xFE).starts_with("invalid parameter"));
        assert_eq!(
            refusal(ModifyCmd::AddUser, Final, 0xFF),
            "general server error"
        );
        // The draft answers an ACTION other than 0 or 1 with 0xFF (PROTOCOL.md).
        assert!(refusal(ModifyCmd::SetCleanup, Draft, 0xFF).starts_with("invalid parameter"));
        assert_eq!(
            refusal(ModifyCmd::SetBufferSize, Draft, 0xFF),
            "general server error"
        );
        assert!(refusal(ModifyCmd::SetBufferSize, Draft, 1).starts_with("unsupported buffer"));
        assert!(refusal(ModifyCmd::RemoveUser, Final, 9).contains("unknown status 0x09"));
    }
}

//! `socks5ctl`: the command-line administration client of socks5d.
//!
//! One run is one connection: connect (SCTP or TCP), authenticate, send the command's
//! request(s), print the answer. Requests are encoded and responses decoded by the core's
//! codec (`socks5d_core::admin::msg`); this binary only does I/O, the command line and
//! formatting. See `socks5ctl --help` for the exit codes.

use std::process::ExitCode;

use bytes::Bytes;
use clap::Parser;
use socks5d_core::admin::msg::{AdminRequest, Modify, Query};
use socks5d_core::admin::Dialect;
use socks5d_core::state::Privilege;

mod cli;
mod client;
mod output;
mod tty;
mod watch;

use cli::{Cli, Command, OnOff};
use output::{shown, Rendered};

/// Why a run failed; each kind has its exit status.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server refused the request (exit 1); `details` (an object: the server's `status`
    /// and the short `reason`) goes into the JSON error object.
    Refused {
        message: String,
        details: serde_json::Value,
    },
    /// Bad arguments or no credentials (exit 2).
    Usage(String),
    /// Authentication failed (exit 3).
    Auth(String),
    /// Could not connect, I/O error or timeout (exit 4).
    Connection(String),
    /// The server's bytes broke the protocol (exit 5).
    Protocol(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Refused { .. } => 1,
            Self::Usage(_) => 2,
            Self::Auth(_) => 3,
            Self::Connection(_) => 4,
            Self::Protocol(_) => 5,
        }
    }

    /// The `kind` of the JSON error object.
    fn kind(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "refused",
            Self::Usage(_) => "usage",
            Self::Auth(_) => "auth",
            Self::Connection(_) => "connection",
            Self::Protocol(_) => "protocol",
        }
    }

    /// The message for people (stderr).
    fn message(&self) -> String {
        match self {
            Self::Refused { message, .. } => message.clone(),
            Self::Usage(m) | Self::Auth(m) | Self::Connection(m) => m.clone(),
            Self::Protocol(m) => format!("protocol error: {m}"),
        }
    }

    /// The one JSON object printed on stdout with `--json` when a run fails:
    /// `{"ok": false, "error": {"kind": K, "message": M, "exit": N}}`, where a refusal also
    /// has the server's `status` and the short `reason` in `error`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({
            "kind": self.kind(),
            "message": self.message(),
            "exit": self.exit_code(),
        });
        if let Self::Refused {
            details: serde_json::Value::Object(extra),
            ..
        } = self
        {
            for (k, v) in extra {
                error[k] = v.clone();
            }
        }
        serde_json::json!({ "ok": false, "error": error })
    }
}

const ENV_USER: &str = "SOCKS5CTL_USER";
const ENV_PASSWORD: &str = "SOCKS5CTL_PASSWORD";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match &cli.command {
        Command::Watch(w) => watch::run(&cli, w),
        _ => run(&cli).map(|r| {
            if cli.json {
                println!("{}", r.json);
            } else {
                println!("{}", r.human);
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if cli.json {
                println!("{}", f.to_json());
            }
            eprintln!("socks5ctl: {}", f.message());
            ExitCode::from(f.exit_code())
        }
    }
}

/// Reports a command line that does not parse: clap's text on stderr (help and version on
/// stdout, exit 0), and with `--json` among the arguments also the JSON error on stdout.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if std::env::args_os().skip(1).any(|a| a == "--json") {
        // clap's first line, without its "error: " and without terminal styling.
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("invalid arguments");
        let message = first.strip_prefix("error: ").unwrap_or(first);
        println!("{}", Failure::Usage(message.to_owned()).to_json());
    }
    let _ = e.print();
    ExitCode::from(2)
}

/// What to do with the responses of a command.
enum Answer {
    Users,
    Values,
    UserConnections(String),
    Modification { done: String, attempt: String },
}

fn run(cli: &Cli) -> Result<Rendered, Failure> {
    let dialect = Dialect::from(cli.admin_dialect);
    let (user, password) = credentials(cli.user.as_deref())?;
    let (requests, answer) = plan(&cli.command, dialect)?;
    let mut client = client::Client::connect(
        &cli.address,
        cli.port,
        cli.admin_transport,
        dialect,
        cli.timeout,
    )?;
    client.authenticate(user.as_bytes(), password.as_bytes())?;
    let responses = client.exchange_last(&requests)?;
    match answer {
        Answer::Users => output::users(dialect, &responses[0]),
        Answer::Values => output::values(&responses),
        Answer::UserConnections(name) => output::user_connections(&name, &responses[0]),
        Answer::Modification { done, attempt } => {
            output::modification(dialect, &responses[0], &done, &attempt)
        }
    }
}

/// Checks that a field fits its one-byte length prefix.
fn field(what: &str, value: &str) -> Result<Bytes, Failure> {
    if value.len() > 255 {
        return Err(Failure::Usage(format!(
            "{what} is {} bytes long; at most 255 are possible",
            value.len()
        )));
    }
    Ok(Bytes::copy_from_slice(value.as_bytes()))
}

/// Returns the requests for `command` and how to show their answers. May ask for a new
/// user's password.
fn plan(command: &Command, dialect: Dialect) -> Result<(Vec<AdminRequest>, Answer), Failure> {
    let q = |q: Query| (vec![AdminRequest::Query(q)], Answer::Values);
    let m = |m: Modify, done: String, attempt: String| {
        (
            vec![AdminRequest::Modify(m)],
            Answer::Modification { done, attempt },
        )
    };
    let on = |s: OnOff| match s {
        OnOff::On => (1, "on"),
        OnOff::Off => (0, "off"),
    };
    Ok(match command {
        Command::Users => (vec![AdminRequest::Query(Query::ListUsers)], Answer::Users),
        Command::Historic => q(Query::HistoricConnections),
        Command::Current => q(Query::CurrentConnections),
        Command::MaxConcurrent => q(Query::MaxConcurrentConnections),
        Command::BytesSent => q(Query::BytesSent),
        Command::BytesReceived => q(Query::BytesReceived),
        Command::UsersConnected => q(Query::UsersConnected),
        Command::UserCount => q(Query::UserCount),
        Command::BufferSize => q(Query::BufferSize),
        Command::SelectorTimeout => q(Query::SelectorTimeout),
        Command::ConnectionTimeout => q(Query::ConnectionTimeout(dialect)),
        // Dispatched in `main`, never planned as one exchange.
        Command::Watch(_) => {
            return Err(Failure::Usage("watch runs until it is stopped".into()));
        }
        Command::Stats => (
            [
                Query::HistoricConnections,
                Query::CurrentConnections,
                Query::MaxConcurrentConnections,
                Query::BytesSent,
                Query::BytesReceived,
                Query::UsersConnected,
                Query::UserCount,
                Query::BufferSize,
                Query::SelectorTimeout,
                Query::ConnectionTimeout(dialect),
            ]
            .into_iter()
            .map(AdminRequest::Query)
            .collect(),
            Answer::Values,
        ),
        Command::UserConnections { name } => (
            vec![AdminRequest::Query(Query::UserConnections {
                cmd: dialect,
                name: field("the user name", name)?,
            })],
            Answer::UserConnections(name.clone()),
        ),
        Command::AddUser {
            name,
            password,
            admin,
        } => {
            let password = match password {
                Some(p) => p.clone(),
                None => new_password(name)?,
            };
            let (privilege, kind) = if *admin {
                (Privilege::Admin, "administrator")
            } else {
                (Privilege::User, "proxy user")
            };
            let shown = shown(name.as_bytes());
            m(
                Modify::AddUser {
                    name: field("the user name", name)?,
                    password: field("the password", &password)?,
                    privilege: privilege as u8,
                },
                format!("added user {shown} ({kind})"),
                format!("cannot add user {shown}"),
            )
        }
        Command::RemoveUser { name } => {
            let shown = shown(name.as_bytes());
            m(
                Modify::RemoveUser {
                    name: field("the user name", name)?,
                },
                format!("removed user {shown}"),
                format!("cannot remove user {shown}"),
            )
        }
        Command::Sniffing { state } => {
            let (action, word) = on(*state);
            m(
                Modify::SetSniffing(action),
                format!("credential sniffing is now {word}"),
                format!("cannot turn credential sniffing {word}"),
            )
        }
        Command::Cleanup { state } => {
            let (action, word) = on(*state);
            m(
                Modify::SetCleanup(action),
                format!("clean-up of idle connections is now {word}"),
                format!("cannot turn the clean-up of idle connections {word}"),
            )
        }
        Command::SetBufferSize { bytes } => m(
            Modify::SetBufferSize(*bytes),
            format!("buffer size set to {}", output::bytes(u64::from(*bytes))),
            format!("cannot set the buffer size to {bytes} bytes"),
        ),
        Command::SetSelectorTimeout { secs } => m(
            Modify::SetSelectorTimeout(*secs),
            format!("selector timeout set to {secs} s"),
            format!("cannot set the selector timeout to {secs} s"),
        ),
        Command::SetConnectionTimeout { secs } => m(
            Modify::SetConnectionTimeout(*secs),
            format!("connection timeout set to {secs} s"),
            format!("cannot set the connection timeout to {secs} s"),
        ),
    })
}

fn prompt_failure(e: tty::PromptError, missing: &str) -> Failure {
    match e {
        tty::PromptError::NoTerminal => Failure::Usage(format!(
            "{missing}, and there is no terminal to ask on (see --help: -u USER:PASS, \
             {ENV_USER}, {ENV_PASSWORD})"
        )),
        tty::PromptError::Cancelled => Failure::Usage("cancelled".into()),
        tty::PromptError::Io(e) => Failure::Usage(format!("cannot read the terminal: {e}")),
    }
}

/// Returns the administrator's user name and password: `-u USER:PASS`, or `-u USER` with
/// `SOCKS5CTL_PASSWORD` or a prompt, or `SOCKS5CTL_USER` and `SOCKS5CTL_PASSWORD`, or prompts.
fn credentials(flag: Option<&str>) -> Result<(String, String), Failure> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (user, password) = match flag {
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
            None => (u.to_owned(), None),
        },
        None => match env(ENV_USER) {
            Some(u) => (u, None),
            None => (
                tty::ask("socks5d administrator: ", false)
                    .map_err(|e| prompt_failure(e, "no user name given"))?,
                None,
            ),
        },
    };
    let password = match password.or_else(|| env(ENV_PASSWORD)) {
        Some(p) => p,
        None => tty::ask(&format!("Password for {}: ", shown(user.as_bytes())), true)
            .map_err(|e| prompt_failure(e, "no password given"))?,
    };
    if user.is_empty() || user.len() > 255 {
        return Err(Failure::Usage(
            "the administrator's user name must be 1 to 255 bytes".into(),
        ));
    }
    if password.is_empty() || password.len() > 255 {
        return Err(Failure::Usage(
            "the administrator's password must be 1 to 255 bytes".into(),
        ));
    }
    Ok((user, password))
}

/// Asks twice for the password of a new user.
fn new_password(name: &str) -> Result<String, Failure> {
    let missing = "no password given for the new user";
    let first = tty::ask(
        &format!("Password for new user {}: ", shown(name.as_bytes())),
        true,
    )
    .map_err(|e| prompt_failure(e, missing))?;
    let again = tty::ask("Again: ", true).map_err(|e| prompt_failure(e, missing))?;
    if first != again {
        return Err(Failure::Usage("the passwords do not match".into()));
    }
    Ok(first)
}

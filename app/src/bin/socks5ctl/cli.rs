//! Command line of `socks5ctl`.

use socks5d_cli::args::{DialectArg, TransportArg};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Credentials (an administrator of the server), in this order of preference:
  -u USER:PASS, or -u USER and the password from SOCKS5CTL_PASSWORD or a prompt,
  or SOCKS5CTL_USER and SOCKS5CTL_PASSWORD, or prompts on the terminal.

Examples:
  socks5ctl -u admin users                      list the users
  socks5ctl -u admin stats                      all counters and settings at once
  socks5ctl -u admin:secret --json stats        the same, as JSON
  socks5ctl -u admin add-user bob               add proxy user bob (asks for the password)
  socks5ctl -u admin add-user carol pw --admin  add administrator carol
  socks5ctl -u admin remove-user bob
  socks5ctl -u admin sniffing off               stop recording clear-text credentials
  socks5ctl -u admin set-connection-timeout 60  close connections idle for 60 s
  socks5ctl -u admin watch                      live view, like top (q quits)
  socks5ctl -u admin watch -i 5 | tee log       one line every 5 s when not on a terminal
  SOCKS5CTL_USER=admin SOCKS5CTL_PASSWORD=secret socks5ctl -P 9090 --admin-transport tcp current

Exit status:
  0 success, 1 the server refused the request, 2 usage error (bad arguments, no credentials),
  3 authentication failed, 4 connection or I/O error (including timeouts),
  5 the server's answer broke the protocol (often a --admin-dialect mismatch).
  With --json a failure also prints one JSON object on stdout:
  {\"ok\": false, \"error\": {\"kind\": \"refused|usage|auth|connection|protocol\",
   \"message\": \"...\", \"exit\": N}} (a refusal adds the server's \"status\" and \"reason\").";

/// Administration client of the socks5d SOCKS5 proxy.
///
/// Connects to the administration port of a running socks5d (SCTP by default, like the
/// server), logs in as an administrator, sends one command and prints the answer: users,
/// counters and settings can be read, users added and removed, and settings changed while the
/// server runs.
#[derive(Debug, Parser)]
#[command(name = "socks5ctl", version, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// Address of the server's administration service (an IP address or a host name).
    #[arg(
        short = 'L',
        long = "admin-address",
        visible_alias = "admin-listen",
        value_name = "ADDR",
        default_value = "127.0.0.1",
        global = true
    )]
    pub(crate) address: String,

    /// Port of the server's administration service.
    #[arg(
        short = 'P',
        long = "admin-port",
        value_name = "PORT",
        default_value_t = 8080,
        global = true
    )]
    pub(crate) port: u16,

    /// Transport to the administration service (the server's --admin-transport auto also
    /// falls back to TCP where the kernel has no SCTP).
    #[arg(
        long,
        value_enum,
        value_name = "TRANSPORT",
        default_value = "auto",
        global = true
    )]
    pub(crate) admin_transport: TransportArg,

    /// Protocol dialect; must match the server's --admin-dialect. "final" is also the wire
    /// protocol of the original socks5d.
    #[arg(
        long,
        value_enum,
        value_name = "DIALECT",
        default_value = "draft",
        global = true
    )]
    pub(crate) admin_dialect: DialectArg,

    /// Administrator to log in as: USER:PASS, or USER alone (the password then comes from
    /// SOCKS5CTL_PASSWORD or a prompt). Without it, SOCKS5CTL_USER is used.
    #[arg(short = 'u', long = "user", value_name = "USER[:PASS]", global = true)]
    pub(crate) user: Option<String>,

    /// Prints the result as JSON on standard output.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Gives up on connecting, or on any read or write, after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_timeout, global = true)]
    pub(crate) timeout: Duration,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What to ask the server.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Lists the users (with their privilege in the final dialect).
    Users,
    /// Total number of SOCKS connections accepted since the server started.
    Historic,
    /// Number of SOCKS connections open now.
    Current,
    /// Largest number of SOCKS connections open at the same time.
    MaxConcurrent,
    /// Total bytes the server sent (to clients and destinations).
    BytesSent,
    /// Total bytes the server received (from clients and destinations).
    BytesReceived,
    /// Number of distinct users with at least one open SOCKS connection.
    UsersConnected,
    /// Number of users.
    UserCount,
    /// Size of each relay buffer, in bytes.
    BufferSize,
    /// Period of the clean-up routine, in seconds.
    SelectorTimeout,
    /// Idle time after which the clean-up routine closes a connection, in seconds.
    ConnectionTimeout,
    /// Number of SOCKS connections user NAME has open.
    UserConnections {
        /// User name.
        name: String,
    },
    /// Adds a user (a proxy user, or an administrator with --admin).
    AddUser {
        /// User name: 1 to 255 printable ASCII characters, no ':'.
        name: String,
        /// Password (1 to 255 bytes). Asked for on the terminal when omitted, which keeps it
        /// out of the shell history and the process list.
        password: Option<String>,
        /// Makes the user an administrator (may use this tool, and the proxy).
        #[arg(long)]
        admin: bool,
    },
    /// Removes a user and closes its open connections.
    RemoveUser {
        /// User name.
        name: String,
    },
    /// Turns the recording of clear-text credentials (HTTP, POP3) on or off.
    Sniffing {
        /// on or off.
        state: OnOff,
    },
    /// Turns the clean-up of idle connections on or off.
    Cleanup {
        /// on or off.
        state: OnOff,
    },
    /// Sets the size of each relay buffer (for connections opened afterwards).
    SetBufferSize {
        /// Bytes (the server accepts 50 to 1048576).
        bytes: u32,
    },
    /// Sets the period of the clean-up routine.
    SetSelectorTimeout {
        /// Seconds, 1 to 255.
        secs: u8,
    },
    /// Sets the idle time after which the clean-up routine closes a connection.
    SetConnectionTimeout {
        /// Seconds, 1 to 255.
        secs: u8,
    },
    /// Prints every counter and setting at once (the queries are pipelined).
    Stats,
    /// Shows counters, rates, settings and the users' open connections live, refreshed every
    /// --interval; q or Ctrl-C quits. Without a terminal on stdout, prints one line per
    /// refresh instead (one JSON object per line with --json).
    Watch(WatchArgs),
}

/// Options of `watch`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WatchArgs {
    /// Seconds between refreshes.
    #[arg(short = 'i', long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub(crate) interval: Duration,

    /// Stops after this many refreshes (default: until q, Ctrl-C or the end of stdout).
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
}

/// on / off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnOff {
    /// Enable.
    On,
    /// Disable.
    Off,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if (0.05..=3600.0).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err("must be a number of seconds from 0.05 to 3600".into()),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err("must be a number of seconds greater than 0 (at most 86400)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_after_the_subcommand() {
        let c =
            Cli::try_parse_from(["socks5ctl", "users", "--json", "-P", "9", "-u", "a:b"]).unwrap();
        assert!(c.json);
        assert_eq!(c.port, 9);
        assert_eq!(c.user.as_deref(), Some("a:b"));
        assert_eq!(c.address, "127.0.0.1");
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("nan").is_err());
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("0.01").is_err());
    }

    #[test]
    fn watch_defaults() {
        let c = Cli::try_parse_from(["socks5ctl", "watch"]).unwrap();
        let Command::Watch(w) = c.command else {
            panic!("{:?}", c.command)
        };
        assert_eq!(w.interval, Duration::from_secs(1));
        assert_eq!(w.count, None);
        assert!(Cli::try_parse_from(["socks5ctl", "watch", "-n", "0"]).is_err());
    }
}

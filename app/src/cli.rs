//! Command line of the `socks5d` server (flags of the original's manual page, plus long forms
//! and the settings the administration protocol can change later).

use socks5d_cli::args::{DialectArg, TransportArg};
use std::net::IpAddr;

use bytes::Bytes;
use clap::{ArgAction, Parser, ValueEnum};
use socks5d_core::state::{is_valid_password, is_valid_username, MAX_BUFFER_SIZE, MIN_BUFFER_SIZE};

/// A `user:pass` pair from the command line.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) user: Bytes,
    pub(crate) password: Bytes,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses `user:pass`: the user is 1 to 255 printable ASCII characters without `:`; the
/// password (everything after the first `:`) is 1 to 255 bytes.
fn parse_credentials(s: &str) -> Result<Credentials, String> {
    let Some((user, password)) = s.split_once(':') else {
        return Err("expected USER:PASS (a colon between user name and password)".into());
    };
    if !is_valid_username(user.as_bytes()) {
        return Err(format!(
            "invalid user name {user:?}: 1 to 255 printable ASCII characters, no ':'"
        ));
    }
    if !is_valid_password(password.as_bytes()) {
        return Err("invalid password: 1 to 255 bytes".into());
    }
    Ok(Credentials {
        user: Bytes::copy_from_slice(user.as_bytes()),
        password: Bytes::copy_from_slice(password.as_bytes()),
    })
}

fn parse_buffer_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if (MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "must be between {MIN_BUFFER_SIZE} and {MAX_BUFFER_SIZE} bytes"
        ))
    }
}

fn parse_seconds(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number of seconds from 1 to 255".into()),
    }
}

fn parse_log_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a level or tracing filter ({e})"))
}

fn parse_max_connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a positive whole number".into()),
    }
}

/// Async runtime that runs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RuntimeArg {
    /// tokio, multi-threaded (the default).
    Tokio,
    /// The smol family: async-io's reactor, an async-executor thread per core.
    Smol,
    /// async-std's executor (discontinued upstream; async-io's reactor, as smol).
    AsyncStd,
}

/// SOCKS5 proxy (RFC 1928, user/password per RFC 1929) with a live administration protocol.
///
/// Proxy users log in with a user name and password. Administrators connect to the admin
/// port (SCTP by default) to read counters, manage users and change settings while the
/// server runs. One access-log line per SOCKS request, and one line per clear-text
/// credential seen, go to standard output; diagnostics go to standard error.
#[derive(Debug, Parser)]
#[command(
    name = "socks5d",
    version,
    disable_version_flag = true,
    disable_help_flag = true,
    after_help = "Configuration file (--config FILE, TOML; example.toml documents each key):\n  every flag above has a key of its name with underscores (admin_port, outgoing_addr, ...),\n  user and admin are lists of \"USER:PASS\"; the file alone sets:\n  [[client_rule]]  from (CIDR), action (allow|deny): checked on accept\n  [[rule]]         action, user, to (any|CIDR|.domain.suffix), ports (N|\"LO-HI\"), command (connect|bind|udp)\n  [limits]         user_max_connections, user_upload, user_download (bytes/s: 1048576, \"1MiB\"),\n                   ip_max_connections, ip_connections_per_second, max_handshakes\n  [users.NAME]     password, admin, egress, max_connections, upload, download\n  [proxy_protocol] trusted (CIDR list: PROXY v1/v2 senders, required from them)\n\nExamples:\n  socks5d -u alice:secret                  proxy on 127.0.0.1:1080, admin on 127.0.0.1:8080\n  socks5d -l 0.0.0.0 -u alice:secret       proxy on every IPv4 interface\n  socks5d -l :: -u alice:secret            proxy on every interface (IPv6 and IPv4)\n  curl --socks5-hostname alice:secret@127.0.0.1:1080 http://example.org/"
)]
pub(crate) struct Cli {
    /// Address the SOCKS proxy listens on; 0.0.0.0 (IPv4) or :: (IPv6 and IPv4) for all
    /// interfaces.
    #[arg(
        short = 'l',
        long = "listen",
        value_name = "ADDR",
        default_value = "127.0.0.1"
    )]
    pub(crate) listen: IpAddr,

    /// TCP port of the SOCKS proxy.
    #[arg(
        short = 'p',
        long = "port",
        value_name = "PORT",
        default_value_t = 1080
    )]
    pub(crate) port: u16,

    /// Address the administration service listens on.
    #[arg(
        short = 'L',
        long = "admin-listen",
        value_name = "ADDR",
        default_value = "127.0.0.1"
    )]
    pub(crate) admin_listen: IpAddr,

    /// Port of the administration service (SCTP, or TCP: see --admin-transport).
    #[arg(
        short = 'P',
        long = "admin-port",
        value_name = "PORT",
        default_value_t = 8080
    )]
    pub(crate) admin_port: u16,

    /// Adds a proxy user. Repeat for more users.
    #[arg(short = 'u', long = "user", value_name = "USER:PASS", value_parser = parse_credentials, action = ArgAction::Append)]
    pub(crate) users: Vec<Credentials>,

    /// Adds an administrator (who may also use the proxy). Repeat for more. Without any,
    /// an administrator "admin" is created with a random password, printed once on stderr.
    #[arg(short = 'a', long = "admin", value_name = "USER:PASS", value_parser = parse_credentials, action = ArgAction::Append)]
    pub(crate) admins: Vec<Credentials>,

    /// Turns credential sniffing ("password spoofing") off; an administrator can turn it on.
    #[arg(short = 'N', long = "no-sniffing")]
    pub(crate) no_sniffing: bool,

    /// Turns the clean-up of idle connections off; an administrator can turn it on.
    #[arg(short = 'D', long = "no-cleanup")]
    pub(crate) no_cleanup: bool,

    /// Dialect of the administration protocol.
    #[arg(long, value_enum, value_name = "DIALECT", default_value = "draft")]
    pub(crate) admin_dialect: DialectArg,

    /// Transport of the administration service.
    #[arg(long, value_enum, value_name = "TRANSPORT", default_value = "auto")]
    pub(crate) admin_transport: TransportArg,

    /// Serves SOCKS clients that offer no authentication (only to clients that do not offer
    /// user/password). Off by default.
    #[arg(long)]
    pub(crate) allow_anonymous: bool,

    /// Diagnostics on stderr: error, warn, info, debug or trace (or a tracing filter such as
    /// "socks5d_tokio=debug"). RUST_LOG is used when this is not given.
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    pub(crate) log_level: Option<String>,

    /// Most SOCKS client connections served at once; more wait until one closes. Default:
    /// 10000, or fewer if the open-file limit cannot hold that many (two descriptors each).
    #[arg(long, value_name = "N", value_parser = parse_max_connections)]
    pub(crate) max_connections: Option<usize>,

    /// Initial size of each relay buffer, in bytes (50 to 1048576).
    #[arg(long, value_name = "BYTES", default_value_t = 16384, value_parser = parse_buffer_size)]
    pub(crate) buffer_size: u32,

    /// Initial idle time, in seconds (1 to 255), after which the clean-up closes a connection.
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = parse_seconds)]
    pub(crate) connection_timeout: u8,

    /// Initial period, in seconds (1 to 255), of the clean-up of idle connections.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = parse_seconds)]
    pub(crate) selector_timeout: u8,

    /// A relay one of whose directions has ended (half-close), with no byte moved for this
    /// many seconds (1 to 255), is closed, whether the clean-up is on or off. Checked every
    /// --selector-timeout seconds (or every this many, if fewer).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = parse_seconds)]
    pub(crate) half_close_timeout: u8,

    /// Most administrator sessions at once (logged in). Connections that have not logged in
    /// yet have a pool of their own (--max-unauthenticated-admin) and never take these.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = parse_max_connections)]
    pub(crate) max_admin_connections: usize,

    /// Most admin connections that have not logged in yet; when full, the oldest of them is
    /// closed to make room, so sockets held open cannot lock an administrator out.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = parse_max_connections)]
    pub(crate) max_unauthenticated_admin: usize,

    /// Answers BIND requests with 0x07 (command not supported). BIND is served by default.
    #[arg(long)]
    pub(crate) no_bind: bool,

    /// Answers UDP ASSOCIATE requests with 0x07 (command not supported). Served by default.
    #[arg(long)]
    pub(crate) no_udp: bool,

    /// The address the UDP ASSOCIATE reply tells clients to send to (behind NAT or a load
    /// balancer). Default: the address the client reached the proxy on.
    #[arg(long, value_name = "ADDR")]
    pub(crate) udp_advertise: Option<std::net::IpAddr>,

    /// Seconds (0 to 86400) a resolved destination name is kept, so that requests for it do
    /// not ask the system resolver again; a failed lookup is kept for at most 5 s. 0 turns
    /// the cache off.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub(crate) dns_cache_ttl: u64,

    /// Serves Prometheus metrics over HTTP at ADDR:PORT (`GET /metrics`). Off by default; no
    /// authentication, so keep it on loopback or a management network.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) metrics: Option<std::net::SocketAddr>,

    /// Where users (hashed) and the settings administrators change are stored, so they
    /// survive a restart. Default: $STATE_DIRECTORY (systemd), else /var/lib/socks5d when
    /// writable, else ./socks5d-state (with a warning).
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<std::path::PathBuf>,

    /// Keeps users and settings in memory only, as the original did: nothing is stored, admin
    /// changes are lost on restart, and the command line's passwords are held in clear
    /// (no hashing, so no argon2 cost at start-up: for tests and throw-away servers).
    #[arg(long, conflicts_with_all = ["state_dir", "export_users", "import_users", "user_store"])]
    pub(crate) in_memory: bool,

    /// Shares users and settings with a fleet of socks5d through PostgreSQL
    /// (`postgres://USER@HOST:PORT/DB`, or `?host=/run/postgresql` for a unix socket). The
    /// state directory stays this instance's last-known-good copy: it starts and serves with
    /// the database down and catches up when it returns.
    /// Checked by `check_store_url`, whose message never repeats the URL (clap's would).
    #[arg(long, value_name = "URL")]
    pub(crate) user_store: Option<String>,

    /// With --user-store: seconds between two full re-reads of the database (besides the
    /// notifications and every reconnection).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400), requires = "user_store")]
    pub(crate) user_store_resync: u64,

    /// Writes the stored users (names, privileges, password hashes: never passwords) to FILE
    /// and exits; `--import-users` on another server reads it.
    #[arg(long, value_name = "FILE", conflicts_with = "import_users")]
    pub(crate) export_users: Option<std::path::PathBuf>,

    /// Replaces the stored users with those of FILE (from `--export-users`) and exits.
    #[arg(long, value_name = "FILE")]
    pub(crate) import_users: Option<std::path::PathBuf>,

    /// Async runtime.
    #[arg(long, value_enum, value_name = "RUNTIME", default_value = "tokio")]
    pub(crate) runtime: RuntimeArg,

    /// Reads the settings from a TOML file (example.toml documents every key: each flag has
    /// one, plus access rules, limits, per-user settings and PROXY protocol senders). Flags
    /// given here override the file. SIGHUP reloads it (checked first; kept on any error).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,

    /// Checks a configuration file and exits: prints "FILE: ok" (status 0) or the error with
    /// file, line and key (status 2). Opens no socket.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub(crate) check_config: Option<std::path::PathBuf>,

    /// Local address outgoing connections come from; repeat for one IPv4 and one IPv6
    /// address (the destination's family picks). With one family only, names resolve to that
    /// family and the other is unreachable (0x03).
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub(crate) outgoing_addr: Vec<IpAddr>,

    /// Network device outgoing connections are bound to (SO_BINDTODEVICE; needs CAP_NET_RAW).
    #[arg(long, value_name = "NAME")]
    pub(crate) outgoing_interface: Option<String>,

    /// Prints version information and exits.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,

    /// Prints this help and exits.
    #[arg(short = 'h', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

/// `--user-store`: a PostgreSQL URL. The error never repeats it: it may hold a password.
pub(crate) fn check_store_url(s: &str) -> Result<(), String> {
    if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
        return Err("--user-store: expected postgres://… or postgresql://…".into());
    }
    socks5d_store_pg::parse_url(s)
        .map(|_| ())
        .map_err(|e| format!("--user-store: {e}"))
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
    fn defaults_are_loopback() {
        let c = Cli::try_parse_from(["socks5d"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1");
        assert_eq!((c.port, c.admin_port), (1080, 8080));
        assert!(!c.allow_anonymous && !c.no_sniffing && !c.no_cleanup);
        assert_eq!(c.runtime, RuntimeArg::Tokio);
    }

    #[test]
    fn user_store_urls() {
        let url = "postgresql:///socks5d?host=/run/postgresql&user=socks5d";
        let c = Cli::try_parse_from(["socks5d", "--user-store", url]).unwrap();
        assert_eq!(c.user_store.as_deref(), Some(url));
        assert_eq!(c.user_store_resync, 60);
        assert_eq!(check_store_url(url), Ok(()));
        for bad in ["mysql://x/y", "postgres://u:hunter2@h:notaport/db"] {
            let e = check_store_url(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(Cli::try_parse_from(["socks5d", "--user-store-resync", "5"]).is_err());
        assert!(Cli::try_parse_from(["socks5d", "--in-memory", "--user-store", url]).is_err());
    }

    #[test]
    fn dns_cache_ttl() {
        assert_eq!(Cli::try_parse_from(["socks5d"]).unwrap().dns_cache_ttl, 30);
        for (arg, want) in [("0", 0), ("86400", 86_400)] {
            let c = Cli::try_parse_from(["socks5d", "--dns-cache-ttl", arg]).unwrap();
            assert_eq!(c.dns_cache_ttl, want);
        }
        for bad in ["86401", "-1", "30s"] {
            assert!(
                Cli::try_parse_from(["socks5d", "--dns-cache-ttl", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn runtimes() {
        let c = Cli::try_parse_from(["socks5d", "--runtime", "async-std"]).unwrap();
        assert_eq!(c.runtime, RuntimeArg::AsyncStd);
        let c = Cli::try_parse_from(["socks5d", "--runtime", "smol"]).unwrap();
        assert_eq!(c.runtime, RuntimeArg::Smol);
    }

    #[test]
    fn credentials() {
        let c =
            Cli::try_parse_from(["socks5d", "-u", "a:b:c", "-u", "x:y", "-a", "root:pw"]).unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(&c.users[0].password[..], b"b:c");
        assert_eq!(&c.admins[0].user[..], b"root");
        for bad in ["nocolon", ":pw", "user:", "tab\tuser:pw"] {
            let e = Cli::try_parse_from(["socks5d", "-u", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert!(!format!("{:?}", c.users[0]).contains("b:c"));
    }

    #[test]
    fn bad_log_level_is_a_usage_error() {
        let e = Cli::try_parse_from(["socks5d", "--log-level", "foo=bar=baz"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let ok = Cli::try_parse_from(["socks5d", "--log-level", "socks5d_tokio=debug"]).unwrap();
        assert_eq!(ok.log_level.as_deref(), Some("socks5d_tokio=debug"));
    }

    #[test]
    fn ranges() {
        for args in [
            ["socks5d", "--buffer-size", "49"],
            ["socks5d", "--connection-timeout", "0"],
            ["socks5d", "--selector-timeout", "256"],
            ["socks5d", "--max-connections", "0"],
            ["socks5d", "--admin-transport", "udp"],
            ["socks5d", "--runtime", "glommio"],
        ] {
            assert_eq!(Cli::try_parse_from(args).unwrap_err().exit_code(), 2);
        }
    }
}

//! The configuration file of `socks5d` (`--config FILE`, TOML): every command-line flag has a
//! key of the same name (dashes as underscores: `--admin-port` is `admin_port`, `-u` is
//! `user`), plus what only the file can say: access rules (`[[client_rule]]`, `[[rule]]`),
//! limits (`[limits]`), per-user settings (`[users.NAME]`), the egress address
//! (`outgoing_addr`, `outgoing_interface`), `metrics` and `[proxy_protocol]`.
//! `example.toml` at the top of the repository documents every key.
//!
//! # Use (for the driver)
//!
//! - Start: [`load`] the file (an error is fatal: print it, exit 2), then [`merge`] it under
//!   the command line (flags override the file), then [`FileConfig::policy`] for the rules,
//!   limits and egress (a `--outgoing-addr` / `--outgoing-interface` flag replaces
//!   [`Policy::egress`]`.default` / [`Policy::outgoing_interface`]).
//! - `socks5d --check-config FILE`: [`load`] and [`FileConfig::policy`]; print the error or
//!   "FILE: ok"; exit 2 or 0. No socket is opened.
//! - SIGHUP: [`load`] again. On error, log it and keep everything as it was. Else apply the
//!   new [`Policy`] whole (`SharedRules::store`, `Limits::set_config`, the egress table),
//!   move the SOCKS and admin listeners whose address changed (`listen`, `port`,
//!   `admin_listen`, `admin_port`: bound before anything is applied), log a warning naming
//!   each other key of [`FileConfig::needs_restart`] (those keep their old value), and keep
//!   every live session. The settings the administration protocol changes
//!   too (`buffer_size`, `connection_timeout`, `selector_timeout`, `no_sniffing`,
//!   `no_cleanup`) are applied only where the file's value changed since
//!   the last load, so that an administrator's change survives a reload that does not touch
//!   it. Users and passwords of the file are not applied again on reload: at run time the
//!   administration protocol owns the user list (per-user limits and egress are applied).
//!
//! # Errors
//!
//! Unknown keys, values of the wrong type and values out of range are refused, all of them
//! when the file is read, as `FILE:LINE: key `KEY`: WHAT` ([`ConfigError`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::parser::ValueSource;
use clap::{ArgMatches, ValueEnum};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use socks5d_cli::args::{DialectArg, TransportArg};
use socks5d_core::policy::{
    Action, Cidr, ClientRule, DestMatch, DestRule, Egress, EgressTable, LimitsConfig, Rules,
    UserLimits,
};
use socks5d_core::socks5::Command;
use socks5d_core::state::{
    is_valid_password, is_valid_username, Secret, MAX_BUFFER_SIZE, MIN_BUFFER_SIZE,
};
use toml::Spanned;

use crate::cli::{Cli, Credentials, RuntimeArg};

/// Why a configuration file was refused.
#[derive(Debug)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not TOML, or a key or value is wrong.
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value (0 when unknown).
        line: usize,
        /// The key, dotted (`limits.user_upload`, `rule[2].ports`); empty for a syntax error.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Invalid {
                path,
                line,
                key,
                message,
            } => {
                write!(f, "{}", path.display())?;
                if *line > 0 {
                    write!(f, ":{line}")?;
                }
                if !key.is_empty() {
                    write!(f, ": key `{key}`")?;
                }
                write!(f, ": {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Invalid { .. } => None,
        }
    }
}

/// Returns the 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads and checks a configuration file.
///
/// # Errors
///
/// [`ConfigError`]: the file cannot be read, is not TOML, has an unknown key or a bad value.
pub(crate) fn load(path: impl AsRef<Path>) -> Result<FileConfig, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Checks the text of a configuration file; `path` names it in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let invalid =
        |span: Option<std::ops::Range<usize>>, key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: span.map_or(0, |s| line_of(text, s.start)),
            key,
            message,
        };
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| invalid(e.span(), String::new(), e.message().to_owned()))?;
    let file: FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let e = e.into_inner();
        // `.` is serde_path_to_error's name for the top level (an error about the whole
        // file); `toml::Spanned` adds a private segment of its own.
        let key = key.replace(".$__serde_spanned_private_value", "");
        let key = if key == "." { String::new() } else { key };
        invalid(e.span(), key, e.message().to_owned())
    })?;
    file.check()
        .map_err(|(span, key, message)| invalid(Some(span), key, message))?;
    Ok(file)
}

/// The configuration file, checked. `None` / empty: not in the file (the command line or
/// the default decides).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// `--listen`.
    pub(crate) listen: Option<IpAddr>,
    /// `--port`.
    pub(crate) port: Option<u16>,
    /// `--admin-listen`.
    pub(crate) admin_listen: Option<IpAddr>,
    /// `--admin-port`.
    pub(crate) admin_port: Option<u16>,
    /// `--user`, a list of `"USER:PASS"`.
    #[serde(default)]
    pub(crate) user: Vec<Spanned<Credentials>>,
    /// `--admin`, a list of `"USER:PASS"`.
    #[serde(default)]
    pub(crate) admin: Vec<Spanned<Credentials>>,
    /// `--no-sniffing`.
    pub(crate) no_sniffing: Option<bool>,
    /// `--no-cleanup`.
    pub(crate) no_cleanup: Option<bool>,
    /// `--admin-dialect`.
    #[serde(default, deserialize_with = "value_enum")]
    pub(crate) admin_dialect: Option<DialectArg>,
    /// `--admin-transport`.
    #[serde(default, deserialize_with = "value_enum")]
    pub(crate) admin_transport: Option<TransportArg>,
    /// `--allow-anonymous`.
    pub(crate) allow_anonymous: Option<bool>,
    /// `--log-level`.
    #[serde(default, deserialize_with = "log_level")]
    pub(crate) log_level: Option<String>,
    /// `--max-connections`.
    #[serde(default, deserialize_with = "positive")]
    pub(crate) max_connections: Option<usize>,
    /// `--buffer-size`.
    #[serde(default, deserialize_with = "buffer_size")]
    pub(crate) buffer_size: Option<u32>,
    /// `--connection-timeout`.
    #[serde(default, deserialize_with = "seconds")]
    pub(crate) connection_timeout: Option<u8>,
    /// `--selector-timeout`.
    #[serde(default, deserialize_with = "seconds")]
    pub(crate) selector_timeout: Option<u8>,
    /// `--half-close-timeout`.
    #[serde(default, deserialize_with = "seconds")]
    pub(crate) half_close_timeout: Option<u8>,
    /// `--max-admin-connections`.
    #[serde(default, deserialize_with = "positive")]
    pub(crate) max_admin_connections: Option<usize>,
    /// `--max-unauthenticated-admin`.
    #[serde(default, deserialize_with = "positive")]
    pub(crate) max_unauthenticated_admin: Option<usize>,
    /// `--no-bind`.
    pub(crate) no_bind: Option<bool>,
    /// `--no-udp`.
    pub(crate) no_udp: Option<bool>,
    /// `--runtime`.
    #[serde(default, deserialize_with = "value_enum")]
    pub(crate) runtime: Option<RuntimeArg>,
    /// `--outgoing-addr`: one address, or a list of at most one IPv4 and one IPv6 address.
    #[serde(default, deserialize_with = "egress")]
    pub(crate) outgoing_addr: Option<Egress>,
    /// `--outgoing-interface`: the device outgoing connections are bound to (SO_BINDTODEVICE).
    #[serde(default, deserialize_with = "interface")]
    pub(crate) outgoing_interface: Option<String>,
    /// `--metrics`: address of the metrics endpoint.
    pub(crate) metrics: Option<SocketAddr>,
    /// `--udp-advertise`.
    pub(crate) udp_advertise: Option<IpAddr>,
    /// `--dns-cache-ttl`: seconds a resolved name is kept (0 to 86400; 0: off).
    #[serde(default, deserialize_with = "dns_cache_ttl")]
    pub(crate) dns_cache_ttl: Option<u64>,
    /// `--state-dir`.
    pub(crate) state_dir: Option<PathBuf>,
    /// `--in-memory`.
    pub(crate) in_memory: Option<bool>,
    /// `--user-store`: the fleet's PostgreSQL URL (in the file, its password stays out of
    /// `ps`). Checked by `cli::check_store_url` when read, as the flag is.
    #[serde(default, deserialize_with = "store_url")]
    pub(crate) user_store: Option<String>,
    /// `--user-store-resync`: seconds between two full re-reads of the database (1 to 86400).
    #[serde(default, deserialize_with = "resync_secs")]
    pub(crate) user_store_resync: Option<u64>,
    /// `[proxy_protocol]`.
    pub(crate) proxy_protocol: Option<ProxyProtocol>,
    /// `[[client_rule]]`, in order.
    #[serde(default)]
    pub(crate) client_rule: Vec<ClientRuleEntry>,
    /// `[[rule]]`, in order.
    #[serde(default)]
    pub(crate) rule: Vec<RuleEntry>,
    /// `[limits]`.
    pub(crate) limits: Option<LimitsEntry>,
    /// `[users.NAME]`.
    #[serde(default)]
    pub(crate) users: BTreeMap<UserName, UserEntry>,
}

/// `[proxy_protocol]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyProtocol {
    /// Client addresses (load balancers) whose PROXY protocol header is believed.
    #[serde(default)]
    pub(crate) trusted: Vec<CidrValue>,
}

/// `[[client_rule]]`: `from` (a block) and `action`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientRuleEntry {
    from: CidrValue,
    action: ActionValue,
}

/// `[[rule]]`: `action`, and optionally `user`, `to`, `ports`, `command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleEntry {
    action: ActionValue,
    user: Option<UserName>,
    #[serde(default)]
    to: DestValue,
    #[serde(default)]
    ports: PortsValue,
    command: Option<CommandValue>,
}

/// `[limits]`: 0 or absent means no limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsEntry {
    user_max_connections: Option<u32>,
    user_upload: Option<ByteRate>,
    user_download: Option<ByteRate>,
    ip_max_connections: Option<u32>,
    ip_connections_per_second: Option<u32>,
    max_handshakes: Option<u32>,
}

/// `[users.NAME]`: absent, the default of `[limits]` (or `outgoing_addr`); 0, no limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserEntry {
    /// Creates the user with this password (else the entry only sets limits and egress for a
    /// user made elsewhere: a flag, `user`/`admin`, or the administration protocol).
    password: Option<Spanned<Password>>,
    /// With `password`: the user is an administrator.
    admin: Option<Spanned<bool>>,
    #[serde(default, deserialize_with = "egress")]
    egress: Option<Egress>,
    max_connections: Option<u32>,
    upload: Option<ByteRate>,
    download: Option<ByteRate>,
}

/// What the file sets beyond the command line's flags: the policy of `socks5d_core::policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Access rules.
    pub(crate) rules: Rules,
    /// Connection and bandwidth limits.
    pub(crate) limits: LimitsConfig,
    /// Egress addresses, server-wide and per user.
    pub(crate) egress: EgressTable,
    /// `outgoing_interface`.
    pub(crate) outgoing_interface: Option<String>,
    /// `proxy_protocol.trusted`.
    pub(crate) proxy_trusted: Vec<Cidr>,
    /// `metrics`.
    pub(crate) metrics: Option<SocketAddr>,
}

impl FileConfig {
    /// Checks what spans several values; `Err((span, key, message))`.
    fn check(&self) -> Result<(), (std::ops::Range<usize>, String, String)> {
        // A name given a password twice is a mistake whichever one was meant.
        let mut seen: HashMap<&[u8], ()> = HashMap::new();
        let lists = [("user", &self.user), ("admin", &self.admin)];
        for (key, list) in lists {
            for (i, c) in list.iter().enumerate() {
                if seen.insert(&c.get_ref().user, ()).is_some() {
                    return Err((
                        c.span(),
                        format!("{key}[{i}]"),
                        format!("user {:?} is defined twice", show(&c.get_ref().user)),
                    ));
                }
            }
        }
        for (name, u) in &self.users {
            if let (Some(p), true) = (&u.password, seen.contains_key(&name.0[..])) {
                return Err((
                    p.span(),
                    format!("users.{}.password", show(&name.0)),
                    format!("user {:?} is defined twice", show(&name.0)),
                ));
            }
            if let (Some(a), None) = (&u.admin, &u.password) {
                if !*a.get_ref() {
                    continue;
                }
                return Err((
                    a.span(),
                    format!("users.{}.admin", show(&name.0)),
                    "`admin = true` needs a `password` (an administrator is created here)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Returns the users the file creates (`user`, `admin`, `[users.NAME] password`), as
    /// (credentials, is administrator).
    pub(crate) fn credentials(&self) -> Vec<(Credentials, bool)> {
        let mut v: Vec<_> = self
            .user
            .iter()
            .map(|c| (c.get_ref().clone(), false))
            .collect();
        v.extend(self.admin.iter().map(|c| (c.get_ref().clone(), true)));
        for (name, u) in &self.users {
            if let Some(p) = &u.password {
                v.push((
                    Credentials {
                        user: name.0.clone(),
                        password: p.get_ref().0.expose().clone(),
                    },
                    u.admin.as_ref().is_some_and(|a| *a.get_ref()),
                ));
            }
        }
        v
    }

    /// Returns the rules, limits and egress the file sets.
    pub(crate) fn policy(&self) -> Policy {
        let client = self
            .client_rule
            .iter()
            .map(|r| ClientRule {
                from: r.from.0,
                action: r.action.into(),
            })
            .collect();
        let dest = self
            .rule
            .iter()
            .map(|r| DestRule {
                user: r.user.as_ref().map(|u| u.0.clone()),
                dest: r.to.0.clone(),
                ports: r.ports.0.clone(),
                command: r.command.map(Into::into),
                action: r.action.into(),
            })
            .collect();
        let l = self.limits.clone().unwrap_or_default();
        let mut limits = LimitsConfig {
            user_max_connections: l.user_max_connections.and_then(NonZeroU32::new),
            user_upload: l.user_upload.and_then(|r| NonZeroU64::new(r.0)),
            user_download: l.user_download.and_then(|r| NonZeroU64::new(r.0)),
            users: HashMap::new(),
            ip_max_connections: l.ip_max_connections.and_then(NonZeroU32::new),
            ip_connections_per_second: l.ip_connections_per_second.and_then(NonZeroU32::new),
            max_handshakes: l.max_handshakes.and_then(NonZeroU32::new),
        };
        let mut egress = EgressTable {
            default: self.outgoing_addr.unwrap_or_default(),
            users: HashMap::new(),
        };
        for (name, u) in &self.users {
            let over = UserLimits {
                max_connections: u.max_connections.map(NonZeroU32::new),
                upload: u.upload.map(|r| NonZeroU64::new(r.0)),
                download: u.download.map(|r| NonZeroU64::new(r.0)),
            };
            if over != UserLimits::default() {
                limits.users.insert(name.0.clone(), over);
            }
            if let Some(e) = u.egress {
                egress.users.insert(name.0.clone(), e);
            }
        }
        Policy {
            rules: Rules::new(client, dest),
            limits,
            egress,
            outgoing_interface: self.outgoing_interface.clone(),
            proxy_trusted: self
                .proxy_protocol
                .iter()
                .flat_map(|p| p.trusted.iter().map(|c| c.0))
                .collect(),
            metrics: self.metrics,
        }
    }

    /// Returns the keys whose change (from `self`, in force, to `new`) a reload cannot apply:
    /// listening sockets, the runtime, sizes fixed at start. The reload applies the rest and
    /// logs these as needing a restart.
    pub(crate) fn needs_restart(&self, new: &Self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! cmp {
            ($($k:ident),*) => {$(
                if self.$k != new.$k {
                    keys.push(stringify!($k));
                }
            )*};
        }
        cmp!(
            listen,
            port,
            admin_listen,
            admin_port,
            admin_dialect,
            admin_transport,
            log_level,
            max_connections,
            max_admin_connections,
            max_unauthenticated_admin,
            half_close_timeout,
            no_bind,
            no_udp,
            runtime,
            metrics,
            udp_advertise,
            dns_cache_ttl,
            state_dir,
            in_memory,
            allow_anonymous,
            user_store,
            user_store_resync
        );
        keys
    }
}

/// Puts the file under the command line: each key of the file is used where its flag was
/// not given on the command line (`matches`, from `Cli::command().get_matches()`, tells
/// which were), so flags override the file.
///
/// Users: the file's users (`user`, `admin`, `[users.NAME] password`) are added to the
/// command line's, except a name the command line gives (in `-u` or `-a`), which keeps the
/// command line's password and privilege.
///
/// The keys without a flag in `Cli` (rules, limits, egress, `metrics`, `proxy_protocol`)
/// come from [`FileConfig::policy`].
pub(crate) fn merge(cli: &mut Cli, matches: &ArgMatches, file: &FileConfig) {
    let from_file = |id: &str| matches.value_source(id) != Some(ValueSource::CommandLine);
    macro_rules! take {
        ($($field:ident),*) => {$(
            if let (true, Some(v)) = (from_file(stringify!($field)), file.$field.clone()) {
                cli.$field = v;
            }
        )*};
    }
    take!(
        listen,
        port,
        admin_listen,
        admin_port,
        admin_dialect,
        admin_transport,
        buffer_size,
        connection_timeout,
        selector_timeout,
        half_close_timeout,
        max_admin_connections,
        max_unauthenticated_admin,
        runtime
    );
    macro_rules! take_flag {
        ($($field:ident),*) => {$(
            if let (true, Some(v)) = (from_file(stringify!($field)), file.$field) {
                cli.$field = v;
            }
        )*};
    }
    take_flag!(
        no_sniffing,
        no_cleanup,
        allow_anonymous,
        no_bind,
        no_udp,
        in_memory
    );
    macro_rules! take_opt {
        ($($field:ident),*) => {$(
            if from_file(stringify!($field)) && file.$field.is_some() {
                cli.$field.clone_from(&file.$field);
            }
        )*};
    }
    take_opt!(
        metrics,
        udp_advertise,
        state_dir,
        outgoing_interface,
        user_store
    );
    if let (true, Some(v)) = (from_file("user_store_resync"), file.user_store_resync) {
        cli.user_store_resync = v;
    }
    if let (true, Some(v)) = (from_file("dns_cache_ttl"), file.dns_cache_ttl) {
        cli.dns_cache_ttl = v;
    }
    if from_file("log_level") && file.log_level.is_some() {
        cli.log_level.clone_from(&file.log_level);
    }
    if from_file("max_connections") && file.max_connections.is_some() {
        cli.max_connections = file.max_connections;
    }
    let on_cli: Vec<Bytes> = cli
        .users
        .iter()
        .chain(&cli.admins)
        .map(|c| c.user.clone())
        .collect();
    for (c, admin) in file.credentials() {
        if on_cli.contains(&c.user) {
            continue;
        }
        if admin {
            cli.admins.push(c);
        } else {
            cli.users.push(c);
        }
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------
// Values: each checks itself while it is read, so its error carries its line.

impl<'de> Deserialize<'de> for Credentials {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let Some((user, password)) = s.split_once(':') else {
            return Err(de::Error::custom(
                "expected \"USER:PASS\" (a colon between user name and password)",
            ));
        };
        if !is_valid_username(user.as_bytes()) {
            return Err(de::Error::custom(format!(
                "invalid user name {user:?}: 1 to 255 printable ASCII characters, no ':'"
            )));
        }
        if !is_valid_password(password.as_bytes()) {
            return Err(de::Error::custom("invalid password: 1 to 255 bytes"));
        }
        Ok(Self {
            user: Bytes::copy_from_slice(user.as_bytes()),
            password: Bytes::copy_from_slice(password.as_bytes()),
        })
    }
}

/// A user name (the key of `[users.NAME]`, `user` of a rule).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct UserName(pub(crate) Bytes);

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if is_valid_username(s.as_bytes()) {
            Ok(Self(Bytes::from(s)))
        } else {
            Err(de::Error::custom(format!(
                "invalid user name {s:?}: 1 to 255 printable ASCII characters, no ':'"
            )))
        }
    }
}

/// A password (never shown by `Debug`).
#[derive(Debug, Clone)]
struct Password(Secret);

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if is_valid_password(s.as_bytes()) {
            Ok(Self(Secret::new(Bytes::from(s))))
        } else {
            Err(de::Error::custom("invalid password: 1 to 255 bytes"))
        }
    }
}

/// An address block, `ADDR/PREFIX` or `ADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CidrValue(pub(crate) Cidr);

impl<'de> Deserialize<'de> for CidrValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map(Self)
            .map_err(|e| de::Error::custom(format!("{s:?}: {e}")))
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionValue {
    Allow,
    Deny,
}

impl From<ActionValue> for Action {
    fn from(a: ActionValue) -> Self {
        match a {
            ActionValue::Allow => Self::Allow,
            ActionValue::Deny => Self::Deny,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CommandValue {
    Connect,
    Bind,
    #[serde(alias = "udp_associate")]
    Udp,
}

impl From<CommandValue> for Command {
    fn from(c: CommandValue) -> Self {
        match c {
            CommandValue::Connect => Self::Connect,
            CommandValue::Bind => Self::Bind,
            CommandValue::Udp => Self::UdpAssociate,
        }
    }
}

/// `to` of a rule: `"any"`, an address block, or a domain suffix.
#[derive(Debug, Clone)]
struct DestValue(DestMatch);

impl Default for DestValue {
    fn default() -> Self {
        Self(DestMatch::Any)
    }
}

impl<'de> Deserialize<'de> for DestValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "any" {
            return Ok(Self(DestMatch::Any));
        }
        // Anything that looks like an address is one: a typo there must not quietly
        // become a domain suffix that matches nothing.
        let addr_like = s.contains('/')
            || s.contains(':')
            || s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if addr_like {
            return s
                .parse::<Cidr>()
                .map(|c| Self(DestMatch::Cidr(c)))
                .map_err(|e| de::Error::custom(format!("{s:?}: {e}")));
        }
        DestMatch::domain(&s).map(Self).ok_or_else(|| {
            de::Error::custom(format!(
                "{s:?}: expected \"any\", an address block (\"10.0.0.0/8\") or a domain suffix (\".example.com\")"
            ))
        })
    }
}

/// `ports` of a rule: a port (`443`, `"443"`) or a range (`"1000-2000"`).
#[derive(Debug, Clone)]
struct PortsValue(std::ops::RangeInclusive<u16>);

impl Default for PortsValue {
    fn default() -> Self {
        Self(0..=u16::MAX)
    }
}

impl<'de> Deserialize<'de> for PortsValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortsValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (0 to 65535) or a range \"LOW-HIGH\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortsValue, E> {
                let p = u16::try_from(v).map_err(|_| E::custom("a port is 0 to 65535"))?;
                Ok(PortsValue(p..=p))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortsValue, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortsValue, E> {
                let port = |p: &str| {
                    p.trim()
                        .parse::<u16>()
                        .map_err(|_| E::custom(format!("{s:?}: a port is 0 to 65535")))
                };
                let (lo, hi) = match s.split_once('-') {
                    Some((lo, hi)) => (port(lo)?, port(hi)?),
                    None => (port(s)?, port(s)?),
                };
                if lo > hi {
                    return Err(E::custom(format!("{s:?}: the range is empty (LOW > HIGH)")));
                }
                Ok(PortsValue(lo..=hi))
            }
        }
        d.deserialize_any(V)
    }
}

/// Bytes per second: an integer, or a string with a unit (`"512k"`, `"10MiB"`; k/M/G are
/// powers of 1000, KiB/MiB/GiB of 1024; `B` and `/s` may follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRate(u64);

fn parse_byte_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected bytes per second, e.g. 1048576 or \"1MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (k, M, G, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))
}

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes per second (0: no limit), e.g. 1048576 or \"1MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteRate, E> {
                u64::try_from(v)
                    .map(ByteRate)
                    .map_err(|_| E::custom("a rate cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteRate, E> {
                Ok(ByteRate(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteRate, E> {
                parse_byte_rate(s).map(ByteRate).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `outgoing_addr` / `egress`: an address, or a list of at most one per family.
fn egress<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Egress>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<IpAddr>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IP address, or a list of one IPv4 and one IPv6 address")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<IpAddr>, E> {
            s.parse()
                .map(|a| vec![a])
                .map_err(|_| E::custom(format!("{s:?} is not an IP address")))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<IpAddr>, A::Error> {
            let mut v = Vec::new();
            while let Some(a) = seq.next_element()? {
                v.push(a);
            }
            Ok(v)
        }
    }
    let addrs = d.deserialize_any(V)?;
    if addrs.is_empty() {
        return Ok(None);
    }
    Egress::from_addrs(&addrs)
        .map(Some)
        .map_err(de::Error::custom)
}

/// `outgoing_interface`: a network device name (1 to 15 bytes, as Linux's IFNAMSIZ allows).
fn interface<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let ok = (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(Some(s))
    } else {
        Err(de::Error::custom(format!(
            "{s:?} is not a network interface name (1 to 15 characters, no '/', ':' or spaces)"
        )))
    }
}

/// `user_store`: a PostgreSQL URL, checked as `--user-store` is (the message never repeats
/// the URL: it may hold a password).
fn store_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    crate::cli::check_store_url(&s).map_err(de::Error::custom)?;
    Ok(Some(s))
}

/// `user_store_resync`: 1 to 86400 seconds, as `--user-store-resync`.
fn resync_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    secs_in(d, 1..=86_400)
}

/// `dns_cache_ttl`: 0 to 86400 seconds, as `--dns-cache-ttl`.
fn dns_cache_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    secs_in(d, 0..=86_400)
}

/// A number of seconds within `range`.
fn secs_in<'de, D: Deserializer<'de>>(
    d: D,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, D::Error> {
    let n = u64::deserialize(d)?;
    if range.contains(&n) {
        Ok(Some(n))
    } else {
        Err(de::Error::custom(format!(
            "{n} is not in {}..={}",
            range.start(),
            range.end()
        )))
    }
}

/// A value of one of the command line's enumerations, spelled as on the command line.
fn value_enum<'de, D: Deserializer<'de>, T: ValueEnum>(d: D) -> Result<Option<T>, D::Error> {
    let s = String::deserialize(d)?;
    T::from_str(&s, false).map(Some).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
            .collect();
        de::Error::custom(format!("{s:?}: expected one of {}", names.join(", ")))
    })
}

fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    match tracing_subscriber::EnvFilter::try_new(&s) {
        Ok(_) => Ok(Some(s)),
        Err(e) => Err(de::Error::custom(format!(
            "{s:?}: not a level or tracing filter ({e})"
        ))),
    }
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = u64::deserialize(d)?;
    match usize::try_from(n) {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(de::Error::custom("must be a positive whole number")),
    }
}

fn buffer_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = u64::deserialize(d)?;
    match u32::try_from(n) {
        Ok(n) if (MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&n) => Ok(Some(n)),
        _ => Err(de::Error::custom(format!(
            "must be between {MIN_BUFFER_SIZE} and {MAX_BUFFER_SIZE} bytes"
        ))),
    }
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let n = u64::deserialize(d)?;
    match u8::try_from(n) {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(de::Error::custom(
            "must be a whole number of seconds from 1 to 255",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};
    use socks5d_core::policy::{DecidedBy, Rate};
    use socks5d_core::socks5::TargetAddr;

    const EXAMPLE: &str = include_str!("../../example.toml");

    fn parse_str(text: &str) -> Result<FileConfig, String> {
        parse(Path::new("test.toml"), text).map_err(|e| e.to_string())
    }

    /// Uncomments the optional settings of example.toml (`#key = ...` lines).
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The keys a table accepts, as toml's unknown-field message lists them (so the list
    /// comes from the structs themselves, not from a copy here).
    fn keys_of(header: &str) -> Vec<String> {
        let text = format!("{header}\nzz_unknown = 1\n");
        let err = parse_str(&text).unwrap_err();
        let list = err
            .split_once("expected one of ")
            .or_else(|| err.split_once("expected "))
            .map(|(_, l)| l.to_owned())
            .unwrap_or_else(|| panic!("{err}"));
        list.split(", ")
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim_matches('`').to_owned())
            .collect()
    }

    #[test]
    fn example_loads_and_documents_every_key() {
        let plain = parse_str(EXAMPLE).unwrap();
        let full_text = uncommented(EXAMPLE);
        let full = parse_str(&full_text).unwrap();
        let doc: toml::Table = full_text.parse().unwrap();
        let tables: [(&str, &toml::Table); 6] = [
            ("", &doc),
            ("[limits]", doc["limits"].as_table().unwrap()),
            (
                "[proxy_protocol]",
                doc["proxy_protocol"].as_table().unwrap(),
            ),
            ("[users.x]", doc["users"]["ops"].as_table().unwrap()),
            ("[[rule]]", doc["rule"][0].as_table().unwrap()),
            ("[[client_rule]]", doc["client_rule"][0].as_table().unwrap()),
        ];
        for (header, table) in tables {
            let keys = keys_of(header);
            assert!(!keys.is_empty(), "{header}: {keys:?}");
            for k in keys {
                let present = table.contains_key(&k)
                    || (header == "[[rule]]"
                        && doc["rule"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|r| r.as_table().unwrap().contains_key(&k)));
                assert!(present, "example.toml does not show {header} key `{k}`");
            }
        }
        // Every flag of the command line has its key.
        let top = keys_of("");
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            // Actions, not settings: they make the command do something else and exit (or,
            // for `config`, name the file itself).
            let actions = [
                "version",
                "help",
                "config",
                "check_config",
                "export_users",
                "import_users",
            ];
            if actions.contains(&id) {
                continue;
            }
            let key = match id {
                "users" => "user",
                "admins" => "admin",
                other => other,
            };
            assert!(top.iter().any(|k| k == key), "flag --{id} has no key");
        }
        // What the example says it does.
        let p = plain.policy();
        assert_eq!(p.rules.client_rules().len(), 5);
        assert!(!p
            .rules
            .check_client("192.0.2.1".parse().unwrap())
            .is_allowed());
        assert!(p
            .rules
            .check_client("::ffff:10.1.1.1".parse().unwrap())
            .is_allowed());
        let meta = TargetAddr::Ip("169.254.169.254:80".parse().unwrap());
        let c = Command::Connect;
        assert!(p
            .rules
            .check_dest(Some(b"ops"), &meta, None, c)
            .is_allowed());
        assert!(!p
            .rules
            .check_dest(Some(b"dev"), &meta, None, c)
            .is_allowed());
        let intranet = TargetAddr::Domain(Bytes::from_static(b"git.corp.internal"), 443);
        assert!(!p.rules.check_dest(None, &intranet, None, c).is_allowed());
        let name = TargetAddr::Domain(Bytes::from_static(b"example.org"), 443);
        let v = p
            .rules
            .check_dest(None, &name, Some("10.1.2.3".parse().unwrap()), c);
        assert!(!v.is_allowed(), "a name resolving to 10/8 is refused");
        let dns = TargetAddr::Ip("192.0.2.53:53".parse().unwrap());
        assert!(p
            .rules
            .check_dest(None, &dns, None, Command::UdpAssociate)
            .is_allowed());
        let ntp = TargetAddr::Ip("192.0.2.53:123".parse().unwrap());
        assert!(!p
            .rules
            .check_dest(None, &ntp, None, Command::UdpAssociate)
            .is_allowed());
        assert_eq!(p.limits.user_download, NonZeroU64::new(100 << 20));
        assert_eq!(p.limits.user_upload, None);
        assert_eq!(p.limits.max_connections_of(b"ops"), NonZeroU32::new(8));
        assert_eq!(p.limits.max_connections_of(b"dev"), NonZeroU32::new(64));
        assert_eq!(p.limits.rates_of(b"ops"), (Rate::per_second(1 << 20), None));
        assert_eq!(
            p.egress.for_user(Some(b"ops")).v4,
            Some([127, 0, 0, 1].into())
        );
        assert!(p.egress.default.is_default());
        assert!(plain.credentials().is_empty());
        let full = full.policy();
        assert_eq!(
            full.egress.default.v6,
            Some("2001:db8::10".parse().unwrap())
        );
        assert_eq!(full.outgoing_interface.as_deref(), Some("eth1"));
        assert_eq!(full.proxy_trusted.len(), 2);
        assert_eq!(full.metrics, Some("127.0.0.1:9090".parse().unwrap()));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        for (text, want) in [
            ("port = 1\nbogus = 2\n", "test.toml:2: key `bogus`: unknown field `bogus`"),
            ("port = 70000\n", "test.toml:1: key `port`: invalid value: integer `70000`, expected u16"),
            ("port = \"1080\"\n", "test.toml:1: key `port`: invalid type: string"),
            ("\n\n[limits]\nuser_upload = \"1 parsec\"\n", "test.toml:4: key `limits.user_upload`: \"1 parsec\": unknown unit"),
            ("[limits]\nuser_max_connections = -1\n", "test.toml:2: key `limits.user_max_connections`: invalid value"),
            ("[limits]\nfoo = 1\n", "test.toml:2: key `limits.foo`: unknown field `foo`"),
            ("[[rule]]\naction = \"allow\"\n[[rule]]\naction = \"maybe\"\n", "test.toml:4: key `rule[1].action`: unknown variant `maybe`, expected `allow` or `deny`"),
            ("[[rule]]\nto = \"any\"\n", "test.toml:1: key `rule[0]`: missing field `action`"),
            ("[[rule]]\naction = \"deny\"\nto = \"10.0.0.1/8\"\n", "test.toml:3: key `rule[0].to`: \"10.0.0.1/8\": bits set past the prefix length"),
            ("[[rule]]\naction = \"deny\"\nto = \"10.0.0\"\n", "test.toml:3: key `rule[0].to`: \"10.0.0\": not an IP address"),
            ("[[rule]]\naction = \"deny\"\nto = \"a b\"\n", "test.toml:3: key `rule[0].to`: \"a b\": expected \"any\""),
            ("[[rule]]\naction = \"deny\"\nports = \"2000-1000\"\n", "test.toml:3: key `rule[0].ports`: \"2000-1000\": the range is empty"),
            ("[[rule]]\naction = \"deny\"\nports = 65536\n", "test.toml:3: key `rule[0].ports`: a port is 0 to 65535"),
            ("[[rule]]\naction = \"deny\"\ncommand = \"ping\"\n", "test.toml:3: key `rule[0].command`: unknown variant `ping`"),
            ("[[rule]]\naction = \"deny\"\nuser = \"a:b\"\n", "test.toml:3: key `rule[0].user`: invalid user name \"a:b\""),
            ("[[client_rule]]\nfrom = \"::/129\"\naction = \"deny\"\n", "test.toml:2: key `client_rule[0].from`: \"::/129\": prefix length must be 0 to 128"),
            ("outgoing_addr = [\"192.0.2.1\", \"192.0.2.2\"]\n", "test.toml:1: key `outgoing_addr`: two IPv4 egress addresses"),
            ("outgoing_addr = [\"192.0.2.1\", \"nope\"]\n", "test.toml:1: key `outgoing_addr[1]`: invalid IP address syntax"),
            ("outgoing_addr = \"0.0.0.0\"\n", "test.toml:1: key `outgoing_addr`: 0.0.0.0 cannot be the source"),
            ("outgoing_interface = \"a/b\"\n", "test.toml:1: key `outgoing_interface`: \"a/b\" is not a network interface name"),
            ("runtime = \"glommio\"\n", "test.toml:1: key `runtime`: \"glommio\": expected one of tokio, smol, async-std"),
            ("admin_transport = \"udp\"\n", "test.toml:1: key `admin_transport`: \"udp\": expected one of auto, sctp, tcp"),
            ("buffer_size = 49\n", "test.toml:1: key `buffer_size`: must be between 50 and 1048576 bytes"),
            ("connection_timeout = 0\n", "test.toml:1: key `connection_timeout`: must be a whole number of seconds from 1 to 255"),
            ("selector_timeout = 256\n", "test.toml:1: key `selector_timeout`: must be a whole number"),
            ("max_connections = 0\n", "test.toml:1: key `max_connections`: must be a positive whole number"),
            ("log_level = \"foo=bar=baz\"\n", "test.toml:1: key `log_level`: \"foo=bar=baz\": not a level or tracing filter"),
            ("user = [\"alice\"]\n", "test.toml:1: key `user[0]`: expected \"USER:PASS\""),
            ("user = [\"alice:a\"]\nadmin = [\"alice:b\"]\n", "test.toml:2: key `admin[0]`: user \"alice\" is defined twice"),
            ("user = [\"alice:a\"]\n[users.alice]\npassword = \"b\"\n", "test.toml:3: key `users.alice.password`: user \"alice\" is defined twice"),
            ("[users.alice]\nadmin = true\n", "test.toml:2: key `users.alice.admin`: `admin = true` needs a `password`"),
            ("[users.\"a:b\"]\nmax_connections = 1\n", "test.toml:1: key `users.a:b`: invalid user name \"a:b\""),
            ("[users.alice]\nspeed = 1\n", "test.toml:2: key `users.alice.speed`: unknown field `speed`"),
            ("[users.alice]\npassword = \"\"\n", "test.toml:2: key `users.alice.password`: invalid password"),
            ("[proxy_protocol]\ntrusted = [\"10.0.0.0/8\", \"x\"]\n", "test.toml:2: key `proxy_protocol.trusted[1]`: \"x\": not an IP address"),
            ("metrics = \"localhost:9090\"\n", "test.toml:1: key `metrics`: invalid socket address syntax"),
            ("dns_cache_ttl = 86401\n", "test.toml:1: key `dns_cache_ttl`: 86401 is not in 0..=86400"),
            ("dns_cache_ttl = -1\n", "test.toml:1: key `dns_cache_ttl`: invalid value"),
            ("port = 1\nport = 2\n", "test.toml:2: duplicate key"),
            ("port = \n", "test.toml:1: "),
        ] {
            let got = parse_str(text).map(|_| ()).unwrap_err();
            assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}…");
        }
        let e = load("/nonexistent/socks5d.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }));
        assert!(
            e.to_string().starts_with("/nonexistent/socks5d.toml: "),
            "{e}"
        );
    }

    #[test]
    fn values() {
        for (s, n) in [
            ("0", 0),
            ("1000", 1000),
            ("512k", 512_000),
            ("10MiB", 10 << 20),
            ("10 MiB/s", 10 << 20),
            ("1GB", 1_000_000_000),
            ("2Ki", 2048),
            ("7B", 7),
        ] {
            assert_eq!(parse_byte_rate(s), Ok(n), "{s}");
        }
        for bad in ["", "MiB", "1.5MiB", "-1", "1 parsec", "99999999999999GiB"] {
            assert!(parse_byte_rate(bad).is_err(), "{bad}");
        }
        let f = parse_str(
            "[[rule]]\naction = \"deny\"\nto = \".Example.COM.\"\nports = \"80\"\n\
             [[rule]]\naction = \"deny\"\nto = \"::ffff:10.0.0.0/104\"\nports = \" 1 - 2 \"\n\
             [[rule]]\naction = \"allow\"\ncommand = \"udp_associate\"\n\
             [limits]\nuser_upload = 1048576\n",
        )
        .unwrap();
        let p = f.policy();
        let r = p.rules.dest_rules();
        assert_eq!(r[0].dest, DestMatch::domain("example.com").unwrap());
        assert_eq!(r[0].ports, 80..=80);
        assert_eq!(r[1].dest, DestMatch::Cidr("10.0.0.0/8".parse().unwrap()));
        assert_eq!(r[1].ports, 1..=2);
        assert_eq!(
            (r[2].command, r[2].ports.clone()),
            (Some(Command::UdpAssociate), 0..=65535)
        );
        assert_eq!(r[2].dest, DestMatch::Any);
        assert_eq!(p.limits.user_upload, NonZeroU64::new(1 << 20));
        // An empty file is the defaults: no rules, no limits.
        let empty = parse_str("").unwrap();
        assert_eq!(empty.policy(), Policy::default());
        let v = empty.policy().rules.check_dest(
            None,
            &TargetAddr::Ip("169.254.169.254:80".parse().unwrap()),
            None,
            Command::Connect,
        );
        assert!(matches!(v.by, DecidedBy::Protected(0)));
        // Passwords never show.
        let f = parse_str("user = [\"alice:hunter2\"]\n[users.bob]\npassword = \"swordfish\"\n")
            .unwrap();
        let dbg = format!("{f:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("swordfish"),
            "{dbg}"
        );
    }

    fn cli_from(args: &[&str]) -> (Cli, ArgMatches) {
        let m = Cli::command().try_get_matches_from(args).unwrap();
        (Cli::from_arg_matches(&m).unwrap(), m)
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse_str(
            "listen = \"::\"\nport = 1081\nadmin_port = 9000\nno_sniffing = true\n\
             buffer_size = 4096\nruntime = \"smol\"\nmax_connections = 50\nlog_level = \"debug\"\n\
             user = [\"alice:file\", \"bob:file\"]\nadmin = [\"root:file\"]\n\
             [users.carol]\npassword = \"file\"\nadmin = true\n",
        )
        .unwrap();
        let (mut cli, m) = cli_from(&[
            "socks5d",
            "-p",
            "2000",
            "--buffer-size",
            "8192",
            "-u",
            "alice:cli",
        ]);
        merge(&mut cli, &m, &file);
        assert_eq!(cli.listen, "::".parse::<IpAddr>().unwrap(), "from the file");
        assert_eq!(cli.port, 2000, "the flag wins");
        assert_eq!(cli.admin_port, 9000);
        assert_eq!(cli.buffer_size, 8192);
        assert!(cli.no_sniffing);
        assert_eq!(cli.runtime, RuntimeArg::Smol);
        assert_eq!(cli.max_connections, Some(50));
        assert_eq!(cli.log_level.as_deref(), Some("debug"));
        assert_eq!(cli.connection_timeout, 120, "neither: the default");
        let users: Vec<_> = cli
            .users
            .iter()
            .map(|c| (c.user.clone(), c.password.clone()))
            .collect();
        assert_eq!(
            users,
            vec![
                (Bytes::from_static(b"alice"), Bytes::from_static(b"cli")),
                (Bytes::from_static(b"bob"), Bytes::from_static(b"file")),
            ]
        );
        let admins: Vec<_> = cli.admins.iter().map(|c| c.user.clone()).collect();
        assert_eq!(
            admins,
            vec![Bytes::from_static(b"root"), Bytes::from_static(b"carol")]
        );
        // A flag that equals its default still wins over the file.
        let (mut cli, m) = cli_from(&["socks5d", "--port", "1080", "--runtime", "tokio"]);
        merge(&mut cli, &m, &file);
        assert_eq!((cli.port, cli.runtime), (1080, RuntimeArg::Tokio));
    }

    #[test]
    fn reload_names_what_needs_a_restart() {
        let a = parse_str("port = 1\nbuffer_size = 100\n[limits]\nmax_handshakes = 5\n").unwrap();
        let b = parse_str(
            "port = 2\nbuffer_size = 200\nruntime = \"smol\"\n[limits]\nmax_handshakes = 6\n",
        )
        .unwrap();
        assert_eq!(a.needs_restart(&b), vec!["port", "runtime"]);
        assert!(a.needs_restart(&a).is_empty());
        assert_ne!(a.policy(), b.policy());
    }

    #[test]
    fn load_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("socks5d-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.toml");
        std::fs::write(&path, "port = 1\n\n[limits]\nmax_handshakes = \"many\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:4: key `limits.max_handshakes`: invalid type: string \"many\", expected u32",
                path.display()
            )
        );
        std::fs::write(&path, "port = 1\n").unwrap();
        assert_eq!(load(&path).unwrap().port, Some(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

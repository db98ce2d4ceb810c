//! The configuration file at run time: `--check-config`, the policy the server starts with,
//! and the SIGHUP reload (see the docs of [`crate::config`] for what a reload applies).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::ArgMatches;
use futures_lite::StreamExt;
use socks5d_core::policy::Egress;
use socks5d_core::state::{Mutation, Outcome};
use socks5d_net::policy::PolicyConfig;
use socks5d_net::{AdminListener, AdminTransport, Listener, Runtime, Shared};

use crate::cli::Cli;
use crate::config::{self, FileConfig};

/// What the command line fixes whatever the file says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    /// `--outgoing-addr` (empty: the file's `outgoing_addr`).
    outgoing_addr: Vec<IpAddr>,
    /// `--outgoing-interface` given on the command line.
    outgoing_interface: Option<String>,
    /// The ids of the flags given on the command line (their keys in the file are ignored,
    /// at start and on reload).
    given: Vec<String>,
}

impl Overrides {
    /// Reads them off the command line.
    pub(crate) fn of(cli: &Cli, matches: &ArgMatches) -> Self {
        let given: Vec<String> = matches
            .ids()
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.as_str().to_owned())
            .collect();
        let on_cli = |id: &str| given.iter().any(|g| g == id);
        Self {
            outgoing_addr: cli.outgoing_addr.clone(),
            outgoing_interface: cli
                .outgoing_interface
                .clone()
                .filter(|_| on_cli("outgoing_interface")),
            given,
        }
    }

    fn on_cli(&self, key: &str) -> bool {
        let id = match key {
            "user" => "users",
            "admin" => "admins",
            k => k,
        };
        self.given.iter().any(|g| g == id)
    }
}

/// Returns the policy of `file` (none: the defaults) under the command line's overrides.
///
/// # Errors
///
/// A bad `--outgoing-addr` list (two of a family, an address no connection comes from) or
/// `--outgoing-interface` name.
pub(crate) fn policy_of(file: Option<&FileConfig>, o: &Overrides) -> Result<PolicyConfig, String> {
    let p = file.map(FileConfig::policy).unwrap_or_default();
    let mut egress = p.egress;
    if !o.outgoing_addr.is_empty() {
        egress.default =
            Egress::from_addrs(&o.outgoing_addr).map_err(|e| format!("--outgoing-addr: {e}"))?;
    }
    let mut interface = p.outgoing_interface;
    if let Some(dev) = &o.outgoing_interface {
        let ok = (1..=15).contains(&dev.len())
            && dev
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if !ok {
            return Err(format!(
                "--outgoing-interface: {dev:?} is not a network interface name (1 to 15 characters, no '/', ':' or spaces)"
            ));
        }
        interface = Some(dev.clone());
    }
    Ok(PolicyConfig {
        rules: p.rules,
        limits: p.limits,
        egress,
        outgoing_interface: interface,
        proxy_trusted: p.proxy_trusted,
    })
}

/// `socks5d --check-config FILE`: prints `FILE: ok` (0) or the error (2); opens no socket.
pub(crate) fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(f) => {
            let _ = f.policy();
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Where a reload sends the listeners it bound for changed addresses, and the addresses in
/// use.
#[derive(Debug)]
pub(crate) struct Rebinders<R: Runtime> {
    /// To the SOCKS accept loop.
    pub(crate) socks: async_channel::Sender<Listener<R>>,
    /// To the admin accept loop.
    pub(crate) admin: async_channel::Sender<AdminListener<R>>,
    /// The SOCKS listener's address (as configured).
    pub(crate) socks_addr: SocketAddr,
    /// The admin listener's address (as configured).
    pub(crate) admin_addr: SocketAddr,
    /// The admin transport (a change of it needs a restart).
    pub(crate) transport: AdminTransport,
}

/// The file to reload, as last loaded.
#[derive(Debug)]
pub(crate) struct Reloader {
    /// `--config`.
    pub(crate) path: PathBuf,
    /// The file in force.
    pub(crate) file: FileConfig,
    /// The command line's overrides.
    pub(crate) overrides: Overrides,
}

impl Reloader {
    /// The SOCKS and admin addresses after a reload to `new`: the file's, where the command
    /// line does not fix them, or the defaults.
    fn addrs_of<R: Runtime>(
        &self,
        new: &FileConfig,
        rebind: &Rebinders<R>,
    ) -> Result<(SocketAddr, SocketAddr), String> {
        let o = &self.overrides;
        let defaults =
            <Cli as clap::Parser>::try_parse_from(["socks5d"]).map_err(|e| e.to_string())?;
        let pick = |key: &str, current: IpAddr, file: Option<IpAddr>, default: IpAddr| {
            if o.on_cli(key) {
                current
            } else {
                file.unwrap_or(default)
            }
        };
        let pick_port = |key: &str, current: u16, file: Option<u16>, default: u16| {
            if o.on_cli(key) {
                current
            } else {
                file.unwrap_or(default)
            }
        };
        let socks_addr = SocketAddr::new(
            pick(
                "listen",
                rebind.socks_addr.ip(),
                new.listen,
                defaults.listen,
            ),
            pick_port("port", rebind.socks_addr.port(), new.port, defaults.port),
        );
        let admin_addr = SocketAddr::new(
            pick(
                "admin_listen",
                rebind.admin_addr.ip(),
                new.admin_listen,
                defaults.admin_listen,
            ),
            pick_port(
                "admin_port",
                rebind.admin_addr.port(),
                new.admin_port,
                defaults.admin_port,
            ),
        );
        Ok((socks_addr, admin_addr))
    }

    /// The settings an administrator changes too that a reload to `new` changes: only those
    /// the file changed, so that an administrator's change survives a reload that does not
    /// touch them.
    fn changes_of(&self, new: &FileConfig) -> Vec<Mutation> {
        let (old, o) = (&self.file, &self.overrides);
        let mut changes = Vec::new();
        let changed = |key: &str, a: bool| a && !o.on_cli(key);
        if let (true, Some(v)) = (
            changed("buffer_size", old.buffer_size != new.buffer_size),
            new.buffer_size,
        ) {
            changes.push(Mutation::SetBufferSize(v));
        }
        if let (true, Some(v)) = (
            changed(
                "connection_timeout",
                old.connection_timeout != new.connection_timeout,
            ),
            new.connection_timeout,
        ) {
            changes.push(Mutation::SetConnectionTimeout(v));
        }
        if let (true, Some(v)) = (
            changed(
                "selector_timeout",
                old.selector_timeout != new.selector_timeout,
            ),
            new.selector_timeout,
        ) {
            changes.push(Mutation::SetSelectorTimeout(v));
        }
        if let (true, Some(v)) = (
            changed("no_sniffing", old.no_sniffing != new.no_sniffing),
            new.no_sniffing,
        ) {
            changes.push(Mutation::SetSniffing(!v));
        }
        if let (true, Some(v)) = (
            changed("no_cleanup", old.no_cleanup != new.no_cleanup),
            new.no_cleanup,
        ) {
            changes.push(Mutation::SetCleanup(!v));
        }
        changes
    }

    /// Loads the file again and applies it; on any error keeps everything as it was.
    async fn reload<R: Runtime>(
        &mut self,
        shared: &Shared<R>,
        rebind: &mut Rebinders<R>,
    ) -> Result<(), String> {
        let new = config::load(&self.path).map_err(|e| e.to_string())?;
        let policy = policy_of(Some(&new), &self.overrides)?;
        // New listeners are bound before anything is applied: a bind error fails the reload.
        let (socks_addr, admin_addr) = self.addrs_of(&new, rebind)?;
        let socks = if socks_addr == rebind.socks_addr {
            None
        } else {
            Some(
                Listener::bind(&shared.rt, socks_addr)
                    .map_err(|e| format!("cannot listen on {socks_addr} (SOCKS): {e}"))?,
            )
        };
        let admin = if admin_addr == rebind.admin_addr {
            None
        } else {
            Some(
                AdminListener::bind(&shared.rt, admin_addr, rebind.transport)
                    .map_err(|e| format!("cannot listen on {admin_addr} (admin): {e}"))?,
            )
        };
        shared.policy.apply(shared.rt.now(), policy);
        if let Some(l) = socks {
            let _ = rebind.socks.try_send(l);
            rebind.socks_addr = socks_addr;
        }
        if let Some(l) = admin {
            let _ = rebind.admin.try_send(l);
            rebind.admin_addr = admin_addr;
        }
        const LIVE: [&str; 4] = ["listen", "port", "admin_listen", "admin_port"];
        for key in self.file.needs_restart(&new) {
            if !self.overrides.on_cli(key) && !LIVE.contains(&key) {
                tracing::warn!(
                    key,
                    "configuration reload: this key changed, and takes effect on restart only"
                );
            }
        }
        for m in self.changes_of(&new) {
            let what = format!("{m:?}");
            let outcome = shared.modify(None, m).await;
            if outcome != Outcome::Applied {
                tracing::warn!(change = %what, ?outcome, "configuration reload: a setting was not applied");
            }
        }
        self.file = new;
        Ok(())
    }
}

/// Reloads the configuration file on every SIGHUP until `stop` completes. Without a file,
/// SIGHUP keeps its default action (the process ends), as before configuration files.
pub(crate) async fn on_sighup<R: Runtime>(
    shared: Shared<R>,
    reloader: Option<Reloader>,
    mut rebind: Rebinders<R>,
    stop: impl Future<Output = ()>,
) {
    use async_signal::{Signal, Signals};
    let Some(mut r) = reloader else { return };
    let mut signals = match Signals::new([Signal::Hup]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP: no configuration reload");
            return;
        }
    };
    let mut stop = pin!(stop);
    loop {
        let hup = futures_lite::future::or(
            async {
                stop.as_mut().await;
                false
            },
            async { signals.next().await.is_some() },
        )
        .await;
        if !hup {
            return;
        }
        let result = r.reload(&shared, &mut rebind).await;
        if let Some(m) = &shared.metrics {
            m.reload(result.is_ok());
        }
        match result {
            Ok(()) => tracing::info!(file = %r.path.display(), "configuration reloaded"),
            Err(e) => tracing::error!(
                error = %e,
                "configuration reload failed: the running configuration is kept"
            ),
        }
    }
}

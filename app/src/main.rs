//! `socks5d`: the SOCKS5 proxy server with a live administration protocol.

use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::{CommandFactory, FromArgMatches};
use socks5d_core::state::{Config, State};
use socks5d_net::budget::Budget;
use socks5d_net::metrics::{serve_metrics, Metrics};
use socks5d_net::policy::ServerPolicy;
use socks5d_net::{Listener, Listeners, Persist, ServerOptions, Shared};

mod cli;
mod config;
mod fleet;
mod reload;
mod store;

use cli::{Cli, RuntimeArg};

/// Exit status for a bad command line (as clap uses).
const USAGE: u8 = 2;

/// Each password hash or cold verification (argon2id, m = 19 MiB) allocates one 19 MiB block.
/// glibc serves a block that large with `mmap` and gives it back on `free`, but its *dynamic*
/// threshold then rises to the freed size, so every later block comes from a thread's heap
/// arena and stays resident: 19 MiB per thread that ever verified a password (measured with
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072`, which does the same: the server
/// started at 6 MiB of RSS instead of 45, and `socks5d-loadgen idle` counted 12.0 KiB per
/// idle connection instead of 25.6, the argon2 block no longer counted in). Fixing it at
/// glibc's default (128 KiB) keeps large blocks on `mmap`; nothing on the connection paths
/// allocates that much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_malloc_mmap_threshold() {
    // SAFETY: mallopt only changes a malloc parameter; it is called before any other thread
    // exists, and a refusal (return 0) leaves glibc's defaults in place.
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_malloc_mmap_threshold() {}

fn main() -> ExitCode {
    fix_malloc_mmap_threshold();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(path) = &cli.check_config {
        return reload::check_config(path);
    }
    let file = match &cli.config {
        None => None,
        Some(path) => match config::load(path) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("socks5d: {e}");
                return ExitCode::from(USAGE);
            }
        },
    };
    if let Some(f) = &file {
        config::merge(&mut cli, &matches, f);
    }
    init_tracing(cli.log_level.as_deref());
    let overrides = reload::Overrides::of(&cli, &matches);
    let policy = match reload::policy_of(file.as_ref(), &overrides) {
        Ok(p) => Arc::new(ServerPolicy::new(p)),
        Err(e) => {
            eprintln!("socks5d: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let reloader = cli.config.clone().map(|path| reload::Reloader {
        path,
        file: file.unwrap_or_default(),
        overrides,
    });

    let state = Arc::new(State::new(
        Instant::now(),
        &Config {
            buffer_size: cli.buffer_size,
            selector_timeout: cli.selector_timeout,
            connection_timeout: cli.connection_timeout,
            sniffing: !cli.no_sniffing,
            cleanup: !cli.no_cleanup,
            allow_anonymous: cli.allow_anonymous,
        },
    ));
    // Users and settings live in the embedded store (`--state-dir`).
    let dir = match &cli.state_dir {
        Some(d) => d.clone(),
        None => {
            let d = socks5d_store::default_state_dir();
            if let Some(w) = &d.warning {
                tracing::warn!("{w}");
            }
            d.path
        }
    };
    if let Some(file) = &cli.export_users {
        return export_users(&dir, file);
    }
    if let Some(file) = &cli.import_users {
        return import_users(&dir, file);
    }
    if let Some(Err(msg)) = cli.user_store.as_deref().map(cli::check_store_url) {
        eprintln!("socks5d: {msg}");
        return ExitCode::from(USAGE);
    }
    if cli.in_memory && cli.user_store.is_some() {
        // (clap refuses the two flags together; here one came from the configuration file)
        eprintln!("socks5d: in_memory and user_store cannot be used together");
        return ExitCode::from(USAGE);
    }
    if let Err(msg) = check_users(&cli) {
        eprintln!("socks5d: {msg}");
        return ExitCode::from(USAGE);
    }
    let opened = if cli.in_memory {
        store::in_memory(&state, &cli.admins, &cli.users).map(|created| (None, created))
    } else {
        store::open(&dir, &state, &cli.admins, &cli.users).map(|(s, c)| (Some(s), c))
    };
    let created_admin;
    let store = match opened {
        Ok((store, created)) => {
            created_admin = created.is_some();
            if let Some(password) = created {
                let where_ = match &store {
                    Some(_) => format!("stored hashed in {}", dir.display()),
                    None => "in memory only".to_string(),
                };
                eprintln!(
                    "socks5d: no administrator given (-a USER:PASS) or stored; created administrator \"admin\" with password {password} ({where_})"
                );
            }
            store
        }
        Err(msg) => {
            eprintln!("socks5d: state directory {}: {msg}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    match &store {
        Some(_) => {
            tracing::info!(state_dir = %dir.display(), users = state.user_count(), "state loaded")
        }
        None => tracing::info!(
            users = state.user_count(),
            "state in memory only (--in-memory)"
        ),
    }
    // Hide whether a user exists: an unknown name is verified against a hash too.
    if store.is_none() {
        // Clear users only: nothing is hashed, unknown names are refused at once.
    } else if let Ok(decoy) = random_password().map(|p| socks5d_store::hash_password(p.as_bytes()))
    {
        state.set_decoy_phc(decoy.ok().map(Bytes::from));
    }

    let defaults = ServerOptions {
        max_admin_connections: cli.max_admin_connections,
        max_unauthenticated_admin: cli.max_unauthenticated_admin,
        half_close_timeout: std::time::Duration::from_secs(u64::from(cli.half_close_timeout)),
        allow_bind: !cli.no_bind,
        allow_udp: !cli.no_udp,
        udp_advertise: cli.udp_advertise,
        dns_cache_ttl: std::time::Duration::from_secs(cli.dns_cache_ttl),
        ..ServerOptions::default()
    };
    let admin_sockets = defaults.max_admin_connections + defaults.max_unauthenticated_admin;
    let max_connections = plan_descriptors(cli.max_connections, admin_sockets);
    let options = ServerOptions {
        dialect: cli.admin_dialect.into(),
        admin_transport: cli.admin_transport.into(),
        max_connections,
        ..defaults
    };
    let socks_addr = SocketAddr::new(cli.listen, cli.port);
    let admin_addr = SocketAddr::new(cli.admin_listen, cli.admin_port);
    let addrs = Addrs {
        socks: socks_addr,
        admin: admin_addr,
        metrics: cli.metrics,
    };
    let (persist, follower) = match (store, &cli.user_store) {
        (Some(local), Some(url)) => {
            let mut names: std::collections::HashSet<Bytes> = cli
                .admins
                .iter()
                .chain(&cli.users)
                .map(|c| c.user.clone())
                .collect();
            if created_admin {
                names.insert(Bytes::from_static(b"admin"));
            }
            let resync = std::time::Duration::from_secs(cli.user_store_resync);
            match fleet::start(url, resync, local, &names) {
                Ok((p, f)) => (Some(p), Some(f)),
                Err(e) => {
                    eprintln!("socks5d: --user-store: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        (local, _) => (local.map(store::persist), None),
    };
    let policy = Policy { policy, reloader };
    run(
        cli.runtime,
        state,
        options,
        addrs,
        (persist, follower),
        policy,
    )
}

/// The operator's policy and how to reload it.
struct Policy {
    policy: Arc<ServerPolicy>,
    reloader: Option<reload::Reloader>,
}

/// `--export-users FILE`: writes the stored users (hashes, never passwords) and exits.
fn export_users(dir: &std::path::Path, file: &std::path::Path) -> ExitCode {
    let result = socks5d_store::Store::open(dir)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            let f = std::fs::File::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
            s.export(f).map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socks5d: export: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--import-users FILE`: replaces the stored users and settings with the file's, and exits.
fn import_users(dir: &std::path::Path, file: &std::path::Path) -> ExitCode {
    let result = socks5d_store::import(file)
        .map_err(|e| e.to_string())
        .and_then(|snap| {
            let s = socks5d_store::Store::open(dir).map_err(|e| e.to_string())?;
            let n = snap.users.len();
            s.commit(&socks5d_store::Change::Replace {
                users: snap.users,
                settings: snap.settings,
            })
            .map_err(|e| e.to_string())?;
            Ok(n)
        });
    match result {
        Ok(n) => {
            eprintln!("socks5d: imported {n} users into {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("socks5d: import: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses a command line whose users cannot be added (a bad name, one given twice).
fn check_users(cli: &Cli) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for c in cli.admins.iter().chain(&cli.users) {
        if !socks5d_core::state::is_valid_username(&c.user) {
            return Err(format!(
                "bad user name {:?}",
                String::from_utf8_lossy(&c.user)
            ));
        }
        if !seen.insert(c.user.clone()) {
            return Err(format!(
                "user {:?} given more than once",
                String::from_utf8_lossy(&c.user)
            ));
        }
    }
    Ok(())
}

/// Raises the open-file limit and plans it ([`Budget`]): how many SOCKS connections to serve
/// at once (the operator's number, with a warning if the limit cannot hold it, else two
/// descriptors each of what is left after a reserve, at most 10 000), and how many relay pipes
/// may be in use at once (the rest; the relay copies when none is free).
fn plan_descriptors(asked: Option<usize>, admin_sockets: usize) -> usize {
    let budget = match socks5d_net::sys::raise_nofile_limit() {
        Ok(limit) => {
            let b = Budget::plan(limit, asked, admin_sockets);
            if b.overcommitted {
                tracing::warn!(
                    limit,
                    max_connections = b.max_connections,
                    "the open-file limit is low for --max-connections (each proxied connection needs two descriptors)"
                );
            }
            tracing::debug!(limit, ?b, "descriptor budget");
            b
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            Budget::plan(u64::MAX, asked, admin_sockets)
        }
    };
    socks5d_net::relay::set_pipe_budget(budget.pipes);
    budget.max_connections
}

/// Diagnostics to stderr; `--log-level` wins over `RUST_LOG`, default `info`.
fn init_tracing(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        // Checked when the command line was parsed.
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Returns 20 random alphanumeric characters (about 119 bits) from /dev/urandom.
pub(crate) fn random_password() -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut f = std::fs::File::open("/dev/urandom")?;
    let mut out = String::with_capacity(20);
    let mut buf = [0u8; 64];
    while out.len() < 20 {
        f.read_exact(&mut buf)?;
        // Rejection sampling keeps the characters uniform: 248 = 4 * 62.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() < 20 {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// Starts the chosen runtime and serves on it until SIGINT or SIGTERM. Serving is [`serve`],
/// written once; each runtime only says how it starts.
fn run(
    runtime: RuntimeArg,
    state: Arc<State>,
    options: ServerOptions,
    a: Addrs,
    persist: Stores,
    p: Policy,
) -> ExitCode {
    let (s, o) = (state, options);
    match runtime {
        RuntimeArg::Tokio => {
            socks5d_tokio::block_on_workers(None, |rt| serve_task(rt, s, o, a, persist, p))
                .unwrap_or_else(|e| {
                    eprintln!("socks5d: cannot start the tokio runtime: {e}");
                    ExitCode::FAILURE
                })
        }
        RuntimeArg::Smol => {
            socks5d_async_std::block_on_smol(None, |rt| serve(rt, s, o, a, persist, p))
        }
        RuntimeArg::AsyncStd => {
            socks5d_async_std::block_on_async_std(|rt| serve(rt, s, o, a, persist, p))
        }
    }
}

/// Where admin changes are made durable, and the fleet's follower (`--user-store`).
type Stores = (Option<Arc<dyn Persist>>, Option<fleet::Follower>);

/// Where to listen.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    socks: SocketAddr,
    admin: SocketAddr,
    metrics: Option<SocketAddr>,
}

/// [`serve`], its future known to be `Send` (proven once, for every runtime: rustc cannot
/// prove it for a concrete runtime's futures, rust-lang/rust#130113).
fn serve_task<R: socks5d_net::Runtime>(
    rt: R,
    state: Arc<State>,
    options: ServerOptions,
    a: Addrs,
    persist: Stores,
    p: Policy,
) -> impl std::future::Future<Output = ExitCode> + Send + 'static {
    serve(rt, state, options, a, persist, p)
}

/// Binds the listeners on `rt` and serves until SIGINT or SIGTERM.
async fn serve<R: socks5d_net::Runtime>(
    rt: R,
    state: Arc<State>,
    options: ServerOptions,
    a: Addrs,
    (persist, follower): Stores,
    p: Policy,
) -> ExitCode {
    let (socks_addr, admin_addr) = (a.socks, a.admin);
    let transport = options.admin_transport;
    let listeners = match Listeners::bind(&rt, socks_addr, admin_addr, transport) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("socks5d: cannot listen (SOCKS {socks_addr}, admin {admin_addr}): {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin_transport = listeners.admin.transport();
    tracing::info!(
        socks = %listeners.socks.local_addr().map_or(socks_addr, |a| a),
        admin = %listeners.admin.local_addr().map_or(admin_addr, |a| a),
        %admin_transport,
        runtime = ?rt,
        "socks5d listening"
    );
    let mut shared = Shared::new(rt.clone(), state.clone(), options)
        .with_verifier(store::verifier())
        .with_policy(p.policy);
    if let Some(p) = persist {
        shared = shared.with_persist(p);
    }
    if let Some(f) = follower {
        rt.spawn(f.run(shared.clone()));
    }
    let metrics = match a.metrics {
        None => None,
        Some(addr) => match Listener::bind(&rt, addr) {
            Ok(l) => {
                tracing::info!(metrics = %addr, "serving Prometheus metrics at /metrics");
                let m = Arc::new(Metrics::new());
                shared = shared.with_metrics(m.clone());
                Some((l, m))
            }
            Err(e) => {
                eprintln!("socks5d: cannot listen for metrics on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // One shutdown signal for the server and the metrics endpoint.
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let signal = async move {
        shutdown_signal().await;
        drop(stop);
    };
    let (socks_tx, socks_rx) = async_channel::bounded(1);
    let (admin_tx, admin_rx) = async_channel::bounded(1);
    let rebinders = reload::Rebinders {
        socks: socks_tx,
        admin: admin_tx,
        socks_addr,
        admin_addr,
        transport,
    };
    let reloads = reload::on_sighup(shared.clone(), p.reloader, rebinders, wait(stopped.clone()));
    let rebind = socks5d_net::Rebind {
        socks: Some(socks_rx),
        admin: Some(admin_rx),
    };
    let server = socks5d_net::run_rebindable(listeners, shared, wait(stopped.clone()), rebind);
    let metrics = async move {
        if let Some((l, m)) = metrics {
            serve_metrics(&rt, l, m, state, wait(stopped)).await;
        }
    };
    let server = futures_lite::future::zip(server, reloads);
    futures_lite::future::zip(signal, futures_lite::future::zip(server, metrics)).await;
    ExitCode::SUCCESS
}

/// Completes when every sender of `rx` is dropped (the shutdown signal).
async fn wait(rx: async_channel::Receiver<()>) {
    let _ = rx.recv().await;
}

/// Completes on SIGINT or SIGTERM (async-signal: works on every runtime).
async fn shutdown_signal() {
    use async_signal::{Signal, Signals};
    use futures_lite::StreamExt;
    match Signals::new([Signal::Int, Signal::Term]) {
        Ok(mut signals) => {
            let _ = signals.next().await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGINT and SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}

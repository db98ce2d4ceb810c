//! `socks5d-loadgen`: measures a SOCKS5 server on loopback (handshake rate and latency, server
//! CPU per handshake, relay throughput against direct transfers, server memory per idle
//! proxied connection, request/response exchanges, UDP relay rate, and admin requests per
//! second for socks5d), with its own loopback destinations. Every run is bounded in time and in traffic, and talks only to loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

mod admin;
mod flood;
mod handshake;
mod idle;
mod procfs;
mod relay;
mod rr;
mod socks;
mod stats;
mod table;
mod targets;
mod udp;

/// The server under test.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) proxy: SocketAddr,
    pub(crate) creds: Option<socks::Credentials>,
    pub(crate) pid: Option<u32>,
}

#[derive(Parser, Debug)]
#[command(name = "socks5d-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
// Parsed once per process: the size of `All` costs nothing.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Handshakes per second and latency of the full cycle (connect, greet, authenticate,
    /// CONNECT, echo 32 bytes, close), and the server's CPU time per handshake.
    Handshake {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        hs: HandshakeArgs,
    },
    /// Relay throughput of parallel bulk transfers through the proxy vs direct.
    Relay {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        relay: RelayArgs,
    },
    /// Server RSS per idle proxied connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        idle: IdleArgs,
    },
    /// Request/response: C connections each looping "send a request, read an N-byte
    /// response", one run per response size; exchanges/s, latency, server CPU per exchange.
    Rr {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rr: RrArgs,
    },
    /// UDP relay: datagrams/s and MiB/s through UDP ASSOCIATE vs direct.
    Udp {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        udp: UdpArgs,
    },
    /// Admin requests per second over one pipelined TCP connection (socks5d only).
    Admin {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Every measurement above: idle first (best on a freshly started server), then
    /// handshake, relay, rr, udp and admin (admin only with --admin).
    All {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        hs: HandshakeArgs,
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        idle: IdleArgs,
        #[command(flatten)]
        rr: RrArgs,
        #[command(flatten)]
        udp: UdpArgs,
        #[command(flatten)]
        admin: AdminArgs,
        /// Measurements to leave out: handshake, relay, idle, rr, udp, admin (comma
        /// separated).
        #[arg(long, value_delimiter = ',')]
        skip: Vec<String>,
    },
    /// Internal: the loopback destinations, run as a child process.
    #[command(hide = true)]
    ServeTargets {
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Prints one comparison table from the JSON files written by `all --json`.
    Table {
        /// Result files (one per server).
        files: Vec<PathBuf>,
        /// Name of the server the ratios are relative to (default: the first file's).
        #[arg(long)]
        baseline: Option<String>,
    },
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// SOCKS5 server address (loopback only).
    #[arg(long, default_value = "127.0.0.1:1080")]
    proxy: SocketAddr,
    /// RFC 1929 credentials; without it, the "no authentication" method is offered.
    #[arg(long, value_name = "USER:PASS")]
    auth: Option<socks::Credentials>,
    /// Pid of the server's main process: enables the CPU and memory measurements (the whole
    /// process tree is counted).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of the server in the results.
    #[arg(long, default_value = "server")]
    name: String,
    /// Worker threads of the load generator (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Prints the results as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct HandshakeArgs {
    /// Handshake cycles in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    handshake_secs: f64,
    /// Stop after this many cycles (whichever comes first).
    #[arg(long)]
    handshake_count: Option<u64>,
    /// CONNECT to this host name (ATYP 03, for example `localhost`) at the echo server's
    /// port, instead of to its IPv4 address: the proxy resolves it.
    #[arg(long, value_name = "NAME", value_parser = parse_target_host)]
    target_host: Option<String>,
    /// Wrong-password clients looping beside the measured cycles, from other loopback
    /// addresses (0: none). They start `--flood-warmup-secs` before the measurement and stop
    /// after it.
    #[arg(long, default_value_t = 0)]
    flood: usize,
    /// Credentials of the flood's clients (the password must be wrong); `{i}` in USER becomes
    /// the client's number (distinct users).
    #[arg(
        long,
        value_name = "USER:PASS",
        default_value = "flood{i}:wrong-password"
    )]
    flood_auth: socks::Credentials,
    /// Seconds of flood before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    flood_warmup_secs: f64,
}

#[derive(Args, Debug, Clone)]
struct RelayArgs {
    /// Parallel bulk transfers.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Bytes per transfer (suffixes K, M, G: binary units).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    bytes: u64,
    /// Direction of the data: up (client to destination) or down.
    #[arg(long, value_enum, default_value = "up")]
    direction: relay::Direction,
    /// Gives up on a batch of transfers after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    relay_timeout_secs: f64,
}

#[derive(Args, Debug, Clone)]
struct IdleArgs {
    /// Numbers of idle proxied connections to hold (comma separated), one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    idle: Vec<usize>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
    /// Seconds to wait once all are open, before reading the server's RSS.
    #[arg(long, default_value_t = 1.0)]
    settle_secs: f64,
    /// Gives up opening after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    idle_timeout_secs: f64,
}

#[derive(Args, Debug, Clone)]
struct RrArgs {
    /// Connections, each doing one exchange at a time.
    #[arg(long, default_value_t = 32)]
    rr_connections: usize,
    /// Bytes per request (suffixes K, M: binary units; at least 8).
    #[arg(long, default_value = "1K", value_parser = parse_size32)]
    rr_request: u32,
    /// Response sizes, one run each (comma separated; suffixes K, M).
    #[arg(long, value_delimiter = ',', default_value = "1K,16K,256K", value_parser = parse_size32)]
    rr_responses: Vec<u32>,
    /// Seconds per response size.
    #[arg(long, default_value_t = 3.0)]
    rr_secs: f64,
}

#[derive(Args, Debug, Clone)]
struct UdpArgs {
    /// Parallel flows (one socket and one association each).
    #[arg(long, default_value_t = 4)]
    udp_flows: usize,
    /// DATA bytes per datagram (at least 12).
    #[arg(long, default_value_t = 1200)]
    udp_payload: usize,
    /// Datagrams in flight per flow.
    #[arg(long, default_value_t = 32)]
    udp_window: usize,
    /// Seconds per arm (direct, then proxied).
    #[arg(long, default_value_t = 3.0)]
    udp_secs: f64,
    /// Milliseconds without an echo after which a flow's datagrams in flight count as lost.
    #[arg(long, default_value_t = 100)]
    udp_loss_timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
struct AdminArgs {
    /// Admin port (server started with `--admin-transport tcp`).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Administrator credentials.
    #[arg(long, value_name = "USER:PASS")]
    admin_auth: Option<socks::Credentials>,
    /// Query command byte: 1 historic connections, 2 current, 3 max concurrent, 4 bytes
    /// sent, 5 bytes received (all answered with 10 bytes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    admin_cmd: u8,
    /// Requests per write.
    #[arg(long, default_value_t = 1000)]
    admin_batch: usize,
    /// Most unanswered requests at once.
    #[arg(long, default_value_t = 64_000)]
    admin_window: usize,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    admin_secs: f64,
    /// Stop after this many requests (whichever comes first).
    #[arg(long)]
    admin_count: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|e| format!("{s}: {e}"))?;
    n.checked_mul(mul).ok_or_else(|| format!("{s}: too large"))
}

/// A SOCKS5 DST name: 1 to 255 bytes.
fn parse_target_host(s: &str) -> Result<String, String> {
    if (1..=255).contains(&s.len()) {
        Ok(s.to_owned())
    } else {
        Err("a host name is 1 to 255 bytes".into())
    }
}

fn parse_size32(s: &str) -> Result<u32, String> {
    u32::try_from(parse_size(s)?).map_err(|_| format!("{s}: too large"))
}

/// Everything one invocation measured against one server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Results {
    pub(crate) name: String,
    pub(crate) proxy: String,
    pub(crate) server_pid: Option<u32>,
    pub(crate) handshake: Option<serde_json::Value>,
    /// The wrong-password clients beside the handshake measurement (`--flood`).
    #[serde(default)]
    pub(crate) flood: Option<serde_json::Value>,
    pub(crate) relay: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) idle: Vec<serde_json::Value>,
    #[serde(default)]
    pub(crate) rr: Vec<serde_json::Value>,
    #[serde(default)]
    pub(crate) udp: Option<serde_json::Value>,
    pub(crate) admin: Option<serde_json::Value>,
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("report serializes")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn check_loopback(a: SocketAddr, what: &str) -> Result<(), String> {
    if a.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{what} {a} is not a loopback address: this tool only talks to loopback"
        ))
    }
}

struct Plan {
    common: Common,
    hs: Option<HandshakeArgs>,
    relay: Option<RelayArgs>,
    idle: Option<IdleArgs>,
    rr: Option<RrArgs>,
    udp: Option<UdpArgs>,
    admin: Option<AdminArgs>,
}

impl Plan {
    fn new(common: Common) -> Self {
        Self {
            common,
            hs: None,
            relay: None,
            idle: None,
            rr: None,
            udp: None,
            admin: None,
        }
    }
}

async fn execute(plan: Plan) -> Result<Results, String> {
    let c = &plan.common;
    check_loopback(c.proxy, "--proxy")?;
    let server = Server {
        proxy: c.proxy,
        creds: c.auth.clone(),
        pid: c.server_pid,
    };
    if let Some(pid) = server.pid {
        procfs::cpu_ticks(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?;
    }
    let child = targets::spawn_child(c.threads)
        .await
        .map_err(|e| format!("starting the destinations: {e}"))?;
    let (echo, bulk, rr_addr, udp_echo) = (child.echo, child.bulk, child.rr, child.udp);
    let mut out = Results {
        name: c.name.clone(),
        proxy: c.proxy.to_string(),
        server_pid: c.server_pid,
        ..Results::default()
    };
    // Idle first: its RSS baseline should be that of a server that has proxied nothing yet.
    if let Some(a) = &plan.idle {
        let most = a.idle.iter().copied().max().unwrap_or(0) as u64;
        let lim = procfs::raise_nofile(most + 1024).map_err(|e| e.to_string())?;
        if lim < most + 64 {
            eprintln!("warning: RLIMIT_NOFILE is {lim}; {most} connections need about {most}");
        }
        let baseline = idle::Baseline::read(server.pid);
        let mut sizes = a.idle.clone();
        sizes.sort_unstable();
        for n in sizes {
            let p = idle::Params {
                connections: n,
                open_concurrency: a.open_concurrency,
                settle: secs(a.settle_secs),
                timeout: secs(a.idle_timeout_secs),
            };
            let r = idle::run(&server, echo, &p, baseline).await;
            if !c.json {
                print_idle(&r);
            }
            out.idle.push(to_value(&r));
            // Let the server tear the connections down before the next run.
            tokio::time::sleep(secs(a.settle_secs)).await;
        }
    }
    if let Some(h) = &plan.hs {
        let p = handshake::Params {
            concurrency: h.concurrency.max(1),
            duration: secs(h.handshake_secs),
            count: h.handshake_count,
            cycle_timeout: Duration::from_secs(10),
            target_host: h.target_host.as_deref().map(Arc::from),
        };
        let flood = (h.flood > 0).then(|| {
            flood::Flood::start(
                server.proxy,
                &flood::Params {
                    clients: h.flood,
                    creds: h.flood_auth.clone(),
                    attempt_timeout: Duration::from_secs(10),
                },
            )
        });
        if flood.is_some() {
            tokio::time::sleep(secs(h.flood_warmup_secs)).await;
        }
        let r = handshake::run(&server, echo, &p).await;
        if !c.json {
            print_handshake(&r);
        }
        out.handshake = Some(to_value(&r));
        if let Some(f) = flood {
            let f = f.stop().await;
            if !c.json {
                print_flood(&f);
            }
            if f.accepted > 0 {
                return Err(format!(
                    "{} flood logins were accepted: --flood-auth must not be valid",
                    f.accepted
                ));
            }
            out.flood = Some(to_value(&f));
        }
    }
    if let Some(a) = &plan.relay {
        let p = relay::Params {
            streams: a.streams.max(1),
            bytes: a.bytes,
            direction: a.direction,
            timeout: secs(a.relay_timeout_secs),
        };
        let r = relay::run(&server, bulk, &p)
            .await
            .map_err(|e| e.to_string())?;
        if !c.json {
            print_relay(&r);
        }
        out.relay = Some(to_value(&r));
    }
    if let Some(a) = &plan.rr {
        let p = rr::Params {
            connections: a.rr_connections.max(1),
            request: a.rr_request,
            responses: a.rr_responses.clone(),
            duration: secs(a.rr_secs),
            exchange_timeout: Duration::from_secs(10),
        };
        rr::check(&p)?;
        for r in rr::run(&server, rr_addr, &p).await {
            if !c.json {
                print_rr(&r);
            }
            out.rr.push(to_value(&r));
        }
    }
    if let Some(a) = &plan.udp {
        if a.udp_payload < udp::SEQ_LEN || a.udp_payload > 65_000 {
            return Err(format!(
                "--udp-payload must be {}..=65000 bytes",
                udp::SEQ_LEN
            ));
        }
        let p = udp::Params {
            flows: a.udp_flows.max(1),
            payload: a.udp_payload,
            window: a.udp_window.max(1),
            duration: secs(a.udp_secs),
            loss_timeout: Duration::from_millis(a.udp_loss_timeout_ms.max(1)),
        };
        let r = udp::run(&server, udp_echo, &p)
            .await
            .map_err(|e| format!("udp: {e}"))?;
        if !c.json {
            print_udp(&r);
        }
        out.udp = Some(to_value(&r));
    }
    if let Some(a) = &plan.admin {
        if let Some(addr) = a.admin {
            check_loopback(addr, "--admin")?;
            let creds = a
                .admin_auth
                .clone()
                .or_else(|| c.auth.clone())
                .ok_or("--admin needs --admin-auth (or --auth)")?;
            let p = admin::Params {
                addr,
                creds,
                cmd: a.admin_cmd,
                batch: a.admin_batch.max(1),
                window: a.admin_window,
                duration: secs(a.admin_secs),
                count: a.admin_count,
            };
            let r = admin::run(&p).await.map_err(|e| format!("admin: {e}"))?;
            if !c.json {
                print_admin(&r);
            }
            out.admin = Some(to_value(&r));
        }
    }
    Ok(out)
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.prec$}"))
}

fn print_handshake(r: &handshake::Report) {
    println!(
        "handshake: {} cycles in {:.2} s at concurrency {}: {:.0}/s, p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs, {} errors{}",
        r.handshakes,
        r.seconds,
        r.concurrency,
        r.per_sec,
        r.p50_us,
        r.p99_us,
        r.max_us,
        r.errors,
        r.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})"))
    );
    if let Some(cpu) = r.server_cpu_us_per_handshake {
        println!(
            "  server CPU: {:.2} s total, {cpu:.1} µs per handshake, {} in user space",
            r.server_cpu_seconds.unwrap_or(0.0),
            percent(r.server_user_share)
        );
    }
}

fn print_flood(r: &flood::Report) {
    println!(
        "  flood: {} wrong-password clients, {} attempts in {:.2} s ({:.0}/s): {} rejected, {} closed before a verdict, {} accepted, {} timed out, {} errors{}",
        r.clients,
        r.attempts,
        r.seconds,
        r.attempts_per_sec,
        r.rejected,
        r.closed,
        r.accepted,
        r.timed_out,
        r.errors,
        r.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})"))
    );
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1} %", v * 100.0))
}

fn print_rr(r: &rr::Report) {
    println!(
        "rr: {} B request, {} B response, {}/{} connections: {} exchanges in {:.2} s: {:.0}/s ({:.1} MiB/s of responses), p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs, {} errors{}",
        r.request_bytes,
        r.response_bytes,
        r.established,
        r.connections,
        r.exchanges,
        r.seconds,
        r.per_sec,
        r.response_mib_per_sec,
        r.p50_us,
        r.p99_us,
        r.max_us,
        r.errors,
        r.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})"))
    );
    if let Some(cpu) = r.server_cpu_us_per_exchange {
        println!(
            "  server CPU: {:.2} s total, {cpu:.1} µs per exchange, {} in user space",
            r.server_cpu_seconds.unwrap_or(0.0),
            percent(r.server_user_share)
        );
    }
}

fn print_udp(r: &udp::Report) {
    let arm = |a: &udp::Arm| {
        format!(
            "{:.0} datagrams/s, {:.1} MiB/s ({} sent, {} echoed, {} lost, {} late, {} bad in {:.2} s)",
            a.datagrams_per_sec, a.mib_per_sec, a.sent, a.received, a.lost, a.late, a.bad, a.seconds
        )
    };
    println!(
        "udp: {} flows × window {}, {} B datagrams: direct {}",
        r.flows,
        r.window,
        r.payload_bytes,
        arm(&r.direct)
    );
    if let Some(p) = &r.proxied {
        println!("  proxied {}, ratio {}", arm(p), opt(r.ratio, 3));
    }
    if let Some(cpu) = r.server_cpu_us_per_datagram {
        println!(
            "  server CPU: {cpu:.2} µs per datagram echoed, {} in user space",
            percent(r.server_user_share)
        );
    }
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
}

fn print_relay(r: &relay::Report) {
    println!(
        "relay: {} × {} MiB {:?}: direct {:.0} MiB/s ({:.2} s), proxied {} MiB/s ({} s), ratio {}{}",
        r.streams,
        r.bytes_per_stream >> 20,
        r.direction,
        r.direct_mib_per_sec,
        r.direct_seconds,
        opt(r.proxied_mib_per_sec, 0),
        opt(r.proxied_seconds, 2),
        opt(r.ratio, 3),
        r.error.as_ref().map_or(String::new(), |e| format!(" (error: {e})"))
    );
}

fn print_idle(r: &idle::Report) {
    println!(
        "idle: {}/{} proxied connections up in {:.2} s, {} errors{}; server RSS {} -> {} KiB: {} KiB per connection (PSS: {} KiB); {} server threads",
        r.established,
        r.connections,
        r.open_seconds,
        r.errors,
        r.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})")),
        r.rss_before_kib.map_or("-".into(), |v| v.to_string()),
        r.rss_after_kib.map_or("-".into(), |v| v.to_string()),
        opt(r.rss_per_connection_kib, 2),
        opt(r.pss_per_connection_kib, 2),
        r.server_threads_after.map_or("-".into(), |v| v.to_string()),
    );
}

fn print_admin(r: &admin::Report) {
    println!(
        "admin: {} requests, {} responses in {:.2} s (batch {}, window {}): {:.0} req/s{}",
        r.requests,
        r.responses,
        r.seconds,
        r.batch,
        r.window,
        r.per_sec,
        r.error
            .as_ref()
            .map_or(String::new(), |e| format!(" (error: {e})"))
    );
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (plan, json) = match cli.cmd {
        Cmd::ServeTargets { threads } => {
            return match runtime(threads).block_on(targets::serve_until_stdin_closes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("socks5d-loadgen serve-targets: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Table { files, baseline } => {
            return match table::print(&files, baseline.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("socks5d-loadgen: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Handshake { common, hs } => (
            Plan {
                hs: Some(hs),
                ..Plan::new(common.clone())
            },
            common.json,
        ),
        Cmd::Relay { common, relay } => (
            Plan {
                relay: Some(relay),
                ..Plan::new(common.clone())
            },
            common.json,
        ),
        Cmd::Idle { common, idle } => (
            Plan {
                idle: Some(idle),
                ..Plan::new(common.clone())
            },
            common.json,
        ),
        Cmd::Rr { common, rr } => (
            Plan {
                rr: Some(rr),
                ..Plan::new(common.clone())
            },
            common.json,
        ),
        Cmd::Udp { common, udp } => (
            Plan {
                udp: Some(udp),
                ..Plan::new(common.clone())
            },
            common.json,
        ),
        Cmd::Admin { common, admin } => (
            Plan {
                admin: Some(admin),
                ..Plan::new(common.clone())
            },
            common.json,
        ),
        Cmd::All {
            common,
            hs,
            relay,
            idle,
            rr,
            udp,
            admin,
            skip,
        } => {
            const KNOWN: [&str; 6] = ["handshake", "relay", "idle", "rr", "udp", "admin"];
            if let Some(bad) = skip.iter().find(|s| !KNOWN.contains(&s.as_str())) {
                eprintln!(
                    "socks5d-loadgen: --skip {bad}: expected one of {}",
                    KNOWN.join(", ")
                );
                return ExitCode::FAILURE;
            }
            let on = |k: &str| !skip.iter().any(|s| s == k);
            (
                Plan {
                    hs: on("handshake").then_some(hs),
                    relay: on("relay").then_some(relay),
                    idle: on("idle").then_some(idle),
                    rr: on("rr").then_some(rr),
                    udp: on("udp").then_some(udp),
                    admin: on("admin").then_some(admin),
                    common: common.clone(),
                },
                common.json,
            )
        }
    };
    match runtime(plan.common.threads).block_on(execute(plan)) {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).expect("results serialize")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("socks5d-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

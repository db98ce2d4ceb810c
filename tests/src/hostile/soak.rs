//! Scenario 7, the soak (on demand, not in CI): minutes of mixed, well-behaved load against
//! the real binary, then the server must give back what it took: its descriptors return to
//! the baseline and its resident set stays within 10 % of it.
//!
//! The mix, each kind on worker threads of its own, one operation after another:
//!
//! - handshakes: greeting, RFC 1929, CONNECT to an echo server, 32 bytes echoed, close;
//! - refusals: a wrong password for a second user ([`REFUSED_USER`]), which must be refused,
//!   then that user's right password, which must be served (after the login throttle's 1 s,
//!   see DECISIONS.md; the success resets it);
//! - relays: a random payload (1 B to [`Params::max_relay`], log-uniform) sent and
//!   half-closed, the echo and its trailer read back and compared byte for byte;
//! - admin pipelines: an administrator sends several queries in one write and reads every
//!   answer, a few pipelines per connection;
//! - user churn: an administrator adds a user, who proxies at once; the user is removed
//!   while a relay of theirs is open, which the server must close, and a new login as that
//!   user must be refused.
//!
//! **Baseline**: the same mix for [`Params::warmup`] (the server's pools, buffers and
//! allocator arenas reach their working size), then the load stops and the server settles
//! ([`settle`]); descriptors and RSS measured then are the baseline. The soak proper runs the
//! mix for [`Params::duration`], sampling descriptors and RSS every 500 ms (the peak), and
//! settles again: the "after" figures.
//!
//! Run it (the test in `app/tests/hostile.rs`, `#[ignore]`d) against the release binary:
//! `cargo test --release -p socks5d --test hostile soak -- --ignored --nocapture`;
//! `SOCKS5D_SOAK_SECS=20` in front for a short check (default 600 s). Figures: BENCHMARKS.md.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use socks5d_core::admin::msg::{AdminRequest, AdminResponse, Modify, Query};
use socks5d_core::admin::Dialect;
use socks5d_core::socks5::TargetAddr;

use super::server::{CpuMeter, Launch, ServerProcess};
use super::{ADMIN_PASS, ADMIN_USER, PASS, USER};
use crate::peers::{self, AdminClient};

/// The second proxy user, whose wrong passwords the mix tries.
pub const REFUSED_USER: &str = "bob";
/// [`REFUSED_USER`]'s password.
pub const REFUSED_PASS: &str = "bobpw";

/// Settings of a soak.
#[derive(Debug, Clone)]
pub struct Params {
    /// How long the measured load runs.
    pub duration: Duration,
    /// How long the same mix runs before the baseline is taken.
    pub warmup: Duration,
    /// Threads doing handshakes.
    pub handshakers: usize,
    /// Threads doing a wrong then a right password.
    pub refusers: usize,
    /// Threads doing relays.
    pub relayers: usize,
    /// Threads doing admin pipelines.
    pub administrators: usize,
    /// Threads adding and removing users.
    pub churners: usize,
    /// Largest relay payload, bytes.
    pub max_relay: usize,
    /// Seed of the random choices (relay payload sizes and contents).
    pub seed: u64,
    /// Longest a settle may take before the figures are taken anyway.
    pub settle_limit: Duration,
}

impl Params {
    /// The soak of `duration`; the warm-up is a quarter of it, between 5 and 30 s.
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            warmup: (duration / 4).clamp(Duration::from_secs(5), Duration::from_secs(30)),
            handshakers: 6,
            refusers: 1,
            relayers: 4,
            administrators: 2,
            churners: 1,
            max_relay: 1 << 20,
            seed: 17,
            settle_limit: Duration::from_secs(30),
        }
    }

    /// [`Params::new`] with the duration from `SOCKS5D_SOAK_SECS` (default 600 s).
    ///
    /// # Panics
    ///
    /// If `SOCKS5D_SOAK_SECS` is set but is not a positive whole number.
    pub fn from_env() -> Self {
        let secs = match std::env::var("SOCKS5D_SOAK_SECS") {
            Ok(v) => v
                .parse::<u64>()
                .ok()
                .filter(|&s| s > 0)
                .unwrap_or_else(|| panic!("SOCKS5D_SOAK_SECS={v:?}: want seconds, > 0")),
            Err(_) => 600,
        };
        Self::new(Duration::from_secs(secs))
    }
}

/// Operations done by a run of the mix. Every operation that did not go as the protocol
/// requires counts in `failed`.
#[derive(Debug, Default)]
pub struct Ops {
    /// Handshakes completed with an echo.
    pub handshakes: AtomicU64,
    /// Wrong passwords refused.
    pub refused: AtomicU64,
    /// Relays whose echo came back intact.
    pub relays: AtomicU64,
    /// Payload bytes relayed (one way).
    pub relay_bytes: AtomicU64,
    /// Admin pipelines answered in full.
    pub pipelines: AtomicU64,
    /// Admin requests answered.
    pub admin_requests: AtomicU64,
    /// Users added (and used).
    pub users_added: AtomicU64,
    /// Users removed (their open relay closed, their next login refused).
    pub users_removed: AtomicU64,
    /// Operations that went wrong.
    pub failed: AtomicU64,
    /// The first few failures.
    pub failures: Mutex<Vec<String>>,
}

impl Ops {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < 5 {
            f.push(what);
        }
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Operations done in all (failures included).
    pub fn total(&self) -> u64 {
        [
            &self.handshakes,
            &self.refused,
            &self.relays,
            &self.pipelines,
            &self.users_added,
            &self.users_removed,
            &self.failed,
        ]
        .iter()
        .map(|c| Self::get(c))
        .sum()
    }
}

impl fmt::Display for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = Self::get;
        write!(
            f,
            "{} handshakes, {} wrong passwords refused, {} relays ({:.1} MiB each way), \
             {} admin pipelines ({} requests), {} users added, {} removed; {} failed",
            g(&self.handshakes),
            g(&self.refused),
            g(&self.relays),
            g(&self.relay_bytes) as f64 / (1 << 20) as f64,
            g(&self.pipelines),
            g(&self.admin_requests),
            g(&self.users_added),
            g(&self.users_removed),
            g(&self.failed),
        )?;
        let fl = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if !fl.is_empty() {
            write!(f, " (first: {})", fl.join("; "))?;
        }
        Ok(())
    }
}

/// The server's descriptors and memory at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Open descriptors.
    pub fds: usize,
    /// Resident set, KiB.
    pub rss_kib: u64,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} fds, RSS {} KiB", self.fds, self.rss_kib)
    }
}

/// What a soak measured.
#[derive(Debug)]
pub struct Report {
    /// The operations of the warm-up.
    pub warmup_ops: Ops,
    /// The operations of the soak proper.
    pub ops: Ops,
    /// How long the soak's load actually ran.
    pub load_time: Duration,
    /// Before any load.
    pub idle: Snapshot,
    /// After the warm-up and its settle.
    pub baseline: Snapshot,
    /// Largest descriptors and RSS sampled during the soak (not necessarily together).
    pub peak: Snapshot,
    /// After the soak and its settle.
    pub after: Snapshot,
    /// The server's `VmHWM` at the end, KiB.
    pub hwm_kib: u64,
    /// How long each settle took (warm-up, soak).
    pub settled_in: (Duration, Duration),
    /// The server's CPU over the soak's load, % of a core.
    pub cpu_percent: f64,
    /// Open SOCKS connections the admin protocol reports after the soak's settle.
    pub current_after: Option<u64>,
    /// Whether the server was running at the end.
    pub server_alive: bool,
}

impl Report {
    /// Whether the descriptors came back to the baseline.
    pub fn fds_back(&self) -> bool {
        self.after.fds <= self.baseline.fds
    }

    /// The RSS after, relative to the baseline (1.0 = equal).
    pub fn rss_ratio(&self) -> f64 {
        self.after.rss_kib as f64 / self.baseline.rss_kib.max(1) as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "soak: {:.0} s of mixed load",
            self.load_time.as_secs_f64()
        )?;
        writeln!(f, "  warm-up:  {}", self.warmup_ops)?;
        writeln!(f, "  soak:     {}", self.ops)?;
        writeln!(f, "  idle:     {}", self.idle)?;
        writeln!(
            f,
            "  baseline: {} (settled in {:.1} s)",
            self.baseline,
            self.settled_in.0.as_secs_f64()
        )?;
        writeln!(f, "  peak:     {} (VmHWM {} KiB)", self.peak, self.hwm_kib)?;
        writeln!(
            f,
            "  after:    {} (settled in {:.1} s): fds {:+}, RSS {:+.1} %",
            self.after,
            self.settled_in.1.as_secs_f64(),
            self.after.fds as i64 - self.baseline.fds as i64,
            100.0 * (self.rss_ratio() - 1.0)
        )?;
        write!(
            f,
            "  server CPU {:.1} % of a core during the soak; current connections after: {:?}; alive: {}",
            self.cpu_percent, self.current_after, self.server_alive
        )
    }
}

fn snapshot(server: &ServerProcess) -> io::Result<Snapshot> {
    Ok(Snapshot {
        fds: server.open_fds()?,
        rss_kib: server.rss_kib()?.0,
    })
}

/// Waits, after the load stopped, until the server's descriptor count has not changed for
/// 3 s (or `limit` passes), then 2 s more of idleness; returns how long it took.
///
/// # Errors
///
/// If the server's `/proc` entries cannot be read.
pub fn settle(server: &ServerProcess, limit: Duration) -> io::Result<Duration> {
    let t = Instant::now();
    let (mut last, mut since) = (server.open_fds()?, Instant::now());
    while t.elapsed() < limit {
        thread::sleep(Duration::from_millis(250));
        let n = server.open_fds()?;
        if n != last {
            (last, since) = (n, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(3) {
            break;
        }
    }
    thread::sleep(Duration::from_secs(2));
    Ok(t.elapsed())
}

/// Addresses and switches the workers share.
struct Mix {
    socks: SocketAddr,
    admin: SocketAddr,
    echo: TargetAddr,
    stop: AtomicBool,
    ops: Ops,
    max_relay: usize,
}

fn err(what: &str, e: impl fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Mix {
    fn connect(&self, user: &str, pass: &str) -> Result<TcpStream, String> {
        let (s, rep, _) = peers::socks_connect(self.socks, user, pass, &self.echo)
            .map_err(|e| err("connect", e))?;
        if rep != 0 {
            return Err(format!("CONNECT as {user} answered {rep:#04x}"));
        }
        Ok(s)
    }

    fn handshake(&self) -> Result<(), String> {
        let mut s = self.connect(USER, PASS)?;
        echo_round_trip(&mut s, b"0123456789abcdef0123456789abcdef")?;
        self.ops.handshakes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn refusal(&self) -> Result<(), String> {
        match peers::socks_connect(self.socks, REFUSED_USER, "not-the-password", &self.echo) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                self.ops.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(err("wrong password", e)),
            Ok((_, rep, _)) => {
                return Err(format!("a wrong password got CONNECT reply {rep:#04x}"))
            }
        }
        let mut s = self.connect(REFUSED_USER, REFUSED_PASS)?;
        echo_round_trip(&mut s, b"right password after a wrong one")?;
        self.ops.handshakes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn relay(&self, rng: &mut fastrand::Rng) -> Result<(), String> {
        // Log-uniform in 1..=max_relay.
        let bits = rng.u32(0..=self.max_relay.max(1).ilog2());
        let len = rng.usize(1..=(1usize << bits).min(self.max_relay).max(1));
        let payload: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
        let s = self.connect(USER, PASS)?;
        let mut w = s.try_clone().map_err(|e| err("clone", e))?;
        let mut r = s;
        let back = thread::scope(|sc| {
            let writer = sc.spawn(|| {
                w.write_all(&payload)?;
                w.shutdown(Shutdown::Write)
            });
            let mut back = Vec::with_capacity(len + peers::ECHO_TRAILER.len());
            let read = r.read_to_end(&mut back);
            let wrote = writer.join().expect("relay writer panicked");
            wrote.map_err(|e| err("relay write", e))?;
            read.map_err(|e| err("relay read", e))?;
            Ok::<_, String>(back)
        })?;
        if back.len() != len + peers::ECHO_TRAILER.len()
            || back[..len] != payload[..]
            || &back[len..] != peers::ECHO_TRAILER
        {
            return Err(format!(
                "relay of {len} B came back as {} B, not intact",
                back.len()
            ));
        }
        self.ops.relays.fetch_add(1, Ordering::Relaxed);
        self.ops
            .relay_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    fn admin(&self) -> Result<AdminClient<TcpStream>, String> {
        let mut c = AdminClient::new(
            peers::tcp(self.admin).map_err(|e| err("admin connect", e))?,
            Dialect::Draft,
        );
        match c.auth(ADMIN_USER, ADMIN_PASS) {
            Ok(0) => Ok(c),
            Ok(st) => Err(format!("admin auth status {st:#04x}")),
            Err(e) => Err(err("admin auth", e)),
        }
    }

    fn pipelines(&self) -> Result<(), String> {
        let mut c = self.admin()?;
        let reqs = [
            Query::HistoricConnections,
            Query::CurrentConnections,
            Query::MaxConcurrentConnections,
            Query::BytesSent,
            Query::BytesReceived,
            Query::UsersConnected,
            Query::UserCount,
            Query::ListUsers,
            Query::BufferSize,
            Query::ConnectionTimeout(Dialect::Draft),
            Query::UserConnections {
                cmd: Dialect::Draft,
                name: Bytes::from_static(USER.as_bytes()),
            },
        ]
        .map(AdminRequest::Query);
        for _ in 0..4 {
            c.send(&reqs).map_err(|e| err("admin send", e))?;
            for r in &reqs {
                match c.recv(r).map_err(|e| err("admin recv", e))? {
                    AdminResponse::Value { .. } | AdminResponse::Users(_) => {}
                    other => return Err(format!("{r:?} answered {other:?}")),
                }
            }
            self.ops.pipelines.fetch_add(1, Ordering::Relaxed);
            self.ops
                .admin_requests
                .fetch_add(reqs.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn churn(&self, worker: usize, n: u64) -> Result<(), String> {
        // A name comes back every 64 rounds: the failed login after each removal is a throttle
        // entry (DECISIONS.md, login throttling), and unique names would grow that table
        // for the whole soak (bounded, at 16 384 keys, but not load the baseline has seen).
        let name = format!("soak-{worker}-{}", n % 64);
        let pass = format!("pw-{n}");
        let mut c = self.admin()?;
        let status = |c: &mut AdminClient<TcpStream>, m: Modify| -> Result<u8, String> {
            match c.call(&AdminRequest::Modify(m)) {
                Ok(AdminResponse::Status { status, .. }) => Ok(status),
                Ok(other) => Err(format!("modify answered {other:?}")),
                Err(e) => Err(err("modify", e)),
            }
        };
        let add = Modify::AddUser {
            name: Bytes::from(name.clone().into_bytes()),
            password: Bytes::from(pass.clone().into_bytes()),
            privilege: 0,
        };
        match status(&mut c, add)? {
            0 => {}
            st => return Err(format!("add {name}: status {st:#04x}")),
        }
        let mut used = self.connect(&name, &pass)?;
        echo_round_trip(&mut used, b"new user")?;
        self.ops.users_added.fetch_add(1, Ordering::Relaxed);
        let remove = Modify::RemoveUser {
            name: Bytes::from(name.clone().into_bytes()),
        };
        match status(&mut c, remove)? {
            0 => {}
            st => return Err(format!("remove {name}: status {st:#04x}")),
        }
        // PROTOCOL.md: removing a user closes that user's open proxy sessions.
        if !peers::is_closed_by_peer(&mut used) {
            return Err(format!("{name}'s relay stayed open after the removal"));
        }
        match peers::socks_connect(self.socks, &name, &pass, &self.echo) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(err("login after removal", e)),
            Ok(_) => return Err(format!("{name} could still log in after the removal")),
        }
        self.ops.users_removed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn echo_round_trip(s: &mut TcpStream, msg: &[u8]) -> Result<(), String> {
    s.write_all(msg).map_err(|e| err("echo write", e))?;
    let back = peers::read_n(s, msg.len()).map_err(|e| err("echo read", e))?;
    if back != msg {
        return Err(format!("echo came back as {back:02x?}"));
    }
    Ok(())
}

/// Runs the mix against the server for `time` (the operations in progress then finish),
/// sampling descriptors and RSS every 500 ms; returns the operations and the largest sample
/// of each.
fn run_mix(
    server: &ServerProcess,
    echo: SocketAddr,
    p: &Params,
    time: Duration,
    seed: u64,
) -> (Ops, Snapshot, Duration) {
    let mix = Arc::new(Mix {
        socks: server.socks,
        admin: server.admin,
        echo: TargetAddr::Ip(echo),
        stop: AtomicBool::new(false),
        ops: Ops::default(),
        max_relay: p.max_relay,
    });
    let t = Instant::now();
    let mut peak = Snapshot::default();
    thread::scope(|sc| {
        let spawn = |kind: usize, i: usize| {
            let mix = mix.clone();
            sc.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed ^ ((kind as u64) << 32) ^ i as u64);
                let mut n = 0u64;
                while !mix.stop.load(Ordering::Relaxed) {
                    let r = match kind {
                        0 => mix.handshake(),
                        1 => mix.refusal(),
                        2 => mix.relay(&mut rng),
                        3 => mix.pipelines(),
                        _ => mix.churn(i, n),
                    };
                    if let Err(e) = r {
                        mix.ops.fail(e);
                    }
                    n += 1;
                }
            });
        };
        for (kind, count) in [
            p.handshakers,
            p.refusers,
            p.relayers,
            p.administrators,
            p.churners,
        ]
        .into_iter()
        .enumerate()
        {
            for i in 0..count {
                spawn(kind, i);
            }
        }
        while t.elapsed() < time {
            thread::sleep(Duration::from_millis(500));
            if let Ok(s) = snapshot(server) {
                peak.fds = peak.fds.max(s.fds);
                peak.rss_kib = peak.rss_kib.max(s.rss_kib);
            }
        }
        mix.stop.store(true, Ordering::Relaxed);
    });
    let elapsed = t.elapsed();
    let Ok(mix) = Arc::try_unwrap(mix) else {
        unreachable!("every worker has finished")
    };
    let ops = mix.ops;
    (ops, peak, elapsed)
}

/// Asks the admin port for the number of open SOCKS connections.
fn current_connections(admin: SocketAddr) -> Option<u64> {
    let mut c = AdminClient::new(peers::tcp(admin).ok()?, Dialect::Draft);
    if c.auth(ADMIN_USER, ADMIN_PASS).ok()? != 0 {
        return None;
    }
    match c
        .call(&AdminRequest::Query(Query::CurrentConnections))
        .ok()?
    {
        AdminResponse::Value { value, .. } => Some(value),
        _ => None,
    }
}

/// Runs the soak against `bin`.
///
/// # Errors
///
/// If the server cannot be started or its `/proc` entries cannot be read.
pub fn run(bin: &Path, p: &Params) -> io::Result<Report> {
    let user = format!("{REFUSED_USER}:{REFUSED_PASS}");
    let mut server = ServerProcess::start(bin, &Launch::with_args(&["-u", &user]))?;
    let echo = peers::echo_server(std::net::Ipv4Addr::LOCALHOST.into());
    let idle = snapshot(&server)?;
    let (warmup_ops, _, _) = run_mix(&server, echo, p, p.warmup, p.seed);
    let settled_warmup = settle(&server, p.settle_limit)?;
    let baseline = snapshot(&server)?;
    let cpu = CpuMeter::start(&server)?;
    let (ops, peak, load_time) = run_mix(&server, echo, p, p.duration, p.seed.wrapping_add(1));
    let cpu_percent = cpu.percent(&server)?;
    let settled_soak = settle(&server, p.settle_limit)?;
    let after = snapshot(&server)?;
    let hwm_kib = server.rss_kib()?.1;
    // Asked after the figures are taken: this admin connection is not in them.
    let current_after = current_connections(server.admin);
    Ok(Report {
        warmup_ops,
        ops,
        load_time,
        idle,
        baseline,
        peak,
        after,
        hwm_kib,
        settled_in: (settled_warmup, settled_soak),
        cpu_percent,
        current_after,
        server_alive: server.is_running(),
    })
}

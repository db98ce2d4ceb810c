//! Scenario 2, idle flood: more silent connections than the server has descriptors (it runs
//! with a low `RLIMIT_NOFILE` and a connection limit above it, so `accept` fails with
//! `EMFILE`). The accept loop must back off rather than spin (little CPU while saturated),
//! and serve again as soon as descriptors are free.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::client;
use super::server::{CpuMeter, Launch, ServerProcess};
use super::stats::{ms, Usage};

/// Settings of an idle-flood run.
#[derive(Debug, Clone)]
pub struct Params {
    /// The server's `RLIMIT_NOFILE`.
    pub nofile: u64,
    /// Connections opened beyond `nofile` (they wait in the listen backlog).
    pub beyond: usize,
    /// How long the server's CPU is measured while saturated.
    pub window: Duration,
    /// How long a good client may wait, once the flood is gone, to be served.
    pub recover_within: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            nofile: 1024,
            beyond: 256,
            window: Duration::from_secs(3),
            recover_within: Duration::from_secs(5),
        }
    }
}

impl Params {
    /// The default (a server limited to 1 024 descriptors, 256 connections beyond), lower
    /// when this process's descriptor limit `hard_nofile` cannot hold the flood. Returns the
    /// note saying so, if it scaled.
    pub fn scaled(hard_nofile: u64) -> (Self, Option<String>) {
        let mut p = Self::default();
        let room = hard_nofile.saturating_sub(300);
        let need = p.nofile + p.beyond as u64;
        if need <= room {
            return (p, None);
        }
        p.nofile = (room * 4 / 5).max(64);
        p.beyond = usize::try_from(p.nofile / 4).unwrap_or(usize::MAX);
        let note = format!(
            "scaled to a server limit of {} descriptors, {} connections beyond: RLIMIT_NOFILE hard limit {hard_nofile}",
            p.nofile, p.beyond
        );
        (p, Some(note))
    }
}

/// The result of an idle-flood run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The server's descriptor limit.
    pub nofile: u64,
    /// Silent connections opened.
    pub opened: usize,
    /// Connects that failed or timed out.
    pub open_failed: usize,
    /// Descriptors the server held while saturated.
    pub server_fds: usize,
    /// The server's CPU while saturated, percent of one core, over `window`.
    pub saturated_cpu_percent: f64,
    /// The window's length.
    pub window: Duration,
    /// "out of descriptors" warnings the server logged during the window.
    pub backoff_warnings: usize,
    /// Whether a good client got through while the flood held every descriptor.
    pub served_while_saturated: bool,
    /// Once the flood closed: how long until a good client was served (`None`: not within
    /// `recover_within`).
    pub recovered_after: Option<Duration>,
    /// Descriptors the server held after recovering (and a second for the flood's last
    /// connections to be closed).
    pub server_fds_after: usize,
    /// The server over the whole run.
    pub usage: Usage,
    /// Whether the server was still running at the end.
    pub server_alive: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "idle flood: server RLIMIT_NOFILE {}; {} silent connections opened ({} failed); server held {} descriptors",
            self.nofile, self.opened, self.open_failed, self.server_fds
        )?;
        writeln!(
            f,
            "  saturated: server CPU {:.1} % of a core over {:.1} s, {} back-off warnings ({:.1}/s); good client served meanwhile: {}",
            self.saturated_cpu_percent,
            self.window.as_secs_f64(),
            self.backoff_warnings,
            self.backoff_warnings as f64 / self.window.as_secs_f64().max(1e-3),
            self.served_while_saturated
        )?;
        writeln!(
            f,
            "  flood closed: good client served after {}; server descriptors after: {}",
            self.recovered_after
                .map_or("never".into(), |d| format!("{:.0} ms", ms(d))),
            self.server_fds_after
        )?;
        write!(
            f,
            "  {}; alive at the end: {}",
            self.usage, self.server_alive
        )
    }
}

fn backoff_warnings(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("out of descriptors"))
        .count()
}

/// Runs the scenario against `bin`.
///
/// # Errors
///
/// If the server cannot be started or measured.
pub fn run(bin: &Path, p: &Params) -> io::Result<Report> {
    let launch = Launch {
        nofile: Some(p.nofile),
        // Above what the descriptors hold, so that `accept` itself runs out.
        args: vec!["--max-connections".into(), (p.nofile * 4).to_string()],
        ..Launch::default()
    };
    let mut server = ServerProcess::start(bin, &launch)?;
    let rt = super::runtime();
    let mut report = rt.block_on(flood(&server, p))?;
    report.server_alive = server.is_running();
    Ok(report)
}

async fn flood(server: &ServerProcess, p: &Params) -> io::Result<Report> {
    let echo = client::echo_server().await?;
    let whole = CpuMeter::start(server)?;
    let n = usize::try_from(p.nofile).unwrap_or(usize::MAX) + p.beyond;
    let permits = Arc::new(Semaphore::new(128));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let permits = permits.clone();
            let addr = server.socks;
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore open");
                tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await
            })
        })
        .collect();
    let mut hogs = Vec::with_capacity(n);
    let mut open_failed = 0;
    for t in tasks {
        match t.await.expect("connect task panicked") {
            Ok(Ok(s)) => hogs.push(s),
            _ => open_failed += 1,
        }
    }
    // Saturated once the server's descriptor count stops growing.
    let mut server_fds = server.open_fds()?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = server.open_fds()?;
        if now == server_fds {
            break;
        }
        server_fds = now;
    }
    let warnings_before = backoff_warnings(&server.logs().1);
    let cpu = CpuMeter::start(server)?;
    let window_start = Instant::now();
    // A good client tries once meanwhile (it waits in the backlog behind the flood).
    let served_while_saturated =
        tokio::time::timeout(p.window, client::good_cycle(server.socks, echo))
            .await
            .is_ok_and(|r| r.is_ok());
    if let Some(rest) = p.window.checked_sub(window_start.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let saturated_cpu_percent = cpu.percent(server)?;
    let window = window_start.elapsed();
    let backoff_warnings = backoff_warnings(&server.logs().1) - warnings_before;
    let opened = hogs.len();
    drop(hogs);
    let recovered_after = client::time_to_serve(server.socks, echo, p.recover_within).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_fds_after = server.open_fds()?;
    let (rss_kib, peak_rss_kib) = server.rss_kib()?;
    Ok(Report {
        nofile: p.nofile,
        opened,
        open_failed,
        server_fds,
        saturated_cpu_percent,
        window,
        backoff_warnings,
        served_while_saturated,
        recovered_after,
        server_fds_after,
        usage: Usage {
            cpu_percent: whole.percent(server)?,
            rss_kib,
            peak_rss_kib,
        },
        server_alive: false,
    })
}

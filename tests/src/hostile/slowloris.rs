//! Scenario 1, slowloris: many clients connect and send a valid handshake one byte every
//! 2 s, on the SOCKS port and on the admin port. The server must close each of them by its
//! handshake deadline (10 s), and meanwhile serve a good client's handshakes and answer an
//! administrator's query.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::client::{self, Probe, ProbeKind};
use super::server::{CpuMeter, Launch, ServerProcess};
use super::stats::{Latency, ProbeReport, Usage};
use super::{ADMIN_PASS, ADMIN_USER, HANDSHAKE_DEADLINE};

/// Settings of a slowloris run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Slow clients on the SOCKS port.
    pub socks: usize,
    /// Slow clients on the admin port.
    pub admin: usize,
    /// Pause between two bytes of a slow client.
    pub interval: Duration,
    /// Grace after the deadline before a slow client still open counts as not closed
    /// (the server counts from its accept, the client from its connect; a loaded server
    /// accepts late).
    pub slack: Duration,
    /// Connects in flight at once while the attack opens.
    pub open_concurrency: usize,
}

impl Params {
    /// The load (5 000 SOCKS, 500 admin, a byte every 2 s), scaled down when the
    /// descriptor limit `hard_nofile` (shared by this process and the server it starts)
    /// cannot hold it. Returns the note saying so, if it scaled.
    pub fn scaled(hard_nofile: u64) -> (Self, Option<String>) {
        let (socks, admin) = (5000usize, 500usize);
        // Each slow client is one descriptor here and one in the server; keep 300 spare.
        let room = usize::try_from(hard_nofile.saturating_sub(300)).unwrap_or(usize::MAX);
        let mut p = Self {
            socks,
            admin,
            interval: Duration::from_secs(2),
            slack: Duration::from_secs(3),
            open_concurrency: 256,
        };
        if socks + admin <= room {
            return (p, None);
        }
        p.socks = room * socks / (socks + admin);
        p.admin = room * admin / (socks + admin);
        let note = format!(
            "scaled from 5000 + 500 to {} + {} slow clients: RLIMIT_NOFILE hard limit {hard_nofile}",
            p.socks, p.admin
        );
        (p, Some(note))
    }
}

/// What happened to the slow clients of one port.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Side {
    /// Slow clients connected.
    pub opened: usize,
    /// Connects that failed (with the first error).
    pub open_failed: usize,
    /// The first connect error.
    pub first_open_error: Option<String>,
    /// Closed by the server within deadline + slack of their connect.
    pub closed_in_time: usize,
    /// Still open at deadline + slack.
    pub still_open: usize,
    /// Time from connect to the server's close, of those it closed.
    pub closed_after: Latency,
    /// Bytes the slow clients wrote before they were closed, in total.
    pub bytes_sent: u64,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} opened ({} failed to connect{}), {} closed by the deadline + slack, {} still open; closed after: {}; {} bytes dribbled",
            self.opened,
            self.open_failed,
            self.first_open_error.as_ref().map_or(String::new(), |e| format!(": {e}")),
            self.closed_in_time,
            self.still_open,
            self.closed_after,
            self.bytes_sent
        )
    }
}

/// The result of a slowloris run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Slow clients on the SOCKS port.
    pub socks: Side,
    /// Slow clients on the admin port.
    pub admin: Side,
    /// The good SOCKS client during the attack.
    pub good_client: ProbeReport,
    /// The good administrator during the attack.
    pub administrator: ProbeReport,
    /// The server over the attack.
    pub usage: Usage,
    /// Whether the server was still running at the end.
    pub server_alive: bool,
    /// Length of the run.
    pub seconds: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "slowloris ({:.1} s)", self.seconds)?;
        writeln!(f, "  SOCKS port: {}", self.socks)?;
        writeln!(f, "  admin port: {}", self.admin)?;
        writeln!(f, "  good client: {}", self.good_client)?;
        writeln!(f, "  administrator: {}", self.administrator)?;
        write!(
            f,
            "  {}; alive at the end: {}",
            self.usage, self.server_alive
        )
    }
}

/// The bytes a slow client sends, one at a time: a valid start of the handshake that it
/// never finishes within the deadline (at one byte every 2 s).
fn socks_script() -> Vec<u8> {
    let mut v = vec![0x05, 0x01, 0x02];
    v.extend_from_slice(&client::userpass());
    v
}

fn admin_script() -> Vec<u8> {
    let mut v = vec![0x01, ADMIN_USER.len() as u8];
    v.extend_from_slice(ADMIN_USER.as_bytes());
    v.push(ADMIN_PASS.len() as u8);
    v.extend_from_slice(ADMIN_PASS.as_bytes());
    v
}

/// One slow client's fate.
enum Fate {
    OpenFailed(String),
    Closed { after: Duration, sent: u64 },
    StillOpen { sent: u64 },
}

async fn slow_client(
    addr: SocketAddr,
    script: Arc<Vec<u8>>,
    interval: Duration,
    limit: Duration,
    permits: Arc<Semaphore>,
    settled: Arc<AtomicUsize>,
) -> Fate {
    let permit = permits.acquire_owned().await.expect("semaphore open");
    let connected = TcpStream::connect(addr).await;
    drop(permit);
    settled.fetch_add(1, Ordering::Relaxed);
    let mut s = match connected {
        Ok(s) => s,
        Err(e) => return Fate::OpenFailed(e.to_string()),
    };
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut buf = [0u8; 64];
    // Past the script (never reached within the deadline), keep sending its last byte.
    let closed = tokio::time::timeout(limit, async {
        for i in 0.. {
            let b = script[i.min(script.len() - 1)];
            if s.write_all(&[b]).await.is_err() {
                return;
            }
            sent += 1;
            let wake = tokio::time::Instant::now() + interval;
            loop {
                tokio::select! {
                    r = s.read(&mut buf) => match r {
                        // Answers (the method selection) are fine; a close is what we wait for.
                        Ok(n) if n > 0 => continue,
                        _ => return,
                    },
                    () = tokio::time::sleep_until(wake) => break,
                }
            }
        }
    })
    .await
    .is_ok();
    if closed {
        Fate::Closed {
            after: t0.elapsed(),
            sent,
        }
    } else {
        Fate::StillOpen { sent }
    }
}

fn tally(fates: Vec<Fate>) -> Side {
    let mut side = Side::default();
    let mut after = Vec::new();
    for f in fates {
        match f {
            Fate::OpenFailed(e) => {
                side.open_failed += 1;
                side.first_open_error.get_or_insert(e);
            }
            Fate::Closed { after: a, sent } => {
                side.opened += 1;
                side.closed_in_time += 1;
                side.bytes_sent += sent;
                after.push(a);
            }
            Fate::StillOpen { sent } => {
                side.opened += 1;
                side.still_open += 1;
                side.bytes_sent += sent;
            }
        }
    }
    side.closed_after = Latency::of(&after);
    side
}

/// Runs the scenario against `bin`.
///
/// # Errors
///
/// If the server cannot be started or measured.
pub fn run(bin: &Path, p: &Params) -> io::Result<Report> {
    // The slow clients hold one descriptor each in the server: let its connection limit
    // (two descriptors per proxied connection by default) not be what stops them.
    let max = (p.socks + 64).to_string();
    let server = ServerProcess::start(bin, &Launch::with_args(&["--max-connections", &max]))?;
    let rt = super::runtime();
    let mut report = rt.block_on(attack(&server, p))?;
    let mut server = server;
    report.server_alive = server.is_running();
    Ok(report)
}

async fn attack(server: &ServerProcess, p: &Params) -> io::Result<Report> {
    let t0 = Instant::now();
    let echo = client::echo_server().await?;
    let cpu = CpuMeter::start(server)?;
    let permits = Arc::new(Semaphore::new(p.open_concurrency.max(1)));
    let limit = HANDSHAKE_DEADLINE + p.slack;
    // Connects done (made or failed): the probes start once the whole attack is open.
    let settled = Arc::new(AtomicUsize::new(0));
    let spawn = |n: usize, addr: SocketAddr, script: Vec<u8>| {
        let script = Arc::new(script);
        (0..n)
            .map(|_| {
                tokio::spawn(slow_client(
                    addr,
                    script.clone(),
                    p.interval,
                    limit,
                    permits.clone(),
                    settled.clone(),
                ))
            })
            .collect::<Vec<_>>()
    };
    let socks = spawn(p.socks, server.socks, socks_script());
    let admin = spawn(p.admin, server.admin, admin_script());
    let opening = Instant::now();
    while settled.load(Ordering::Relaxed) < p.socks + p.admin && opening.elapsed() < p.interval {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let good = Probe::start(
        ProbeKind::Socks {
            proxy: server.socks,
            echo,
        },
        Duration::from_millis(100),
        Duration::from_secs(5),
    );
    let administrator = Probe::start(
        ProbeKind::Admin(server.admin),
        Duration::from_millis(200),
        Duration::from_secs(5),
    );
    let mut fates = Vec::with_capacity(socks.len());
    for t in socks {
        fates.push(t.await.expect("slow client panicked"));
    }
    let socks = tally(fates);
    let mut fates = Vec::with_capacity(admin.len());
    for t in admin {
        fates.push(t.await.expect("slow client panicked"));
    }
    let admin = tally(fates);
    let good_client = good.finish().await;
    let administrator = administrator.finish().await;
    let cpu_percent = cpu.percent(server)?;
    let (rss_kib, peak_rss_kib) = server.rss_kib()?;
    Ok(Report {
        socks,
        admin,
        good_client,
        administrator,
        usage: Usage {
            cpu_percent,
            rss_kib,
            peak_rss_kib,
        },
        server_alive: false,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile::{PASS, USER};

    #[test]
    fn scripts_never_finish_a_handshake_within_the_deadline() {
        // At one byte every 2 s, a slow client sends at most 1 + 13 / 2 = 7 bytes before
        // its limit (10 s + 3 s): never a whole SOCKS greeting + auth, never a whole admin
        // auth request.
        let (p, _) = Params::scaled(20_000);
        let most = 1 + ((HANDSHAKE_DEADLINE + p.slack).as_secs() / p.interval.as_secs()) as usize;
        assert!(socks_script().len() > most && admin_script().len() > most);
        assert_eq!(socks_script().len(), 3 + 3 + USER.len() + PASS.len());
    }

    #[test]
    fn scaling_keeps_the_ratio_and_fits_the_limit() {
        assert!(Params::scaled(20_000).1.is_none());
        let (p, note) = Params::scaled(2_300);
        assert!(note.is_some());
        assert!(p.socks + p.admin <= 2_000);
        assert_eq!(p.socks / p.admin, 10);
    }
}

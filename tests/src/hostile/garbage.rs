//! Scenario 6, garbage: connections that send seeded random bytes (random lengths, some
//! shaped like the start of a real handshake) to both ports, then half-close. The server
//! must not crash, answer each with a short refusal at most and close it, keep every log
//! line under 1 KiB (stdout and stderr captured, at debug level), and keep serving.
//!
//! No garbage connection can reach a destination: anonymous use is off, so a CONNECT needs
//! the proxy user's password, which the generator never produces (it checks).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::client::{self, Probe, ProbeKind};
use super::server::{CpuMeter, Launch, ServerProcess};
use super::stats::{ProbeReport, Usage};
use super::{ADMIN_PASS, ADMIN_USER, PASS, USER};

/// Longest log line allowed, bytes.
pub const MAX_LOG_LINE: usize = 1024;

/// Settings of a garbage run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connections, each to either port at random.
    pub connections: usize,
    /// Connections in flight at once.
    pub concurrency: usize,
    /// Longest garbage, bytes.
    pub max_len: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// The server's `--log-level`.
    pub log_level: String,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            connections: 10_000,
            concurrency: 64,
            max_len: 4096,
            seed: 0x6a2b_a9e0,
            log_level: "debug".into(),
        }
    }
}

/// The result of a garbage run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Connections made to the SOCKS port and to the admin port.
    pub connections: (usize, usize),
    /// Garbage bytes written in total.
    pub bytes: u64,
    /// Connects that failed.
    pub connect_failed: usize,
    /// Connections the server had not closed 15 s after the garbage.
    pub not_closed: usize,
    /// How many bytes the server answered, per connection (answer length → connections).
    pub answers: BTreeMap<usize, usize>,
    /// The first few connections answered with more than 4 bytes: (port, garbage prefix,
    /// answer).
    pub long_answers: Vec<String>,
    /// The good client meanwhile.
    pub good_client: ProbeReport,
    /// The administrator meanwhile.
    pub administrator: ProbeReport,
    /// A good client after the run.
    pub served_after: bool,
    /// Log lines on stdout and stderr.
    pub log_lines: (usize, usize),
    /// The longest log line, bytes.
    pub longest_log_line: usize,
    /// Log lines over [`MAX_LOG_LINE`].
    pub long_log_lines: usize,
    /// The start of the longest log line.
    pub longest_log_line_start: String,
    /// Access-log lines for any user other than the good client's: garbage that got past
    /// authentication (must be none).
    pub foreign_access_lines: usize,
    /// The server over the run.
    pub usage: Usage,
    /// Whether the server was still running at the end, and its exit status if not.
    pub server_alive: bool,
    /// Its exit status, if it died.
    pub exit_status: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "garbage (seed {:#x}): {} connections to SOCKS, {} to admin, {} KiB of garbage; {} connects failed, {} not closed",
            self.seed,
            self.connections.0,
            self.connections.1,
            self.bytes / 1024,
            self.connect_failed,
            self.not_closed
        )?;
        writeln!(
            f,
            "  answer lengths (bytes: connections): {:?}",
            self.answers
        )?;
        for a in &self.long_answers {
            writeln!(f, "    long answer: {a}")?;
        }
        writeln!(f, "  good client: {}", self.good_client)?;
        writeln!(f, "  administrator: {}", self.administrator)?;
        writeln!(
            f,
            "  logs: {} stdout + {} stderr lines, longest {} B, {} over {MAX_LOG_LINE} B, {} foreign access lines; longest starts {:?}",
            self.log_lines.0,
            self.log_lines.1,
            self.longest_log_line,
            self.long_log_lines,
            self.foreign_access_lines,
            self.longest_log_line_start
        )?;
        write!(
            f,
            "  {}; served after: {}; alive at the end: {}{}",
            self.usage,
            self.served_after,
            self.server_alive,
            self.exit_status
                .as_ref()
                .map_or(String::new(), |s| format!(" (exit: {s})"))
        )
    }
}

/// One connection's garbage: log-uniform length (0 to `max`), and one of four shapes.
fn garbage(rng: &mut fastrand::Rng, admin: bool, max: usize) -> Vec<u8> {
    let len = ((max as f64 + 1.0).powf(rng.f64()) as usize)
        .saturating_sub(1)
        .min(max);
    let mut v = Vec::with_capacity(len + 32);
    match (rng.u8(0..4), admin) {
        // Pure noise.
        (0 | 1, _) => {}
        // The first byte right, the rest noise.
        (2, false) => v.extend_from_slice(&[0x05, 0x01, 0x02]),
        (2, true) => v.push(0x01),
        // A well-formed login with wrong credentials, then noise.
        (_, _) => {
            if !admin {
                v.extend_from_slice(&[0x05, 0x01, 0x02]);
            }
            let (good_user, good_pass) = if admin {
                (ADMIN_USER.as_bytes(), ADMIN_PASS.as_bytes())
            } else {
                (USER.as_bytes(), PASS.as_bytes())
            };
            let mut user: Vec<u8> = (0..rng.usize(1..=16)).map(|_| rng.u8(..)).collect();
            let mut pass: Vec<u8> = (0..rng.usize(1..=16)).map(|_| rng.u8(..)).collect();
            if user == good_user && pass == good_pass {
                // Astronomically unlikely; never a real login.
                pass[0] ^= 0xff;
            }
            user.truncate(255);
            pass.truncate(255);
            v.push(0x01);
            v.push(user.len() as u8);
            v.extend_from_slice(&user);
            v.push(pass.len() as u8);
            v.extend_from_slice(&pass);
        }
    }
    v.extend((0..len).map(|_| rng.u8(..)));
    v
}

enum Outcome {
    ConnectFailed,
    Done {
        admin: bool,
        answer: Vec<u8>,
        closed: bool,
        prefix: Vec<u8>,
    },
}

/// Where the garbage comes from: another loopback address than the good client's and the
/// administrator's (127.0.0.1). Garbage that happens to be a well-formed failed login delays
/// later logins from its address (the login back-off); the attacker is not the operator.
const ATTACKER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// Connects to `addr` from `from` (port chosen by the kernel).
async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(addr).await
}

async fn one(addr: SocketAddr, admin: bool, bytes: Vec<u8>, permits: Arc<Semaphore>) -> Outcome {
    let _permit = permits.acquire_owned().await.expect("semaphore open");
    let Ok(mut s) = connect_from(ATTACKER, addr).await else {
        return Outcome::ConnectFailed;
    };
    // The server may close (even reset) before taking everything: that is an answer too.
    let _ = s.write_all(&bytes).await;
    let _ = s.shutdown().await;
    let (answer, closed) = client::read_until_closed(&mut s, Duration::from_secs(15)).await;
    Outcome::Done {
        admin,
        answer,
        closed,
        prefix: bytes[..bytes.len().min(12)].to_vec(),
    }
}

/// Runs the scenario against `bin`.
///
/// # Errors
///
/// If the server cannot be started or measured.
pub fn run(bin: &Path, p: &Params) -> io::Result<Report> {
    let mut server = ServerProcess::start(bin, &Launch::with_args(&["--log-level", &p.log_level]))?;
    let rt = super::runtime();
    let mut report = rt.block_on(attack(&server, p))?;
    report.server_alive = server.is_running();
    report.exit_status = server.exit_status().map(|s| s.to_string());
    let (out, err) = server.logs();
    report.log_lines = (out.lines().count(), err.lines().count());
    if let Some(longest) = out.lines().chain(err.lines()).max_by_key(|l| l.len()) {
        report.longest_log_line = longest.len();
        report.longest_log_line_start = longest.chars().take(160).collect();
    }
    report.long_log_lines = out
        .lines()
        .chain(err.lines())
        .filter(|l| l.len() > MAX_LOG_LINE)
        .count();
    // Access lines: time, user, "A", ...; the good client is the only user that logs in.
    report.foreign_access_lines = out
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f.get(2) == Some(&"A") && f.get(1) != Some(&USER)
        })
        .count();
    Ok(report)
}

async fn attack(server: &ServerProcess, p: &Params) -> io::Result<Report> {
    let echo = client::echo_server().await?;
    let cpu = CpuMeter::start(server)?;
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
    let permits = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let mut rng = fastrand::Rng::with_seed(p.seed);
    let mut report = Report {
        seed: p.seed,
        ..Report::default()
    };
    let tasks: Vec<_> = (0..p.connections)
        .map(|_| {
            let admin = rng.bool();
            let bytes = garbage(&mut rng, admin, p.max_len);
            report.bytes += bytes.len() as u64;
            let addr = if admin { server.admin } else { server.socks };
            tokio::spawn(one(addr, admin, bytes, permits.clone()))
        })
        .collect();
    for t in tasks {
        match t.await.expect("garbage task panicked") {
            Outcome::ConnectFailed => report.connect_failed += 1,
            Outcome::Done {
                admin,
                answer,
                closed,
                prefix,
            } => {
                if admin {
                    report.connections.1 += 1;
                } else {
                    report.connections.0 += 1;
                }
                if !closed {
                    report.not_closed += 1;
                }
                if answer.len() > 4 && report.long_answers.len() < 8 {
                    report.long_answers.push(format!(
                        "{} port, garbage {prefix:02x?}…, answer {:02x?}",
                        if admin { "admin" } else { "SOCKS" },
                        &answer[..answer.len().min(32)]
                    ));
                }
                *report.answers.entry(answer.len()).or_default() += 1;
            }
        }
    }
    report.good_client = good.finish().await;
    report.administrator = administrator.finish().await;
    report.served_after = client::time_to_serve(server.socks, echo, Duration::from_secs(5))
        .await
        .is_some();
    let (rss_kib, peak_rss_kib) = server.rss_kib()?;
    report.usage = Usage {
        cpu_percent: cpu.percent(server)?,
        rss_kib,
        peak_rss_kib,
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_reproducible_and_varied() {
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..200)
                .map(|i| garbage(&mut rng, i % 2 == 0, 4096))
                .collect::<Vec<_>>()
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert!(a.iter().all(|g| g.len() <= 4096 + 3 + 3 + 32));
        assert!(a.iter().any(|g| g.len() < 16) && a.iter().any(|g| g.len() > 1024));
        assert!(a.iter().any(|g| g.starts_with(&[0x05, 0x01, 0x02, 0x01])));
    }
}

//! Scenario 4, half-close and CLOSE-WAIT: relays where one side sends FIN and then goes
//! silent while keeping its socket open. The server passes the FIN on and keeps the other
//! direction open (TCP half-close), so it holds both sockets, one of them in CLOSE-WAIT.
//! With the clean-up routine on, the connection timeout must close them; with it off
//! (`-D`), a half-close limit must (see [`HALF_CLOSE_FLAG`]).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use super::client;
use super::server::{Launch, ServerProcess};
use super::stats::ms;

/// The flag this suite proposes for the half-close limit: a relay one of whose directions
/// has ended, and on which no byte moved for this many seconds, is closed whether the
/// clean-up routine is on or off. Proposed default: 60 s.
pub const HALF_CLOSE_FLAG: &str = "--half-close-timeout";

/// Which limit is expected to close the half-closed relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The clean-up routine with this connection timeout (`-t`), in seconds.
    Cleanup(u8),
    /// Clean-up off (`-D`), and [`HALF_CLOSE_FLAG`] with this many seconds.
    HalfClose(u8),
}

/// Settings of a half-close run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Relays to half-close (half from the client's side, half from the destination's).
    pub relays: usize,
    /// What should close them.
    pub limit: Limit,
    /// The clean-up period (`--selector-timeout`), in seconds.
    pub selector: u8,
    /// Grace after the limit (+ one period) before the relays still open count as leaked.
    pub slack: Duration,
}

impl Params {
    /// 1 000 relays, closed by `limit`, clean-up every second, 4 s of grace.
    pub fn new(limit: Limit) -> Self {
        Self {
            relays: 1000,
            limit,
            selector: 1,
            slack: Duration::from_secs(4),
        }
    }

    /// Fewer relays when the descriptor limit `hard_nofile` (shared by this process and the
    /// server) cannot hold them: each relay is two descriptors on either side. Returns the
    /// note saying so, if it scaled.
    #[must_use]
    pub fn scaled(mut self, hard_nofile: u64) -> (Self, Option<String>) {
        let room = usize::try_from(hard_nofile.saturating_sub(300) / 2).unwrap_or(usize::MAX);
        if self.relays <= room {
            return (self, None);
        }
        let note = format!(
            "scaled from {} to {room} relays: RLIMIT_NOFILE hard limit {hard_nofile}",
            self.relays
        );
        self.relays = room;
        (self, Some(note))
    }
}

/// The result of a half-close run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The flags the server ran with.
    pub flags: Vec<String>,
    /// Set when the server refused [`HALF_CLOSE_FLAG`] (its error), and the run went on
    /// with `-D` alone to show what happens without a limit.
    pub flag_refused: Option<String>,
    /// Relays set up and half-closed.
    pub relays: usize,
    /// Time to set them all up.
    pub setup: Duration,
    /// Relays whose set-up failed (with the first error).
    pub setup_failed: usize,
    /// The first set-up error.
    pub first_error: Option<String>,
    /// The server's sockets before the relays.
    pub baseline_sockets: usize,
    /// Most sockets it held from the last FIN on.
    pub peak_sockets: usize,
    /// Most of its sockets in CLOSE-WAIT at once, from the last FIN on.
    pub peak_close_wait: usize,
    /// Its sockets at the end of the observation.
    pub remaining_sockets: usize,
    /// Its sockets in CLOSE-WAIT at the end.
    pub remaining_close_wait: usize,
    /// How long after the last FIN the server was back to its baseline (`None`: not within
    /// the observation).
    pub cleared_after: Option<Duration>,
    /// How long it was observed after the last FIN.
    pub observed: Duration,
    /// Of the ends that sent FIN (kept open, reading), how many saw the server close the
    /// relay.
    pub fin_ends_closed: usize,
    /// Whether the server was still running at the end.
    pub server_alive: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "half-close, server flags {:?}", self.flags)?;
        if let Some(e) = &self.flag_refused {
            writeln!(
                f,
                "  {HALF_CLOSE_FLAG} refused by the server ({e}); ran with -D alone"
            )?;
        }
        writeln!(
            f,
            "  {} relays half-closed in {:.1} s ({} failed to set up{}); server sockets: baseline {}, peak {} ({} CLOSE-WAIT)",
            self.relays,
            self.setup.as_secs_f64(),
            self.setup_failed,
            self.first_error.as_ref().map_or(String::new(), |e| format!(": {e}")),
            self.baseline_sockets,
            self.peak_sockets,
            self.peak_close_wait
        )?;
        write!(
            f,
            "  after {:.1} s: {} sockets ({} CLOSE-WAIT) remain; back to baseline after {}; FIN ends that saw the server close: {}/{}; alive: {}",
            self.observed.as_secs_f64(),
            self.remaining_sockets,
            self.remaining_close_wait,
            self.cleared_after.map_or("never".into(), |d| format!("{:.0} ms", ms(d))),
            self.fin_ends_closed,
            self.relays,
            self.server_alive
        )
    }
}

/// Destination connections by peer address (the proxy's BND.ADDR:BND.PORT), so that a client
/// can find the other end of its relay.
#[derive(Default)]
pub(super) struct Rendezvous {
    waiting: Mutex<HashMap<SocketAddr, TcpStream>>,
    arrived: Notify,
}

impl Rendezvous {
    pub(super) async fn take(&self, peer: SocketAddr, within: Duration) -> io::Result<TcpStream> {
        tokio::time::timeout(within, async {
            loop {
                let notified = self.arrived.notified();
                if let Some(s) = self.waiting.lock().expect("lock").remove(&peer) {
                    return s;
                }
                notified.await;
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "destination side never arrived"))
    }
}

/// Starts a destination on 127.0.0.1 that parks every accepted connection in `r`.
pub(super) async fn destination(r: Arc<Rendezvous>) -> io::Result<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, peer)) = l.accept().await {
            r.waiting.lock().expect("lock").insert(peer, s);
            r.arrived.notify_waiters();
        }
    });
    Ok(addr)
}

/// A relay through the proxy with both ends in hand: (client side, destination side).
///
/// # Errors
///
/// If the proxy refuses, or the destination side does not show up.
async fn relay(
    proxy: SocketAddr,
    dest: SocketAddr,
    r: &Rendezvous,
) -> io::Result<(TcpStream, TcpStream)> {
    let (c, bnd) = client::socks_connect(proxy, dest).await?;
    let d = r.take(bnd, Duration::from_secs(5)).await?;
    Ok((c, d))
}

/// Sets up one relay, checks it carries a byte each way, then half-closes it from
/// `client_fin`'s side and waits for the FIN to come out at the other end. Returns the
/// silent end (the one that did not send FIN) and the other, both kept open.
async fn half_closed(
    proxy: SocketAddr,
    dest: SocketAddr,
    r: &Rendezvous,
    client_fin: bool,
) -> io::Result<(TcpStream, TcpStream)> {
    let (mut c, mut d) = relay(proxy, dest, r).await?;
    let mut b = [0u8; 1];
    c.write_all(b"u").await?;
    d.read_exact(&mut b).await?;
    d.write_all(b"d").await?;
    c.read_exact(&mut b).await?;
    let (mut fin, mut silent) = if client_fin { (c, d) } else { (d, c) };
    fin.shutdown().await?;
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut b))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "FIN not passed on"))??;
    if n != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "data instead of FIN",
        ));
    }
    Ok((silent, fin))
}

/// Runs the scenario against `bin`.
///
/// # Errors
///
/// If the server cannot be started (other than refusing [`HALF_CLOSE_FLAG`]) or measured.
pub fn run(bin: &Path, p: &Params) -> io::Result<Report> {
    let max = (p.relays + 64).to_string();
    let sel = p.selector.to_string();
    let mut flags: Vec<String> = ["--max-connections", &max, "--selector-timeout", &sel]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut flag_refused = None;
    let server = match p.limit {
        Limit::Cleanup(t) => {
            flags.extend(["--connection-timeout".into(), t.to_string()]);
            ServerProcess::start(
                bin,
                &Launch {
                    args: flags.clone(),
                    ..Launch::default()
                },
            )?
        }
        Limit::HalfClose(t) => {
            let mut with = flags.clone();
            with.extend(["-D".into(), HALF_CLOSE_FLAG.into(), t.to_string()]);
            match ServerProcess::start(
                bin,
                &Launch {
                    args: with.clone(),
                    ..Launch::default()
                },
            ) {
                Ok(s) => {
                    flags = with;
                    s
                }
                Err(e) => {
                    // clap's first line says it all ("unexpected argument ... found").
                    let e = e.to_string();
                    flag_refused = Some(e.lines().next().unwrap_or_default().to_owned());
                    flags.push("-D".into());
                    ServerProcess::start(
                        bin,
                        &Launch {
                            args: flags.clone(),
                            ..Launch::default()
                        },
                    )?
                }
            }
        }
    };
    let seconds = match p.limit {
        Limit::Cleanup(t) | Limit::HalfClose(t) => t,
    };
    let observe = Duration::from_secs(u64::from(seconds) + u64::from(p.selector)) + p.slack;
    let rt = super::runtime();
    let mut report = rt.block_on(attack(&server, p, observe))?;
    report.flags = flags;
    report.flag_refused = flag_refused;
    let mut server = server;
    report.server_alive = server.is_running();
    Ok(report)
}

async fn attack(server: &ServerProcess, p: &Params, observe: Duration) -> io::Result<Report> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_sockets = server.socket_inodes()?.len();
    let r = Arc::new(Rendezvous::default());
    let dest = destination(r.clone()).await?;
    let permits = Arc::new(Semaphore::new(64));
    let setup = Instant::now();
    let tasks: Vec<_> = (0..p.relays)
        .map(|i| {
            let (r, permits, proxy) = (r.clone(), permits.clone(), server.socks);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore open");
                half_closed(proxy, dest, &r, i % 2 == 0).await
            })
        })
        .collect();
    let mut report = Report {
        baseline_sockets,
        ..Report::default()
    };
    let mut ends = Vec::with_capacity(p.relays);
    for t in tasks {
        match t.await.expect("relay task panicked") {
            Ok(pair) => ends.push(pair),
            Err(e) => {
                report.setup_failed += 1;
                report.first_error.get_or_insert(e.to_string());
            }
        }
    }
    report.relays = ends.len();
    report.setup = setup.elapsed();
    let last_fin = Instant::now();
    let (mut peak, mut peak_cw) = (0, 0);
    let mut close_wait;
    loop {
        // Listening sockets count too: compare like with like.
        let held = server.socket_inodes()?.len();
        close_wait = server.tcp_states()?.1;
        peak = peak.max(held);
        peak_cw = peak_cw.max(close_wait);
        if held <= baseline_sockets {
            report.cleared_after = Some(last_fin.elapsed());
            break;
        }
        if last_fin.elapsed() >= observe {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.observed = last_fin.elapsed();
    report.peak_sockets = peak;
    report.peak_close_wait = peak_cw;
    report.remaining_sockets = server.socket_inodes()?.len();
    report.remaining_close_wait = close_wait;
    // The ends that sent FIN still read from the server: its close shows there as an end
    // of stream (or a reset) at once. (The silent ends saw the FIN already.)
    let checks: Vec<_> = ends
        .into_iter()
        .map(|(silent, mut fin)| {
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                let r = tokio::time::timeout(Duration::from_millis(50), fin.read(&mut b)).await;
                drop(silent);
                matches!(r, Ok(Ok(0) | Err(_)))
            })
        })
        .collect();
    for c in checks {
        if c.await.expect("check task panicked") {
            report.fin_ends_closed += 1;
        }
    }
    Ok(report)
}

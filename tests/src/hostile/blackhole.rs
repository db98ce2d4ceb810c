//! Scenario 3, black-hole destinations: CONNECTs to a local listener that never accepts and
//! whose accept queue is full, so the kernel drops further SYNs and the server's connects
//! hang. Each client must get a failure reply (`06` TTL expired or `04` host unreachable)
//! by the handshake deadline, and other clients must be served meanwhile.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::client::{self, Probe, ProbeKind};
use super::server::{CpuMeter, Launch, ServerProcess};
use super::stats::{Latency, ProbeReport, Usage};
use super::HANDSHAKE_DEADLINE;

/// Settings of a black-hole run.
#[derive(Debug, Clone)]
pub struct Params {
    /// CONNECTs to the black hole, all in flight at once.
    pub connects: usize,
    /// Grace after the deadline before a client without a reply counts as unanswered.
    pub slack: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            connects: 1000,
            slack: Duration::from_secs(3),
        }
    }
}

impl Params {
    /// The 1 000 CONNECTs, fewer when the descriptor limit `hard_nofile` (shared by
    /// this process and the server) cannot hold them: the server needs two descriptors per
    /// CONNECT in flight. Returns the note saying so, if it scaled.
    pub fn scaled(hard_nofile: u64) -> (Self, Option<String>) {
        let mut p = Self::default();
        let room = usize::try_from(hard_nofile.saturating_sub(300) / 2).unwrap_or(usize::MAX);
        if p.connects <= room {
            return (p, None);
        }
        p.connects = room;
        let note =
            format!("scaled from 1000 to {room} CONNECTs: RLIMIT_NOFILE hard limit {hard_nofile}");
        (p, Some(note))
    }
}

/// The result of a black-hole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Connections the test made to the listener to fill its accept queue.
    pub queue_fillers: usize,
    /// Whether a further direct connect to it hung (the black hole works).
    pub black_hole_confirmed: bool,
    /// CONNECTs sent through the proxy.
    pub connects: usize,
    /// Replies by code (`REP` byte), of those answered in time.
    pub replies: BTreeMap<u8, usize>,
    /// Clients whose handshake broke before the CONNECT reply (with the first error).
    pub errors: usize,
    /// The first such error.
    pub first_error: Option<String>,
    /// Clients with no reply within deadline + slack.
    pub unanswered: usize,
    /// Time from each client's connect to its reply.
    pub reply_after: Latency,
    /// The good client meanwhile.
    pub good_client: ProbeReport,
    /// The server over the run.
    pub usage: Usage,
    /// The server's sockets before the run and a second after the last reply.
    pub server_sockets: (usize, usize),
    /// Whether the server was still running at the end.
    pub server_alive: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "black hole: accept queue filled with {} connections, further connects hang: {}",
            self.queue_fillers, self.black_hole_confirmed
        )?;
        writeln!(
            f,
            "  {} CONNECTs: replies {:?}, {} broken, {} unanswered{}; reply after: {}",
            self.connects,
            self.replies
                .iter()
                .map(|(c, n)| format!("{c:02x}: {n}"))
                .collect::<Vec<_>>(),
            self.errors,
            self.unanswered,
            self.first_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})")),
            self.reply_after
        )?;
        writeln!(f, "  good client: {}", self.good_client)?;
        write!(
            f,
            "  {}; server sockets before/after {}/{}; alive at the end: {}",
            self.usage, self.server_sockets.0, self.server_sockets.1, self.server_alive
        )
    }
}

/// A listener that never accepts, with its accept queue filled: (listener, the connections
/// that fill it, whether one more connect hangs).
fn black_hole() -> io::Result<(Socket, Vec<StdTcpStream>, bool)> {
    let l = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    l.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    // Backlog 0: the kernel queues one completed connection (more on some kernels).
    l.listen(0)?;
    let addr = l
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener address"))?;
    let mut fillers = Vec::new();
    for _ in 0..32 {
        match StdTcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok((l, fillers, true)),
            Err(e) => return Err(e),
        }
    }
    Ok((l, fillers, false))
}

/// Runs the scenario against `bin`.
///
/// # Errors
///
/// If the server cannot be started or measured, or the listener cannot be made.
pub fn run(bin: &Path, p: &Params) -> io::Result<Report> {
    let max = (p.connects + 64).to_string();
    let mut server = ServerProcess::start(bin, &Launch::with_args(&["--max-connections", &max]))?;
    let (listener, fillers, confirmed) = black_hole()?;
    let target = listener
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener address"))?;
    let rt = super::runtime();
    let mut report = rt.block_on(attack(&server, target, p))?;
    report.queue_fillers = fillers.len();
    report.black_hole_confirmed = confirmed;
    report.server_alive = server.is_running();
    drop((listener, fillers));
    Ok(report)
}

enum Outcome {
    Reply(u8, Duration),
    Broken(String),
    Unanswered,
}

async fn one(
    proxy: SocketAddr,
    target: SocketAddr,
    limit: Duration,
    permits: Arc<Semaphore>,
) -> Outcome {
    let permit = permits.acquire_owned().await.expect("semaphore open");
    let t0 = Instant::now();
    let r = tokio::time::timeout(limit, async {
        let mut s = TcpStream::connect(proxy).await?;
        client::authenticate(&mut s).await?;
        s.write_all(&client::connect_request(target)).await?;
        drop(permit);
        client::read_reply(&mut s).await
    })
    .await;
    match r {
        Ok(Ok((code, _))) => Outcome::Reply(code, t0.elapsed()),
        Ok(Err(e)) => Outcome::Broken(e.to_string()),
        Err(_) => Outcome::Unanswered,
    }
}

async fn attack(server: &ServerProcess, target: SocketAddr, p: &Params) -> io::Result<Report> {
    let echo = client::echo_server().await?;
    let sockets_before = server.socket_inodes()?.len();
    let cpu = CpuMeter::start(server)?;
    // Handshakes in progress at once (each one's permit is released once its CONNECT is
    // sent, so every CONNECT ends up in flight together).
    let permits = Arc::new(Semaphore::new(128));
    let limit = HANDSHAKE_DEADLINE + p.slack;
    let tasks: Vec<_> = (0..p.connects)
        .map(|_| tokio::spawn(one(server.socks, target, limit, permits.clone())))
        .collect();
    let good = Probe::start(
        ProbeKind::Socks {
            proxy: server.socks,
            echo,
        },
        Duration::from_millis(100),
        Duration::from_secs(5),
    );
    let mut report = Report {
        connects: p.connects,
        ..Report::default()
    };
    let mut after = Vec::new();
    for t in tasks {
        match t.await.expect("client task panicked") {
            Outcome::Reply(code, d) => {
                *report.replies.entry(code).or_default() += 1;
                after.push(d);
            }
            Outcome::Broken(e) => {
                report.errors += 1;
                report.first_error.get_or_insert(e);
            }
            Outcome::Unanswered => report.unanswered += 1,
        }
    }
    report.reply_after = Latency::of(&after);
    report.good_client = good.finish().await;
    let cpu_percent = cpu.percent(server)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.server_sockets = (sockets_before, server.socket_inodes()?.len());
    let (rss_kib, peak_rss_kib) = server.rss_kib()?;
    report.usage = Usage {
        cpu_percent,
        rss_kib,
        peak_rss_kib,
    };
    Ok(report)
}

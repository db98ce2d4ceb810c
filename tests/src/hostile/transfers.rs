//! Scenario 5, every byte relayed: concurrent transfers of seeded random sizes in both
//! directions, with half-closes in both orders, through two servers at once: one with
//! credential sniffing on (HTTP-looking transfers go through the relay's copy path until
//! the sniffer gives up; then, as with binary ones, the relay splices once the reads are
//! bulk) and one with sniffing off (`-N`: copy for the first full buffers, then `splice`). Each side's SHA-256 and length must match what the
//! other sent, and each server's admin counters must equal the sum of what went through it.
//!
//! Counters, per PROTOCOL.md ("bytes sent and received count every byte the server wrote to
//! and read from SOCKS clients and destinations"), handshake bytes included: per transfer the
//! server reads [`client::client_handshake_len`] + the upload from the client and the
//! download from the destination, and writes [`client::SERVER_HANDSHAKE_LEN`] + the download
//! to the client and the upload to the destination.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::{self, Counter};
use super::half_close::{destination, Rendezvous};
use super::server::{CpuMeter, Launch, ServerProcess};
use super::stats::Usage;

/// Settings of a transfers run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Transfers through each of the two servers (all of them at once).
    pub per_server: usize,
    /// Largest size of one direction's payload, bytes (smallest: 1).
    pub max_size: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Gives up on a transfer after this long.
    pub timeout: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            per_server: 250,
            max_size: 16 << 20,
            seed: 0x5eed_0017,
            timeout: Duration::from_secs(60),
        }
    }
}

impl Params {
    /// The default, with fewer transfers when the descriptor limit `hard_nofile` (shared by
    /// this process and both servers) cannot hold them: each transfer is two descriptors
    /// here and two in its server. Returns the note saying so, if it scaled.
    pub fn scaled(hard_nofile: u64) -> (Self, Option<String>) {
        let mut p = Self::default();
        let room = usize::try_from(hard_nofile.saturating_sub(300) / 4).unwrap_or(usize::MAX);
        if p.per_server <= room {
            return (p, None);
        }
        let note = format!(
            "scaled from {} to {room} transfers per server: RLIMIT_NOFILE hard limit {hard_nofile}",
            p.per_server
        );
        p.per_server = room.max(2);
        (p, Some(note))
    }
}

/// The HTTP-looking uploads carry `Authorization: Basic` with this (base64 of
/// [`SNIFFED_USER`]`:`[`SNIFFED_PASS`]), so that the sniffing server's credentials log shows
/// that the sniffer (the relay's copy path) saw them.
pub const SNIFFED_BASIC: &str = "aG9zdGlsZTpsZXRtZWlu";
/// The user name in [`SNIFFED_BASIC`].
pub const SNIFFED_USER: &str = "hostile";
/// The password in [`SNIFFED_BASIC`].
pub const SNIFFED_PASS: &str = "letmein";

/// Who half-closes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Both sides send at once and each sends FIN when done.
    Together,
    /// The client sends everything and its FIN; the destination sends only after that FIN
    /// (data flows toward the client over a half-closed connection).
    ClientFirst,
    /// The mirror image: the destination sends and half-closes first.
    DestinationFirst,
}

/// One transfer, drawn from the seed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Upload: HTTP request head (if HTTP-looking) + `up_len` bytes of the pool at `up_off`.
    pub up_head: Vec<u8>,
    /// Upload body length.
    pub up_len: usize,
    /// Upload body offset in the pool.
    pub up_off: usize,
    /// Download: HTTP response head (if HTTP-looking) + body.
    pub down_head: Vec<u8>,
    /// Download body length.
    pub down_len: usize,
    /// Download body offset in the pool.
    pub down_off: usize,
    /// Half-close order.
    pub order: Order,
}

impl Plan {
    /// Bytes the client sends.
    pub fn up_total(&self) -> u64 {
        (self.up_head.len() + self.up_len) as u64
    }

    /// Bytes the destination sends.
    pub fn down_total(&self) -> u64 {
        (self.down_head.len() + self.down_len) as u64
    }
}

/// Draws a size from 1 to `max`, log-uniform (every order of magnitude as likely: most
/// transfers small, a few near `max`; the mean is about `max / ln max`).
fn size(rng: &mut fastrand::Rng, max: usize) -> usize {
    let x = rng.f64();
    ((max as f64).powf(x) as usize).clamp(1, max)
}

/// Draws `n` transfers from `rng`. The first two are the extremes: `max` up and 1 down,
/// then the reverse.
pub fn plans(rng: &mut fastrand::Rng, n: usize, max: usize, pool: usize) -> Vec<Plan> {
    (0..n)
        .map(|i| {
            let (up_len, down_len) = match i {
                0 => (max, 1),
                1 => (1, max),
                _ => (size(rng, max), size(rng, max)),
            };
            let http = rng.bool();
            let order = match rng.u8(0..3) {
                0 => Order::Together,
                1 => Order::ClientFirst,
                _ => Order::DestinationFirst,
            };
            let (up_head, down_head) = if http {
                (
                    format!("POST /upload HTTP/1.1\r\nHost: hostile.test\r\nAuthorization: Basic {SNIFFED_BASIC}\r\nContent-Length: {up_len}\r\n\r\n").into_bytes(),
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {down_len}\r\n\r\n").into_bytes(),
                )
            } else {
                (Vec::new(), Vec::new())
            };
            Plan {
                up_off: rng.usize(0..=pool - up_len),
                down_off: rng.usize(0..=pool - down_len),
                up_head,
                up_len,
                down_head,
                down_len,
                order,
            }
        })
        .collect()
}

/// Length and SHA-256 of one direction, as one side saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digested {
    /// Bytes.
    pub len: u64,
    /// SHA-256.
    pub sha256: [u8; 32],
}

async fn send<W: AsyncWrite + Unpin>(mut w: W, head: &[u8], body: &[u8]) -> io::Result<Digested> {
    let mut h = Sha256::new();
    h.update(head);
    w.write_all(head).await?;
    for chunk in body.chunks(64 * 1024) {
        h.update(chunk);
        w.write_all(chunk).await?;
    }
    // FIN: the half-close.
    w.shutdown().await?;
    Ok(Digested {
        len: (head.len() + body.len()) as u64,
        sha256: h.finalize().into(),
    })
}

async fn receive<R: AsyncRead + Unpin>(mut r: R) -> io::Result<Digested> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok(Digested {
        len,
        sha256: h.finalize().into(),
    })
}

/// What one transfer's four ends saw.
#[derive(Debug, Clone, Copy)]
struct Seen {
    up_sent: Digested,
    up_received: Digested,
    down_sent: Digested,
    down_received: Digested,
}

async fn transfer(
    proxy: SocketAddr,
    dest: SocketAddr,
    r: &Rendezvous,
    plan: &Plan,
    pool: &[u8],
) -> io::Result<Seen> {
    let (c, bnd) = client::socks_connect(proxy, dest).await?;
    let d = r.take(bnd, Duration::from_secs(10)).await?;
    let (cr, cw) = c.into_split();
    let (dr, dw) = d.into_split();
    let up_body = &pool[plan.up_off..plan.up_off + plan.up_len];
    let down_body = &pool[plan.down_off..plan.down_off + plan.down_len];
    let up_send = send(cw, &plan.up_head, up_body);
    let up_recv = receive(dr);
    let down_send = send(dw, &plan.down_head, down_body);
    let down_recv = receive(cr);
    let (up_sent, up_received, down_sent, down_received) = match plan.order {
        Order::Together => tokio::try_join!(up_send, up_recv, down_send, down_recv)?,
        Order::ClientFirst => {
            // The destination answers once it has the client's whole upload and FIN.
            let (us, (ur, ds), dr) = tokio::try_join!(
                up_send,
                async { Ok::<_, io::Error>((up_recv.await?, down_send.await?)) },
                down_recv
            )?;
            (us, ur, ds, dr)
        }
        Order::DestinationFirst => {
            let ((dr, us), ur, ds) = tokio::try_join!(
                async { Ok::<_, io::Error>((down_recv.await?, up_send.await?)) },
                up_recv,
                down_send
            )?;
            (us, ur, ds, dr)
        }
    };
    Ok(Seen {
        up_sent,
        up_received,
        down_sent,
        down_received,
    })
}

/// The counters one server reported, next to what they should be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Historic connections (0x01).
    pub historic: u64,
    /// Current connections (0x02).
    pub current: u64,
    /// Bytes sent (0x04).
    pub sent: u64,
    /// Bytes received (0x05).
    pub received: u64,
}

/// What went through one server.
#[derive(Debug, Clone, Default)]
pub struct ServerRun {
    /// `sniffing on` or `sniffing off (-N)`.
    pub name: String,
    /// Transfers attempted.
    pub transfers: usize,
    /// Of which HTTP-looking.
    pub http: usize,
    /// Transfers whose four digests all matched.
    pub intact: usize,
    /// Transfers where a side received other bytes than the other side sent (first few,
    /// described).
    pub corrupted: Vec<String>,
    /// Transfers that failed with an error or timed out.
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Bytes uploaded and downloaded, in total (as sent).
    pub bytes: (u64, u64),
    /// Time for all of them, from the first connect to the last end of stream.
    pub seconds: f64,
    /// What the counters should say after the run.
    pub expected: Counters,
    /// What the admin protocol said (the last reading, after waiting for them to settle).
    pub reported: Option<Counters>,
    /// The admin query's error, if it failed.
    pub counter_error: Option<String>,
    /// Credentials-log lines with [`SNIFFED_USER`]: one per HTTP-looking transfer the
    /// sniffer followed to its `200 OK` (a request answered before it was whole, or a
    /// sniffer that gave up first, logs none).
    pub credential_lines: usize,
    /// The server over the run.
    pub usage: Usage,
    /// Whether the server was still running at the end.
    pub server_alive: bool,
}

impl fmt::Display for ServerRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = (self.bytes.0 + self.bytes.1) as f64 / f64::from(1 << 20);
        writeln!(
            f,
            "  {}: {} transfers ({} HTTP-looking), {} intact, {} corrupted, {} failed{}; {:.0} MiB up, {:.0} MiB down in {:.1} s ({:.0} MiB/s)",
            self.name,
            self.transfers,
            self.http,
            self.intact,
            self.corrupted.len(),
            self.failed,
            self.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})")),
            self.bytes.0 as f64 / f64::from(1 << 20),
            self.bytes.1 as f64 / f64::from(1 << 20),
            self.seconds,
            total / self.seconds.max(1e-3)
        )?;
        for c in &self.corrupted {
            writeln!(f, "    corrupted: {c}")?;
        }
        writeln!(
            f,
            "    counters expected {:?}, reported {}",
            self.expected,
            self.reported.map_or_else(
                || format!("none ({})", self.counter_error.as_deref().unwrap_or("?")),
                |c| format!("{c:?}")
            )
        )?;
        writeln!(
            f,
            "    credentials logged: {} (of {} HTTP-looking transfers)",
            self.credential_lines, self.http
        )?;
        write!(
            f,
            "    {}; alive at the end: {}",
            self.usage, self.server_alive
        )
    }
}

/// The result of a transfers run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The two servers' runs: sniffing on, then off.
    pub servers: Vec<ServerRun>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transfers (seed {:#x})", self.seed)?;
        for s in &self.servers {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

fn hex8(d: &Digested) -> String {
    d.sha256[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the scenario against `bin`.
///
/// # Errors
///
/// If a server cannot be started or measured.
pub fn run(bin: &Path, p: &Params) -> io::Result<Report> {
    let max = (p.per_server + 64).to_string();
    let on = ServerProcess::start(bin, &Launch::with_args(&["--max-connections", &max]))?;
    let off = ServerProcess::start(bin, &Launch::with_args(&["--max-connections", &max, "-N"]))?;
    let mut rng = fastrand::Rng::with_seed(p.seed);
    let pool_len = p.max_size * 2;
    let mut pool = vec![0u8; pool_len];
    rng.fill(&mut pool);
    let pool = Arc::new(pool);
    let plans_on = Arc::new(plans(&mut rng, p.per_server, p.max_size, pool_len));
    let plans_off = Arc::new(plans(&mut rng, p.per_server, p.max_size, pool_len));
    let rt = super::runtime();
    let (mut a, mut b) = rt.block_on(async {
        tokio::join!(
            through(&on, "sniffing on", plans_on, pool.clone(), p.timeout),
            through(
                &off,
                "sniffing off (-N)",
                plans_off,
                pool.clone(),
                p.timeout
            )
        )
    });
    let (mut on, mut off) = (on, off);
    for (run, server) in [(&mut a, &mut on), (&mut b, &mut off)] {
        if let Ok(run) = run {
            run.server_alive = server.is_running();
            let (out, _) = server.logs();
            run.credential_lines = out
                .lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    f.get(2) == Some(&"P")
                        && f.get(6) == Some(&SNIFFED_USER)
                        && f.get(7) == Some(&SNIFFED_PASS)
                })
                .count();
        }
    }
    Ok(Report {
        seed: p.seed,
        servers: vec![a?, b?],
    })
}

async fn through(
    server: &ServerProcess,
    name: &str,
    plans: Arc<Vec<Plan>>,
    pool: Arc<Vec<u8>>,
    timeout: Duration,
) -> io::Result<ServerRun> {
    let r = Arc::new(Rendezvous::default());
    let dest = destination(r.clone()).await?;
    let cpu = CpuMeter::start(server)?;
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..plans.len())
        .map(|i| {
            let (r, plans, pool, proxy) = (r.clone(), plans.clone(), pool.clone(), server.socks);
            tokio::spawn(async move {
                tokio::time::timeout(timeout, transfer(proxy, dest, &r, &plans[i], &pool)).await
            })
        })
        .collect();
    let mut run = ServerRun {
        name: name.to_owned(),
        transfers: plans.len(),
        http: plans.iter().filter(|p| !p.up_head.is_empty()).count(),

        ..ServerRun::default()
    };
    for (i, t) in tasks.into_iter().enumerate() {
        let plan = &plans[i];
        match t.await.expect("transfer task panicked") {
            Ok(Ok(seen)) => {
                let mut bad = Vec::new();
                if seen.up_sent != seen.up_received {
                    bad.push(format!(
                        "upload sent {} B ({}), received {} B ({})",
                        seen.up_sent.len,
                        hex8(&seen.up_sent),
                        seen.up_received.len,
                        hex8(&seen.up_received)
                    ));
                }
                if seen.down_sent != seen.down_received {
                    bad.push(format!(
                        "download sent {} B ({}), received {} B ({})",
                        seen.down_sent.len,
                        hex8(&seen.down_sent),
                        seen.down_received.len,
                        hex8(&seen.down_received)
                    ));
                }
                if bad.is_empty() {
                    run.intact += 1;
                } else if run.corrupted.len() < 8 {
                    run.corrupted
                        .push(format!("#{i} ({:?}): {}", plan.order, bad.join("; ")));
                } else {
                    run.corrupted.push(format!("#{i}"));
                }
            }
            Ok(Err(e)) => {
                run.failed += 1;
                run.first_error.get_or_insert(format!("#{i}: {e}"));
            }
            Err(_) => {
                run.failed += 1;
                run.first_error
                    .get_or_insert(format!("#{i}: not done within {timeout:?}"));
            }
        }
    }
    run.seconds = t0.elapsed().as_secs_f64();
    let cpu_percent = cpu.percent(server)?;
    let (up, down): (u64, u64) = (
        plans.iter().map(Plan::up_total).sum(),
        plans.iter().map(Plan::down_total).sum(),
    );
    run.bytes = (up, down);
    let n = plans.len() as u64;
    run.expected = Counters {
        historic: n,
        current: 0,
        sent: n * client::SERVER_HANDSHAKE_LEN + up + down,
        received: n * client::client_handshake_len() + up + down,
    };
    // The server counts a write after it returns, so the last few may land a moment after
    // the client saw the bytes; wait (a little) for the counters to settle.
    let settle = Instant::now();
    loop {
        match counters(server.admin).await {
            Ok(c) => {
                run.reported = Some(c);
                run.counter_error = None;
                if c == run.expected {
                    break;
                }
            }
            Err(e) => run.counter_error = Some(e.to_string()),
        }
        if settle.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rss_kib, peak_rss_kib) = server.rss_kib()?;
    run.usage = Usage {
        cpu_percent,
        rss_kib,
        peak_rss_kib,
    };
    Ok(run)
}

async fn counters(admin: SocketAddr) -> io::Result<Counters> {
    let mut s = client::admin_login(admin).await?;
    Ok(Counters {
        historic: client::admin_query(&mut s, Counter::Historic).await?,
        current: client::admin_query(&mut s, Counter::Current).await?,
        sent: client::admin_query(&mut s, Counter::BytesSent).await?,
        received: client::admin_query(&mut s, Counter::BytesReceived).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_the_range_and_are_reproducible() {
        let draw = || plans(&mut fastrand::Rng::with_seed(7), 250, 16 << 20, 32 << 20);
        let (a, b) = (draw(), draw());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.up_len == y.up_len && x.down_off == y.down_off));
        assert_eq!((a[0].up_len, a[0].down_len), (16 << 20, 1));
        assert_eq!((a[1].up_len, a[1].down_len), (1, 16 << 20));
        assert!(a.iter().all(|p| (1..=16 << 20).contains(&p.up_len)));
        assert!(a.iter().all(|p| p.up_off + p.up_len <= 32 << 20));
        for o in [Order::Together, Order::ClientFirst, Order::DestinationFirst] {
            assert!(a.iter().any(|p| p.order == o), "{o:?}");
        }
        assert!(a.iter().any(|p| p.up_head.starts_with(b"POST ")));
        assert!(a.iter().any(|p| p.up_head.is_empty()));
        // Small and large both occur.
        assert!(
            a.iter().any(|p| p.up_len < 1024)
                && a.iter().filter(|p| p.up_len > 1 << 20).count() > 10
        );
    }

    #[test]
    fn handshake_byte_counts() {
        // 05 01 02 | 01 05 alice 06 secret | 05 01 00 01 a b c d p p
        assert_eq!(client::client_handshake_len(), 3 + 14 + 10);
        // 05 02 | 01 00 | 05 00 00 01 a b c d p p
        assert_eq!(client::SERVER_HANDSHAKE_LEN, 14);
    }
}

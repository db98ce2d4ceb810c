//! Handshakes per second: connect, greet, authenticate, CONNECT, echo 32 bytes, close (the
//! destination closes after the echo, the proxy passes the close on, the client sees EOF).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use socks5d_core::socks5::TargetAddr;

use crate::socks::{self, Credentials};
use crate::{procfs, stats, Server};

/// Settings of one handshake run.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) concurrency: usize,
    pub(crate) duration: Duration,
    pub(crate) count: Option<u64>,
    /// Per-cycle limit: a cycle slower than this counts as an error.
    pub(crate) cycle_timeout: Duration,
    /// CONNECT to this name (ATYP 03) at the echo server's port, instead of its address.
    pub(crate) target_host: Option<Arc<str>>,
}

/// Result of one handshake run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) concurrency: usize,
    pub(crate) handshakes: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
    pub(crate) per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    /// Server CPU time (user + system, whole process tree) per successful handshake.
    pub(crate) server_cpu_us_per_handshake: Option<f64>,
    pub(crate) server_cpu_seconds: Option<f64>,
    /// Share of that CPU time spent in user space (utime / (utime + stime)).
    pub(crate) server_user_share: Option<f64>,
}

async fn cycle(
    proxy: SocketAddr,
    creds: Option<&Credentials>,
    target: &TargetAddr,
) -> std::io::Result<()> {
    const MSG: [u8; 32] = *b"socks5d-loadgen echo 32 bytes..!";
    let mut s = socks::connect_to(proxy, creds, target).await?;
    let mut msg = [0u8; 33];
    msg[0] = 32; // the echo server's count: echo 32 bytes, then close
    msg[1..].copy_from_slice(&MSG);
    s.write_all(&msg).await?;
    let mut back = [0u8; 33];
    let mut got = 0;
    // The 32 bytes, then EOF: the destination closes, the proxy passes the close on.
    loop {
        let n = s.read(&mut back[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if back[..got] != MSG {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "echo mismatch",
        ));
    }
    Ok(())
}

pub(crate) async fn run(server: &Server, echo: SocketAddr, p: &Params) -> Report {
    let started = Arc::new(AtomicU64::new(0));
    let cpu0 = server.pid.and_then(|pid| procfs::cpu_ticks(pid).ok());
    let t0 = Instant::now();
    let deadline = t0 + p.duration;
    let mut tasks = Vec::with_capacity(p.concurrency);
    for _ in 0..p.concurrency {
        let started = started.clone();
        let proxy = server.proxy;
        let creds = server.creds.clone();
        let count = p.count;
        let cycle_timeout = p.cycle_timeout;
        let host = p.target_host.clone();
        tasks.push(tokio::spawn(async move {
            let target = match &host {
                Some(h) => {
                    TargetAddr::Domain(bytes::Bytes::copy_from_slice(h.as_bytes()), echo.port())
                }
                None => TargetAddr::Ip(echo),
            };
            let mut lat: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(c) = count {
                    if started.fetch_add(1, Ordering::Relaxed) >= c {
                        break;
                    }
                }
                let t = Instant::now();
                match tokio::time::timeout(cycle_timeout, cycle(proxy, creds.as_ref(), &target))
                    .await
                {
                    Ok(Ok(())) => lat.push(stats::micros(t.elapsed())),
                    Ok(Err(e)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                    Err(_) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| "cycle timed out".to_string());
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, e, f) = t.await.expect("handshake task panicked");
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = server.pid.and_then(|pid| procfs::cpu_ticks(pid).ok());
    let n = lat.len() as u64;
    let l = stats::Latency::of(&mut lat);
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.since(a)),
        _ => None,
    };
    let cpu_secs = cpu.map(procfs::CpuTicks::seconds);
    Report {
        concurrency: p.concurrency,
        handshakes: n,
        errors,
        first_error,
        seconds: secs,
        per_sec: n as f64 / secs,
        p50_us: l.p50_us,
        p99_us: l.p99_us,
        max_us: l.max_us,
        server_cpu_us_per_handshake: cpu_secs.filter(|_| n > 0).map(|c| c * 1e6 / n as f64),
        server_cpu_seconds: cpu_secs,
        server_user_share: cpu.and_then(procfs::CpuTicks::user_share),
    }
}

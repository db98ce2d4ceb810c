//! Server memory per idle proxied connection: open N proxied connections to the echo server
//! (each checked with a one-byte echo), let them sit, and divide the growth of the server's
//! resident set by N. The growth is measured from `baseline_kib`, the server's RSS before the
//! first idle run (servers rarely give memory back, so a second run measured from its own
//! start would see almost no growth): run this against a freshly started server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::{procfs, socks, Server};

/// Settings of one idle-connection run.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) connections: usize,
    /// How many connections are being opened at once.
    pub(crate) open_concurrency: usize,
    /// Wait after the last connection is up, before reading the RSS.
    pub(crate) settle: Duration,
    pub(crate) timeout: Duration,
}

/// Result of one idle-connection run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) connections: usize,
    pub(crate) established: usize,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) open_seconds: f64,
    pub(crate) rss_before_kib: Option<u64>,
    pub(crate) rss_after_kib: Option<u64>,
    pub(crate) rss_per_connection_kib: Option<f64>,
    pub(crate) pss_before_kib: Option<u64>,
    pub(crate) pss_after_kib: Option<u64>,
    pub(crate) pss_per_connection_kib: Option<f64>,
    pub(crate) server_threads_after: Option<u64>,
}

/// The server's memory before the first idle run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Baseline {
    pub(crate) rss_kib: Option<u64>,
    pub(crate) pss_kib: Option<u64>,
}

impl Baseline {
    pub(crate) fn read(pid: Option<u32>) -> Self {
        Self {
            rss_kib: pid.and_then(|p| procfs::rss_kib(p).ok()),
            pss_kib: pid.and_then(|p| procfs::pss_kib(p).ok()),
        }
    }
}

async fn open_one(server: &Server, echo: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = socks::connect(server.proxy, server.creds.as_ref(), echo).await?;
    // Echo 2 bytes then close: one now, to check the relay, and one at tear-down.
    s.write_all(&[2, b'i']).await?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    Ok(s)
}

/// Closes from the destination's side (see `targets`): sends the last byte the echo server
/// waits for, then waits for its EOF.
async fn close_one(mut s: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        s.write_all(b"z").await?;
        let mut b = [0u8; 8];
        while s.read(&mut b).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

pub(crate) async fn run(
    server: &Server,
    echo: SocketAddr,
    p: &Params,
    baseline: Baseline,
) -> Report {
    let (rss0, pss0) = (baseline.rss_kib, baseline.pss_kib);
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(p.open_concurrency.max(1)));
    let server = Arc::new(server.clone());
    let deadline = tokio::time::Instant::now() + p.timeout;
    let mut tasks = Vec::with_capacity(p.connections);
    for _ in 0..p.connections {
        let sem = sem.clone();
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            match tokio::time::timeout_at(deadline, open_one(&server, echo)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("timed out opening".to_string()),
            }
        }));
    }
    let mut conns = Vec::with_capacity(p.connections);
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await.expect("open task panicked") {
            Ok(s) => conns.push(s),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let open_seconds = t0.elapsed().as_secs_f64();
    tokio::time::sleep(p.settle).await;
    let rss1 = server.pid.and_then(|pid| procfs::rss_kib(pid).ok());
    let pss1 = server.pid.and_then(|pid| procfs::pss_kib(pid).ok());
    let threads = server.pid.and_then(|pid| procfs::thread_count(pid).ok());
    let established = conns.len();
    let closing: Vec<_> = conns
        .into_iter()
        .map(|s| {
            let sem = sem.clone();
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore open");
                close_one(s).await;
            })
        })
        .collect();
    for c in closing {
        let _ = c.await;
    }
    let per = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(a), Some(b)) if established > 0 => Some((b as f64 - a as f64) / established as f64),
        _ => None,
    };
    Report {
        connections: p.connections,
        established,
        errors,
        first_error,
        open_seconds,
        rss_before_kib: rss0,
        rss_after_kib: rss1,
        rss_per_connection_kib: per(rss0, rss1),
        pss_before_kib: pss0,
        pss_after_kib: pss1,
        pss_per_connection_kib: per(pss0, pss1),
        server_threads_after: threads,
    }
}

//! Request/response: `connections` proxied connections to the rr destination, each looping
//! "write a request of `request` bytes, read a response of N bytes" for a fixed time, one run
//! per response size N. Reports exchanges per second, latency percentiles and the server's
//! CPU time per exchange.
//!
//! All connections (and their SOCKS handshakes) are made before the clock starts, so only the
//! relaying of exchanges is measured. One exchange at a time per connection: the latency of
//! an exchange is from the first byte of the request written to the last byte of the response
//! read.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::targets::{CHUNK, RR_MAX};
use crate::{procfs, socks, stats, Server};

/// Settings of the request/response runs.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) connections: usize,
    /// Bytes per request (at least 8: the rr header).
    pub(crate) request: u32,
    /// Response sizes, one run each.
    pub(crate) responses: Vec<u32>,
    pub(crate) duration: Duration,
    /// An exchange slower than this ends its connection's run with an error.
    pub(crate) exchange_timeout: Duration,
}

/// Result of one run (one response size).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) connections: usize,
    pub(crate) request_bytes: u32,
    pub(crate) response_bytes: u32,
    /// Connections that were opened (and completed the SOCKS handshake).
    pub(crate) established: usize,
    pub(crate) exchanges: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
    pub(crate) per_sec: f64,
    /// Response payload moved per second.
    pub(crate) response_mib_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    /// Server CPU time (user + system, whole process tree) per exchange.
    pub(crate) server_cpu_us_per_exchange: Option<f64>,
    pub(crate) server_cpu_seconds: Option<f64>,
    pub(crate) server_user_share: Option<f64>,
}

/// The request: the rr header, then filler up to `request` bytes.
fn request_bytes(request: u32, response: u32) -> Vec<u8> {
    let mut req = vec![b'r'; request as usize];
    req[..4].copy_from_slice(&request.to_be_bytes());
    req[4..8].copy_from_slice(&response.to_be_bytes());
    req
}

async fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut [u8], response: u32) -> io::Result<()> {
    s.write_all(req).await?;
    let mut left = response as usize;
    while left > 0 {
        let want = left.min(buf.len());
        let n = s.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a response",
            ));
        }
        left -= n;
    }
    Ok(())
}

struct Conn {
    lat: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn run_one(server: &Server, rr: SocketAddr, p: &Params, response: u32) -> Report {
    // Connect everything first.
    let mut conns = Vec::with_capacity(p.connections);
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    for _ in 0..p.connections {
        match tokio::time::timeout(
            p.exchange_timeout,
            socks::connect(server.proxy, server.creds.as_ref(), rr),
        )
        .await
        {
            Ok(Ok(s)) => conns.push(s),
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("connect: {e}"));
            }
            Err(_) => {
                errors += 1;
                first_error.get_or_insert_with(|| "connect timed out".into());
            }
        }
    }
    let established = conns.len();
    let cpu0 = server.pid.and_then(|pid| procfs::cpu_ticks(pid).ok());
    let t0 = Instant::now();
    let deadline = t0 + p.duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            let req = request_bytes(p.request, response);
            let limit = p.exchange_timeout;
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                let mut c = Conn {
                    lat: Vec::new(),
                    errors: 0,
                    first_error: None,
                };
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match tokio::time::timeout(limit, exchange(&mut s, &req, &mut buf, response))
                        .await
                    {
                        Ok(Ok(())) => c.lat.push(stats::micros(t.elapsed())),
                        Ok(Err(e)) => {
                            c.errors += 1;
                            c.first_error = Some(e.to_string());
                            break;
                        }
                        Err(_) => {
                            c.errors += 1;
                            c.first_error = Some("exchange timed out".into());
                            break;
                        }
                    }
                }
                c
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        let c = t.await.expect("rr task panicked");
        lat.extend(c.lat);
        errors += c.errors;
        if first_error.is_none() {
            first_error = c.first_error;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, server.pid.and_then(|pid| procfs::cpu_ticks(pid).ok())) {
        (Some(a), Some(b)) => Some(b.since(a)),
        _ => None,
    };
    let n = lat.len() as u64;
    let l = stats::Latency::of(&mut lat);
    let cpu_secs = cpu.map(procfs::CpuTicks::seconds);
    Report {
        connections: p.connections,
        request_bytes: p.request,
        response_bytes: response,
        established,
        exchanges: n,
        errors,
        first_error,
        seconds: secs,
        per_sec: n as f64 / secs,
        response_mib_per_sec: (n * u64::from(response)) as f64 / secs / (1024.0 * 1024.0),
        p50_us: l.p50_us,
        p99_us: l.p99_us,
        max_us: l.max_us,
        server_cpu_us_per_exchange: cpu_secs.filter(|_| n > 0).map(|c| c * 1e6 / n as f64),
        server_cpu_seconds: cpu_secs,
        server_user_share: cpu.and_then(procfs::CpuTicks::user_share),
    }
}

/// Checks the sizes against what the rr destination accepts.
pub(crate) fn check(p: &Params) -> Result<(), String> {
    if !(8..=RR_MAX).contains(&p.request) {
        return Err(format!("--rr-request must be 8 B..={} MiB", RR_MAX >> 20));
    }
    if let Some(r) = p.responses.iter().find(|r| **r > RR_MAX) {
        return Err(format!(
            "--rr-responses: {r} is more than {} MiB",
            RR_MAX >> 20
        ));
    }
    Ok(())
}

/// One run per response size, in the order given. The connections of a run are closed before
/// the next run opens its own.
pub(crate) async fn run(server: &Server, rr: SocketAddr, p: &Params) -> Vec<Report> {
    let mut out = Vec::with_capacity(p.responses.len());
    for &response in &p.responses {
        out.push(run_one(server, rr, p, response).await);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_its_sizes() {
        let r = request_bytes(1024, 16 << 10);
        assert_eq!(r.len(), 1024);
        assert_eq!(&r[..4], &1024u32.to_be_bytes());
        assert_eq!(&r[4..8], &(16u32 << 10).to_be_bytes());
    }

    /// Direct to the rr destination (no proxy in between): the exchanges must complete with
    /// exactly the response size, and an oversized request is refused by the destination.
    #[tokio::test]
    async fn exchanges_against_the_destination() {
        let rr = crate::targets::spawn_rr().await.unwrap();
        let mut s = TcpStream::connect(rr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        for resp in [1u32, 1024, 300_000] {
            exchange(&mut s, &request_bytes(1024, resp), &mut buf, resp)
                .await
                .unwrap();
        }
        // Nothing beyond the responses asked for.
        s.write_all(&request_bytes(8, 0)).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{} stray bytes", rest.len());

        let mut s = TcpStream::connect(rr).await.unwrap();
        let err = exchange(&mut s, &request_bytes(8, RR_MAX + 1), &mut buf, 10).await;
        assert!(err.is_err());
    }
}

//! Relay throughput: N parallel bulk transfers through the proxy and the same transfers
//! direct, and their ratio.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::socks;
use crate::targets::CHUNK;
use crate::Server;

/// Which way the bulk data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Direction {
    /// Client to destination.
    Up,
    /// Destination to client.
    Down,
}

/// Settings of one relay run.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) streams: usize,
    pub(crate) bytes: u64,
    pub(crate) direction: Direction,
    pub(crate) timeout: Duration,
}

/// Result of one relay run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) streams: usize,
    pub(crate) bytes_per_stream: u64,
    pub(crate) direction: Direction,
    pub(crate) direct_seconds: f64,
    pub(crate) direct_mib_per_sec: f64,
    pub(crate) proxied_seconds: Option<f64>,
    pub(crate) proxied_mib_per_sec: Option<f64>,
    /// Proxied throughput / direct throughput.
    pub(crate) ratio: Option<f64>,
    pub(crate) error: Option<String>,
}

async fn transfer(mut s: TcpStream, len: u64, dir: Direction) -> io::Result<()> {
    let mut head = [0u8; 9];
    head[0] = if dir == Direction::Up { b'U' } else { b'D' };
    head[1..].copy_from_slice(&len.to_be_bytes());
    s.write_all(&head).await?;
    let mut buf = vec![0u8; CHUNK];
    match dir {
        Direction::Up => {
            let mut left = len;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                s.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            let mut ack = [0u8; 8];
            s.read_exact(&mut ack).await?;
            if u64::from_be_bytes(ack) != len {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short upload"));
            }
        }
        Direction::Down => {
            let mut got = 0u64;
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            if got != len {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short download"));
            }
        }
    }
    Ok(())
}

/// Runs `streams` transfers at once; returns the elapsed time of the whole batch.
async fn batch(via: Option<&Server>, bulk: SocketAddr, p: &Params) -> io::Result<Duration> {
    // Connect (and handshake) every stream first, so only the transfer is timed.
    let mut conns = Vec::with_capacity(p.streams);
    for _ in 0..p.streams {
        let s = match via {
            Some(server) => socks::connect(server.proxy, server.creds.as_ref(), bulk).await?,
            None => TcpStream::connect(bulk).await?,
        };
        conns.push(s);
    }
    let t0 = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|s| tokio::spawn(transfer(s, p.bytes, p.direction)))
        .collect();
    for t in tasks {
        t.await.map_err(io::Error::other)??;
    }
    Ok(t0.elapsed())
}

pub(crate) async fn run(server: &Server, bulk: SocketAddr, p: &Params) -> io::Result<Report> {
    let total_mib = (p.streams as u64 * p.bytes) as f64 / (1024.0 * 1024.0);
    let direct = tokio::time::timeout(p.timeout, batch(None, bulk, p))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "direct transfer timed out"))??;
    let proxied = match tokio::time::timeout(p.timeout, batch(Some(server), bulk, p)).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("proxied transfer timed out after {:?}", p.timeout)),
    };
    let direct_rate = total_mib / direct.as_secs_f64();
    let proxied_rate = proxied.as_ref().ok().map(|d| total_mib / d.as_secs_f64());
    Ok(Report {
        streams: p.streams,
        bytes_per_stream: p.bytes,
        direction: p.direction,
        direct_seconds: direct.as_secs_f64(),
        direct_mib_per_sec: direct_rate,
        proxied_seconds: proxied.as_ref().ok().map(Duration::as_secs_f64),
        proxied_mib_per_sec: proxied_rate,
        ratio: proxied_rate.map(|r| r / direct_rate),
        error: proxied.err(),
    })
}

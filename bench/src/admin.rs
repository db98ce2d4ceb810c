//! Admin requests per second over one pipelined TCP connection.
//!
//! Authenticates with `01 ULEN USER PLEN PASS` (expects `01 00`), then writes batches of
//! `00 CMD` queries (a counter query, answered by `00 CMD` + u64: 10 bytes) while a reader
//! counts responses. At most `window` requests are unanswered at any time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use crate::socks::Credentials;

/// Settings of one admin run.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) addr: SocketAddr,
    pub(crate) creds: Credentials,
    /// Query command byte (0x01..=0x05 have a 10-byte response).
    pub(crate) cmd: u8,
    pub(crate) batch: usize,
    pub(crate) window: usize,
    pub(crate) duration: Duration,
    pub(crate) count: Option<u64>,
}

/// Result of one admin run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) batch: usize,
    pub(crate) window: usize,
    pub(crate) requests: u64,
    pub(crate) responses: u64,
    pub(crate) seconds: f64,
    pub(crate) per_sec: f64,
    pub(crate) error: Option<String>,
}

const RESPONSE_LEN: usize = 10;

pub(crate) async fn run(p: &Params) -> io::Result<Report> {
    let mut s = TcpStream::connect(p.addr).await?;
    s.set_nodelay(true)?;
    let mut auth = vec![0x01, p.creds.user.len() as u8];
    auth.extend_from_slice(&p.creds.user);
    auth.push(p.creds.pass.len() as u8);
    auth.extend_from_slice(&p.creds.pass);
    s.write_all(&auth).await?;
    let mut rep = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut rep))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no admin auth reply"))??;
    if rep != [0x01, 0x00] {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("admin auth refused: {rep:02x?}"),
        ));
    }

    let (mut rd, mut wr) = s.into_split();
    let window = p.window.max(p.batch);
    let credit = Arc::new(Semaphore::new(window));
    let (total_tx, mut total_rx) = watch::channel(None::<u64>);
    let cmd = p.cmd;

    let reader_credit = credit.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut have = 0usize; // bytes of a partial response carried over
        let mut responses = 0u64;
        loop {
            if let Some(t) = *total_rx.borrow() {
                if responses >= t {
                    return Ok::<u64, io::Error>(responses);
                }
            }
            tokio::select! {
                r = rd.read(&mut buf[have..]) => {
                    let n = r?;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof,
                            format!("server closed after {responses} responses")));
                    }
                    let end = have + n;
                    let whole = end / RESPONSE_LEN;
                    for i in 0..whole {
                        let r = &buf[i * RESPONSE_LEN..i * RESPONSE_LEN + 2];
                        if r != [0x00, cmd] {
                            return Err(io::Error::new(io::ErrorKind::InvalidData,
                                format!("unexpected response header {r:02x?}")));
                        }
                    }
                    have = end - whole * RESPONSE_LEN;
                    buf.copy_within(whole * RESPONSE_LEN..end, 0);
                    responses += whole as u64;
                    reader_credit.add_permits(whole);
                }
                _ = total_rx.changed() => {}
            }
        }
    });

    let mut batch = Vec::with_capacity(p.batch * 2);
    for _ in 0..p.batch {
        batch.extend_from_slice(&[0x00, p.cmd]);
    }
    let t0 = Instant::now();
    let deadline = t0 + p.duration;
    let mut sent = 0u64;
    let mut write_err = None;
    while Instant::now() < deadline && p.count.is_none_or(|c| sent < c) {
        let n = p
            .count
            .map_or(p.batch as u64, |c| (c - sent).min(p.batch as u64)) as usize;
        let acquired =
            tokio::time::timeout_at(deadline.into(), credit.acquire_many(n as u32)).await;
        let Ok(permit) = acquired else { break };
        permit.expect("semaphore open").forget();
        if let Err(e) = wr.write_all(&batch[..n * 2]).await {
            write_err = Some(e.to_string());
            break;
        }
        sent += n as u64;
    }
    let _ = total_tx.send(Some(sent));
    let result = tokio::time::timeout(Duration::from_secs(30), reader).await;
    let secs = t0.elapsed().as_secs_f64();
    let (responses, error) = match result {
        Ok(Ok(Ok(r))) => (r, write_err),
        Ok(Ok(Err(e))) => (0, Some(e.to_string())),
        Ok(Err(e)) => (0, Some(e.to_string())),
        Err(_) => (
            0,
            Some("responses still missing 30 s after the last request".into()),
        ),
    };
    Ok(Report {
        batch: p.batch,
        window,
        requests: sent,
        responses,
        seconds: secs,
        per_sec: responses as f64 / secs,
        error,
    })
}

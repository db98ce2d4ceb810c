//! Wrong-password clients, looping beside a measurement: each connects, asks for
//! username/password, sends credentials that must fail, reads the verdict (or the close),
//! and starts again, until told to stop. For the "200 wrong-password clients do not slow a
//! good client down" measurement of issue 13.
//!
//! On an IPv4 loopback proxy, client `i` connects from `127.0.0.(2 + i % 250)`, so that the
//! flood comes from other addresses than the measured client (`127.0.0.1`), as an attack from
//! elsewhere would: the server's login back-off is per address and user, and would otherwise
//! hold the measured client back by design.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpSocket;

use crate::socks::{self, Credentials};

/// Settings of a flood.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// Clients looping at once.
    pub(crate) clients: usize,
    /// Their credentials; `{i}` in the user name becomes the client's number.
    pub(crate) creds: Credentials,
    /// Per-attempt limit: a slower attempt is abandoned and counted as an error.
    pub(crate) attempt_timeout: Duration,
}

/// What a flood did while it ran.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) clients: usize,
    pub(crate) attempts: u64,
    /// Answered with a failure status (what should happen).
    pub(crate) rejected: u64,
    /// Closed by the server before a verdict (its login back-off refuses some at once).
    pub(crate) closed: u64,
    /// Answered with success: the flood's password was not wrong, the run is invalid.
    pub(crate) accepted: u64,
    /// No verdict within the attempt timeout (the server's verifications are queued).
    pub(crate) timed_out: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
    pub(crate) attempts_per_sec: f64,
}

#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    rejected: AtomicU64,
    closed: AtomicU64,
    accepted: AtomicU64,
    timed_out: AtomicU64,
    errors: AtomicU64,
}

/// A running flood: stopped (and reported) by [`Flood::stop`].
pub(crate) struct Flood {
    counters: Arc<Counters>,
    first_error: Arc<Mutex<Option<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    clients: usize,
    t0: Instant,
}

enum Verdict {
    Rejected,
    Closed,
    Accepted,
}

fn source(proxy: SocketAddr, i: usize) -> Option<SocketAddr> {
    match proxy.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => {
            let last = 2 + (i % 250) as u8;
            Some(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))
        }
        _ => None,
    }
}

fn creds_of(creds: &Credentials, i: usize) -> Credentials {
    let u = String::from_utf8_lossy(&creds.user);
    let name = u.replace("{i}", &i.to_string());
    Credentials {
        user: name.into_bytes().into_iter().take(255).collect(),
        pass: creds.pass.clone(),
    }
}

fn is_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

async fn attempt(
    proxy: SocketAddr,
    from: Option<SocketAddr>,
    creds: &Credentials,
) -> io::Result<Verdict> {
    let sock = match proxy {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(a) = from {
        sock.bind(a)?;
    }
    let mut s = sock.connect(proxy).await?;
    s.set_nodelay(true)?;
    match socks::login(&mut s, Some(creds)).await {
        Ok(true) => Ok(Verdict::Accepted),
        Ok(false) => Ok(Verdict::Rejected),
        Err(e) if is_close(&e) => Ok(Verdict::Closed),
        Err(e) => Err(e),
    }
}

impl Flood {
    /// Starts `p.clients` looping clients against `proxy`.
    pub(crate) fn start(proxy: SocketAddr, p: &Params) -> Self {
        let counters = Arc::new(Counters::default());
        let first_error = Arc::new(Mutex::new(None));
        let tasks = (0..p.clients)
            .map(|i| {
                let (c, first) = (counters.clone(), first_error.clone());
                let creds = creds_of(&p.creds, i);
                let from = source(proxy, i);
                let limit = p.attempt_timeout;
                tokio::spawn(async move {
                    let note = |e: String| {
                        let mut f = first.lock().unwrap_or_else(|p| p.into_inner());
                        f.get_or_insert(e);
                    };
                    loop {
                        let r = tokio::time::timeout(limit, attempt(proxy, from, &creds));
                        let counter = match r.await {
                            Ok(Ok(Verdict::Rejected)) => &c.rejected,
                            Ok(Ok(Verdict::Closed)) => &c.closed,
                            Ok(Ok(Verdict::Accepted)) => &c.accepted,
                            Ok(Err(e)) => {
                                note(e.to_string());
                                // Not a tight loop on a refused connect.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                &c.errors
                            }
                            Err(_) => &c.timed_out,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        c.attempts.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self {
            counters,
            first_error,
            tasks,
            clients: p.clients,
            t0: Instant::now(),
        }
    }

    /// Stops the clients at once (attempts in progress are dropped, uncounted) and reports.
    pub(crate) async fn stop(self) -> Report {
        for t in &self.tasks {
            t.abort();
        }
        let seconds = self.t0.elapsed().as_secs_f64();
        for t in self.tasks {
            let _ = t.await;
        }
        let c = &self.counters;
        let attempts = c.attempts.load(Ordering::Relaxed);
        let first_error = self
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Report {
            clients: self.clients,
            attempts,
            rejected: c.rejected.load(Ordering::Relaxed),
            closed: c.closed.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            first_error,
            seconds,
            attempts_per_sec: attempts as f64 / seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_name_and_address() {
        let c: Credentials = "nobody{i}:wrong".parse().unwrap();
        assert_eq!(creds_of(&c, 7).user, b"nobody7");
        assert_eq!(creds_of(&c, 7).pass, b"wrong");
        let same: Credentials = "good:wrong".parse().unwrap();
        assert_eq!(creds_of(&same, 3).user, b"good");
        let proxy: SocketAddr = "127.0.0.1:1080".parse().unwrap();
        assert_eq!(source(proxy, 0), Some("127.0.0.2:0".parse().unwrap()));
        assert_eq!(source(proxy, 199), Some("127.0.0.201:0".parse().unwrap()));
        assert_eq!(source(proxy, 250), Some("127.0.0.2:0".parse().unwrap()));
        assert_eq!(source("[::1]:1080".parse().unwrap(), 5), None);
    }
}

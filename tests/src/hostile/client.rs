//! Well-behaved peers, in raw bytes as RFC 1928/1929 and the admin draft write them: a SOCKS5
//! client, an administrator, the echo destination they talk to, and a [`Probe`] that keeps
//! one of them busy while an attack runs.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::stats::ProbeReport;
use super::{ADMIN_PASS, ADMIN_USER, PASS, USER};

/// The client's handshake bytes as the server reads them: greeting `05 01 02`, RFC 1929
/// `01 ULEN USER PLEN PASS`, CONNECT `05 01 00 01` + IPv4 + port.
pub fn client_handshake_len() -> u64 {
    (3 + 3 + USER.len() + PASS.len() + 10) as u64
}

/// The server's handshake bytes as it writes them to a client whose IPv4 CONNECT succeeded:
/// method `05 02`, RFC 1929 status `01 00`, reply `05 00 00 01` + BND.ADDR + BND.PORT.
pub const SERVER_HANDSHAKE_LEN: u64 = 2 + 2 + 10;

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The RFC 1929 request for [`USER`].
pub fn userpass() -> Vec<u8> {
    let mut v = vec![0x01, USER.len() as u8];
    v.extend_from_slice(USER.as_bytes());
    v.push(PASS.len() as u8);
    v.extend_from_slice(PASS.as_bytes());
    v
}

/// A CONNECT request for an IPv4 `target`.
///
/// # Panics
///
/// If `target` is IPv6 (the scenarios use 127.0.0.1).
pub fn connect_request(target: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = target else {
        panic!("IPv4 targets only")
    };
    let mut v = vec![0x05, 0x01, 0x00, 0x01];
    v.extend_from_slice(&a.ip().octets());
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// Greets and authenticates as [`USER`] on an open connection to the proxy, one round trip
/// per step.
///
/// # Errors
///
/// I/O errors, or an answer other than `05 02` then `01 00`.
pub async fn authenticate(s: &mut TcpStream) -> io::Result<()> {
    s.write_all(&[0x05, 0x01, 0x02]).await?;
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).await?;
    if sel != [0x05, 0x02] {
        return Err(bad(format!("method selection {sel:02x?}")));
    }
    s.write_all(&userpass()).await?;
    let mut rep = [0u8; 2];
    s.read_exact(&mut rep).await?;
    if rep != [0x01, 0x00] {
        return Err(bad(format!("RFC 1929 reply {rep:02x?}")));
    }
    Ok(())
}

/// Reads a SOCKS5 reply (RFC 1928 §6); returns REP and BND.ADDR:BND.PORT (IPv4 or IPv6).
///
/// # Errors
///
/// I/O errors, or a reply that is not SOCKS5 or has an unknown ATYP.
pub async fn read_reply(s: &mut TcpStream) -> io::Result<(u8, SocketAddr)> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 0x05 {
        return Err(bad(format!("reply header {head:02x?}")));
    }
    let bnd = match head[3] {
        0x01 => {
            let mut a = [0u8; 6];
            s.read_exact(&mut a).await?;
            SocketAddr::from((
                Ipv4Addr::new(a[0], a[1], a[2], a[3]),
                u16::from_be_bytes([a[4], a[5]]),
            ))
        }
        0x04 => {
            let mut a = [0u8; 18];
            s.read_exact(&mut a).await?;
            let ip: [u8; 16] = a[..16].try_into().expect("16 bytes");
            SocketAddr::from((
                std::net::Ipv6Addr::from(ip),
                u16::from_be_bytes([a[16], a[17]]),
            ))
        }
        t => return Err(bad(format!("reply ATYP {t:#04x}"))),
    };
    Ok((head[1], bnd))
}

/// Connects through the proxy to `target`: greeting, authentication, CONNECT. Returns the
/// stream, ready to relay, and BND.ADDR:BND.PORT (the proxy's side of its outgoing
/// connection, which is the peer address `target` sees).
///
/// # Errors
///
/// I/O errors, or any refusal (the reply code is in the message).
pub async fn socks_connect(
    proxy: SocketAddr,
    target: SocketAddr,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    authenticate(&mut s).await?;
    s.write_all(&connect_request(target)).await?;
    let (rep, bnd) = read_reply(&mut s).await?;
    if rep != 0x00 {
        return Err(bad(format!("CONNECT refused with {rep:#04x}")));
    }
    Ok((s, bnd))
}

/// One full cycle of a good client: connect, authenticate, CONNECT to the echo server, echo
/// 32 bytes, close. Returns how long it took.
///
/// # Errors
///
/// Anything that went wrong, as text.
pub async fn good_cycle(proxy: SocketAddr, echo: SocketAddr) -> Result<Duration, String> {
    let t = Instant::now();
    let (mut s, _) = socks_connect(proxy, echo)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let msg = *b"0123456789abcdef0123456789abcdef";
    s.write_all(&msg)
        .await
        .map_err(|e| format!("echo write: {e}"))?;
    let mut back = [0u8; 32];
    s.read_exact(&mut back)
        .await
        .map_err(|e| format!("echo read: {e}"))?;
    if back != msg {
        return Err(format!("echo came back as {back:02x?}"));
    }
    Ok(t.elapsed())
}

/// Connects to the admin port and authenticates as [`ADMIN_USER`].
///
/// # Errors
///
/// I/O errors, or an answer other than `01 00`.
pub async fn admin_login(admin: SocketAddr) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(admin).await?;
    s.set_nodelay(true)?;
    let mut auth = vec![0x01, ADMIN_USER.len() as u8];
    auth.extend_from_slice(ADMIN_USER.as_bytes());
    auth.push(ADMIN_PASS.len() as u8);
    auth.extend_from_slice(ADMIN_PASS.as_bytes());
    s.write_all(&auth).await?;
    let mut rep = [0u8; 2];
    s.read_exact(&mut rep).await?;
    if rep != [0x01, 0x00] {
        return Err(bad(format!("admin auth reply {rep:02x?}")));
    }
    Ok(s)
}

/// Counter queries of the admin protocol (`00 CMD`, answered `00 CMD` + 8 bytes, network
/// order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Counter {
    /// Get Total Historic Connections.
    Historic = 0x01,
    /// Get Current Connections (answered with 2 bytes, not 8: see [`admin_query`]).
    Current = 0x02,
    /// Get Total Sent Bytes.
    BytesSent = 0x04,
    /// Get Total Received Bytes.
    BytesReceived = 0x05,
}

/// Sends one counter query on an authenticated admin connection and returns the value.
/// Current connections is a 2-byte value (PROTOCOL.md); the others are 8 bytes.
///
/// # Errors
///
/// I/O errors, or a response that does not echo the request.
pub async fn admin_query(s: &mut TcpStream, c: Counter) -> io::Result<u64> {
    s.write_all(&[0x00, c as u8]).await?;
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head != [0x00, c as u8] {
        return Err(bad(format!(
            "response header {head:02x?} to query {:#04x}",
            c as u8
        )));
    }
    if c == Counter::Current {
        let mut v = [0u8; 2];
        s.read_exact(&mut v).await?;
        Ok(u64::from(u16::from_be_bytes(v)))
    } else {
        let mut v = [0u8; 8];
        s.read_exact(&mut v).await?;
        Ok(u64::from_be_bytes(v))
    }
}

/// One full cycle of a good administrator: connect, authenticate, query the historic
/// connection count, close. Returns how long it took.
///
/// # Errors
///
/// Anything that went wrong, as text.
pub async fn admin_cycle(admin: SocketAddr) -> Result<Duration, String> {
    let t = Instant::now();
    let mut s = admin_login(admin)
        .await
        .map_err(|e| format!("admin login: {e}"))?;
    admin_query(&mut s, Counter::Historic)
        .await
        .map_err(|e| format!("admin query: {e}"))?;
    Ok(t.elapsed())
}

/// Starts an echo server on 127.0.0.1 (in the current tokio runtime): echoes everything,
/// closes at end of stream. Returns its address.
///
/// # Errors
///
/// If it cannot bind.
pub async fn echo_server() -> io::Result<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// Which well-behaved client a [`Probe`] runs.
#[derive(Debug, Clone, Copy)]
pub enum ProbeKind {
    /// [`good_cycle`] through the proxy to this echo server.
    Socks {
        /// The proxy.
        proxy: SocketAddr,
        /// The echo destination.
        echo: SocketAddr,
    },
    /// [`admin_cycle`] on this admin port.
    Admin(SocketAddr),
}

/// A well-behaved client that runs one cycle after another (pausing `pause` between them)
/// until stopped, each cycle limited to `limit`.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Result<Duration, String>>>,
}

impl Probe {
    /// Starts probing in the current tokio runtime.
    pub fn start(kind: ProbeKind, pause: Duration, limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let cycle = async {
                    match kind {
                        ProbeKind::Socks { proxy, echo } => good_cycle(proxy, echo).await,
                        ProbeKind::Admin(admin) => admin_cycle(admin).await,
                    }
                };
                let r = match tokio::time::timeout(limit, cycle).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {limit:?}")),
                };
                outcomes.push(r);
                tokio::time::sleep(pause).await;
            }
            outcomes
        });
        Self { stop, task }
    }

    /// Stops after the cycle in progress and returns the tally.
    pub async fn finish(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        let outcomes = self.task.await.expect("probe task panicked");
        ProbeReport::of(&outcomes)
    }
}

/// Waits until a good client gets through (one attempt every 50 ms, each limited to 2 s)
/// or `within` passes; returns how long it took, if it did.
pub async fn time_to_serve(
    proxy: SocketAddr,
    echo: SocketAddr,
    within: Duration,
) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(2), good_cycle(proxy, echo)).await
        {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Reads until the peer closes (end of stream or reset) or `limit` passes. Returns the
/// bytes read and whether it closed.
pub async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

//! Peers for the regression probes of issue 18 (`tests/tests/probes.rs`): a sink that counts
//! what it discards, a listener that hands its accepted streams to the test, a client that
//! pipelines admin requests until the server stops reading, and a way to tell whether the
//! server closed a connection without reading from it (which would unblock a server stuck on
//! a write and so hide the bug under test).
//!
//! Blocking std sockets, loopback only, every wait bounded.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::peers::{self, IO_TIMEOUT};

/// Starts a server on 127.0.0.1 that reads and discards everything every client sends, as
/// fast as it can. Returns its address and the count of bytes discarded so far (all clients).
///
/// # Panics
///
/// If it cannot bind.
pub fn discard_server() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind discard server");
    let addr = l.local_addr().expect("local addr");
    let count = Arc::new(AtomicU64::new(0));
    let total = count.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let total = total.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    total.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, count)
}

/// Starts a listener on `ip` that hands every accepted stream (read and write timeouts set to
/// [`IO_TIMEOUT`]) to the test through the returned channel, so that the test plays the
/// destination itself, step by step.
///
/// # Panics
///
/// If it cannot bind.
pub fn handoff_server(ip: IpAddr) -> (SocketAddr, mpsc::Receiver<TcpStream>) {
    let l = TcpListener::bind((ip, 0)).expect("bind handoff server");
    let addr = l.local_addr().expect("local addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            let _ = s.set_write_timeout(Some(IO_TIMEOUT));
            if tx.send(s).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// Reads an HTTP message head (up to and including the empty line), byte by byte so that
/// nothing after it is consumed.
///
/// # Errors
///
/// The read's error; `UnexpectedEof` if the peer closed first; `InvalidData` past 64 KiB.
pub fn read_http_head(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    Ok(head)
}

/// The kernel's view of a TCP connection of this process, from `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// `ESTABLISHED`: the peer has neither sent FIN nor reset.
    Established,
    /// `CLOSE_WAIT`: the peer sent FIN.
    CloseWait,
    /// Any other state, by its number in `include/net/tcp_states.h`.
    Other(u8),
    /// Not in the table: the connection was reset (or fully closed).
    Gone,
}

/// One connection's line of `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEntry {
    /// Its state.
    pub state: TcpState,
    /// Bytes in the send queue (written, not yet acknowledged by the peer).
    pub tx_queue: u64,
    /// Bytes in the receive queue (arrived, not yet read).
    pub rx_queue: u64,
}

/// Returns the IPv4 connection from `local` to `remote` as `/proc/net/tcp` shows it, or
/// `None` if it is not there (reset, or fully closed). Reads no byte from the socket, so a
/// server blocked writing to it stays blocked.
///
/// # Panics
///
/// If `/proc/net/tcp` cannot be read (this probe needs Linux), or on IPv6 addresses.
pub fn tcp_entry(local: SocketAddr, remote: SocketAddr) -> Option<TcpEntry> {
    let key = |a: SocketAddr| match a.ip() {
        // The address is the 32-bit value in host order, printed as hex; the port in hex.
        IpAddr::V4(ip) => format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), a.port()),
        IpAddr::V6(_) => panic!("tcp_entry handles IPv4 only, got {a}"),
    };
    let (l, r) = (key(local), key(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp (Linux)");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() <= 4 || f[1] != l || f[2] != r {
            return None;
        }
        let state = match u8::from_str_radix(f[3], 16) {
            Ok(1) => TcpState::Established,
            Ok(8) => TcpState::CloseWait,
            Ok(n) => TcpState::Other(n),
            Err(_) => TcpState::Other(0),
        };
        let (tx, rx) = f[4].split_once(':').unwrap_or(("0", "0"));
        Some(TcpEntry {
            state,
            tx_queue: u64::from_str_radix(tx, 16).unwrap_or(0),
            rx_queue: u64::from_str_radix(rx, 16).unwrap_or(0),
        })
    })
}

/// Returns the state of the IPv4 connection from `local` to `remote` ([`TcpState::Gone`] if
/// it is not in the table). See [`tcp_entry`].
///
/// # Panics
///
/// As [`tcp_entry`].
pub fn tcp_state(local: SocketAddr, remote: SocketAddr) -> TcpState {
    tcp_entry(local, remote).map_or(TcpState::Gone, |e| e.state)
}

/// Returns whether the peer has written more than this end has read on the connection
/// ([`endpoints`]), and some of it is still in the peer's send queue (the peer being on this
/// host): data waits at both ends, as when this end stopped reading and the peer filled the
/// window.
///
/// # Panics
///
/// As [`tcp_entry`].
pub fn peer_is_backlogged((local, remote): (SocketAddr, SocketAddr)) -> bool {
    tcp_entry(local, remote).is_some_and(|e| e.rx_queue > 0)
        && tcp_entry(remote, local).is_some_and(|e| e.tx_queue > 0)
}

/// Returns the local and remote address of `s`, for [`peer_has_closed`] (ask while it is
/// connected: a socket that was reset no longer knows its peer).
///
/// # Panics
///
/// If the socket is not connected.
pub fn endpoints(s: &TcpStream) -> (SocketAddr, SocketAddr) {
    (
        s.local_addr().expect("local addr"),
        s.peer_addr().expect("peer addr"),
    )
}

/// Returns whether the peer of the connection ([`endpoints`]) has closed or shut down its
/// side, without reading from it: either this end saw its FIN or reset, or (the peer being
/// on this host, in this network namespace) the peer's end is no longer `ESTABLISHED`. The
/// second view matters when this end never reads: a FIN queued behind unread data never
/// arrives, but the peer's socket is already in `FIN_WAIT1` (or gone).
///
/// # Panics
///
/// As [`tcp_state`].
pub fn peer_has_closed((local, remote): (SocketAddr, SocketAddr)) -> bool {
    tcp_state(local, remote) != TcpState::Established
        || tcp_state(remote, local) != TcpState::Established
}

/// Polls [`peer_has_closed`] for every connection until all are closed or `limit` has
/// passed. Returns the time it took, or the indices of those still open at the limit.
pub fn wait_all_closed(
    conns: &[(SocketAddr, SocketAddr)],
    limit: Duration,
) -> Result<Duration, Vec<usize>> {
    let t = Instant::now();
    loop {
        let open: Vec<usize> = (0..conns.len())
            .filter(|&i| !peer_has_closed(conns[i]))
            .collect();
        if open.is_empty() {
            return Ok(t.elapsed());
        }
        if t.elapsed() >= limit {
            return Err(open);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Connects to `addr` with a small send buffer (so that this client's writes block soon
/// after the server stops reading) and the usual timeouts.
///
/// The receive buffer keeps its default: a tiny one makes the kernel collapse and prune the
/// queue it never reads, reopening the window now and then, so a server blocked writing to
/// it still creeps forward at retransmission intervals.
///
/// # Errors
///
/// The socket's or the connect's error.
pub fn tcp_small_sndbuf(addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_send_buffer_size(8192)?;
    sock.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// How long nothing may move on a connection before [`stall_admin_session`] calls the server
/// stalled.
pub const STALL_QUIET: Duration = Duration::from_millis(500);

/// Opens an admin session over TCP as `user` with a small send buffer, then pipelines `input`
/// (encoded requests) without reading any response, and returns once the server is stuck:
/// for [`STALL_QUIET`] no byte of `input` could be written and neither end's queues moved
/// (`/proc/net/tcp`; the server must run on this host), with responses waiting at both ends
/// ([`peer_is_backlogged`]). The caller chooses `input` so that its responses are far larger
/// than the socket buffers can hold (`tcp_wmem` allows a send buffer of 4 MB at most): the
/// server is then blocked writing to this client. Returns the stream (blocking, with
/// [`IO_TIMEOUT`]).
///
/// # Errors
///
/// I/O errors; `PermissionDenied` if the login is refused; `TimedOut` if the connection did
/// not settle within 30 s; `Other` if no response is waiting (the server did not stall).
pub fn stall_admin_session(
    addr: SocketAddr,
    user: &str,
    password: &str,
    input: &[u8],
) -> io::Result<TcpStream> {
    let mut s = tcp_small_sndbuf(addr)?;
    s.write_all(&peers::userpass(user, password))?;
    let st = peers::read_n(&mut s, 2)?;
    if st != [0x01, 0x00] {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("admin auth answered {st:02x?}"),
        ));
    }
    let ends = endpoints(&s);
    // Both ends' queues, as the server's socket (the reverse direction) and ours show them.
    let queues = || (tcp_entry(ends.1, ends.0), tcp_entry(ends.0, ends.1));
    s.set_nonblocking(true)?;
    let mut written = 0;
    let t = Instant::now();
    let mut last = (written, queues());
    let mut still_since = Instant::now();
    // Write whatever the socket takes; stop once nothing has moved for `STALL_QUIET` (a
    // server that is only slow, its CPU shared with other sessions, still moves its queues).
    while still_since.elapsed() < STALL_QUIET {
        while written < input.len() {
            match s.write(&input[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if t.elapsed() > Duration::from_secs(30) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the admin connection did not settle: {last:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
        let now = (written, queues());
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    s.set_nonblocking(false)?;
    if !peer_is_backlogged(ends) {
        return Err(io::Error::other(format!(
            "no response waits after {written} bytes of requests: {last:?}"
        )));
    }
    Ok(s)
}

/// Runs `f` on a new thread and waits at most `limit` for it. Returns its result and how long
/// it took, or `None` if it had not finished (the thread is left running).
pub fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<(T, Duration)> {
    let (tx, rx) = mpsc::channel();
    let t = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok().map(|v| (v, t.elapsed()))
}

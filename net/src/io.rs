//! Socket operations over any [`Runtime`], written once: accept, connect, read, write, SCTP
//! messages, and the graceful close.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use socket2::{Domain, SockAddr, Type};

use crate::runtime::{race, Raced, Runtime, Socket};
use crate::sctp;

/// Runs a read-side call until it does not return `WouldBlock`, waiting for readiness.
///
/// # Errors
///
/// The call's error.
pub async fn read_with<S: Socket, T>(
    s: &S,
    mut f: impl FnMut(&socket2::Socket) -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match s.try_read_io(&mut f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.readable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Runs a write-side call until it does not return `WouldBlock`, waiting for readiness.
///
/// # Errors
///
/// The call's error.
pub async fn write_with<S: Socket, T>(
    s: &S,
    mut f: impl FnMut(&socket2::Socket) -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match s.try_write_io(&mut f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Reads once (up to `max` bytes) from a stream socket and appends to `buf`; `Ok(0)` is end
/// of stream. Cancel-safe: `buf` only ever grows by bytes read (the only await is the
/// readiness wait). A short read tells the runtime that the socket is drained (see
/// `short_is_drained`), so the next call waits for an event without a failing read first.
///
/// # Errors
///
/// The error of `read`.
pub async fn read_buf<S: Socket>(s: &S, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    loop {
        let start = buf.len();
        buf.resize(start + max, 0);
        let mut got = 0;
        let r = s.try_read_io(|sock| {
            let mut sock: &socket2::Socket = sock;
            got = sock.read(&mut buf[start..])?;
            short_is_drained(got, max)
        });
        buf.truncate(start + got);
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => return Ok(got),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.readable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// The result to give a runtime's `try_read_io` for a read of `n` bytes into `room`: a short
/// read emptied the stream socket, so it is reported as `WouldBlock` (the caller keeps the
/// `n` bytes it read) and a runtime that caches readiness forgets it; the next read then
/// waits for an event instead of failing with `EAGAIN` first. A full read or the end of
/// stream (0) is `Ok(n)`.
pub(crate) fn short_is_drained(n: usize, room: usize) -> io::Result<usize> {
    if n > 0 && n < room {
        Err(io::ErrorKind::WouldBlock.into())
    } else {
        Ok(n)
    }
}

/// Writes all of `data`.
///
/// # Errors
///
/// The error of `write`; `WriteZero` if the socket takes nothing.
pub async fn write_all<S: Socket>(s: &S, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = write_with(s, |sock| {
            let mut sock: &socket2::Socket = sock;
            sock.write(data)
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// Receives part of an SCTP message (see [`sctp::recv_msg`]).
///
/// # Errors
///
/// The error of `recvmsg`.
pub async fn recv_msg<S: Socket>(
    s: &S,
    buf: &mut BytesMut,
    max: usize,
) -> io::Result<sctp::Received> {
    read_with(s, |sock| sctp::recv_msg(sock, buf, max)).await
}

/// Sends `data` as one SCTP message.
///
/// # Errors
///
/// The error of `send`.
pub async fn send_msg<S: Socket>(s: &S, data: &[u8]) -> io::Result<()> {
    write_with(s, |sock| sctp::send_msg(sock, data)).await
}

/// Accepts one connection (non-blocking, close-on-exec) and returns it with its peer.
///
/// # Errors
///
/// The error of `accept4`.
pub async fn accept<S: Socket>(listener: &S) -> io::Result<(socket2::Socket, SocketAddr)> {
    let (s, peer) = read_with(listener, |l| {
        l.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    })
    .await?;
    let peer = peer
        .as_socket()
        .ok_or_else(|| io::Error::other("peer address is not an IP address"))?;
    Ok((s, peer))
}

/// Opens a TCP connection to `addr` (`TCP_NODELAY` set) and returns it with its local address.
///
/// # Errors
///
/// The connect's error (refused, unreachable, ...).
pub async fn connect_tcp<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
) -> io::Result<(R::Socket, SocketAddr)> {
    connect_tcp_from(rt, addr, None, None).await
}

/// As [`connect_tcp`], from the local address `source` when given (port 0: any port) and
/// bound to the network device `device` when given (`SO_BINDTODEVICE`, which needs
/// `CAP_NET_RAW` unless the kernel allows it unprivileged).
///
/// # Errors
///
/// The bind's or the connect's error.
pub async fn connect_tcp_from<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    source: Option<SocketAddr>,
    device: Option<&str>,
) -> io::Result<(R::Socket, SocketAddr)> {
    let s = socket2::Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    let _ = s.set_tcp_nodelay(true);
    if let Some(dev) = device {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(src) = source {
        s.bind(&SockAddr::from(src))?;
    }
    match s.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let s = rt.register(s)?;
    s.writable().await?;
    if let Some(e) = s.get().take_error()? {
        return Err(e);
    }
    let local = s
        .get()
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("local address is not an IP address"))?;
    Ok((s, local))
}

/// How long a graceful close waits for the peer to read what it was sent and close its side.
pub const LINGER: Duration = Duration::from_secs(2);
/// How many bytes a graceful close reads and discards before giving up on the peer.
const LINGER_MAX_DISCARD: usize = 1 << 20;

/// Closes a connection without destroying what was sent: shuts down the sending side (so the
/// peer reads everything, then end of stream), then reads and discards until the peer closes
/// too, `until` passes, or 1 MiB was discarded. Dropping a socket whose
/// receive queue still holds bytes would make the kernel answer with RST, and the peer's kernel
/// would then discard the responses it has not read yet. `cut` (the connection's close
/// request: shutdown, removal) ends the wait early.
pub async fn close_gracefully<R: Runtime, C>(
    rt: &R,
    s: &R::Socket,
    until: Instant,
    cut: impl std::future::Future<Output = C>,
) {
    let mut cut = std::pin::pin!(cut);
    if s.get().shutdown(Shutdown::Write).is_err() {
        return;
    }
    let mut scratch = vec![0u8; 16 * 1024];
    let mut discarded = 0;
    while discarded < LINGER_MAX_DISCARD {
        let read = read_with(s, |sock| {
            let mut sock: &socket2::Socket = sock;
            sock.read(&mut scratch)
        });
        match race(rt, cut.as_mut(), Some(until), read).await {
            Raced::Io(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

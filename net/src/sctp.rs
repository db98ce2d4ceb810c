//! One-to-one SCTP sockets (`SOCK_STREAM` + `IPPROTO_SCTP`, RFC 6458 §4) through socket2.
//!
//! Every socket made here is non-blocking; a transport waits for readiness with its runtime
//! and then calls [`recv_msg`] or [`send_msg`], which return `WouldBlock` when not ready.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use socket2::{Domain, MaybeUninitSlice, MsgHdrMut, Protocol, SockAddr, Socket, Type};

/// Returns whether `e` says the kernel has no SCTP (module absent or not loadable).
pub fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT)
    )
}

/// Creates a non-blocking one-to-one SCTP socket for `addr`'s family.
///
/// # Errors
///
/// `EPROTONOSUPPORT` (see [`is_unsupported`]) when the kernel has no SCTP.
pub fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(Protocol::SCTP),
    )?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    Ok(s)
}

/// Binds a non-blocking one-to-one SCTP listener on `addr` (`SO_REUSEADDR` set).
///
/// # Errors
///
/// As [`socket`], and any error of `bind` or `listen`.
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<Socket> {
    let s = socket(addr)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s)
}

/// Accepts one association; the new socket is non-blocking.
///
/// # Errors
///
/// `WouldBlock` when none is pending, or the error of `accept`.
pub fn accept(listener: &Socket) -> io::Result<(Socket, SocketAddr)> {
    let (s, addr) = listener.accept()?;
    s.set_nonblocking(true)?;
    let addr = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("SCTP peer address is not an IP address"))?;
    Ok((s, addr))
}

/// Starts a non-blocking connect to `addr`. The connect is complete once the socket is
/// writable and [`take_connect_result`] returns `Ok`.
///
/// # Errors
///
/// As [`socket`], or the error of `connect` other than "in progress".
pub fn start_connect(addr: SocketAddr) -> io::Result<Socket> {
    let s = socket(addr)?;
    match s.connect(&SockAddr::from(addr)) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        Err(e) => Err(e),
    }
}

/// After a non-blocking connect signalled writability: `Ok` if connected, else the error.
///
/// # Errors
///
/// The connect's error (`SO_ERROR`).
pub fn take_connect_result(s: &Socket) -> io::Result<()> {
    match s.take_error()? {
        Some(e) => Err(e),
        None => s.peer_addr().map(|_| ()),
    }
}

/// The outcome of one [`recv_msg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes appended; 0 means the peer shut down (end of stream).
    pub len: usize,
    /// The bytes appended end an SCTP message (`MSG_EOR`).
    pub end_of_message: bool,
}

/// Receives up to `max` bytes with `recvmsg`, appending them to `buf`, and reports whether
/// they end an SCTP message. A message larger than `max` comes in several calls; only the
/// last has `end_of_message`.
///
/// # Errors
///
/// `WouldBlock` when nothing is ready, or the error of `recvmsg`.
pub fn recv_msg(s: &Socket, buf: &mut BytesMut, max: usize) -> io::Result<Received> {
    buf.reserve(max);
    let spare = &mut buf.spare_capacity_mut()[..max];
    let mut bufs = [MaybeUninitSlice::new(spare)];
    let mut msg = MsgHdrMut::new().with_buffers(&mut bufs);
    let len = s.recvmsg(&mut msg, 0)?;
    let end_of_message = msg.flags().is_end_of_record();
    // SAFETY: `recvmsg` initialised the first `len` bytes of the spare capacity (it returns
    // how many bytes it wrote there), and `len <= max <= spare capacity`.
    unsafe { buf.set_len(buf.len() + len) };
    Ok(Received {
        len,
        end_of_message,
    })
}

/// Sends `data` as one SCTP message.
///
/// # Errors
///
/// `WouldBlock` when the send buffer is full (nothing was sent), `WriteZero` if the kernel
/// took only part of the message (which a one-to-one socket does not do for a message that
/// fits its send buffer), or the error of `send`.
pub fn send_msg(s: &Socket, data: &[u8]) -> io::Result<()> {
    let n = s.send_with_flags(data, libc::MSG_NOSIGNAL)?;
    if n == data.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("SCTP message of {} bytes sent partially ({n})", data.len()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outside a kernel with SCTP this test checks the "unsupported" detection; inside one
    /// (sctp-vm) it checks a message round trip with end-of-message flags.
    #[test]
    fn message_round_trip_or_unsupported() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let l = match listen(addr, 8) {
            Ok(l) => l,
            Err(e) => {
                assert!(is_unsupported(&e), "unexpected error: {e}");
                eprintln!("kernel has no SCTP ({e}); round trip not run");
                return;
            }
        };
        l.set_nonblocking(false).unwrap();
        let at = l.local_addr().unwrap().as_socket().unwrap();
        let c = socket(at).unwrap();
        c.set_nonblocking(false).unwrap();
        c.connect(&at.into()).unwrap();
        let (srv, _) = l.accept().unwrap();
        srv.set_nonblocking(false).unwrap();
        send_msg(&c, b"hello").unwrap();
        send_msg(&c, b"world!").unwrap();
        let mut buf = BytesMut::new();
        let r = recv_msg(&srv, &mut buf, 3).unwrap();
        assert_eq!((r.len, r.end_of_message), (3, false));
        let r = recv_msg(&srv, &mut buf, 100).unwrap();
        assert_eq!((r.len, r.end_of_message), (2, true));
        let r = recv_msg(&srv, &mut buf, 100).unwrap();
        assert_eq!((r.len, r.end_of_message), (6, true));
        assert_eq!(&buf[..], b"helloworld!");
    }
}

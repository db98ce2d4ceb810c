//! SCTP one-to-one sockets on async-io: the socket2 sockets of `socks5d_net::sctp` in an
//! [`Async`]. All socket work is done by `socks5d_net::sctp`; this file only waits.

use std::io;
use std::net::SocketAddr;

use async_io::Async;
use bytes::BytesMut;
use socket2::Socket;
use socks5d_net::sctp::{self, Received};

/// Registers `s` (already non-blocking) with the reactor.
fn register(s: Socket) -> io::Result<Async<Socket>> {
    Async::new(s)
}

/// A listening one-to-one SCTP socket.
#[derive(Debug)]
pub struct SctpListener {
    fd: Async<Socket>,
}

impl SctpListener {
    /// Binds `addr`.
    ///
    /// # Errors
    ///
    /// As `socks5d_net::sctp::listen` (`EPROTONOSUPPORT` without kernel SCTP).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::from_socket(sctp::listen(addr, socks5d_net::listen::BACKLOG)?)
    }

    /// Adopts a listening socket (made non-blocking here).
    ///
    /// # Errors
    ///
    /// If the socket cannot be registered with the reactor.
    pub fn from_socket(s: Socket) -> io::Result<Self> {
        s.set_nonblocking(true)?;
        Ok(Self { fd: register(s)? })
    }

    /// Returns the bound address.
    ///
    /// # Errors
    ///
    /// The error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd
            .get_ref()
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP address"))
    }

    /// Accepts one association. Cancel-safe.
    ///
    /// # Errors
    ///
    /// The error of `accept`.
    pub async fn accept(&self) -> io::Result<(SctpStream, SocketAddr)> {
        let (s, peer) = self.fd.read_with(sctp::accept).await?;
        Ok((SctpStream { fd: register(s)? }, peer))
    }
}

/// A connected one-to-one SCTP socket that keeps message boundaries.
#[derive(Debug)]
pub struct SctpStream {
    fd: Async<Socket>,
}

impl SctpStream {
    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// `EPROTONOSUPPORT` without kernel SCTP, or the connect's error.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let fd = register(sctp::start_connect(addr)?)?;
        fd.writable().await?;
        sctp::take_connect_result(fd.get_ref())?;
        Ok(Self { fd })
    }

    /// Receives up to `max` bytes into `buf` and reports whether they end a message.
    /// `len == 0` is end of stream. Cancel-safe.
    ///
    /// # Errors
    ///
    /// The error of `recvmsg`.
    pub async fn recv_msg(&self, buf: &mut BytesMut, max: usize) -> io::Result<Received> {
        self.fd.read_with(|s| sctp::recv_msg(s, buf, max)).await
    }

    /// Sends `data` as one message.
    ///
    /// # Errors
    ///
    /// The error of `send`.
    pub async fn send_msg(&self, data: &[u8]) -> io::Result<()> {
        self.fd.write_with(|s| sctp::send_msg(s, data)).await
    }

    /// Shuts down the sending side (SCTP SHUTDOWN once queued data is delivered).
    ///
    /// # Errors
    ///
    /// The error of `shutdown`.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.fd.get_ref().shutdown(std::net::Shutdown::Write)
    }

    /// Returns the peer's address.
    ///
    /// # Errors
    ///
    /// The error of `getpeername`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd
            .get_ref()
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP address"))
    }
}

//! The relay between a SOCKS client and its destination, after a successful handshake.
//!
//! TCP clients (what [`crate::serve_socks`] accepts) use the runtime-neutral relay of
//! `socks5d_net::relay` over tokio's readiness: no split halves, buffers only while data is
//! in flight, `splice(2)` once the sniffer is done. Any other client stream type (an embedder
//! calling [`crate::serve_socks_connection`] with its own stream) is copied through buffers.

use std::any::Any;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use socks5d_net::relay::Readiness;
use socks5d_net::Tap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::now;

/// A tokio TCP stream as `socks5d_net::relay` wants it.
struct Tcp<'a>(&'a TcpStream);

impl AsFd for Tcp<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Readiness for Tcp<'_> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.0.readable()
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.0.writable()
    }

    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.0.try_io(Interest::READABLE, f)
    }

    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.0.try_io(Interest::WRITABLE, f)
    }
}

/// Which way a [`pipe`] moves bytes (for the tap).
#[derive(Debug, Clone, Copy)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// Relays both directions until both have ended. One side's end of stream shuts down the
/// other side's sending half while the opposite direction keeps flowing (TCP half-close). An
/// error in either direction ends both.
pub(crate) async fn relay<C>(
    client: &mut C,
    dest: &mut TcpStream,
    tap: &Tap<'_>,
    buf_size: usize,
) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let tcp: Option<&TcpStream> = (&*client as &dyn Any).downcast_ref();
    match tcp {
        Some(c) => socks5d_net::relay::relay(&Tcp(c), &Tcp(dest), tap, buf_size, now).await,
        None => copy_relay(client, dest, tap, buf_size).await,
    }
}

/// Copies both directions at once with buffers of `buf_size` bytes until both have ended.
async fn copy_relay<C>(
    client: &mut C,
    dest: &mut TcpStream,
    tap: &Tap<'_>,
    buf_size: usize,
) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, cw) = tokio::io::split(client);
    let (dr, dw) = dest.split();
    let up = pipe(cr, dw, tap, buf_size, Direction::ClientToServer);
    let down = pipe(dr, cw, tap, buf_size, Direction::ServerToClient);
    tokio::try_join!(up, down).map(|_| ())
}

async fn pipe<R, W>(
    mut r: R,
    mut w: W,
    tap: &Tap<'_>,
    buf_size: usize,
    dir: Direction,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; buf_size.max(1)];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // Half-close: pass the end of stream on; the other direction is not affected.
            // The peer may already be gone, which is no reason to cut the other direction.
            let _ = w.shutdown().await;
            return Ok(());
        }
        let chunk = &buf[..n];
        match dir {
            Direction::ClientToServer => tap.from_client(now(), chunk),
            Direction::ServerToClient => tap.from_server(now(), chunk),
        }
        w.write_all(chunk).await?;
        tap.wrote(now(), n);
    }
}

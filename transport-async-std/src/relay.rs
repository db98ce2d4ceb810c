//! The relay between a SOCKS client and its destination, after a successful handshake.

use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use socks5d_net::Tap;

use crate::now;

/// Which way a [`pipe`] moves bytes (for the tap).
#[derive(Debug, Clone, Copy)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// Copies both directions at once with buffers of `buf_size` bytes until both have ended.
/// One side's end of stream shuts down the other side's sending half while the opposite
/// direction keeps flowing (TCP half-close). An error in either direction ends both.
pub(crate) async fn relay<C, D>(
    client: C,
    dest: D,
    tap: &Tap<'_>,
    buf_size: usize,
) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    D: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, cw) = futures_lite::io::split(client);
    let (dr, dw) = futures_lite::io::split(dest);
    let up = pipe(cr, dw, tap, buf_size, Direction::ClientToServer);
    let down = pipe(dr, cw, tap, buf_size, Direction::ServerToClient);
    futures_lite::future::try_zip(up, down).await.map(|_| ())
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
            let _ = w.close().await;
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

//! The relay loop between a SOCKS client and its destination, whatever the runtime.
//!
//! The transports give each TCP socket's readiness through [`Readiness`] (tokio's
//! `readable()` / `try_io`, async-io's `Async::readable()`); everything else is here:
//!
//! - both directions run at once on shared references (no split halves, no lock);
//! - a direction waits for its source to be readable *before* taking a buffer, and gives the
//!   buffer back as soon as a read would block, so an idle connection holds no relay buffer;
//! - while the credential sniffer wants the bytes ([`Tap::sniffing`]) they are copied through
//!   a buffer of `buf_size` bytes; once it is done or sniffing is off, on Linux they are
//!   moved with `splice(2)` through a pipe (see [`crate::splice`]), held only while data is in
//!   flight. A direction goes back to copying as soon as sniffing is wanted again.
//! - one side's end of stream shuts down the other side's sending half while the opposite
//!   direction keeps flowing (TCP half-close); an error in either direction ends both.

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use socket2::SockRef;

use crate::Tap;

/// A non-blocking TCP socket registered with a runtime's reactor.
pub trait Readiness: AsFd + Sync {
    /// Waits until the socket may be readable.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Waits until the socket may be writable.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Runs a non-blocking read-side system call on the socket. If it fails with
    /// `WouldBlock`, the runtime must forget any readiness it cached, so that the next
    /// [`Readiness::readable`] waits for a new event.
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
    /// As [`Readiness::try_read_io`], for the write side.
    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

/// Which way bytes move (for the tap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// How a burst of reads ended.
enum Burst {
    /// The source would block: wait for it again.
    Drained,
    /// The source reached its end of stream.
    Eof,
    /// The path should change: the sniffer started or stopped wanting the bytes.
    Switch,
    /// No pipe could be had (descriptors short): copy instead.
    NoPipe,
}

/// Relays both directions between `client` and `dest` until both have ended. Bytes are
/// counted (and sniffed while the sniffer wants them) by `tap`; `now` is the runtime's clock.
///
/// # Errors
///
/// The first I/O error of either direction (which ends both).
pub async fn relay<T: Readiness>(
    client: &T,
    dest: &T,
    tap: &Tap<'_>,
    buf_size: usize,
    now: fn() -> Instant,
) -> io::Result<()> {
    let up = one_way(client, dest, tap, buf_size, now, Direction::ClientToServer);
    let down = one_way(dest, client, tap, buf_size, now, Direction::ServerToClient);
    try_join(up, down).await
}

/// Runs both futures to completion, or until either fails.
async fn try_join(
    a: impl Future<Output = io::Result<()>>,
    b: impl Future<Output = io::Result<()>>,
) -> io::Result<()> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut a_done, mut b_done) = (false, false);
    poll_fn(|cx| {
        if !a_done {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                r?;
                a_done = true;
            }
        }
        if !b_done {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                r?;
                b_done = true;
            }
        }
        if a_done && b_done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

async fn one_way<T: Readiness>(
    src: &T,
    dst: &T,
    tap: &Tap<'_>,
    buf_size: usize,
    now: fn() -> Instant,
    dir: Direction,
) -> io::Result<()> {
    let buf_size = buf_size.max(1);
    // After a failed pipe creation (descriptors short), copy until the next idle period.
    let mut no_pipe = false;
    loop {
        src.readable().await?;
        let burst = if cfg!(target_os = "linux") && !no_pipe && !tap.sniffing() {
            splice_burst(src, dst, tap, now).await?
        } else {
            copy_burst(src, dst, tap, buf_size, now, dir, !no_pipe).await?
        };
        no_pipe = matches!(burst, Burst::NoPipe);
        match burst {
            Burst::Drained | Burst::Switch | Burst::NoPipe => {}
            Burst::Eof => {
                // Half-close: pass the end of stream on; the other direction is not
                // affected. The peer may already be gone, which is no reason to cut the
                // other direction.
                let _ = SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
        }
    }
}

/// Reads and writes through one buffer until the source would block, or (with `may_splice`,
/// on Linux) the sniffer no longer wants the bytes.
async fn copy_burst<T: Readiness>(
    src: &T,
    dst: &T,
    tap: &Tap<'_>,
    buf_size: usize,
    now: fn() -> Instant,
    dir: Direction,
    may_splice: bool,
) -> io::Result<Burst> {
    let mut buf = vec![0u8; buf_size];
    loop {
        let n = match src.try_read_io(|| (&*SockRef::from(src)).read(&mut buf)) {
            Ok(0) => return Ok(Burst::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        match dir {
            Direction::ClientToServer => tap.from_client(now(), chunk),
            Direction::ServerToClient => tap.from_server(now(), chunk),
        }
        write_all(dst, chunk, tap, now).await?;
        if may_splice && cfg!(target_os = "linux") && !tap.sniffing() {
            return Ok(Burst::Switch);
        }
    }
}

async fn write_all<T: Readiness>(
    dst: &T,
    mut chunk: &[u8],
    tap: &Tap<'_>,
    now: fn() -> Instant,
) -> io::Result<()> {
    while !chunk.is_empty() {
        match dst.try_write_io(|| (&*SockRef::from(dst)).write(chunk)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => {
                tap.wrote(now(), m);
                chunk = &chunk[m..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves bytes with `splice(2)` through a pipe until the source would block, or the
/// sniffer wants the bytes again.
#[cfg(target_os = "linux")]
async fn splice_burst<T: Readiness>(
    src: &T,
    dst: &T,
    tap: &Tap<'_>,
    now: fn() -> Instant,
) -> io::Result<Burst> {
    use crate::splice::Pipe;
    let Ok(mut pipe) = Pipe::take() else {
        return Ok(Burst::NoPipe);
    };
    let (from, to) = (src.as_fd().as_raw_fd(), dst.as_fd().as_raw_fd());
    let burst = loop {
        if tap.sniffing() {
            break Burst::Switch;
        }
        // The pipe is empty here, so `WouldBlock` means the socket has nothing to read.
        let n = match src.try_read_io(|| pipe.fill(from, usize::MAX >> 1)) {
            Ok(0) => break Burst::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Burst::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        tap.received(now(), n);
        while pipe.pending() > 0 {
            match dst.try_write_io(|| pipe.drain(to)) {
                Ok(m) => tap.wrote(now(), m),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The pipe still holds bytes: it is closed on drop, not pooled.
                Err(e) => return Err(e),
            }
        }
    };
    pipe.give_back();
    Ok(burst)
}

/// No `splice(2)` here: always copy.
#[cfg(not(target_os = "linux"))]
async fn splice_burst<T: Readiness>(
    _src: &T,
    _dst: &T,
    _tap: &Tap<'_>,
    _now: fn() -> Instant,
) -> io::Result<Burst> {
    Ok(Burst::NoPipe)
}

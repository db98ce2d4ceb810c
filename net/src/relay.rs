//! The relay loop between a SOCKS client and its destination, whatever the runtime.
//!
//! The sockets are the runtime's registered sockets ([`Socket`]); everything else is here:
//!
//! - both directions run at once on shared references (no split halves, no lock);
//! - a direction waits for its source to be readable *before* taking a buffer, and gives the
//!   buffer back as soon as a read would block, so an idle connection holds no relay buffer;
//! - bytes are copied through a buffer of `buf_size` bytes; on Linux, once the sniffer is done
//!   (or sniffing is off) and a direction has read [`SPLICE_AFTER`] full buffers in a row
//!   (bulk), they are moved with `splice(2)` through a pipe instead (see [`crate::splice`]),
//!   held only while data is in flight. A direction goes back to copying when a splice burst
//!   drains its source after less than a buffer (request/response traffic: a copy costs a
//!   read and a write, a splice burst two splices and the `EAGAIN` that ends it) and as soon
//!   as sniffing is wanted again;
//! - a read that returns less than the room it was given has emptied the socket (a stream
//!   socket returns what it holds): the burst ends there, and it is reported to the runtime
//!   as `WouldBlock`, so that a runtime that caches readiness (tokio) forgets it and the next
//!   read waits for an event instead of failing with `EAGAIN` first;
//! - one side's end of stream shuts down the other side's sending half while the opposite
//!   direction keeps flowing (TCP half-close); an error in either direction ends both;
//! - a burst of reads and writes gives the runtime a turn ([`yield_now`]) after
//!   [`BURST_READS`] reads or [`BURST_BYTES`] bytes, whichever comes first, so that a client
//!   that always has bytes to send (at any buffer size) never keeps other tasks, its own close
//!   request or the server's shutdown waiting;
//! - pipes in use are capped process-wide ([`set_pipe_budget`]), so that splicing never takes
//!   the descriptors that the connection limit counted on: without a pipe a direction copies.
//! - a rate-limited relay ([`relay_throttled`], a user with limits) always copies (no splice:
//!   the bytes must be counted out in grants) and writes each chunk in the grants of the
//!   user's token bucket (`socks5d_core::policy::Bucket`), sleeping until each grant's time;
//!   it reads nothing more until the chunk is written, so TCP's flow control slows the sender.

use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use socks5d_core::policy::BucketHandle;

use crate::metrics::{LimitKind, Metrics};
use crate::runtime::{yield_now, Socket};
use crate::Tap;

/// A sleep until an instant, on the server's runtime.
pub type Sleep<'a> = dyn Fn(Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> + Sync + 'a;

/// The bandwidth of a rate-limited relay: the user's buckets (one per direction, attached for
/// this connection) and a way to sleep.
pub struct Throttle<'a> {
    /// Client to destination.
    pub upload: &'a BucketHandle,
    /// Destination to client.
    pub download: &'a BucketHandle,
    /// Sleeps until the given instant.
    pub sleep: &'a Sleep<'a>,
    /// Counts the waits (`limit_hits_total{kind="user_bandwidth"}`).
    pub metrics: Option<&'a Metrics>,
}

impl std::fmt::Debug for Throttle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("upload", self.upload)
            .field("download", self.download)
            .finish_non_exhaustive()
    }
}

/// Full buffers read in a row (copying) after which a direction splices: bulk transfer.
/// Chosen by measurement (BENCHMARKS.md, issue 16: request/response with 1, 16 and 256 KiB
/// responses and 1 GiB transfers, against always splicing).
pub const SPLICE_AFTER: u32 = 4;

/// A burst gives the runtime a turn after this many reads...
pub const BURST_READS: usize = 64;
/// ... or after moving this many bytes, whichever comes first.
pub const BURST_BYTES: usize = 1 << 20;

/// Pipes that may be in use at once, process-wide (see [`set_pipe_budget`]).
static PIPE_BUDGET: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Pipes in use now (taken by a direction, not in the pool).
static PIPES_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Caps the pipes the relay holds at once (two descriptors each, plus the pool's). The server
/// sets it from the descriptor limit left after its connections; beyond it, directions copy.
pub fn set_pipe_budget(pipes: usize) {
    PIPE_BUDGET.store(pipes, Ordering::Relaxed);
}

/// One pipe of the budget, given back on drop.
struct PipePermit;

impl PipePermit {
    fn take() -> Option<Self> {
        let budget = PIPE_BUDGET.load(Ordering::Relaxed);
        PIPES_IN_USE
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < budget).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for PipePermit {
    fn drop(&mut self) {
        PIPES_IN_USE.fetch_sub(1, Ordering::AcqRel);
    }
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
    /// A splice burst drained its source after less than one buffer: copy again.
    Quiet,
    /// The source reached its end of stream.
    Eof,
    /// The path should change: the sniffer started or stopped wanting the bytes.
    Switch,
    /// No pipe could be had (descriptors short): copy instead.
    NoPipe,
    /// The burst moved its share: give the runtime a turn, then go on.
    Yield,
}

/// Relays both directions between `client` and `dest` until both have ended. Bytes are
/// counted (and sniffed while the sniffer wants them) by `tap`; `now` is the runtime's clock.
///
/// # Errors
///
/// The first I/O error of either direction (which ends both).
pub async fn relay<T: Socket>(
    client: &T,
    dest: &T,
    tap: &Tap<'_>,
    buf_size: usize,
    now: &(dyn Fn() -> Instant + Sync),
) -> io::Result<()> {
    relay_throttled(client, dest, tap, buf_size, now, None).await
}

/// As [`relay`], within `throttle`'s bandwidth when given (then without `splice(2)`).
///
/// # Errors
///
/// The first I/O error of either direction (which ends both).
pub async fn relay_throttled<T: Socket>(
    client: &T,
    dest: &T,
    tap: &Tap<'_>,
    buf_size: usize,
    now: &(dyn Fn() -> Instant + Sync),
    throttle: Option<&Throttle<'_>>,
) -> io::Result<()> {
    let (up_b, down_b) = match throttle {
        Some(t) => (
            Some((t.upload, t.sleep, t.metrics)),
            Some((t.download, t.sleep, t.metrics)),
        ),
        None => (None, None),
    };
    let up = Way {
        src: client,
        dst: dest,
        tap,
        buf_size,
        now,
        dir: Direction::ClientToServer,
        grants: up_b,
    };
    let down = Way {
        src: dest,
        dst: client,
        tap,
        buf_size,
        now,
        dir: Direction::ServerToClient,
        grants: down_b,
    };
    let (up, down) = (one_way(&up), one_way(&down));
    // `try_zip` holds each direction's future once (a hand-written join over `pin!`ned
    // arguments held them twice: 3 KiB per connection instead of 1.5).
    futures_lite::future::try_zip(up, down).await.map(drop)
}

/// One direction's bucket, sleep and metrics.
type Grants<'a> = Option<(&'a BucketHandle, &'a Sleep<'a>, Option<&'a Metrics>)>;

/// One direction of a relay: what [`one_way`] needs, passed by one reference (each argument
/// of an async fn is stored twice in its future: for every idle connection, twice each).
struct Way<'a, T> {
    src: &'a T,
    dst: &'a T,
    tap: &'a Tap<'a>,
    buf_size: usize,
    now: &'a (dyn Fn() -> Instant + Sync),
    dir: Direction,
    grants: Grants<'a>,
}

async fn one_way<T: Socket>(way: &Way<'_, T>) -> io::Result<()> {
    // `way`'s fields are read in place, not bound to locals that the future would store.
    // After a failed pipe creation (descriptors short), copy until the next idle period.
    let mut no_pipe = false;
    // Reads came in full buffers (see `SPLICE_AFTER`): splice.
    let mut bulk = false;
    loop {
        way.src.readable().await?;
        // Each burst's state is boxed for the burst's life: the future of an idle direction
        // is then its readiness wait alone, not the largest burst's state (issue 16: memory
        // per idle connection; one allocation per wake-up, next to at least two syscalls).
        let splicing = way.grants.is_none()
            && cfg!(target_os = "linux")
            && bulk
            && !no_pipe
            && !way.tap.sniffing();
        let burst = if splicing {
            Box::pin(splice_burst(way)).await?
        } else {
            // A rate-limited relay never splices (its bytes are counted out in grants).
            Box::pin(copy_burst(way, !no_pipe && way.grants.is_none())).await?
        };
        no_pipe = matches!(burst, Burst::NoPipe);
        match burst {
            // Copying saw bulk: splice; splicing saw the sniffer want the bytes: copy.
            Burst::Switch => bulk = !splicing,
            Burst::Quiet | Burst::NoPipe => bulk = false,
            Burst::Drained => {}
            Burst::Yield => yield_now().await,
            Burst::Eof => {
                // Half-close: pass the end of stream on; the other direction is not
                // affected. The peer may already be gone, which is no reason to cut the
                // other direction.
                let _ = way.dst.get().shutdown(std::net::Shutdown::Write);
                way.tap.set_half_closed();
                return Ok(());
            }
        }
    }
}

/// Reads and writes through one buffer until the source would block, or (with `may_splice`,
/// on Linux) the sniffer no longer wants the bytes.
async fn copy_burst<T: Socket>(way: &Way<'_, T>, may_splice: bool) -> io::Result<Burst> {
    let Way {
        src,
        dst,
        tap,
        now,
        dir,
        grants,
        ..
    } = *way;
    let mut buf = CopyBuf::take(way.buf_size.max(1));
    let buf = &mut buf.0;
    let (mut reads, mut moved, mut full) = (0, 0, 0);
    loop {
        if reads >= BURST_READS || moved >= BURST_BYTES {
            return Ok(Burst::Yield);
        }
        let mut got = 0;
        let r = src.try_read_io(|s| {
            let mut s: &socket2::Socket = s;
            got = s.read(buf)?;
            crate::io::short_is_drained(got, buf.len())
        });
        let (n, drained) = match r {
            Ok(0) => return Ok(Burst::Eof),
            Ok(n) => (n, false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => (got, true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        reads += 1;
        moved += n;
        let chunk = &buf[..n];
        match dir {
            Direction::ClientToServer => tap.from_client(now(), chunk),
            Direction::ServerToClient => tap.from_server(now(), chunk),
        }
        let to_client = dir == Direction::ServerToClient;
        match grants {
            None => write_all(dst, chunk, tap, now, to_client).await?,
            Some((bucket, sleep, metrics)) => {
                let mut rest = chunk;
                while !rest.is_empty() {
                    let g = bucket.take(now(), rest.len() as u64);
                    if let Some(t) = g.wait_until {
                        if let Some(m) = metrics {
                            m.limit_hit(LimitKind::UserBandwidth);
                        }
                        sleep(t).await;
                    }
                    let n = usize::try_from(g.bytes)
                        .unwrap_or(rest.len())
                        .min(rest.len());
                    write_all(dst, &rest[..n], tap, now, to_client).await?;
                    rest = &rest[n..];
                }
                // A turn for the runtime after each chunk: the sleeps pace it anyway.
                return Ok(Burst::Yield);
            }
        }
        if drained {
            return Ok(Burst::Drained);
        }
        // Here the read filled the buffer.
        full += 1;
        if may_splice && full >= SPLICE_AFTER && cfg!(target_os = "linux") && !tap.sniffing() {
            return Ok(Burst::Switch);
        }
    }
}

/// Copy buffers kept by each thread for the next burst: `vec![0; n]` zeroes its 16 KiB (the
/// default) on every burst, which was 1.8 % of the server's CPU in 1 KiB request/response
/// traffic (`perf`, BENCHMARKS.md). Only the bytes a read put in are ever looked at, so a
/// reused buffer's old contents never leave it. At most [`POOLED_BUFFERS`] per thread, and
/// only of the current buffer size.
struct CopyBuf(Vec<u8>);

/// Copy buffers a thread keeps (see [`CopyBuf`]).
const POOLED_BUFFERS: usize = 2;

thread_local! {
    static COPY_BUFS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl CopyBuf {
    fn take(size: usize) -> Self {
        let reused = COPY_BUFS
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                let i = pool.iter().position(|b| b.len() == size)?;
                Some(pool.swap_remove(i))
            })
            .ok()
            .flatten();
        Self(reused.unwrap_or_else(|| vec![0u8; size]))
    }
}

impl Drop for CopyBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // During the thread's teardown the pool may be gone: the buffer is then just freed.
        let _ = COPY_BUFS.try_with(|pool| {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                if pool.len() < POOLED_BUFFERS {
                    pool.push(buf);
                }
            }
        });
    }
}

async fn write_all<T: Socket>(
    dst: &T,
    mut chunk: &[u8],
    tap: &Tap<'_>,
    now: &(dyn Fn() -> Instant + Sync),
    to_client: bool,
) -> io::Result<()> {
    while !chunk.is_empty() {
        match dst.try_write_io(|s| {
            let mut s: &socket2::Socket = s;
            s.write(chunk)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => {
                tap.wrote_to(now(), m, to_client);
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
async fn splice_burst<T: Socket>(way: &Way<'_, T>) -> io::Result<Burst> {
    use crate::splice::Pipe;
    let Way {
        src, dst, tap, now, ..
    } = *way;
    let to_client = way.dir == Direction::ServerToClient;
    // Less than a buffer before the source drained: not bulk, copy again.
    let quiet = way.buf_size.max(1);
    let Some(permit) = PipePermit::take() else {
        return Ok(Burst::NoPipe);
    };
    let Ok(mut pipe) = Pipe::take() else {
        return Ok(Burst::NoPipe);
    };
    let (from, to) = (src.get().as_raw_fd(), dst.get().as_raw_fd());
    let mut moved = 0;
    let mut reads = 0;
    let burst = loop {
        if tap.sniffing() {
            break Burst::Switch;
        }
        if reads >= BURST_READS || moved >= BURST_BYTES {
            break Burst::Yield;
        }
        // The pipe is empty here, so `WouldBlock` means the socket has nothing to read.
        let n = match src.try_read_io(|_| pipe.fill(from, usize::MAX >> 1)) {
            Ok(0) => break Burst::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && moved < quiet => break Burst::Quiet,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Burst::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        reads += 1;
        moved += n;
        tap.received(now(), n);
        while pipe.pending() > 0 {
            match dst.try_write_io(|_| pipe.drain(to)) {
                Ok(m) => tap.spliced_to(now(), m, to_client),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The pipe still holds bytes: it is closed on drop, not pooled.
                Err(e) => return Err(e),
            }
        }
    };
    pipe.give_back();
    drop(permit);
    Ok(burst)
}

/// No `splice(2)` here: always copy.
#[cfg(not(target_os = "linux"))]
async fn splice_burst<T: Socket>(_way: &Way<'_, T>) -> io::Result<Burst> {
    Ok(Burst::NoPipe)
}

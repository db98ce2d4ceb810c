//! Where access-log and credentials-log lines go.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Receives the access-log (`A`) and credentials-log (`P`) lines of PROTOCOL.md, already
/// formatted by `socks5d_core::logfmt`, without their trailing newline.
///
/// Implementations must not block: they are called from the connection tasks, on the
/// runtime's workers. The default, [`StdoutSink`], hands each line to a writer thread.
pub trait LogSink: Send + Sync + 'static {
    /// One access-log line (one per SOCKS request).
    fn access(&self, line: &str);
    /// One credentials-log line (one per credential seen).
    fn credential(&self, line: &str);
}

impl std::fmt::Debug for dyn LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

/// Lines the queue of a [`StdoutSink`] holds before it drops new ones.
pub const LOG_QUEUE: usize = 8192;

/// How long the writer gathers lines after the first one of a burst before it writes them: a
/// busy server pays one wake-up and one `write` per this period, not per line.
pub const LOG_BATCH: Duration = Duration::from_millis(5);

/// Writes lines to standard output from a thread of its own, through a bounded queue: a
/// connection task only appends to the queue under a short lock (never blocks on a slow or
/// stuck stdout, never makes a system call unless the writer is asleep). When the queue is
/// full — stdout is a pipe nobody reads, or a terminal that is paused — new lines are dropped
/// and counted ([`StdoutSink::dropped`]); the writer reports the count on stderr (through
/// `tracing`) once it can write again. Each line is written whole, with its newline, so lines
/// from concurrent connections never interleave; lines reach stdout within [`LOG_BATCH`].
#[derive(Debug, Clone)]
pub struct StdoutSink {
    shared: Arc<Queue>,
}

#[derive(Debug)]
struct Queue {
    lines: Mutex<Pending>,
    wake: Condvar,
    capacity: usize,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    buf: String,
    count: usize,
    /// The writer is waiting for a first line (it must be woken).
    idle: bool,
    /// Every sink handle is gone: the writer writes what is left and ends.
    closed: bool,
    /// The writer has written everything and ended.
    finished: bool,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new(io::stdout(), LOG_QUEUE)
    }
}

impl Drop for StdoutSink {
    fn drop(&mut self) {
        // The writer holds one reference; the last handle tells it to finish.
        if Arc::strong_count(&self.shared) == 2 {
            lock(&self.shared.lines).closed = true;
            self.shared.wake.notify_all();
            // Wait (a moment, not forever: stdout may be stuck) for what is queued to be
            // written, as the process may exit right after.
            let until = std::time::Instant::now() + Duration::from_secs(1);
            let mut p = lock(&self.shared.lines);
            while !p.finished {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                p = self
                    .shared
                    .wake
                    .wait_timeout(p, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StdoutSink {
    /// Starts a writer thread that writes to `out`, with a queue of `capacity` lines.
    ///
    /// # Panics
    ///
    /// If the thread cannot be spawned (the process is out of resources at start-up).
    pub fn new(out: impl Write + Send + 'static, capacity: usize) -> Self {
        let shared = Arc::new(Queue {
            lines: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        });
        let q = shared.clone();
        std::thread::Builder::new()
            .name("socks5d-log".into())
            .spawn(move || writer(&q, out))
            .expect("spawn the log writer thread");
        Self { shared }
    }

    /// Returns how many lines were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn line(&self, line: &str) {
        let q = &self.shared;
        let mut p = lock(&q.lines);
        if p.count >= q.capacity {
            drop(p);
            q.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.buf.push_str(line);
        p.buf.push('\n');
        p.count += 1;
        if p.idle {
            p.idle = false;
            drop(p);
            q.wake.notify_one();
        }
    }
}

/// The writer thread: waits for a first line, gathers for [`LOG_BATCH`], writes the batch.
fn writer(q: &Queue, out: impl Write) {
    let mut out = out;
    let mut reported = 0;
    let mut batch = String::new();
    loop {
        {
            let mut p = lock(&q.lines);
            while p.count == 0 && !p.closed {
                p.idle = true;
                p = q
                    .wake
                    .wait(p)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if p.count == 0 && p.closed {
                p.finished = true;
                q.wake.notify_all();
                return;
            }
        }
        std::thread::sleep(LOG_BATCH);
        {
            let mut p = lock(&q.lines);
            std::mem::swap(&mut batch, &mut p.buf);
            p.count = 0;
        }
        // The queue is free again while the (possibly blocking) write runs.
        let _ = out.write_all(batch.as_bytes());
        let _ = out.flush();
        batch.clear();
        let now = q.dropped.load(Ordering::Relaxed);
        if now > reported {
            tracing::warn!(
                dropped = now - reported,
                total = now,
                "log lines dropped: standard output did not keep up"
            );
            reported = now;
        }
    }
}

impl LogSink for StdoutSink {
    fn access(&self, line: &str) {
        self.line(line);
    }

    fn credential(&self, line: &str) {
        self.line(line);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    /// A writer that blocks until released, like a pipe nobody reads; it says when it first
    /// blocks.
    struct Stuck {
        gate: Arc<Mutex<()>>,
        entered: mpsc::Sender<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let _held = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_writer_never_blocks_the_caller_and_drops_are_counted() {
        let gate = Arc::new(Mutex::new(()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = mpsc::channel();
        let held = gate.lock().unwrap();
        let out = Stuck {
            gate: gate.clone(),
            entered: entered_tx,
            written: written.clone(),
        };
        let sink = StdoutSink::new(out, 4);
        sink.access("first");
        entered
            .recv_timeout(Duration::from_secs(5))
            .expect("the writer blocks on the first line");
        // The writer is stuck: 4 lines fit in the queue, the other 96 are dropped at once.
        for i in 0..100 {
            sink.access(&format!("line {i}"));
        }
        assert_eq!(sink.dropped(), 96);
        drop(held);
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
            if text == "first\nline 0\nline 1\nline 2\nline 3\n" {
                break;
            }
            assert!(Instant::now() < until, "written so far: {text:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

//! Where access-log and credentials-log lines go.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;

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

/// Writes lines to standard output from a thread of its own, through a bounded queue: a
/// connection task only enqueues (never blocks on a slow or stuck stdout). When the queue is
/// full — stdout is a pipe nobody reads, or a terminal that is paused — new lines are dropped
/// and counted ([`StdoutSink::dropped`]); the writer reports the count on stderr (through
/// `tracing`) once it can write again. Each line is written whole, with its newline, so lines
/// from concurrent connections never interleave.
#[derive(Debug, Clone)]
pub struct StdoutSink {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new(io::stdout(), LOG_QUEUE)
    }
}

impl StdoutSink {
    /// Starts a writer thread that writes to `out`, with a queue of `capacity` lines.
    ///
    /// # Panics
    ///
    /// If the thread cannot be spawned (the process is out of resources at start-up).
    pub fn new(out: impl Write + Send + 'static, capacity: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<String>(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let seen = dropped.clone();
        std::thread::Builder::new()
            .name("socks5d-log".into())
            .spawn(move || {
                let mut out = io::BufWriter::with_capacity(64 * 1024, out);
                let mut reported = 0;
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Write what is queued in one go, then flush: a burst becomes few writes.
                    while let Ok(line) = rx.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                    let now = seen.load(Ordering::Relaxed);
                    if now > reported {
                        tracing::warn!(
                            dropped = now - reported,
                            total = now,
                            "log lines dropped: standard output did not keep up"
                        );
                        reported = now;
                    }
                }
            })
            .expect("spawn the log writer thread");
        Self { tx, dropped }
    }

    /// Returns how many lines were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn line(&self, line: &str) {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        match self.tx.try_send(buf) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
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
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

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

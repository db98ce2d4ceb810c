//! Where access-log and credentials-log lines go.

use std::io::Write;

/// Receives the access-log (`A`) and credentials-log (`P`) lines of PROTOCOL.md, already
/// formatted by `socks5d_core::logfmt`, without their trailing newline.
///
/// Implementations must be cheap or hand the line off: they are called from the connection
/// tasks. The default, [`StdoutSink`], writes each line to standard output.
pub trait LogSink: Send + Sync + 'static {
    /// One access-log line (one per SOCKS request).
    fn access(&self, line: &str);
    /// One credentials-log line (one per credential seen).
    fn credential(&self, line: &str);
}

/// Writes each line, with its newline, to standard output in one `write` call, so that lines
/// from concurrent connections never interleave.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutSink;

impl StdoutSink {
    fn line(line: &str) {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // The lock makes the write whole even if the OS splits it; a log line that cannot be
        // written (stdout closed) is dropped rather than taking the proxy down.
        let _ = std::io::stdout().lock().write_all(&buf);
    }
}

impl LogSink for StdoutSink {
    fn access(&self, line: &str) {
        Self::line(line);
    }

    fn credential(&self, line: &str) {
        Self::line(line);
    }
}

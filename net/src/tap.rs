//! What a relay does with each chunk it moves, whatever the runtime.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socks5d_core::logfmt;
use socks5d_core::sniff::Sniffer;
use socks5d_core::socks5::{ReplyCode, TargetAddr};
use socks5d_core::state::Connection;

use crate::LogSink;

/// Returns the time since the Unix epoch, for log lines (zero if the clock is before 1970).
pub fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Returns the reply code for a failed name resolution: the name did not resolve, so the
/// host is unreachable (RFC 1928 `0x04`), whatever the resolver's error was.
pub fn resolve_error_code(_e: &io::Error) -> ReplyCode {
    ReplyCode::HostUnreachable
}

/// The per-connection bookkeeping of a relay, shared by its two directions: counts bytes on
/// the [`Connection`], feeds the credential [`Sniffer`] while sniffing is on (checked per
/// chunk) and it has not given up, and writes credential lines to the [`LogSink`].
///
/// The transport calls [`Tap::from_client`] / [`Tap::from_server`] after each read and
/// [`Tap::wrote`] after each write. Nothing here blocks beyond a short lock.
#[derive(Debug)]
pub struct Tap<'a> {
    conn: &'a Connection,
    target: TargetAddr,
    sniffer: Mutex<Option<Sniffer>>,
    log: Arc<dyn LogSink>,
}

impl std::fmt::Debug for dyn LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl<'a> Tap<'a> {
    /// Creates the tap of a relay between `conn`'s client and `target`.
    pub fn new(conn: &'a Connection, target: TargetAddr, log: Arc<dyn LogSink>) -> Self {
        let sniffer = Sniffer::new(target.port());
        Self {
            conn,
            target,
            sniffer: Mutex::new(Some(sniffer)),
            log,
        }
    }

    /// Bytes read from the client (on their way to the destination).
    pub fn from_client(&self, now: Instant, data: &[u8]) {
        self.conn.record_received(now, data.len());
        self.sniff(data, Sniffer::on_client);
    }

    /// Client bytes that were read (and counted) during the handshake and are now forwarded
    /// to the destination (the handshake's `leftover`): sniffed, not counted again.
    pub fn client_leftover(&self, data: &[u8]) {
        self.sniff(data, Sniffer::on_client);
    }

    /// Bytes read from the destination (on their way to the client).
    pub fn from_server(&self, now: Instant, data: &[u8]) {
        self.conn.record_received(now, data.len());
        self.sniff(data, Sniffer::on_server);
    }

    /// `n` bytes written to either side.
    pub fn wrote(&self, now: Instant, n: usize) {
        self.conn.record_sent(now, n);
    }

    fn sniff(&self, data: &[u8], feed: fn(&mut Sniffer, &[u8])) {
        if data.is_empty() || !self.conn.state().settings().sniffing() {
            return;
        }
        let mut slot = self.sniffer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(sniffer) = slot.as_mut() else { return };
        feed(sniffer, data);
        while let Some(c) = sniffer.poll_credential() {
            let user = self.conn.user().map(|u| &u[..]);
            self.log.credential(&logfmt::credential_line(
                unix_time(),
                user,
                &self.target,
                &c,
            ));
        }
        if sniffer.is_done() {
            // Free its buffers; the relay goes on without it.
            *slot = None;
        }
    }
}

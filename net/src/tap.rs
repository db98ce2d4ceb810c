//! What a relay does with each chunk it moves, whatever the runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socks5d_core::logfmt;
use socks5d_core::sniff::Sniffer;
use socks5d_core::socks5::TargetAddr;
use socks5d_core::state::Connection;

use crate::metrics::{Direction, Metrics};
use crate::LogSink;

/// Returns the time since the Unix epoch, for log lines (zero if the clock is before 1970).
pub fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
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
    /// Boxed: freed when the sniffer gives up, so a relay past that point holds none of it.
    sniffer: Mutex<Option<Box<Sniffer>>>,
    /// Set once the sniffer gave up (and was dropped): no byte is of interest any more.
    sniffer_done: AtomicBool,
    /// Bytes moved while sniffing was off: the sniffer must start over before it sees more.
    stale: AtomicBool,
    log: Arc<dyn LogSink>,
    metrics: Option<Arc<Metrics>>,
}

impl<'a> Tap<'a> {
    /// Creates the tap of a relay between `conn`'s client and `target`.
    pub fn new(conn: &'a Connection, target: TargetAddr, log: Arc<dyn LogSink>) -> Self {
        let sniffer = Sniffer::new(target.port());
        Self {
            conn,
            target,
            sniffer: Mutex::new(Some(Box::new(sniffer))),
            sniffer_done: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            log,
            metrics: None,
        }
    }

    /// One direction reached its end of stream and passed it on: the connection is
    /// half-closed, and closed by the housekeeping once it goes silent for the half-close
    /// timeout (`State::sweep_half_closed`).
    pub fn set_half_closed(&self) {
        self.conn.set_half_closed();
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

    /// `n` bytes read from either side and moved without being looked at (the relay's
    /// `splice` path, used only while [`Tap::sniffing`] is false): counted, not sniffed.
    pub fn received(&self, now: Instant, n: usize) {
        self.conn.record_received(now, n);
        // Sniffing is off and these bytes pass unseen: see `sniff`.
        self.stale.store(true, Ordering::Release);
    }

    /// Returns whether the sniffer wants to see the bytes: sniffing is on (read anew on each
    /// call, so an administrator's change applies from the next chunk) and the sniffer has
    /// not given up. While this is true, the relay must pass every chunk through
    /// [`Tap::from_client`] / [`Tap::from_server`]. Bytes moved while sniffing is off make
    /// the sniffer start over when it is on again (its view would be stale).
    pub fn sniffing(&self) -> bool {
        self.conn.state().settings().sniffing() && !self.sniffer_done.load(Ordering::Acquire)
    }

    /// `n` bytes written to either side.
    pub fn wrote(&self, now: Instant, n: usize) {
        self.conn.record_sent(now, n);
    }

    /// `n` bytes written to the client (`to_client`) or to the destination: as
    /// [`Tap::wrote`], and counted by direction in the metrics.
    pub fn wrote_to(&self, now: Instant, n: usize, to_client: bool) {
        self.wrote(now, n);
        if let Some(m) = &self.metrics {
            m.bytes(Direction::of(to_client), n as u64);
        }
    }

    /// `n` bytes written by `splice(2)`: as [`Tap::wrote_to`], and counted as spliced in the
    /// metrics.
    pub fn spliced_to(&self, now: Instant, n: usize, to_client: bool) {
        self.wrote_to(now, n, to_client);
        if let Some(m) = &self.metrics {
            m.spliced(Direction::of(to_client), n as u64);
        }
    }

    /// Counts into `metrics` too.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    fn sniff(&self, data: &[u8], feed: fn(&mut Sniffer, &[u8])) {
        if data.is_empty() || self.sniffer_done.load(Ordering::Acquire) {
            return;
        }
        if !self.conn.state().settings().sniffing() {
            // Bytes pass unseen while sniffing is off, so the sniffer's view of the
            // conversation is stale from here on (a request it saw may be answered now, a
            // credential refused while it was off would be taken for the next answer's).
            self.stale.store(true, Ordering::Release);
            return;
        }
        let mut slot = self.sniffer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.stale.swap(false, Ordering::AcqRel) && slot.is_some() {
            // Start over: a fresh sniffer detects the protocol again from the next bytes
            // (a request line at a keep-alive boundary), or gives up on what it cannot place.
            *slot = Some(Box::new(Sniffer::new(self.target.port())));
        }
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
            self.sniffer_done.store(true, Ordering::Release);
        }
    }
}

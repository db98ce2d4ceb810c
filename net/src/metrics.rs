//! Prometheus metrics (`--metrics ADDR`, off by default): what the drivers count
//! ([`Metrics`]), the admin protocol's counters read from the [`State`] at scrape time, and a
//! minimal HTTP/1.1 server for `GET /metrics` ([`serve_metrics`]) over any [`Runtime`].
//!
//! # Names
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `socks5d_historic_connections_total` | counter | | admin query 0x01: every SOCKS client connection accepted |
//! | `socks5d_current_connections` | gauge | | 0x02: SOCKS client connections open now |
//! | `socks5d_max_concurrent_connections` | gauge | | 0x03: most open at once |
//! | `socks5d_bytes_sent_total` | counter | | 0x04: bytes written to SOCKS clients and destinations |
//! | `socks5d_bytes_received_total` | counter | | 0x05: bytes read from SOCKS clients and destinations |
//! | `socks5d_users_connected` | gauge | | 0x06: distinct users with an open SOCKS connection |
//! | `socks5d_connections_opened_total` | counter | `command` | requests that succeeded and started relaying ([`Metrics::connection_opened`]) |
//! | `socks5d_replies_total` | counter | `command`, `code` | SOCKS5 replies sent ([`Metrics::replied`]) |
//! | `socks5d_handshake_duration_seconds` | histogram | | accept to reply ([`Metrics::handshake_latency`]) |
//! | `socks5d_relayed_bytes_total` | counter | `direction` | bytes relayed ([`Metrics::bytes`]) |
//! | `socks5d_relayed_spliced_bytes_total` | counter | `direction` | of those, bytes moved by `splice(2)` instead of copied ([`Metrics::spliced`]) |
//! | `socks5d_rule_denials_total` | counter | | requests an access rule denied ([`Metrics::rule_denied`]) |
//! | `socks5d_limit_hits_total` | counter | `kind` | connections or requests a limit refused ([`Metrics::limit_hit`]) |
//! | `socks5d_config_reloads_total` | counter | `result` | configuration reloads ([`Metrics::reload`]) |
//! | `socks5d_config_last_reload_successful` | gauge | | 1 if the last reload (or the start) succeeded |
//! | `socks5d_log_lines_dropped_total` | counter | | access/credential log lines dropped ([`Metrics::log_lines_dropped`]) |
//! | `socks5d_dns_cache_lookups_total` | counter | `result` | names to resolve, by where the answer came from ([`Metrics::dns_lookup`]) |
//!
//! Labels have a small fixed set of values, every one of them exported from the start (at
//! zero), so a series never appears out of nowhere. User names are never labels (the number
//! of series would grow with the users); per-user numbers stay with the admin protocol.
//!
//! # The HTTP server
//!
//! One request per connection (`Connection: close`), read within [`READ_TIMEOUT`] and at most
//! [`MAX_REQUEST`] bytes, parsed by `httparse`. `GET` or `HEAD` `/metrics` answers 200 in the
//! Prometheus text format 0.0.4, or in OpenMetrics 1.0 when the scraper's `Accept` asks for
//! `application/openmetrics-text` (as Prometheus does); another path 404, another method 405,
//! a malformed request 400, one too large 431, a slow one is closed. At most
//! [`MAX_CONNECTIONS`] are served at once (more wait in the kernel's backlog).

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use socks5d_core::socks5::{Command, ReplyCode};
use socks5d_core::state::{Counters, State};

use crate::io as sio;
use crate::runtime::{race, Raced, Runtime};
use crate::server::Listener;

/// Longest request accepted (request line and headers), in bytes.
pub const MAX_REQUEST: usize = 8192;
/// How long a connection may take to send its request, from the accept.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most scrape connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Most headers parsed in a request.
const MAX_HEADERS: usize = 32;

/// Bounds of `socks5d_handshake_duration_seconds`, in seconds: 1 ms to the 10 s handshake
/// deadline.
const HANDSHAKE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which way relayed bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to its destination (label `upload`).
    Upload,
    /// From the destination to the client (label `download`).
    Download,
}

impl Direction {
    const ALL: [Self; 2] = [Self::Upload, Self::Download];

    /// `Download` for bytes written to the client, `Upload` for bytes written to the
    /// destination.
    #[must_use]
    pub fn of(to_client: bool) -> Self {
        if to_client {
            Self::Download
        } else {
            Self::Upload
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Download => "download",
        }
    }
}

/// Where the answer to a name lookup came from (label `result` of
/// `socks5d_dns_cache_lookups_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsLookup {
    /// A fresh answer in the cache (`hit`).
    Hit,
    /// A fresh failure (or answer with no address) in the cache: answered as a failure
    /// without asking (`negative_hit`).
    NegativeHit,
    /// Not in the cache, or the cache is off: the resolver was asked (`miss`).
    Miss,
}

impl DnsLookup {
    const ALL: [Self; 3] = [Self::Hit, Self::NegativeHit, Self::Miss];

    fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::NegativeHit => "negative_hit",
            Self::Miss => "miss",
        }
    }
}

/// Which limit refused a connection or request (label `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// The server-wide maximum of SOCKS connections (`connections`).
    Connections,
    /// The server-wide maximum of handshakes in progress (`handshakes`).
    Handshakes,
    /// A user's maximum of concurrent connections (`user_connections`).
    UserConnections,
    /// A user's bandwidth: a relay waited for the user's token bucket (`user_bandwidth`).
    UserBandwidth,
    /// A client address's maximum of concurrent connections (`client_connections`).
    ClientConnections,
    /// A client address's maximum of new connections per second (`client_rate`).
    ClientRate,
    /// The back-off after failed logins (`login_throttle`).
    LoginThrottle,
    /// The maximum of admin sessions (`admin_sessions`).
    AdminSessions,
}

impl LimitKind {
    const ALL: [Self; 8] = [
        Self::Connections,
        Self::Handshakes,
        Self::UserConnections,
        Self::UserBandwidth,
        Self::ClientConnections,
        Self::ClientRate,
        Self::LoginThrottle,
        Self::AdminSessions,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::Handshakes => "handshakes",
            Self::UserConnections => "user_connections",
            Self::UserBandwidth => "user_bandwidth",
            Self::ClientConnections => "client_connections",
            Self::ClientRate => "client_rate",
            Self::LoginThrottle => "login_throttle",
            Self::AdminSessions => "admin_sessions",
        }
    }
}

/// Label `command`: `connect`, `bind`, `udp_associate`, or `unknown` (an unassigned CMD byte).
fn command_label(c: Option<Command>) -> &'static str {
    match c {
        Some(Command::Connect) => "connect",
        Some(Command::Bind) => "bind",
        Some(Command::UdpAssociate) => "udp_associate",
        None => "unknown",
    }
}

/// The `command` label values, in [`command_index`] order.
const COMMANDS: [Option<Command>; 4] = [
    Some(Command::Connect),
    Some(Command::Bind),
    Some(Command::UdpAssociate),
    None,
];

/// Label `code`: the RFC 1928 §6 reply, in words.
fn code_label(c: ReplyCode) -> &'static str {
    match c {
        ReplyCode::Succeeded => "succeeded",
        ReplyCode::GeneralFailure => "general_failure",
        ReplyCode::NotAllowed => "not_allowed",
        ReplyCode::NetworkUnreachable => "network_unreachable",
        ReplyCode::HostUnreachable => "host_unreachable",
        ReplyCode::ConnectionRefused => "connection_refused",
        ReplyCode::TtlExpired => "ttl_expired",
        ReplyCode::CommandNotSupported => "command_not_supported",
        ReplyCode::AddressTypeNotSupported => "address_type_not_supported",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReplyLabels {
    command: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The admin protocol's counters at the moment of a scrape: [`Metrics::render`] stores a
/// snapshot of the state here, then encodes the registry, which calls this collector.
#[derive(Debug, Default)]
struct AdminCounters(Arc<Mutex<Counters>>);

impl Collector for AdminCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counters = [
            (
                "socks5d_historic_connections",
                "SOCKS client connections accepted (admin query 0x01)",
                c.historic,
            ),
            (
                "socks5d_bytes_sent",
                "Bytes written to SOCKS clients and destinations (admin query 0x04)",
                c.bytes_sent,
            ),
            (
                "socks5d_bytes_received",
                "Bytes read from SOCKS clients and destinations (admin query 0x05)",
                c.bytes_received,
            ),
        ];
        for (name, help, v) in counters {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
        }
        let gauges = [
            (
                "socks5d_current_connections",
                "SOCKS client connections open now (admin query 0x02)",
                c.current,
            ),
            (
                "socks5d_max_concurrent_connections",
                "Most SOCKS client connections open at once (admin query 0x03)",
                c.max_concurrent,
            ),
            (
                "socks5d_users_connected",
                "Distinct users with an open SOCKS connection (admin query 0x06)",
                c.users_connected,
            ),
        ];
        for (name, help, v) in gauges {
            // Gauges are signed; these counts never come near i64::MAX.
            let m = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
        }
        Ok(())
    }
}

/// The server's Prometheus metrics. Share it as `Arc<Metrics>`; every counting method takes
/// `&self` and is one atomic operation (handles on every labelled series are taken up front).
///
/// The drivers call (see each method for where):
/// [`connection_opened`](Self::connection_opened), [`replied`](Self::replied),
/// [`handshake_latency`](Self::handshake_latency), [`bytes`](Self::bytes),
/// [`rule_denied`](Self::rule_denied), [`limit_hit`](Self::limit_hit),
/// [`reload`](Self::reload), [`log_lines_dropped`](Self::log_lines_dropped),
/// [`dns_lookup`](Self::dns_lookup).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    admin: Arc<Mutex<Counters>>,
    /// Held while one scrape stores its snapshot and encodes it.
    render: Mutex<()>,
    // Handles on every series of the families, so that counting is one atomic add.
    /// By [`command_index`].
    opened: [Counter; 4],
    /// By [`command_index`], then the reply code.
    replies: [[Counter; 9]; 4],
    handshake: Histogram,
    /// By `Direction as usize`.
    relayed: [Counter; 2],
    /// By `Direction as usize`.
    spliced: [Counter; 2],
    rule_denials: Counter,
    /// By `LimitKind as usize`.
    limit_hits: [Counter; LimitKind::ALL.len()],
    /// Ok, error.
    reloads: [Counter; 2],
    last_reload_ok: Gauge,
    log_dropped: Counter,
    /// By `DnsLookup as usize`.
    dns_lookups: [Counter; DnsLookup::ALL.len()],
}

/// Index of a command in [`COMMANDS`].
fn command_index(c: Option<Command>) -> usize {
    match c {
        Some(Command::Connect) => 0,
        Some(Command::Bind) => 1,
        Some(Command::UdpAssociate) => 2,
        None => 3,
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The two text formats a scrape can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Prometheus,
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    /// Returns the `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Chooses the format for a request's `Accept` header: OpenMetrics when it names
    /// `application/openmetrics-text` (with a non-zero `q`), otherwise Prometheus text.
    pub fn negotiate(accept: Option<&[u8]>) -> Self {
        let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
            return Self::Prometheus;
        };
        let wants = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        });
        if wants {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }
}

impl Metrics {
    /// Creates the metrics, every label set at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let admin = Arc::new(Mutex::new(Counters::default()));
        registry.register_collector(Box::new(AdminCounters(admin.clone())));

        let opened = Family::<CommandLabels, Counter>::default();
        let replies = Family::<ReplyLabels, Counter>::default();
        let relayed = Family::<DirectionLabels, Counter>::default();
        let spliced = Family::<DirectionLabels, Counter>::default();
        let limits = Family::<KindLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let dns_lookups = Family::<ResultLabels, Counter>::default();
        let handshake = Histogram::new(HANDSHAKE_BUCKETS);
        let rule_denials = Counter::default();
        let last_reload_ok = Gauge::default();
        let log_dropped = Counter::default();
        // The configuration in force at start-up loaded.
        last_reload_ok.set(1);

        let mut m = Self {
            opened: COMMANDS.map(|c| {
                opened.get_or_create_owned(&CommandLabels {
                    command: command_label(c),
                })
            }),
            replies: COMMANDS.map(|c| {
                std::array::from_fn(|code| {
                    let code = u8::try_from(code)
                        .ok()
                        .and_then(ReplyCode::from_u8)
                        .expect("codes 0 to 8 are assigned");
                    replies.get_or_create_owned(&ReplyLabels {
                        command: command_label(c),
                        code: code_label(code),
                    })
                })
            }),
            relayed: Direction::ALL.map(|d| {
                relayed.get_or_create_owned(&DirectionLabels {
                    direction: d.label(),
                })
            }),
            spliced: Direction::ALL.map(|d| {
                spliced.get_or_create_owned(&DirectionLabels {
                    direction: d.label(),
                })
            }),
            limit_hits: LimitKind::ALL
                .map(|k| limits.get_or_create_owned(&KindLabels { kind: k.label() })),
            reloads: ["ok", "error"]
                .map(|result| reloads.get_or_create_owned(&ResultLabels { result })),
            dns_lookups: DnsLookup::ALL
                .map(|d| dns_lookups.get_or_create_owned(&ResultLabels { result: d.label() })),
            handshake: handshake.clone(),
            rule_denials: rule_denials.clone(),
            last_reload_ok: last_reload_ok.clone(),
            log_dropped: log_dropped.clone(),
            registry,
            admin,
            render: Mutex::new(()),
        };
        let r = &mut m.registry;
        r.register(
            "socks5d_connections_opened",
            "SOCKS requests that succeeded and started relaying, by command",
            opened,
        );
        r.register(
            "socks5d_replies",
            "SOCKS5 replies sent, by command and reply code",
            replies,
        );
        r.register(
            "socks5d_handshake_duration_seconds",
            "Time from accepting a SOCKS connection to sending its reply",
            handshake,
        );
        r.register(
            "socks5d_relayed_bytes",
            "Bytes relayed, by direction (upload: client to destination)",
            relayed,
        );
        r.register(
            "socks5d_relayed_spliced_bytes",
            "Of the bytes relayed, those moved by splice(2) instead of copied, by direction",
            spliced,
        );
        r.register(
            "socks5d_rule_denials",
            "SOCKS requests denied by an access rule",
            rule_denials,
        );
        r.register(
            "socks5d_limit_hits",
            "Connections or requests refused (or delayed) by a limit, by limit",
            limits,
        );
        r.register(
            "socks5d_config_reloads",
            "Configuration reloads, by result",
            reloads,
        );
        r.register(
            "socks5d_config_last_reload_successful",
            "1 if the last configuration reload (or the start) succeeded, else 0",
            last_reload_ok,
        );
        r.register(
            "socks5d_log_lines_dropped",
            "Access and credential log lines dropped because the output did not keep up",
            log_dropped,
        );
        r.register(
            "socks5d_dns_cache_lookups",
            "Host names to resolve, by result: hit and negative_hit answered from the cache, miss asked the resolver",
            dns_lookups,
        );
        m
    }

    /// Counts a request that succeeded and starts relaying: call it on
    /// `socks5::Event::Established` (CONNECT, BIND) and `socks5::Event::Associated` (UDP
    /// ASSOCIATE), with the request's command.
    pub fn connection_opened(&self, command: Command) {
        self.opened[command_index(Some(command))].inc();
    }

    /// Counts a reply: call it on `socks5::Event::Replied` with the request's command (`None`
    /// for an unassigned CMD byte) and the code sent.
    pub fn replied(&self, command: Option<Command>, code: ReplyCode) {
        self.replies[command_index(command)][usize::from(code as u8)].inc();
    }

    /// Records how long a handshake took, from the accept to `socks5::Event::Replied` (for
    /// BIND, the first reply).
    pub fn handshake_latency(&self, took: Duration) {
        self.handshake.observe(took.as_secs_f64());
    }

    /// Counts `n` bytes relayed in `direction`: call it where the relay counts bytes on the
    /// connection (`Tap`, beside `record_sent` / `record_received`), once per chunk moved.
    pub fn bytes(&self, direction: Direction, n: u64) {
        self.relayed[direction as usize].inc_by(n);
    }

    /// Counts `n` of the bytes relayed in `direction` (counted by [`Metrics::bytes`] too) as
    /// moved by `splice(2)`: call it beside `bytes` in the relay's splice path.
    pub fn spliced(&self, direction: Direction, n: u64) {
        self.spliced[direction as usize].inc_by(n);
    }

    /// Counts a request (or client) an access rule denied: call it where the `02` reply or
    /// the close for a denied client is decided.
    pub fn rule_denied(&self) {
        self.rule_denials.inc();
    }

    /// Counts a connection or request that `kind` refused or delayed.
    pub fn limit_hit(&self, kind: LimitKind) {
        self.limit_hits[kind as usize].inc();
    }

    /// Counts a configuration reload and its result (`ok`: validated and applied).
    pub fn reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
        self.last_reload_ok.set(i64::from(ok));
    }

    /// Counts `n` log lines dropped (for example the increase of `StdoutSink::dropped` since
    /// the last call).
    pub fn log_lines_dropped(&self, n: u64) {
        self.log_dropped.inc_by(n);
    }

    /// Counts a name to resolve and where its answer came from: call it where the cache is
    /// looked up (`Shared::resolve`), once per name.
    pub fn dns_lookup(&self, result: DnsLookup) {
        self.dns_lookups[result as usize].inc();
    }

    /// Returns the exposition of every metric in `format`, with the admin counters of
    /// `state` as they are now.
    pub fn render(&self, state: &State, format: Format) -> String {
        let _one_at_a_time = self
            .render
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *self
            .admin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state.counters();
        let mut out = String::with_capacity(8192);
        let r = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        // Writing to a String never fails; the encoders fail only on a writer's error.
        debug_assert!(r.is_ok(), "{r:?}");
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes, then waits up to
/// [`READ_TIMEOUT`] for the scrapes in progress (see [the module docs](self#the-http-server)).
pub async fn serve_metrics<R: Runtime>(
    rt: &R,
    listener: Listener<R>,
    metrics: Arc<Metrics>,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(async_lock::Semaphore::new(MAX_CONNECTIONS));
    // Every task holds a sender; all dropped means all tasks ended.
    let (tasks, done) = async_channel::bounded::<()>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        let Raced::Io(permit) = race(rt, shutdown.as_mut(), None, limit.acquire_arc()).await else {
            break;
        };
        let (socket, peer) = match race(rt, shutdown.as_mut(), None, listener.accept()).await {
            Raced::Io(Ok(x)) => x,
            Raced::Io(Err(e)) => {
                tracing::debug!(error = %e, "metrics: accept failed");
                if let Some(pause) = crate::sys::accept_backoff(&e, "metrics") {
                    rt.sleep_until(rt.now() + pause).await;
                }
                continue;
            }
            _ => break,
        };
        let (rt2, metrics, state, token) =
            (rt.clone(), metrics.clone(), state.clone(), tasks.clone());
        rt.spawn(async move {
            let _permit = permit;
            let _token = token;
            let _ = socket.set_tcp_nodelay(true);
            match rt2.register(socket) {
                Ok(s) => serve_one(&rt2, s, &metrics, &state).await,
                Err(e) => tracing::debug!(%peer, error = %e, "metrics: cannot register"),
            }
        });
    }
    drop(listener);
    drop(tasks);
    let until = rt.now() + READ_TIMEOUT;
    let _ = race(rt, std::future::pending::<()>(), Some(until), done.recv()).await;
}

/// Reads one request, answers it and closes.
async fn serve_one<R: Runtime>(rt: &R, s: R::Socket, metrics: &Metrics, state: &State) {
    let deadline = rt.now() + READ_TIMEOUT;
    let mut buf = BytesMut::with_capacity(1024);
    let response = loop {
        let room = MAX_REQUEST + 1 - buf.len();
        match race(
            rt,
            std::future::pending::<()>(),
            Some(deadline),
            sio::read_buf(&s, &mut buf, room.min(4096)),
        )
        .await
        {
            Raced::Io(Ok(0)) | Raced::Io(Err(_)) | Raced::Deadline | Raced::Close(()) => return,
            Raced::Io(Ok(_)) => {}
        }
        if let Some(r) = answer(&buf, metrics, state) {
            break r;
        }
    };
    let write = sio::write_all(&s, &response);
    if let Raced::Io(Ok(())) = race(
        rt,
        std::future::pending::<()>(),
        Some(deadline + READ_TIMEOUT),
        write,
    )
    .await
    {
        sio::close_gracefully(rt, &s, rt.now() + sio::LINGER, std::future::pending::<()>()).await;
    }
}

/// Returns the response to the request in `buf`, `None` while it is incomplete.
fn answer(buf: &[u8], metrics: &Metrics, state: &State) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => None,
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST => {
            Some("431 Request Header Fields Too Large")
        }
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => Some("431 Request Header Fields Too Large"),
        Err(_) => Some("400 Bad Request"),
    };
    if let Some(status) = status {
        return Some(response(
            status,
            "text/plain; charset=utf-8",
            &[],
            status.as_bytes(),
            true,
        ));
    }
    let path = req.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let method = req.method.unwrap_or("");
    if path != "/metrics" {
        let body = b"socks5d: metrics are at /metrics\n";
        return Some(response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            &[],
            body,
            method != "HEAD",
        ));
    }
    if method != "GET" && method != "HEAD" {
        let extra: &[(&str, &str)] = &[("Allow", "GET, HEAD")];
        return Some(response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            extra,
            b"use GET\n",
            true,
        ));
    }
    let accept = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("accept"))
        .map(|h| h.value);
    let format = Format::negotiate(accept);
    let body = metrics.render(state, format);
    Some(response(
        "200 OK",
        format.content_type(),
        &[],
        body.as_bytes(),
        method == "GET",
    ))
}

/// Builds a `Connection: close` response; `with_body: false` (HEAD) sends the headers only.
fn response(
    status: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        use Format::*;
        assert_eq!(Format::negotiate(None), Prometheus);
        assert_eq!(Format::negotiate(Some(b"*/*")), Prometheus);
        // What Prometheus 2.x sends.
        let prom = b"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), OpenMetrics);
        assert_eq!(
            Format::negotiate(Some(b"application/openmetrics-text; q=0")),
            Prometheus
        );
        assert_eq!(Format::negotiate(Some(b"text/plain")), Prometheus);
    }

    #[test]
    fn requests_get_their_status() {
        let (m, s) = (
            Metrics::new(),
            State::new(std::time::Instant::now(), &Default::default()),
        );
        let status = |req: &[u8]| {
            answer(req, &m, &s).map(|r| {
                String::from_utf8_lossy(&r)
                    .lines()
                    .next()
                    .unwrap()
                    .to_owned()
            })
        };
        assert_eq!(
            status(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            None,
            "incomplete"
        );
        assert_eq!(
            status(b"GET /metrics HTTP/1.1\r\n\r\n").as_deref(),
            Some("HTTP/1.1 200 OK")
        );
        assert_eq!(
            status(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").as_deref(),
            Some("HTTP/1.1 200 OK")
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\n\r\n").as_deref(),
            Some("HTTP/1.1 404 Not Found")
        );
        assert_eq!(
            status(b"POST /metrics HTTP/1.1\r\n\r\n").as_deref(),
            Some("HTTP/1.1 405 Method Not Allowed")
        );
        assert_eq!(
            status(b"\x05\x01\x00").as_deref(),
            Some("HTTP/1.1 400 Bad Request")
        );
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST + 1, b'a');
        assert_eq!(
            status(&big).as_deref(),
            Some("HTTP/1.1 431 Request Header Fields Too Large")
        );
        let many: Vec<u8> = [
            &b"GET /metrics HTTP/1.1\r\n"[..],
            &b"X: y\r\n".repeat(MAX_HEADERS + 1),
            b"\r\n",
        ]
        .concat();
        assert_eq!(
            status(&many).as_deref(),
            Some("HTTP/1.1 431 Request Header Fields Too Large")
        );
        let head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", &m, &s).unwrap();
        assert!(head.ends_with(b"\r\n\r\n"), "HEAD has no body");
    }
}

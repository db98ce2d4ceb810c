//! `serve_metrics` on tokio: scraped with `curl`, parsed with `prometheus-parse`, checked
//! against the admin protocol's counters (read from the `State`, and over the admin protocol
//! itself after real SOCKS5 traffic) and against what the drivers counted.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_parse::{Scrape, Value};
use socks5d_core::admin::Dialect;
use socks5d_core::socks5::{Command as SocksCommand, ReplyCode};
use socks5d_core::state::{Config, ConnKind, Mutation, Outcome, Privilege, Secret, State};
use socks5d_net::metrics::{serve_metrics, Direction, LimitKind, Metrics, READ_TIMEOUT};
use socks5d_net::{AdminTransport, Listener, Listeners, ServerOptions, Shared};
use socks5d_tokio::Tokio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

fn state() -> Arc<State> {
    let s = Arc::new(State::new(Instant::now(), &Config::default()));
    for (name, pw, privilege) in [
        ("admin", "pw", Privilege::Admin),
        ("bob", "hunter2", Privilege::User),
    ] {
        let m = Mutation::AddUser {
            name: Bytes::from(name),
            password: Secret::from(pw),
            privilege,
        };
        assert_eq!(s.apply(None, &m), Outcome::Applied);
    }
    s
}

/// Starts `serve_metrics` on 127.0.0.1:0; dropping the sender shuts it down.
fn start_metrics(metrics: &Arc<Metrics>, state: &Arc<State>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = Listener::bind(&Tokio, (Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let (m, s) = (metrics.clone(), state.clone());
    tokio::spawn(async move {
        serve_metrics(&Tokio, listener, m, s, async {
            let _ = rx.await;
        })
        .await;
    });
    (addr, tx)
}

/// Runs `curl` (a real HTTP client) and returns its status line, headers and body.
async fn curl(url: String, args: &[&str]) -> (String, HashMap<String, String>, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .arg(&url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("curl must be installed (the scrape test needs a real HTTP client)");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Scrapes `/metrics` and parses it; returns every sample by name and label set.
async fn scrape(addr: SocketAddr) -> Parsed {
    let (status, headers, body) = curl(format!("http://{addr}/metrics"), &[]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(headers.get("content-length"), Some(&body.len().to_string()));
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    Parsed { scrape, body }
}

struct Parsed {
    scrape: Scrape,
    body: String,
}

impl Parsed {
    /// The value of the one sample named `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> &Value {
        let mut found =
            self.scrape.samples.iter().filter(|s| {
                s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
            });
        let s = found
            .next()
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.body));
        assert!(found.next().is_none(), "several {name} {labels:?}");
        &s.value
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(name, labels) {
            Value::Counter(v) => *v as u64,
            other => panic!("{name} is {other:?}, not a counter"),
        }
    }

    fn gauge(&self, name: &str) -> u64 {
        match self.value(name, &[]) {
            Value::Gauge(v) => *v as u64,
            other => panic!("{name} is {other:?}, not a gauge"),
        }
    }

    /// Every admin counter, in the order of the admin queries 0x01 to 0x06.
    fn admin_counters(&self) -> [u64; 6] {
        [
            self.counter("socks5d_historic_connections_total", &[]),
            self.gauge("socks5d_current_connections"),
            self.gauge("socks5d_max_concurrent_connections"),
            self.counter("socks5d_bytes_sent_total", &[]),
            self.counter("socks5d_bytes_received_total", &[]),
            self.gauge("socks5d_users_connected"),
        ]
    }
}

fn counters_of(state: &State) -> [u64; 6] {
    let c = state.counters();
    [
        c.historic,
        c.current,
        c.max_concurrent,
        c.bytes_sent,
        c.bytes_received,
        c.users_connected,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_agrees_with_the_state_and_the_drivers() {
    let state = state();
    let metrics = Arc::new(Metrics::new());
    let (addr, _stop) = start_metrics(&metrics, &state);

    // Before anything happened: every series exists, at zero.
    let p = scrape(addr).await;
    assert_eq!(p.admin_counters(), [0; 6]);
    let replies = p
        .scrape
        .samples
        .iter()
        .filter(|s| s.metric == "socks5d_replies_total");
    assert_eq!(
        replies.count(),
        4 * 9,
        "every command and code, from the start"
    );
    assert_eq!(
        p.counter("socks5d_limit_hits_total", &[("kind", "client_rate")]),
        0
    );
    assert_eq!(p.gauge("socks5d_config_last_reload_successful"), 1);

    // Move the admin protocol's counters: three connections (two of bob's), bytes both
    // ways, one closed again.
    let now = Instant::now();
    let a = state.open(ConnKind::Proxy, now);
    let b = state.open(ConnKind::Proxy, now);
    let c = state.open(ConnKind::Proxy, now);
    assert!(a.authenticate(b"bob", b"hunter2", Privilege::User));
    assert!(b.authenticate(b"bob", b"hunter2", Privilege::User));
    a.record_sent(now, 1000);
    b.record_sent(now, 234);
    c.record_received(now, 4321);
    drop(c);
    // What the drivers count.
    for _ in 0..3 {
        metrics.connection_opened(SocksCommand::Connect);
    }
    metrics.replied(Some(SocksCommand::Connect), ReplyCode::Succeeded);
    metrics.replied(Some(SocksCommand::Connect), ReplyCode::ConnectionRefused);
    metrics.replied(Some(SocksCommand::Connect), ReplyCode::ConnectionRefused);
    metrics.replied(None, ReplyCode::CommandNotSupported);
    metrics.handshake_latency(Duration::from_millis(3));
    metrics.handshake_latency(Duration::from_millis(40));
    metrics.handshake_latency(Duration::from_secs(20));
    metrics.bytes(Direction::Upload, 1000);
    metrics.bytes(Direction::Download, 77);
    metrics.bytes(Direction::Download, 23);
    metrics.rule_denied();
    metrics.limit_hit(LimitKind::UserConnections);
    metrics.limit_hit(LimitKind::UserConnections);
    metrics.reload(true);
    metrics.reload(false);
    metrics.log_lines_dropped(5);

    let p = scrape(addr).await;
    assert_eq!(p.admin_counters(), counters_of(&state));
    assert_eq!(p.admin_counters(), [3, 2, 3, 1234, 4321, 1]);
    assert_eq!(
        p.counter(
            "socks5d_connections_opened_total",
            &[("command", "connect")]
        ),
        3
    );
    assert_eq!(
        p.counter("socks5d_connections_opened_total", &[("command", "bind")]),
        0
    );
    let reply = |cmd, code| p.counter("socks5d_replies_total", &[("command", cmd), ("code", code)]);
    assert_eq!(reply("connect", "succeeded"), 1);
    assert_eq!(reply("connect", "connection_refused"), 2);
    assert_eq!(reply("unknown", "command_not_supported"), 1);
    assert_eq!(reply("bind", "succeeded"), 0);
    match p.value("socks5d_handshake_duration_seconds", &[]) {
        Value::Histogram(buckets) => {
            let le = |bound: f64| {
                buckets
                    .iter()
                    .find(|b| b.less_than == bound)
                    .unwrap_or_else(|| panic!("no bucket {bound}"))
                    .count
            };
            assert_eq!(le(0.001), 0.0);
            assert_eq!(le(0.005), 1.0);
            assert_eq!(le(0.05), 2.0);
            assert_eq!(le(10.0), 2.0);
            assert_eq!(le(f64::INFINITY), 3.0);
        }
        other => panic!("handshake histogram is {other:?}"),
    }
    assert!(
        p.body
            .contains("socks5d_handshake_duration_seconds_count 3\n"),
        "{}",
        p.body
    );
    assert_eq!(
        p.counter("socks5d_relayed_bytes_total", &[("direction", "upload")]),
        1000
    );
    assert_eq!(
        p.counter("socks5d_relayed_bytes_total", &[("direction", "download")]),
        100
    );
    assert_eq!(p.counter("socks5d_rule_denials_total", &[]), 1);
    assert_eq!(
        p.counter("socks5d_limit_hits_total", &[("kind", "user_connections")]),
        2
    );
    assert_eq!(
        p.counter("socks5d_limit_hits_total", &[("kind", "connections")]),
        0
    );
    assert_eq!(
        p.counter("socks5d_config_reloads_total", &[("result", "ok")]),
        1
    );
    assert_eq!(
        p.counter("socks5d_config_reloads_total", &[("result", "error")]),
        1
    );
    assert_eq!(p.gauge("socks5d_config_last_reload_successful"), 0);
    assert_eq!(p.counter("socks5d_log_lines_dropped_total", &[]), 5);
    // No user names as labels.
    assert!(!p.body.contains("bob"), "{}", p.body);

    // Closing the rest shows at the next scrape.
    drop((a, b));
    let p = scrape(addr).await;
    assert_eq!(p.admin_counters(), [3, 0, 3, 1234, 4321, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_edges() {
    let state = state();
    let metrics = Arc::new(Metrics::new());
    let (addr, stop) = start_metrics(&metrics, &state);

    let (status, _, body) = curl(format!("http://{addr}/"), &[]).await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(body.contains("/metrics"));
    let (status, headers, _) = curl(format!("http://{addr}/metrics"), &["-X", "POST"]).await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(headers.get("allow").map(String::as_str), Some("GET, HEAD"));
    let (status, headers, body) = curl(format!("http://{addr}/metrics"), &["-I"]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty(), "HEAD: headers only");
    assert_ne!(headers.get("content-length").map(String::as_str), Some("0"));
    // What Prometheus itself asks for.
    let accept =
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (status, headers, body) = curl(format!("http://{addr}/metrics"), &["-H", accept]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE socks5d_historic_connections counter\n"),
        "{body}"
    );

    // Not HTTP: 400; too large: 431.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x05\x01\x00\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    big.resize(20_000, b'a');
    let _ = s.write_all(&big).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(
        out.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // Shutdown stops the listener.
    drop(stop);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that connects and sends nothing is closed after `READ_TIMEOUT` (tokio's paused
/// clock: the wait takes no real time).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_silent_client_is_closed_at_the_read_deadline() {
    let state = state();
    let metrics = Arc::new(Metrics::new());
    let (addr, _stop) = start_metrics(&metrics, &state);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t0 = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(n, 0, "closed without an answer");
    let waited = t0.elapsed();
    assert!(waited >= READ_TIMEOUT, "closed after {waited:?}");
    assert!(
        waited < READ_TIMEOUT + Duration::from_secs(3),
        "closed after {waited:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// After real traffic: the scrape and the admin protocol give the same numbers
// ---------------------------------------------------------------------------------------------

/// Sends a draft-dialect counter query (`00 CMD`) and reads its value (PROTOCOL.md: 0x02
/// and 0x03 are 2 bytes, the others 8).
async fn admin_query(s: &mut TcpStream, cmd: u8) -> u64 {
    s.write_all(&[0x00, cmd]).await.unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head, [0x00, cmd]);
    if cmd == 0x02 || cmd == 0x03 {
        let mut v = [0u8; 2];
        s.read_exact(&mut v).await.unwrap();
        u64::from(u16::from_be_bytes(v))
    } else {
        let mut v = [0u8; 8];
        s.read_exact(&mut v).await.unwrap();
        u64::from_be_bytes(v)
    }
}

/// One SOCKS5 CONNECT through `proxy` to `dest` as bob, `n` bytes echoed; returns the
/// connection (open).
async fn socks_echo(proxy: SocketAddr, dest: SocketAddr, n: usize) -> TcpStream {
    let mut s = socks_connect(proxy, dest).await;
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    s.write_all(&data).await.unwrap();
    let mut back = vec![0u8; n];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, data);
    s
}

/// Connects to `dest` through the proxy as bob.
async fn socks_connect(proxy: SocketAddr, dest: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(b"\x05\x01\x02").await.unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r, [0x05, 0x02]);
    s.write_all(b"\x01\x03bob\x07hunter2").await.unwrap();
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r, [0x01, 0x00]);
    let SocketAddr::V4(d) = dest else {
        unreachable!()
    };
    let mut req = vec![0x05, 0x01, 0x00, 0x01];
    req.extend_from_slice(&d.ip().octets());
    req.extend_from_slice(&d.port().to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[..2], [0x05, 0x00], "{rep:02x?}");
    s
}

/// An echo destination on 127.0.0.1.
async fn echo_server() -> SocketAddr {
    let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let dest = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    dest
}

/// Bytes of one `socks_echo` handshake: client to server (greeting 3, login 13, request
/// 10) and server to client (method 2, login 2, reply 10).
const HANDSHAKE_IN: u64 = 3 + 13 + 10;
const HANDSHAKE_OUT: u64 = 2 + 2 + 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_real_traffic_the_scrape_equals_the_admin_protocol() {
    let dest = echo_server().await;
    // The server: SOCKS5 and admin (TCP, draft dialect), and the metrics beside it.
    let state = state();
    let options = ServerOptions {
        dialect: Dialect::Draft,
        admin_transport: AdminTransport::Tcp,
        ..ServerOptions::default()
    };
    let any = (Ipv4Addr::LOCALHOST, 0).into();
    let listeners = Listeners::bind(&Tokio, any, any, AdminTransport::Tcp).unwrap();
    let (socks, admin) = (
        listeners.socks.local_addr().unwrap(),
        listeners.admin.local_addr().unwrap(),
    );
    let shared = Shared::new(Tokio, state.clone(), options)
        .with_log(Arc::new(socks5d_net::StdoutSink::new(std::io::sink(), 64)));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(socks5d_net::run(listeners, shared, async {
        let _ = stop_rx.await;
    }));
    let metrics = Arc::new(Metrics::new());
    let (maddr, _stop) = start_metrics(&metrics, &state);

    // Known traffic: three connections at once, 1000, 20 000 and 300 000 bytes echoed; the
    // first two closed, the third left open.
    let sizes = [1000usize, 20_000, 300_000];
    let mut conns = Vec::new();
    for n in sizes {
        conns.push(socks_echo(socks, dest, n).await);
    }
    let open = conns.pop().unwrap();
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.counters().current != 1 {
        assert!(
            Instant::now() < deadline,
            "connections did not close: {:?}",
            state.counters()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut a = TcpStream::connect(admin).await.unwrap();
    a.write_all(b"\x01\x05admin\x02pw").await.unwrap();
    let mut r = [0u8; 2];
    a.read_exact(&mut r).await.unwrap();
    assert_eq!(r, [0x01, 0x00]);
    let mut by_admin = [0u64; 6];
    for (i, cmd) in (0x01..=0x06).enumerate() {
        by_admin[i] = admin_query(&mut a, cmd).await;
    }
    let scraped = scrape(maddr).await.admin_counters();
    assert_eq!(scraped, by_admin, "scrape vs admin protocol");

    // And both are the traffic that went through: every payload byte is read once from the
    // client and once from the destination, and written once to each.
    let payload: u64 = sizes.iter().map(|&n| n as u64).sum();
    let expected = [
        3,
        1,
        3,
        3 * HANDSHAKE_OUT + 2 * payload,
        3 * HANDSHAKE_IN + 2 * payload,
        1,
    ];
    assert_eq!(by_admin, expected);

    drop((open, a));
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap();
}

/// The relay's two paths, seen in `socks5d_relayed_spliced_bytes_total`: with sniffing off,
/// request/response exchanges of 1 KiB are copied (no byte spliced), and a bulk transfer
/// is spliced once its reads fill the buffer (on Linux; elsewhere nothing is). Every byte is
/// counted once in `socks5d_relayed_bytes_total` either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_exchanges_are_copied_and_bulk_is_spliced() {
    let dest = echo_server().await;
    let state = state();
    assert_eq!(
        state.apply(None, &Mutation::SetSniffing(false)),
        Outcome::Applied
    );
    let any = (Ipv4Addr::LOCALHOST, 0).into();
    let listeners = Listeners::bind(&Tokio, any, any, AdminTransport::Tcp).unwrap();
    let socks = listeners.socks.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    let shared = Shared::new(Tokio, state.clone(), ServerOptions::default())
        .with_log(Arc::new(socks5d_net::StdoutSink::new(std::io::sink(), 64)))
        .with_metrics(metrics.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(socks5d_net::run(listeners, shared, async {
        let _ = stop_rx.await;
    }));
    let (maddr, _stop) = start_metrics(&metrics, &state);
    let counts = |p: &Parsed| {
        let c = |name, d| p.counter(name, &[("direction", d)]);
        [
            c("socks5d_relayed_bytes_total", "upload"),
            c("socks5d_relayed_bytes_total", "download"),
            c("socks5d_relayed_spliced_bytes_total", "upload"),
            c("socks5d_relayed_spliced_bytes_total", "download"),
        ]
    };
    assert_eq!(
        counts(&scrape(maddr).await),
        [0; 4],
        "every series from the start"
    );

    // 50 exchanges of 1 KiB, one at a time.
    let mut s = socks_connect(socks, dest).await;
    let request: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0u8; 1024];
    for _ in 0..50 {
        s.write_all(&request).await.unwrap();
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, request);
    }
    drop(s);
    assert_eq!(
        counts(&scrape(maddr).await),
        [50 * 1024, 50 * 1024, 0, 0],
        "small exchanges are copied"
    );

    // 16 MiB echoed, written and read at once.
    const BULK: usize = 16 << 20;
    let s = socks_connect(socks, dest).await;
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..BULK / chunk.len() {
            w.write_all(&chunk).await.unwrap();
        }
        w
    });
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < BULK {
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0, "end of stream after {got} bytes");
        assert!(
            buf[..n]
                .iter()
                .zip(got..)
                .all(|(&b, i)| b == (i % (64 * 1024) % 251) as u8),
            "corrupt bytes at {got}"
        );
        got += n;
    }
    drop(writer.await.unwrap());
    let [up, down, spliced_up, spliced_down] = counts(&scrape(maddr).await);
    let total = (50 * 1024 + BULK) as u64;
    assert_eq!([up, down], [total, total], "every byte counted once");
    if cfg!(target_os = "linux") {
        assert!(
            spliced_up > BULK as u64 / 4 && spliced_down > BULK as u64 / 4,
            "bulk is spliced: {spliced_up} up, {spliced_down} down of {BULK}"
        );
        assert!(spliced_up <= BULK as u64 && spliced_down <= BULK as u64);
    } else {
        assert_eq!([spliced_up, spliced_down], [0, 0]);
    }

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap();
}

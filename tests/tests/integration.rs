//! End-to-end scenarios against an in-process server, each written once as a function of the
//! [`Runtime`] and instantiated per runtime at the bottom of this file.
//!
//! Clients are blocking std sockets with generous I/O timeouts; nothing here asserts on
//! speed. Waiting for the server's bookkeeping uses [`eventually`], which polls a condition.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use socks5d_core::admin::msg::{AdminRequest, AdminResponse, Modify, ModifyCmd, Query, ValueCmd};
use socks5d_core::admin::Dialect;
use socks5d_core::socks5::TargetAddr;
use socks5d_core::state::{Config, Mutation, Outcome, Privilege};
use socks5d_net::{AdminTransport, ServerOptions};
use socks5d_tests::harness::{Runtime, Setup, TestServer};
use socks5d_tests::peers::{self, AdminClient, ECHO_TRAILER, HTTP_BODY};
use socks5d_tests::script;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Polls `cond` until it holds; panics with `what` if it does not within 10 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start(rt: Runtime) -> TestServer {
    TestServer::start(rt, Setup::default())
}

fn ip(a: SocketAddr) -> TargetAddr {
    TargetAddr::Ip(a)
}

/// Sends `data`, reads the same number of bytes back (through an echo server).
fn echo_round_trip(s: &mut std::net::TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    let back = peers::read_n(s, data.len()).unwrap();
    assert_eq!(back, data);
}

fn curl() -> Command {
    let probe = Command::new("curl").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "curl is missing: install it (apt-get install curl); these tests need it"
    );
    Command::new("curl")
}

// ---------------------------------------------------------------- scenarios

fn curl_socks5_hostname(rt: Runtime) {
    let srv = start(rt);
    let http = peers::http_server();
    for host in ["127.0.0.1", "localhost"] {
        let out = curl()
            .args(["-sS", "--max-time", "10", "--socks5-hostname"])
            .arg(format!("alice:secret@{}", srv.socks))
            .arg(format!("http://{host}:{}/", http.port()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl via {host} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), HTTP_BODY);
    }
    eventually("two access lines", || srv.log.access().len() == 2);
    let lines = srv.log.access();
    let f: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(f.len(), 8, "{lines:?}");
    assert_eq!(&f[1..3], ["alice", "A"]);
    assert_eq!(f[3], "127.0.0.1");
    assert_eq!(f[5], "localhost");
    assert_eq!(f[6], http.port().to_string());
    assert_eq!(f[7], "0");
}

fn ipv4_connect_and_echo(rt: Runtime) {
    let srv = start(rt);
    let echo = peers::echo_server(LOCALHOST);
    let (mut s, rep, bnd) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    assert_eq!(
        bnd.ip(),
        LOCALHOST,
        "BND is the outgoing socket's local address"
    );
    assert_ne!(bnd.port(), 0);
    echo_round_trip(&mut s, b"hello over IPv4");
}

fn ipv6_connect_and_echo(rt: Runtime) {
    let v6 = peers::ipv6_loopback().expect("this test needs the IPv6 loopback [::1]");
    let srv = start(rt);
    let echo = peers::echo_server(v6);
    let (mut s, rep, bnd) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    assert_eq!(bnd.ip(), v6);
    echo_round_trip(&mut s, b"hello over IPv6");
}

fn domain_name_is_resolved(rt: Runtime) {
    let srv = start(rt);
    let echo = peers::echo_server(LOCALHOST);
    let target = TargetAddr::Domain(Bytes::from_static(b"localhost"), echo.port());
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &target).unwrap();
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, b"hello by name");
}

fn unknown_name_is_host_unreachable(rt: Runtime) {
    let srv = start(rt);
    // `.invalid` never resolves (RFC 6761).
    let target = TargetAddr::Domain(Bytes::from_static(b"no-such-host.invalid"), 80);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &target).unwrap();
    assert_eq!(rep, 0x04);
    assert!(peers::is_closed_by_peer(&mut s));
}

fn refused_port_replies_0x05(rt: Runtime) {
    let srv = start(rt);
    let closed = peers::closed_port();
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(closed)).unwrap();
    assert_eq!(rep, 0x05);
    assert!(peers::is_closed_by_peer(&mut s));
    eventually("access line", || !srv.log.access().is_empty());
    assert!(
        srv.log.access()[0].ends_with("\t5"),
        "{:?}",
        srv.log.access()
    );
}

fn wrong_password_is_refused(rt: Runtime) {
    let srv = start(rt);
    let mut s = peers::tcp(srv.socks).unwrap();
    s.write_all(&peers::greeting()).unwrap();
    assert_eq!(peers::read_method(&mut s).unwrap(), 0x02);
    s.write_all(&peers::userpass("alice", "wrong")).unwrap();
    assert_ne!(peers::read_userpass_reply(&mut s).unwrap(), 0);
    assert!(peers::is_closed_by_peer(&mut s));
    assert_eq!(srv.state.counters().users_connected, 0);
}

fn anonymous_refused_by_default(rt: Runtime) {
    let srv = start(rt);
    let mut s = peers::tcp(srv.socks).unwrap();
    s.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_eq!(peers::read_method(&mut s).unwrap(), 0xFF);
    assert!(peers::is_closed_by_peer(&mut s));
}

fn pipelined_handshake_and_payload(rt: Runtime) {
    let srv = start(rt);
    let echo = peers::echo_server(LOCALHOST);
    let payload = b"payload sent before any reply";
    let mut all = peers::greeting();
    all.extend(peers::userpass("alice", "secret"));
    all.extend(peers::connect_request(&ip(echo)));
    all.extend_from_slice(payload);
    let mut s = peers::tcp(srv.socks).unwrap();
    s.write_all(&all).unwrap();
    assert_eq!(peers::read_method(&mut s).unwrap(), 0x02);
    assert_eq!(peers::read_userpass_reply(&mut s).unwrap(), 0);
    assert_eq!(peers::read_reply(&mut s).unwrap().0, 0);
    assert_eq!(peers::read_n(&mut s, payload.len()).unwrap(), payload);
}

fn half_close_keeps_the_other_direction(rt: Runtime) {
    let srv = start(rt);
    let echo = peers::echo_server(LOCALHOST);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    s.write_all(b"last words").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    // The echo server answers the end of stream with a trailer, after it saw our EOF.
    let rest = peers::read_to_end(&mut s).unwrap();
    assert_eq!(rest, [&b"last words"[..], ECHO_TRAILER].concat());
}

fn counters_after_traffic(rt: Runtime) {
    let srv = start(rt);
    let echo = peers::echo_server(LOCALHOST);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    let c = srv.state.counters();
    assert_eq!((c.historic, c.current, c.users_connected), (1, 1, 1));
    let data = vec![b'x'; 100_000];
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let back = peers::read_to_end(&mut s).unwrap();
    assert_eq!(back.len(), data.len() + ECHO_TRAILER.len());
    drop(s);
    // Client to server: greeting 3, auth 3 + 5 + 6, request 10, then the data.
    // Server to client: method 2, auth reply 2, reply 10, then data and trailer.
    let relayed = (data.len() * 2 + ECHO_TRAILER.len()) as u64;
    let received = 3 + 14 + 10 + relayed;
    let sent = 2 + 2 + 10 + relayed;
    eventually("connection closed and counted", || {
        let c = srv.state.counters();
        c.current == 0 && c.bytes_received == received && c.bytes_sent == sent
    });
    let c = srv.state.counters();
    assert_eq!((c.historic, c.max_concurrent, c.users_connected), (1, 1, 0));
}

fn user_added_at_runtime_can_proxy(rt: Runtime) {
    let srv = start(rt);
    let echo = peers::echo_server(LOCALHOST);
    assert!(peers::socks_connect(srv.socks, "bob", "pw", &ip(echo)).is_err());
    let add = Mutation::AddUser {
        name: Bytes::from_static(b"bob"),
        password: Bytes::from_static(b"pw").into(),
        privilege: Privilege::User,
    };
    assert_eq!(srv.state.apply(Some(b"admin"), &add), Outcome::Applied);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "bob", "pw", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, b"new user");
}

fn removed_user_is_cut_off(rt: Runtime) {
    let srv = start(rt);
    let echo = peers::echo_server(LOCALHOST);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, b"before removal");
    let rm = Mutation::RemoveUser {
        name: Bytes::from_static(b"alice"),
    };
    assert_eq!(srv.state.apply(Some(b"admin"), &rm), Outcome::Applied);
    assert!(peers::is_closed_by_peer(&mut s), "relay not closed");
    assert!(peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).is_err());
    eventually("no connection left", || srv.state.counters().current == 0);
}

fn cleanup_closes_idle_connection(rt: Runtime) {
    let srv = TestServer::start(
        rt,
        Setup {
            config: Config {
                selector_timeout: 1,
                connection_timeout: 1,
                ..Config::default()
            },
            ..Setup::default()
        },
    );
    let echo = peers::echo_server(LOCALHOST);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    // Idle from now on: the clean-up (every second, 1 s idle limit) must close it.
    assert!(peers::is_closed_by_peer(&mut s), "idle relay not closed");
    eventually("no connection left", || srv.state.counters().current == 0);
}

fn shutdown_closes_connections(rt: Runtime) {
    let srv = start(rt);
    let echo = peers::echo_server(LOCALHOST);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    let socks = srv.socks;
    srv.shutdown();
    assert!(peers::is_closed_by_peer(&mut s));
    assert!(peers::tcp(socks).is_err(), "still accepting after shutdown");
}

fn sniffs_http_basic_credentials(rt: Runtime) {
    let srv = start(rt);
    let http = peers::http_server();
    let out = curl()
        .args([
            "-sS",
            "--max-time",
            "10",
            "-u",
            "webuser:webpass",
            "--socks5-hostname",
        ])
        .arg(format!("alice:secret@{}", srv.socks))
        .arg(format!("http://127.0.0.1:{}/", http.port()))
        .output()
        .unwrap();
    assert!(out.status.success());
    eventually("credential line", || !srv.log.credentials().is_empty());
    let line = &srv.log.credentials()[0];
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        &f[1..],
        [
            "alice",
            "P",
            "HTTP",
            "127.0.0.1",
            &http.port().to_string(),
            "webuser",
            "webpass"
        ]
    );
}

/// Starts a server with credential sniffing off: the relay copies until a direction reads
/// full buffers in a row, then (on Linux) moves them with `splice(2)`.
fn start_without_sniffing(rt: Runtime) -> TestServer {
    TestServer::start(
        rt,
        Setup {
            config: Config {
                sniffing: false,
                ..Config::default()
            },
            ..Setup::default()
        },
    )
}

/// `len` bytes of a pattern that is neither constant nor periodic at small scales.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Sends `data` through the echo server on another thread while reading everything back,
/// half-closing after the data; returns what came back (the data, then the trailer).
fn echo_large(s: &std::net::TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut r = s.try_clone().unwrap();
    let back = peers::read_to_end(&mut r).unwrap();
    writer.join().unwrap();
    back
}

/// A large transfer each way with exact contents and byte counters, with sniffing on (the
/// sniffer gives up on binary data, then the relay splices once the reads are bulk) and off
/// (copy for the first buffers, then splice).
fn large_transfer_exact_counters(rt: Runtime) {
    for sniffing in [true, false] {
        let srv = if sniffing {
            start(rt)
        } else {
            start_without_sniffing(rt)
        };
        let echo = peers::echo_server(LOCALHOST);
        let (s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
        assert_eq!(rep, 0);
        let data = pattern(8 << 20);
        let back = echo_large(&s, data.clone());
        assert_eq!(
            back.len(),
            data.len() + ECHO_TRAILER.len(),
            "sniffing {sniffing}"
        );
        assert!(
            back[..data.len()] == data[..],
            "sniffing {sniffing}: bytes differ"
        );
        assert_eq!(&back[data.len()..], ECHO_TRAILER);
        drop(s);
        let relayed = (data.len() * 2 + ECHO_TRAILER.len()) as u64;
        let received = 3 + 14 + 10 + relayed;
        let sent = 2 + 2 + 10 + relayed;
        eventually("connection closed and counted", || {
            let c = srv.state.counters();
            c.current == 0 && c.bytes_received == received && c.bytes_sent == sent
        });
    }
}

fn half_close_without_sniffing(rt: Runtime) {
    let srv = start_without_sniffing(rt);
    let echo = peers::echo_server(LOCALHOST);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, b"relayed both ways");
    s.write_all(b"last words").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let rest = peers::read_to_end(&mut s).unwrap();
    assert_eq!(rest, [&b"last words"[..], ECHO_TRAILER].concat());
}

/// Sends an HTTP request with `Authorization: Basic {base64}` and reads the whole answer
/// of [`peers::http_keepalive_server`].
fn http_request_with_basic_auth(s: &mut std::net::TcpStream, base64: &str) {
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {base64}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{HTTP_BODY}",
        HTTP_BODY.len()
    );
    assert_eq!(peers::read_n(s, resp.len()).unwrap(), resp.as_bytes());
}

/// Sniffing switched on while a connection relays (the relay leaves `splice` and the
/// sniffer sees the next bytes), then off again (no more credentials, bytes still relayed).
fn sniffing_switched_on_and_off_mid_connection(rt: Runtime) {
    let srv = start_without_sniffing(rt);
    let http = peers::http_keepalive_server();
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "alice", "secret", &ip(http)).unwrap();
    assert_eq!(rep, 0);
    // "first:pw1", relayed while sniffing is off.
    http_request_with_basic_auth(&mut s, "Zmlyc3Q6cHcx");
    let apply = |m| srv.state.apply(Some(b"admin"), &m);
    assert_eq!(apply(Mutation::SetSniffing(true)), Outcome::Applied);
    // "webuser:webpass"
    http_request_with_basic_auth(&mut s, "d2VidXNlcjp3ZWJwYXNz");
    // The tap logs a credential when it sees the 200, before forwarding it: it is there now.
    let creds = srv.log.credentials();
    assert_eq!(creds.len(), 1, "{creds:?}");
    assert!(creds[0].ends_with("\twebuser\twebpass"), "{creds:?}");
    assert_eq!(apply(Mutation::SetSniffing(false)), Outcome::Applied);
    // "other:secret2"
    http_request_with_basic_auth(&mut s, "b3RoZXI6c2VjcmV0Mg==");
    assert_eq!(srv.log.credentials().len(), 1, "sniffed while off");
}

fn admin_over_tcp(rt: Runtime) {
    let srv = start(rt);
    assert_eq!(srv.admin_transport, AdminTransport::Tcp);
    let mut c = AdminClient::new(peers::tcp(srv.admin).unwrap(), Dialect::Draft);
    assert_eq!(c.auth("admin", "adminpw").unwrap(), 0x00);
    // Pipelined: all requests in one write, responses in order.
    let reqs = [
        AdminRequest::Query(Query::UserCount),
        AdminRequest::Query(Query::ListUsers),
        AdminRequest::Modify(Modify::SetBufferSize(4096)),
        AdminRequest::Query(Query::BufferSize),
        AdminRequest::Modify(Modify::AddUser {
            name: Bytes::from_static(b"carol"),
            password: Bytes::from_static(b"pw"),
            privilege: 0,
        }),
        AdminRequest::Query(Query::HistoricConnections),
    ];
    c.send(&reqs).unwrap();
    let got: Vec<AdminResponse> = reqs.iter().map(|r| c.recv(r).unwrap()).collect();
    assert_eq!(
        got[0],
        AdminResponse::Value {
            cmd: ValueCmd::UserCount,
            value: 2
        }
    );
    let AdminResponse::Users(users) = &got[1] else {
        panic!("{:?}", got[1]);
    };
    let names: Vec<&[u8]> = users.iter().map(|u| &u.name[..]).collect();
    assert_eq!(names, [&b"admin"[..], b"alice"]);
    assert_eq!(
        got[2],
        AdminResponse::Status {
            cmd: ModifyCmd::SetBufferSize,
            status: 0
        }
    );
    assert_eq!(
        got[3],
        AdminResponse::Value {
            cmd: ValueCmd::BufferSize,
            value: 4096
        }
    );
    assert_eq!(
        got[4],
        AdminResponse::Status {
            cmd: ModifyCmd::AddUser,
            status: 0
        }
    );
    assert_eq!(
        got[5],
        AdminResponse::Value {
            cmd: ValueCmd::HistoricConnections,
            value: 0
        }
    );
    assert_eq!(srv.state.settings().buffer_size(), 4096);
    assert_eq!(srv.state.user_count(), 3);
    // The user added over the admin protocol can proxy at once.
    let echo = peers::echo_server(LOCALHOST);
    let (mut s, rep, _) = peers::socks_connect(srv.socks, "carol", "pw", &ip(echo)).unwrap();
    assert_eq!(rep, 0);
    echo_round_trip(&mut s, b"added by admin");
}

fn admin_wrong_password_is_closed(rt: Runtime) {
    let srv = start(rt);
    let mut s = peers::tcp(srv.admin).unwrap();
    s.write_all(&peers::userpass("admin", "nope")).unwrap();
    assert_eq!(peers::read_n(&mut s, 2).unwrap(), [0x01, 0x01]);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

// ---------------------------------------------------------------- instantiation

/// Instantiates every scenario once per runtime.
/// Every request of the protocol, pipelined in one write over TCP, in both dialects: each
/// answer as the spec requires (`script::every_command`), and the settings changed.
fn every_admin_command_over_tcp(rt: Runtime) {
    for dialect in [Dialect::Draft, Dialect::Final] {
        let options = ServerOptions {
            dialect,
            ..Setup::default().options
        };
        let srv = TestServer::start(
            rt,
            Setup {
                options,
                ..Setup::default()
            },
        );
        let mut c = AdminClient::new(peers::tcp(srv.admin).unwrap(), dialect);
        assert_eq!(c.auth("admin", "adminpw").unwrap(), 0x00);
        let script = script::every_command(dialect);
        let requests: Vec<AdminRequest> = script.iter().map(|(r, _)| r.clone()).collect();
        c.send(&requests).unwrap();
        for (i, (request, want)) in script.iter().enumerate() {
            let got = c.recv(request).unwrap();
            assert_eq!(&got, want, "{dialect:?}, request {i}: {request:?}");
        }
        let s = srv.state.settings();
        assert!(!s.sniffing() && s.cleanup());
        let values = (
            s.buffer_size(),
            s.selector_timeout(),
            s.connection_timeout(),
        );
        assert_eq!(values, (4096, 7, 33));
        assert_eq!(srv.state.user_count(), 2);
    }
}

macro_rules! per_runtime {
    ($runtime:ident: $($scenario:ident),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $runtime {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(socks5d_tests::harness::Runtime::$runtime);
                }
            )*
        }
    };
}

macro_rules! scenarios {
    ($($runtime:ident),*) => {
        $(
            per_runtime!($runtime:
                curl_socks5_hostname,
                ipv4_connect_and_echo,
                ipv6_connect_and_echo,
                domain_name_is_resolved,
                unknown_name_is_host_unreachable,
                refused_port_replies_0x05,
                wrong_password_is_refused,
                anonymous_refused_by_default,
                pipelined_handshake_and_payload,
                half_close_keeps_the_other_direction,
                counters_after_traffic,
                user_added_at_runtime_can_proxy,
                removed_user_is_cut_off,
                cleanup_closes_idle_connection,
                shutdown_closes_connections,
                sniffs_http_basic_credentials,
                large_transfer_exact_counters,
                half_close_without_sniffing,
                sniffing_switched_on_and_off_mid_connection,
                admin_over_tcp,
                every_admin_command_over_tcp,
                admin_wrong_password_is_closed,
            );
        )*
    };
}

scenarios!(Tokio, Smol, AsyncStd);

#[test]
fn every_runtime_is_instantiated() {
    // Adding a runtime to `Runtime::ALL` without adding it to `scenarios!` above fails here.
    assert_eq!(
        Runtime::ALL,
        &[Runtime::Tokio, Runtime::Smol, Runtime::AsyncStd]
    );
}

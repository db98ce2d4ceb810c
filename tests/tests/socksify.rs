//! UDP ASSOCIATE and BIND through Dante's `socksify` (Debian `dante-client`), a client the
//! project did not write, against an in-process server on every runtime (issue 12).
//!
//! `socksify` preloads Dante's library into Debian's `/usr/bin/python3`; the Python program
//! uses plain sockets and Dante turns them into SOCKS requests. Dante sends loopback (and, by
//! default, LAN) destinations directly, so the destination lives in a network namespace the
//! test creates ([`socks5d_tests::netns`]), reached through a veth pair; the proxy listens on
//! the host end's address, which is also where BIND listens (the control connection's local
//! address) and where the UDP relay is, both reachable from the namespace.
//!
//! That the requests really went through the proxy, and not directly, is checked on the
//! server's side: its access line (user, source, reply 0) and its byte counters, which only
//! count what it relayed; for UDP also the port the echo saw datagrams come from, which is
//! the relay's and not the client's.
//!
//! The tests need root, `ip` (`iproute2`), `socksify` (`dante-client`) and `/usr/bin/python3`
//! (`.ci/run` installs them); without them they fail and say what to install, they do not skip.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use socks5d_tests::harness::{Runtime, Setup, TestServer};
use socks5d_tests::netns::{self, Netns, Proc, TempFile};

/// Debian's Python (not whatever `python3` is first on `PATH`): the one Dante's library is
/// known to work with, and the one `.ci/run` relies on.
const PYTHON: &str = "/usr/bin/python3";

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(5);

/// Polls `cond` until it holds; panics with `what` if it does not within 5 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + STEP;
    while !cond() {
        assert!(Instant::now() < until, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Panics unless everything the tests run is installed, saying what to install.
fn require_tools() {
    netns::require_root_and_ip();
    assert!(
        netns::find_on_path("socksify").is_some(),
        "`socksify` is missing: apt-get install dante-client (these tests need it)"
    );
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} is missing: apt-get install python3 (these tests need Debian's Python)"
    );
}

/// A namespace and a server listening on its host end (SOCKS and admin, ports chosen by the
/// kernel), with the harness's users (alice / secret).
fn start(rt: Runtime) -> (Netns, TestServer) {
    require_tools();
    let ns = Netns::create();
    let setup = Setup {
        socks_addr: SocketAddr::new(IpAddr::V4(ns.host), 0),
        ..Setup::default()
    };
    let srv = TestServer::start(rt, setup);
    (ns, srv)
}

/// Dante's client configuration (`dante.conf(5)`, read from `SOCKS_CONF`): everything to the
/// namespace's address goes through the proxy, SOCKS5 with user/password only.
fn socks_conf(ns: &Netns, proxy: SocketAddr) -> TempFile {
    let conf = format!(
        "route {{\n\
         \tfrom: 0.0.0.0/0 to: {inside}/32 via: {ip} port = {port}\n\
         \tproxyprotocol: socks_v5\n\
         \tmethod: username\n\
         \tcommand: connect bind udpassociate\n\
         }}\n",
        inside = ns.inside,
        ip = proxy.ip(),
        port = proxy.port(),
    );
    TempFile::new("socks5d-socksify.conf", &conf)
}

/// Runs `python3 ARGS` under `socksify` with `conf`, user alice, password secret.
fn socksified(what: &str, conf: &TempFile, args: &[&str]) -> Proc {
    let mut c = Command::new("socksify");
    c.arg(PYTHON)
        .args(args)
        .env("SOCKS_CONF", conf.path())
        .env("SOCKS_USERNAME", "alice")
        .env("SOCKS_PASSWORD", "secret")
        // By default Dante adds direct routes for every address on the host's LANs, the
        // veth pair's /30 included, and would then send to the namespace directly.
        .env("SOCKS_AUTOADD_LANROUTES", "no")
        .env("SOCKS_DIRECTROUTE_FALLBACK", "no");
    // Any of these makes Dante ignore SOCKS_CONF.
    for v in [
        "SOCKS_SERVER",
        "SOCKS4_SERVER",
        "SOCKS5_SERVER",
        "HTTP_CONNECT_PROXY",
        "UPNP_IGD",
        "SOCKS_DEBUG",
        "SOCKS_LOGOUTPUT",
    ] {
        c.env_remove(v);
    }
    Proc::spawn(what, c)
}

/// One access line: its fields (time, user, `A`, source IP, source port, destination,
/// destination port, reply code).
fn the_access_line(srv: &TestServer) -> Vec<String> {
    eventually("an access line", || !srv.log.access().is_empty());
    let lines = srv.log.access();
    assert_eq!(lines.len(), 1, "one request, one access line: {lines:?}");
    lines[0].split('\t').map(str::to_owned).collect()
}

/// Parses "WORD IP PORT" into the address, checking the word.
fn addr_after(word: &str, line: &str) -> SocketAddr {
    let mut f = line.split(' ');
    assert_eq!(f.next(), Some(word), "{line:?}");
    let ip: IpAddr = f.next().and_then(|s| s.parse().ok()).expect(line);
    let port: u16 = f.next().and_then(|s| s.parse().ok()).expect(line);
    assert_eq!(f.next(), None, "{line:?}");
    SocketAddr::new(ip, port)
}

/// UDP echo server, run inside the namespace: prints its port, then one line per datagram
/// (`from IP PORT LEN`) before echoing it.
const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
# Ends on its own should the test process be killed before it can stop it.
s.settimeout(30)
print("port %d" % s.getsockname()[1], flush=True)
while True:
    data, src = s.recvfrom(65536)
    print("from %s %d %d" % (src[0], src[1], len(data)), flush=True)
    s.sendto(data, src)
"#;

/// The socksified UDP program: plain sendto/recvfrom to the echo, three datagrams of the
/// sizes in `UDP_SIZES`, each echoed back from the echo's address.
const UDP_CLIENT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for i, size in enumerate((1, 500, 1400)):
    msg = bytes([65 + i]) * size
    s.sendto(msg, (host, port))
    data, src = s.recvfrom(65536)
    assert data == msg, (i, len(data), data[:20])
    assert src == (host, port), src
print("ok", flush=True)
"#;

/// The sizes `UDP_CLIENT` sends.
const UDP_SIZES: [usize; 3] = [1, 500, 1400];

/// UDP ASSOCIATE: Dante's sendto/recvfrom reach the echo in the namespace through the relay.
fn socksify_udp_exchange(rt: Runtime) {
    let (ns, srv) = start(rt);
    let conf = socks_conf(&ns, srv.socks);
    let inside = ns.inside.to_string();
    let mut echo_cmd = ns.command(PYTHON);
    echo_cmd.args(["-c", UDP_ECHO, &inside]);
    let mut echo = Proc::spawn("the UDP echo in the namespace", echo_cmd);
    let echo_port = echo.line(STEP);
    let echo_port = echo_port
        .strip_prefix("port ")
        .expect(&echo_port)
        .to_owned();

    let client = socksified(
        "the socksified UDP client",
        &conf,
        &["-c", UDP_CLIENT, &inside, &echo_port],
    );
    let done = client.finish(STEP);
    assert!(
        done.status.success() && done.stdout == ["ok"],
        "socksified UDP client failed ({}): stdout {:?}, stderr: {}",
        done.status,
        done.stdout,
        done.stderr
    );

    // The access line: alice, from the host end, reply 0. DST is what Dante asked for: the
    // address its UDP socket sends from (on the host end, so it is never the relay's).
    let f = the_access_line(&srv);
    assert_eq!(f.len(), 8, "{f:?}");
    assert_eq!((f[1].as_str(), f[2].as_str()), ("alice", "A"), "{f:?}");
    assert_eq!(f[3], ns.host.to_string(), "{f:?}");
    assert_eq!(f[7], "0", "UDP ASSOCIATE answered with reply 0: {f:?}");
    let client_port: u16 = f[6].parse().expect("DST.PORT");

    // The echo saw every datagram from one address on the host end: the relay's socket,
    // not the client's own.
    let senders: Vec<String> = (0..UDP_SIZES.len()).map(|_| echo.line(STEP)).collect();
    echo.kill();
    let first = senders[0].rsplit_once(' ').map(|(a, _)| a.to_owned());
    for (line, size) in senders.iter().zip(UDP_SIZES) {
        let (from, len) = line.rsplit_once(' ').expect(line);
        assert_eq!(len, size.to_string(), "{senders:?}");
        assert_eq!(Some(from.to_owned()), first, "one sender: {senders:?}");
        let from = addr_after("from", from);
        assert_eq!(from.ip(), IpAddr::V4(ns.host), "{senders:?}");
        assert_ne!(from.port(), client_port, "sent by the relay: {senders:?}");
        assert_ne!(from.port(), srv.socks.port(), "{senders:?}");
    }

    // The server counted the datagrams (each payload once from the client and once from the
    // echo; once to the echo and once to the client), which it would not have seen had Dante
    // sent them directly.
    let total: u64 = UDP_SIZES.iter().map(|&n| n as u64).sum();
    let c = srv.state.counters();
    assert!(
        c.bytes_received >= 2 * total && c.bytes_sent >= 2 * total,
        "{c:?} (payloads: {total} bytes)"
    );
    assert_eq!(c.historic, 1, "{c:?}");
}

/// The socksified BIND program: bind/listen/accept. Dante makes `bind` a SOCKS BIND request
/// (on the socket itself, which becomes the control connection), `getsockname` the first
/// reply's BND (the address to give the peer) and `accept` the second reply.
///
/// Python's `socket.accept()` calls `accept4`, which Dante 1.4.2 does not wrap (the kernel
/// then fails with EINVAL on the connected control socket): the program calls libc's
/// `accept`, Dante's, through ctypes, with an address buffer (Dante writes the peer there
/// without checking for NULL, and crashes on one).
const BIND_PROGRAM: &str = r#"
import ctypes, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("0.0.0.0", 0))
s.listen(1)
print("listening %s %d" % s.getsockname(), flush=True)
buf = ctypes.create_string_buffer(128)
size = ctypes.c_uint32(128)
fd = libc.accept(s.fileno(), buf, ctypes.byref(size))
if fd < 0:
    e = ctypes.get_errno()
    raise OSError(e, "accept: " + os.strerror(e))
family, port = struct.unpack("=HH", buf.raw[:4])
port = socket.ntohs(port)
assert family == socket.AF_INET, family
print("accepted %s %d" % (socket.inet_ntoa(buf.raw[4:8]), port), flush=True)
c = socket.socket(fileno=fd)
c.settimeout(5)
print("peer %s %d" % c.getpeername(), flush=True)
c.sendall(b"to the peer")
got = b""
while len(got) < 13:
    d = c.recv(13 - len(got))
    if not d:
        break
    got += d
assert got == b"to the client", got
print("ok", flush=True)
"#;

/// The peer in the namespace: connects to the address the program learnt, reads "to the
/// peer", answers "to the client", then waits for the program's end to reach it.
const BIND_PEER: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print("local %s %d" % c.getsockname(), flush=True)
got = b""
while len(got) < 11:
    d = c.recv(11 - len(got))
    if not d:
        break
    got += d
assert got == b"to the peer", got
c.sendall(b"to the client")
while c.recv(100):
    pass
print("ok", flush=True)
"#;

/// BIND: the program's listening socket is the proxy's listener on the host end; the peer
/// in the namespace connects there, the program accepts it (with the peer's real address)
/// and they talk both ways through the proxy.
fn socksify_bind_exchange(rt: Runtime) {
    let (ns, srv) = start(rt);
    let conf = socks_conf(&ns, srv.socks);
    let mut program = socksified("the socksified BIND program", &conf, &["-c", BIND_PROGRAM]);
    let bnd = addr_after("listening", &program.line(STEP));
    // The first reply's BND: the server's listener, on the control connection's local
    // address (the host end), not the SOCKS port and not unspecified.
    assert_eq!(bnd.ip(), IpAddr::V4(ns.host), "{bnd}");
    assert_ne!(bnd.port(), 0, "{bnd}");
    assert_ne!(bnd.port(), srv.socks.port(), "{bnd}");

    let mut peer_cmd = ns.command(PYTHON);
    peer_cmd.args([
        "-c",
        BIND_PEER,
        &bnd.ip().to_string(),
        &bnd.port().to_string(),
    ]);
    let mut peer = Proc::spawn("the BIND peer in the namespace", peer_cmd);
    let local = addr_after("local", &peer.line(STEP));
    assert_eq!(local.ip(), IpAddr::V4(ns.inside), "{local}");

    let done = program.finish(STEP);
    let expected = [
        format!("listening {} {}", bnd.ip(), bnd.port()),
        format!("accepted {} {}", local.ip(), local.port()),
        format!("peer {} {}", local.ip(), local.port()),
        "ok".to_owned(),
    ];
    assert!(
        done.status.success() && done.stdout == expected,
        "socksified BIND program failed ({}): stdout {:?}, expected {expected:?}, stderr: {}",
        done.status,
        done.stdout,
        done.stderr
    );
    let peer_done = peer.finish(STEP);
    assert!(
        peer_done.status.success() && peer_done.stdout.last().map(String::as_str) == Some("ok"),
        "BIND peer failed ({}): stdout {:?}, stderr: {}",
        peer_done.status,
        peer_done.stdout,
        peer_done.stderr
    );

    // One access line with the second reply's code: alice, from the host end, reply 0. Dante
    // sends DST 0.0.0.0:0 (it does not know the peer), which accepts a peer from anywhere.
    let f = the_access_line(&srv);
    assert_eq!(f.len(), 8, "{f:?}");
    assert_eq!((f[1].as_str(), f[2].as_str()), ("alice", "A"), "{f:?}");
    assert_eq!(f[3], ns.host.to_string(), "{f:?}");
    assert_eq!((f[5].as_str(), f[6].as_str()), ("0.0.0.0", "0"), "{f:?}");
    assert_eq!(f[7], "0", "BIND answered with reply 0: {f:?}");
    // The relayed bytes went through the server (handshake bytes come on top).
    let c = srv.state.counters();
    assert!(
        c.bytes_received >= 11 + 13 && c.bytes_sent >= 11 + 13,
        "{c:?}"
    );
    assert_eq!(c.historic, 1, "{c:?}");
}

/// The namespace guard removes the namespace and the veth pair also when the test panics.
#[test]
fn netns_is_removed_even_on_panic() {
    require_tools();
    let (name, host) = std::panic::catch_unwind(|| {
        let ns = Netns::create();
        let seen = (ns.name().to_owned(), ns.host);
        let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(String::from_utf8_lossy(&listed.stdout).contains(ns.name()));
        std::panic::panic_any(seen);
    })
    .expect_err("panicked")
    .downcast::<(String, std::net::Ipv4Addr)>()
    .map(|b| *b)
    .expect("the panic carries the namespace");
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed.split_whitespace().any(|w| w == name),
        "{name} is still there: {listed}"
    );
    let addrs = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(
        !addrs.contains(&format!(" {host}/30 ")),
        "the veth pair is still there: {addrs}"
    );
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
                socksify_udp_exchange,
                socksify_bind_exchange,
            );
        )*
    };
}

scenarios!(Tokio, Smol, AsyncStd);

#[test]
fn every_runtime_is_instantiated() {
    assert_eq!(
        Runtime::ALL,
        &[Runtime::Tokio, Runtime::Smol, Runtime::AsyncStd]
    );
}

//! UDP ASSOCIATE and BIND end to end against an in-process server on every runtime: with a
//! client the project did not write (PySocks, Debian `python3-socks`, run by Debian's
//! `/usr/bin/python3`), and with the core's own messages over real sockets for what a real
//! client cannot show (foreign datagrams, the association's end).
//!
//! The tests need `python3-socks` (`apt-get install python3-socks`, which `.ci/run` does);
//! without it they fail and say so, they do not skip.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socks5d_core::socks5::{self, TargetAddr};
use socks5d_core::state::Mutation;
use socks5d_core::udp::Header;
use socks5d_tests::harness::{Runtime, Setup, TestServer};
use socks5d_tests::peers;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Polls `cond` until it holds; panics with `what` if it does not within 10 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A UDP echo server on `ip`; returns its address and how many datagrams it echoed.
fn udp_echo(ip: IpAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    let addr = s.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = s.send_to(&buf[..n], from);
        }
    });
    (addr, seen)
}

/// Runs PySocks: a UDP socket through the proxy at `proxy`, three datagrams to `target`
/// and their echoes.
fn pysocks_udp(proxy: SocketAddr, target: SocketAddr) {
    const SCRIPT: &str = r#"
import socket, sys, socks
# PySocks 1.7.1 unpacks getsockname() of a UDP socket into two values, which an IPv6 socket
# (four values) breaks; give it the two it expects (a client bug, not the server's).
_getsockname = socket.socket.getsockname
socks.socksocket.getsockname = lambda self: _getsockname(self)[:2]
proxy_host, proxy_port, host, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
# PySocks always reaches its proxy over IPv4: its UDP socket has the proxy's family, the
# destination may be IPv6.
family = socket.AF_INET6 if ":" in proxy_host else socket.AF_INET
s = socks.socksocket(family, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, proxy_host, proxy_port, username="alice", password="secret")
s.settimeout(5)
for i in range(3):
    msg = b"datagram %d " % i + b"x" * (100 * i)
    s.sendto(msg, (host, port))
    data, src = s.recvfrom(65536)
    assert data == msg, (data, msg)
    assert src[0] == host and src[1] == port, src
print("ok")
"#;
    let python = "/usr/bin/python3";
    let probe = Command::new(python).args(["-c", "import socks"]).output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "PySocks is missing: apt-get install python3-socks (these tests need it)"
    );
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(proxy.ip().to_string())
        .arg(proxy.port().to_string())
        .arg(target.ip().to_string())
        .arg(target.port().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "PySocks UDP failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pysocks_udp_ipv4(rt: Runtime) {
    let srv = TestServer::start(rt, Setup::default());
    let (echo, seen) = udp_echo(LOCALHOST);
    pysocks_udp(srv.socks, echo);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    eventually("one access line, reply 0", || {
        srv.log.access().iter().any(|l| l.ends_with("\t0"))
    });
    // The datagrams count as bytes (both ways) and the association as a connection.
    let c = srv.state.counters();
    assert!(c.bytes_received > 3 * 10 && c.bytes_sent > 3 * 10, "{c:?}");
    assert_eq!(c.historic, 1);
}

/// An IPv6 destination (an echo server on `::1`) through PySocks, whose control connection is
/// IPv4 (PySocks reaches its proxy over IPv4 only): the relay sends from a socket of the
/// other family.
fn pysocks_udp_ipv6(rt: Runtime) {
    let Some(v6) = peers::ipv6_loopback() else {
        panic!("this host has no IPv6 loopback (::1): the IPv6 UDP test cannot run");
    };
    let srv = TestServer::start(rt, Setup::default());
    let (echo, seen) = udp_echo(v6);
    pysocks_udp(srv.socks, echo);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

/// All IPv6: the proxy on `::1`, the client, the relay and the destination.
fn udp_all_ipv6(rt: Runtime) {
    let Some(v6) = peers::ipv6_loopback() else {
        panic!("this host has no IPv6 loopback (::1): the IPv6 UDP test cannot run");
    };
    let setup = Setup {
        socks_addr: SocketAddr::new(v6, 0),
        ..Setup::default()
    };
    let srv = TestServer::start(rt, setup);
    let (echo, seen) = udp_echo(v6);
    let client = UdpSocket::bind("[::1]:0").unwrap();
    let (_control, relay) = associate(srv.socks, client.local_addr().unwrap());
    assert!(relay.is_ipv6(), "{relay}");
    let back = round_trip(&client, relay, echo, b"six", Duration::from_secs(5));
    assert_eq!(back.as_deref(), Some(&b"six"[..]));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// Greeting, authentication and UDP ASSOCIATE with `expected` as DST; returns the control
/// connection and the relay address from the reply.
fn associate(proxy: SocketAddr, expected: SocketAddr) -> (TcpStream, SocketAddr) {
    let mut s = peers::tcp(proxy).unwrap();
    s.write_all(&peers::greeting()).unwrap();
    assert_eq!(peers::read_method(&mut s).unwrap(), 0x02);
    s.write_all(&peers::userpass("alice", "secret")).unwrap();
    assert_eq!(peers::read_userpass_reply(&mut s).unwrap(), 0);
    let mut req = BytesMut::new();
    socks5::Request {
        command: socks5::Command::UdpAssociate,
        target: TargetAddr::Ip(expected),
    }
    .encode(&mut req);
    s.write_all(&req).unwrap();
    let (rep, relay) = peers::read_reply(&mut s).unwrap();
    assert_eq!(rep, 0, "UDP ASSOCIATE refused");
    assert!(
        !relay.ip().is_unspecified(),
        "BND must be reachable: {relay}"
    );
    (s, relay)
}

fn wrap(to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    Header::new(TargetAddr::Ip(to)).encode(&mut b);
    b.extend_from_slice(payload);
    b.to_vec()
}

/// Sends one datagram through the relay and waits up to `wait` for the echo's payload.
fn round_trip(
    c: &UdpSocket,
    relay: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    c.set_read_timeout(Some(wait)).unwrap();
    c.send_to(&wrap(to, payload), relay).unwrap();
    let mut buf = [0u8; 65_536];
    let (n, from) = c.recv_from(&mut buf).ok()?;
    assert_eq!(from, relay);
    let (h, data) = Header::decode(&Bytes::copy_from_slice(&buf[..n])).unwrap();
    assert_eq!(
        h.addr,
        TargetAddr::Ip(to),
        "the reply names the real sender"
    );
    Some(data.to_vec())
}

/// Datagrams from another address than the client's are dropped; the association dies with
/// its TCP connection.
fn foreign_datagrams_dropped_and_association_ends_with_tcp(rt: Runtime) {
    let srv = TestServer::start(rt, Setup::default());
    let (echo, seen) = udp_echo(LOCALHOST);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (control, relay) = associate(srv.socks, client.local_addr().unwrap());
    let wait = Duration::from_secs(5);
    assert_eq!(
        round_trip(&client, relay, echo, b"one", wait).as_deref(),
        Some(&b"one"[..])
    );
    // From the same IP, another port (the request named the client's port): dropped.
    let other_port = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        round_trip(&other_port, relay, echo, b"two", Duration::from_millis(300)),
        None
    );
    // From another address: dropped.
    let foreign = UdpSocket::bind("127.0.0.2:0").unwrap();
    assert_eq!(
        round_trip(&foreign, relay, echo, b"three", Duration::from_millis(300)),
        None
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "only the client's datagram reached the echo"
    );
    // The TCP control connection ends: so does the association.
    drop(control);
    eventually("the association is closed", || {
        srv.state.counters().current == 0
    });
    assert_eq!(
        round_trip(&client, relay, echo, b"four", Duration::from_millis(300)),
        None
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// Removing the user cuts its association at once: the control connection is closed and
/// datagrams are no longer relayed.
fn removed_users_association_stops(rt: Runtime) {
    let srv = TestServer::start(rt, Setup::default());
    let (echo, seen) = udp_echo(LOCALHOST);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Port 0: the association learns the client's port from its first datagram.
    let (mut control, relay) = associate(srv.socks, "0.0.0.0:0".parse().unwrap());
    let wait = Duration::from_secs(5);
    assert_eq!(
        round_trip(&client, relay, echo, b"hi", wait).as_deref(),
        Some(&b"hi"[..])
    );
    let removed = srv.state.apply(
        Some(b"admin"),
        &Mutation::RemoveUser {
            name: Bytes::from_static(b"alice"),
        },
    );
    assert_eq!(removed, socks5d_core::state::Outcome::Applied);
    control
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(
        matches!(control.read(&mut b), Ok(0) | Err(_)),
        "control connection closed"
    );
    assert_eq!(
        round_trip(&client, relay, echo, b"after", Duration::from_millis(300)),
        None
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// BIND: first reply with the listening address, a connection from the expected peer,
/// second reply with its address, then a relay both ways.
fn bind_relays_the_incoming_connection(rt: Runtime) {
    let srv = TestServer::start(rt, Setup::default());
    let mut s = peers::tcp(srv.socks).unwrap();
    s.write_all(&peers::greeting()).unwrap();
    assert_eq!(peers::read_method(&mut s).unwrap(), 0x02);
    s.write_all(&peers::userpass("alice", "secret")).unwrap();
    assert_eq!(peers::read_userpass_reply(&mut s).unwrap(), 0);
    let mut req = BytesMut::new();
    socks5::Request {
        command: socks5::Command::Bind,
        target: TargetAddr::Ip("127.0.0.1:0".parse().unwrap()),
    }
    .encode(&mut req);
    s.write_all(&req).unwrap();
    let (rep, listening) = peers::read_reply(&mut s).unwrap();
    assert_eq!(rep, 0);
    assert_eq!(listening.ip(), LOCALHOST);
    let mut incoming = TcpStream::connect(listening).unwrap();
    let (rep, from) = peers::read_reply(&mut s).unwrap();
    assert_eq!(rep, 0);
    assert_eq!(from, incoming.local_addr().unwrap());
    s.write_all(b"to the peer").unwrap();
    assert_eq!(peers::read_n(&mut incoming, 11).unwrap(), b"to the peer");
    incoming.write_all(b"to the client").unwrap();
    assert_eq!(peers::read_n(&mut s, 13).unwrap(), b"to the client");
}

/// BIND from a peer other than DST.ADDR: second reply `02`, closed.
fn bind_refuses_a_stranger(rt: Runtime) {
    let srv = TestServer::start(rt, Setup::default());
    let mut s = peers::tcp(srv.socks).unwrap();
    s.write_all(&peers::greeting()).unwrap();
    assert_eq!(peers::read_method(&mut s).unwrap(), 0x02);
    s.write_all(&peers::userpass("alice", "secret")).unwrap();
    assert_eq!(peers::read_userpass_reply(&mut s).unwrap(), 0);
    let mut req = BytesMut::new();
    socks5::Request {
        command: socks5::Command::Bind,
        target: TargetAddr::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), 0)),
    }
    .encode(&mut req);
    s.write_all(&req).unwrap();
    let (rep, listening) = peers::read_reply(&mut s).unwrap();
    assert_eq!(rep, 0);
    let _stranger = TcpStream::connect(listening).unwrap();
    let (rep, _) = peers::read_reply(&mut s).unwrap();
    assert_eq!(rep, 0x02);
    assert!(peers::is_closed_by_peer(&mut s));
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
                pysocks_udp_ipv4,
                pysocks_udp_ipv6,
                udp_all_ipv6,
                foreign_datagrams_dropped_and_association_ends_with_tcp,
                removed_users_association_stops,
                bind_relays_the_incoming_connection,
                bind_refuses_a_stranger,
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

//! The operator policy through the library, on every runtime: access rules and limits
//! answered `02` with an access-log line, and a policy replaced live (as SIGHUP does) applies
//! to the next connection and to the bandwidth of a live relay.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socks5d_core::policy::{Action, Cidr, DestMatch, DestRule, LimitsConfig, Rules};
use socks5d_core::socks5::TargetAddr;
use socks5d_net::policy::{PolicyConfig, ServerPolicy};
use socks5d_tests::harness::{Runtime, Setup, TestServer};
use socks5d_tests::peers::{echo_server, socks_connect};

fn deny_port(port: u16) -> Rules {
    Rules::new(
        Vec::new(),
        vec![DestRule {
            user: None,
            dest: DestMatch::Cidr(Cidr::host(IpAddr::V4(Ipv4Addr::LOCALHOST))),
            ports: port..=port,
            command: None,
            action: Action::Deny,
        }],
    )
}

use socks5d_tests::peers::firehose;

/// Reads from `s` for `d`; returns the bytes read.
fn read_for(s: &mut std::net::TcpStream, d: Duration) -> u64 {
    let end = Instant::now() + d;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    while Instant::now() < end {
        n += s.read(&mut buf).unwrap() as u64;
    }
    n
}

fn ping(s: &mut std::net::TcpStream) {
    s.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
}

fn scenario(runtime: Runtime) {
    let echo = echo_server(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let blocked = echo_server(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let limits = LimitsConfig {
        user_max_connections: NonZeroU32::new(2),
        user_download: NonZeroU64::new(64 * 1024),
        ..LimitsConfig::default()
    };
    let policy = Arc::new(ServerPolicy::new(PolicyConfig {
        rules: deny_port(blocked.port()),
        limits: limits.clone(),
        ..PolicyConfig::default()
    }));
    let server = TestServer::start(
        runtime,
        Setup {
            policy: policy.clone(),
            ..Setup::default()
        },
    );
    let to = |a: SocketAddr| TargetAddr::Ip(a);
    // A rule: 02 and an access-log line.
    let (_s, rep, _) = socks_connect(server.socks, "alice", "secret", &to(blocked)).unwrap();
    assert_eq!(rep, 2, "{runtime:?}");
    let line = format!("127.0.0.1\t{}\t2", blocked.port());
    let t = Instant::now();
    while !server.log.access().iter().any(|l| l.ends_with(&line)) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{:?}",
            server.log.access()
        );
        thread::sleep(Duration::from_millis(10));
    }
    // The user limit: two connections, the third refused.
    let (mut live, rep, _) = socks_connect(server.socks, "alice", "secret", &to(echo)).unwrap();
    assert_eq!(rep, 0);
    ping(&mut live);
    let (mut hose, rep, _) =
        socks_connect(server.socks, "alice", "secret", &to(firehose())).unwrap();
    assert_eq!(rep, 0);
    let (_s, rep, _) = socks_connect(server.socks, "alice", "secret", &to(echo)).unwrap();
    assert_eq!(rep, 2, "{runtime:?}: over the user's limit");
    // The bandwidth, then a reload that raises it and lifts the rule: the live relay speeds
    // up, the next connection to the blocked port is served, the other relay keeps flowing.
    let slow = read_for(&mut hose, Duration::from_secs(1));
    policy.apply(
        Instant::now(),
        PolicyConfig {
            limits: LimitsConfig {
                user_max_connections: NonZeroU32::new(3),
                user_download: NonZeroU64::new(1024 * 1024),
                ..limits
            },
            ..PolicyConfig::default()
        },
    );
    let fast = read_for(&mut hose, Duration::from_secs(1));
    eprintln!("{runtime:?}: {slow} bytes in 1 s at 64 KiB/s, then {fast} at 1 MiB/s");
    assert!(
        fast > 4 * slow,
        "{runtime:?}: the new rate did not reach the live relay ({slow} then {fast})"
    );
    assert!(
        slow < 2 * 64 * 1024 + 16 * 1024,
        "{runtime:?}: {slow} bytes at 64 KiB/s"
    );
    drop(hose);
    let (mut c, rep, _) = socks_connect(server.socks, "alice", "secret", &to(blocked)).unwrap();
    assert_eq!(rep, 0, "{runtime:?}: the rule was lifted");
    ping(&mut c);
    ping(&mut live);
    server.shutdown();
}

#[test]
fn rules_limits_and_live_changes_on_every_runtime() {
    for &rt in Runtime::ALL {
        scenario(rt);
    }
}

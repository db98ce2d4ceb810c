//! The admin port against guessing and lock-out (issue "no lock-out or password guessing"),
//! on every runtime: the login back-off per address, a flood of failed logins from another
//! address, and silent sockets held open. The attacker is 127.0.0.2, the administrator
//! 127.0.0.1 (both loopback).
//!
//! Latencies are printed; the bounds asserted are generous (a lock-out means 10 s or more,
//! service means milliseconds), because this machine is shared and noisy: speed is measured by
//! the benches, these tests check that the administrator is not locked out.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socks5d_core::guard::ThrottlePolicy;
use socks5d_net::ServerOptions;
use socks5d_tests::harness::{Runtime, Setup, TestServer};
use socks5d_tests::peers;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// What "served" means here: far below any lock-out (the handshake deadline is 10 s).
const SERVED_WITHIN: Duration = Duration::from_secs(2);

/// The auth request of RFC 1929's shape (VER 1).
fn auth(user: &str, password: &str) -> Vec<u8> {
    peers::userpass(user, password)
}

/// A TCP connection to `to` from `from`.
fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(s)
}

/// Logs in from `from`; returns the status byte (or `None` if closed without one) and how long
/// the answer took.
fn login(from: IpAddr, admin: SocketAddr, user: &str, password: &str) -> (Option<u8>, Duration) {
    let t = Instant::now();
    let Ok(mut s) = connect_from(from, admin) else {
        return (None, t.elapsed());
    };
    if s.write_all(&auth(user, password)).is_err() {
        return (None, t.elapsed());
    }
    let mut reply = [0u8; 2];
    let status = s.read_exact(&mut reply).ok().map(|()| reply[1]);
    (status, t.elapsed())
}

/// Logs in as the administrator and asks one query (Get Total User Count); returns the time.
fn admin_served(admin: SocketAddr) -> Duration {
    let t = Instant::now();
    let mut s = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), admin).unwrap();
    s.write_all(&auth("admin", "adminpw")).unwrap();
    s.write_all(&[0x00, 0x07]).unwrap();
    let mut answer = [0u8; 5];
    s.read_exact(&mut answer)
        .expect("the administrator is served");
    assert_eq!(
        answer,
        [0x01, 0x00, 0x00, 0x07, 0x02],
        "login ok, two users"
    );
    t.elapsed()
}

fn start(rt: Runtime, backoff: ThrottlePolicy) -> TestServer {
    let setup = Setup::default();
    TestServer::start(
        rt,
        Setup {
            options: ServerOptions {
                login_backoff: backoff,
                ..setup.options.clone()
            },
            ..setup
        },
    )
}

/// 20 wrong passwords from one address, one after the other, take at least the back-off
/// schedule's sum; another address logs in at once meanwhile; a success resets.
fn wrong_passwords_back_off_per_address(rt: Runtime) {
    let policy = ThrottlePolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        ..ThrottlePolicy::default()
    };
    let srv = start(rt, policy);
    let t = Instant::now();
    for i in 0..20 {
        let (status, _) = login(ATTACKER, srv.admin, "admin", "wrong");
        assert_eq!(status, Some(0x01), "attempt {i} answered as a failure");
    }
    let took = t.elapsed();
    // The first failure is answered at once; each later one waits its delay.
    let sum = policy.schedule_sum(19);
    println!("{rt:?}: 20 wrong passwords took {took:?} (schedule sum {sum:?})");
    assert!(took >= sum, "{took:?} < {sum:?}");
    let (status, other) = login(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        srv.admin,
        "admin",
        "adminpw",
    );
    println!("{rt:?}: another address logged in in {other:?}");
    assert_eq!(status, Some(0x00));
    assert!(other < policy.cap, "not delayed: {other:?}");
}

/// 1 000 failed logins at once from the attacker's address: the administrator (another
/// address) is still served.
fn failed_login_flood_does_not_stop_the_administrator(rt: Runtime) {
    let srv = start(rt, ThrottlePolicy::default());
    let admin = srv.admin;
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while n < 125 && !stop.load(Ordering::Relaxed) {
                    let _ = login(ATTACKER, admin, "admin", "guess");
                    n += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        worst = worst.max(admin_served(admin));
    }
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.join();
    }
    println!("{rt:?}: administrator served during a failed-login flood, worst {worst:?}");
    assert!(worst < SERVED_WITHIN, "{worst:?}");
}

/// 200 silent connections held open on the admin port (reopened as soon as they are closed):
/// the administrator still logs in.
fn silent_sockets_do_not_lock_the_administrator_out(rt: Runtime) {
    let srv = start(rt, ThrottlePolicy::default());
    let admin = srv.admin;
    let stop = Arc::new(AtomicBool::new(false));
    let holders: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held: Vec<TcpStream> = (0..50)
                    .filter_map(|_| connect_from(ATTACKER, admin).ok())
                    .collect();
                for s in &held {
                    let _ = s.set_nonblocking(true);
                }
                while !stop.load(Ordering::Relaxed) {
                    // Reopen what the server closed.
                    for s in &mut held {
                        let mut b = [0u8; 1];
                        if matches!(s.read(&mut b), Ok(0)) {
                            if let Ok(n) = connect_from(ATTACKER, admin) {
                                let _ = n.set_nonblocking(true);
                                *s = n;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        worst = worst.max(admin_served(admin));
    }
    stop.store(true, Ordering::Relaxed);
    for h in holders {
        let _ = h.join();
    }
    println!("{rt:?}: administrator served with 200 silent sockets held, worst {worst:?}");
    assert!(worst < SERVED_WITHIN, "{worst:?}");
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
                wrong_passwords_back_off_per_address,
                failed_login_flood_does_not_stop_the_administrator,
                silent_sockets_do_not_lock_the_administrator_out,
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

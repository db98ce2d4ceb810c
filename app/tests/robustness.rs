//! The real `socks5d` binary under abuse: out of file descriptors, garbage on both ports.
//! After each, the server must still serve a normal client.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use socks5d_tests::hostile::server::{Launch, ServerProcess};

const USER: &[u8] = b"alice";
const PASS: &[u8] = b"secret";

/// Starts `socks5d` (the shared launcher of the hostile suite: admin service over TCP,
/// `alice:secret`, administrator `root:rootpw`); `nofile` caps its descriptors (soft and
/// hard, so the server cannot raise them).
fn start(nofile: Option<u64>, extra: &[&str]) -> ServerProcess {
    let mut launch = Launch::with_args(&["--log-level", "warn"]);
    launch.args.extend(extra.iter().map(|a| (*a).to_owned()));
    launch.nofile = nofile;
    ServerProcess::start(Path::new(env!("CARGO_BIN_EXE_socks5d")), &launch).expect("start socks5d")
}

/// A one-connection echo server; returns its port.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A full SOCKS5 exchange through the proxy: greeting, RFC 1929, CONNECT, echo. Panics with
/// what went wrong.
fn proxy_echo(socks: SocketAddr, echo: u16) {
    let mut c = TcpStream::connect(socks).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = vec![5, 1, 2, 1, USER.len() as u8];
    hello.extend_from_slice(USER);
    hello.push(PASS.len() as u8);
    hello.extend_from_slice(PASS);
    hello.extend_from_slice(&[5, 1, 0, 1, 127, 0, 0, 1]);
    hello.extend_from_slice(&echo.to_be_bytes());
    hello.extend_from_slice(b"ping");
    c.write_all(&hello).unwrap();
    let mut reply = [0u8; 2 + 2 + 10 + 4];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(
        &reply[..5],
        &[5, 2, 1, 0, 5],
        "method, auth, reply header: {reply:?}"
    );
    assert_eq!(reply[5], 0, "CONNECT succeeded: {reply:?}");
    assert_eq!(&reply[14..], b"ping");
}

/// Reads until the server closes; returns what it sent. Fails if it neither answers nor
/// closes within 15 s (the handshake deadline is 10 s).
fn drain_until_closed(mut c: TcpStream) -> Vec<u8> {
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("server neither answered nor closed: {e}"),
        }
    }
}

#[test]
fn out_of_descriptors_the_server_backs_off_and_carries_on() {
    let echo = echo_server();
    // 64 descriptors: after the listeners, the runtime and stdio, about 50 are left.
    let server = start(Some(64), &["--max-connections", "1000"]);
    proxy_echo(server.socks, echo);
    // Hold far more connections than the server has descriptors: it accepts until EMFILE,
    // the rest wait in the backlog.
    let hogs: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(server.socks).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(500));
    drop(hogs);
    // The accept loop must have survived and must serve again once descriptors are free.
    let (t, socks) = (Instant::now(), server.socks);
    loop {
        let attempt = thread::spawn(move || proxy_echo(socks, echo));
        // (a fresh thread per attempt, so a panic is an attempt that failed, not the test)
        if attempt.join().is_ok() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server did not recover from EMFILE"
        );
        thread::sleep(Duration::from_millis(200));
    }
    // Still running, not crashed.
    let mut server = server;
    assert!(server.is_running(), "socks5d exited");
}

#[test]
fn garbage_on_both_ports_is_refused_and_the_server_carries_on() {
    let echo = echo_server();
    let server = start(None, &[]);
    let garbage: [&[u8]; 5] = [
        b"\x04\x01\x00\x50\x7f\x00\x00\x01user\x00", // SOCKS4
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // TLS ClientHello
        &[0xff; 600],
        &[5, 255, 0, 1, 2, 3],
    ];
    for g in garbage {
        for port in [server.socks, server.admin] {
            let mut c = TcpStream::connect(port).unwrap();
            c.write_all(g).unwrap();
            let _ = c.shutdown(Shutdown::Write);
            let answer = drain_until_closed(c);
            assert!(answer.len() <= 4, "a short refusal at most, got {answer:?}");
        }
    }
    proxy_echo(server.socks, echo);
}

//! The real `socks5d` binary under abuse: out of file descriptors, garbage on both ports.
//! After each, the server must still serve a normal client.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const USER: &[u8] = b"alice";
const PASS: &[u8] = b"secret";

/// Kills the server when the test ends, however it ends.
struct Server {
    child: Child,
    socks: u16,
    admin: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `socks5d` with the admin service over TCP; `nofile` caps its descriptors (soft and
/// hard, so the server cannot raise them).
fn start(nofile: Option<u64>, extra: &[&str]) -> Server {
    let (socks, admin) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_socks5d"));
    cmd.env("STATE_DIRECTORY", socks5d_tests::fresh_state_dir());
    cmd.args(["-p", &socks.to_string(), "-P", &admin.to_string()])
        .args([
            "--admin-transport",
            "tcp",
            "-a",
            "root:rootpw",
            "-u",
            "alice:secret",
        ])
        .args(["--log-level", "warn"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = nofile {
        // SAFETY: `setrlimit` is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let server = Server {
        child: cmd.spawn().unwrap(),
        socks,
        admin,
    };
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "socks5d did not listen"
        );
        thread::sleep(Duration::from_millis(20));
    }
    server
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
fn proxy_echo(socks: u16, echo: u16) {
    let mut c = TcpStream::connect(("127.0.0.1", socks)).unwrap();
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
        .map(|_| TcpStream::connect(("127.0.0.1", server.socks)).unwrap())
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
    assert!(server.child.try_wait().unwrap().is_none(), "socks5d exited");
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
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(g).unwrap();
            let _ = c.shutdown(Shutdown::Write);
            let answer = drain_until_closed(c);
            assert!(answer.len() <= 4, "a short refusal at most, got {answer:?}");
        }
    }
    proxy_echo(server.socks, echo);
}

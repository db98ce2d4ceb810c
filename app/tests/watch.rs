//! `socks5ctl watch` against the real `socks5d` (TCP admin) with real proxied traffic: in a
//! real terminal (tmux: the screen is read with `capture-pane`, keys sent with `send-keys`),
//! and in line mode (stdout not a terminal).
//!
//! These tests need `tmux`; without it they fail (they never skip).
#![allow(clippy::disallowed_methods)] // tests read the clock

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin:s3cret-admin";

/// Kills the process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use socks5d_tests::free_port;

/// The real server: SOCKS5 on `.1`, the admin protocol over TCP on `.2`, users admin
/// (administrator) and bob.
fn socks5d() -> (Child, u16, u16) {
    let (socks, admin) = (free_port(), free_port());
    let child = Child(
        Command::new(env!("CARGO_BIN_EXE_socks5d"))
            .env("STATE_DIRECTORY", socks5d_tests::fresh_state_dir())
            .args(["-l", "127.0.0.1", "-p", &socks.to_string()])
            .args(["-L", "127.0.0.1", "-P", &admin.to_string()])
            .args(["--admin-transport", "tcp", "-a", ADMIN, "-u", "bob:bobpw"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    loop {
        let out = ctl(admin, &["user-count"]).output().unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "socks5d did not answer: {out:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    (child, socks, admin)
}

/// `socks5ctl` against the admin port `admin`, as the administrator, with `args`.
fn ctl(admin: u16, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_socks5ctl"));
    c.args([
        "-u",
        ADMIN,
        "-P",
        &admin.to_string(),
        "--admin-transport",
        "tcp",
    ])
    .args(args)
    .stdin(Stdio::null());
    c
}

/// A loopback echo server; returns its port.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
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

/// Opens a SOCKS5 connection as bob through the proxy on `socks` to 127.0.0.1:`target`
/// (RFC 1928 with RFC 1929 username/password), and echoes `payload` through it.
fn proxied(socks: u16, target: u16, payload: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", socks)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = [0u8; 10];
    s.write_all(&[5, 1, 2]).unwrap();
    s.read_exact(&mut reply[..2]).unwrap();
    assert_eq!(reply[..2], [5, 2]);
    s.write_all(b"\x01\x03bob\x05bobpw").unwrap();
    s.read_exact(&mut reply[..2]).unwrap();
    assert_eq!(reply[..2], [1, 0], "bob's login");
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&target.to_be_bytes());
    s.write_all(&req).unwrap();
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[..2], [5, 0], "CONNECT succeeded");
    let data = vec![0x5a; payload];
    s.write_all(&data).unwrap();
    let mut back = vec![0; payload];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
    s
}

/// A private tmux server (its own socket), killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn new(dir: &Path) -> Self {
        Self {
            socket: dir.join("tmux.sock"),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): these tests need it (apt-get install tmux)")
            })
    }

    /// Starts `command` (a shell command line) in a new 100x40 session called `name`.
    fn start(&self, name: &str, command: &str) {
        let out = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "100",
            "-y",
            "40",
            command,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
    }

    fn screen(&self, name: &str) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", name]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, name: &str, keys: &str) {
        let out = self.cmd(&["send-keys", "-t", name, keys]);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    /// Waits (up to 15 s) until the screen satisfies `ok`; returns it.
    fn wait_for(&self, name: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen(name);
            if ok(&s) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "screen never showed {what}:\n{s}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("socks5ctl-watch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text after `label` on the screen's row that starts with it.
fn row<'a>(screen: &'a str, label: &str) -> &'a str {
    screen
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no row {label:?}:\n{screen}"))
        .trim()
}

/// The first number of a row ("5000 bytes (4.9 KiB)  1.2 KiB/s" gives 5000).
fn first_number(screen: &str, label: &str) -> u64 {
    let text = row(screen, label);
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("row {label:?} has no number: {text:?}\n{screen}"))
}

/// The CONNECTIONS column of `user`'s row in the user table.
fn user_connections(screen: &str, user: &str) -> Option<u64> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("USER "))
        .skip(1)
        .find(|l| l.split_whitespace().next() == Some(user))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|c| c.parse().ok())
}

/// Waits for the file that the session's shell writes the exit status of socks5ctl to.
fn exit_status(path: &Path) -> String {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s.trim().to_owned();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "socks5ctl watch did not exit"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell command line that runs `watch` and writes its exit status to `status`.
fn watch_command(admin: u16, status: &Path, extra: &str) -> String {
    format!(
        "{} -u {ADMIN} -P {admin} --admin-transport tcp watch {extra}; echo $? > {}",
        shell_quote(env!("CARGO_BIN_EXE_socks5ctl")),
        shell_quote(&status.display().to_string()),
    )
}

#[test]
fn watch_in_a_terminal_follows_traffic_and_quits_on_q() {
    let (_server, socks, admin) = socks5d();
    let target = echo_server();
    let dir = scratch("q");
    let tmux = Tmux::new(&dir);
    let status = dir.join("status");
    tmux.start("w", &watch_command(admin, &status, "--interval 0.5"));

    let before = tmux.wait_for("w", "the first refresh", |s| {
        s.contains("Historic connections") && user_connections(s, "bob").is_some()
    });
    assert!(before.contains("over TCP, draft dialect"), "{before}");
    assert!(before.contains("q quits"), "{before}");
    assert_eq!(first_number(&before, "Current connections"), 0, "{before}");
    assert_eq!(first_number(&before, "Historic connections"), 0, "{before}");
    assert_eq!(first_number(&before, "Users  "), 2, "{before}");
    assert_eq!(first_number(&before, "Buffer size"), 16384, "{before}");
    assert_eq!(first_number(&before, "Connection timeout"), 120, "{before}");
    assert_eq!(user_connections(&before, "bob"), Some(0), "{before}");
    assert_eq!(user_connections(&before, "admin"), Some(0), "{before}");

    // Two connections of bob's through the proxy, 64 KiB echoed on each, kept open.
    let conns = [proxied(socks, target, 65536), proxied(socks, target, 65536)];
    let during = tmux.wait_for("w", "bob's two connections", |s| {
        user_connections(s, "bob") == Some(2)
            && first_number(s, "Current connections") == 2
            && s.lines().any(|l| {
                l.starts_with("Historic connections") && !l.ends_with(" 0.0 connections/s")
            })
    });
    assert_eq!(first_number(&during, "Historic connections"), 2, "{during}");
    assert_eq!(first_number(&during, "Users connected"), 1, "{during}");
    // Each echoed byte went client -> server -> target and back: at least 2 x 2 x 64 KiB
    // each way.
    assert!(first_number(&during, "Bytes sent") >= 4 * 65536, "{during}");
    assert!(
        first_number(&during, "Bytes received") >= 4 * 65536,
        "{during}"
    );
    assert!(
        row(&during, "Bytes sent").ends_with("/s"),
        "a rate column: {during}"
    );

    drop(conns);
    let after = tmux.wait_for("w", "the connections closed", |s| {
        first_number(s, "Current connections") == 0 && user_connections(s, "bob") == Some(0)
    });
    assert_eq!(
        first_number(&after, "Max. concurrent connections"),
        2,
        "{after}"
    );

    tmux.keys("w", "q");
    assert_eq!(exit_status(&status), "0", "q quits with status 0");
}

#[test]
fn watch_in_a_terminal_quits_on_ctrl_c() {
    let (_server, _socks, admin) = socks5d();
    let dir = scratch("ctrl-c");
    let tmux = Tmux::new(&dir);
    let status = dir.join("status");
    tmux.start("w", &watch_command(admin, &status, ""));
    tmux.wait_for("w", "the first refresh", |s| s.contains("Selector timeout"));
    tmux.keys("w", "C-c");
    assert_eq!(exit_status(&status), "0", "Ctrl-C quits with status 0");
}

#[test]
fn watch_without_a_terminal_prints_lines() {
    let (_server, socks, admin) = socks5d();
    let target = echo_server();
    let mut child = ctl(admin, &["watch", "--interval", "0.3", "--count", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Read the first line, then make traffic while the next refreshes run.
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains('\n') {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "watch ended early: {text}");
        text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let conn = proxied(socks, target, 1000);
    stdout.read_to_string(&mut text).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {text}");
    drop(conn);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert!(
        lines[0].contains(" current_connections=0 ") && lines[0].ends_with(" open: admin=0 bob=0"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(" connections/s=- "), "{}", lines[0]);
    let last = lines[7];
    assert!(
        last.contains(" current_connections=1 ")
            && last.contains(" historic_connections=1 ")
            && last.ends_with(" open: admin=0 bob=1"),
        "{last}"
    );
    // Some refresh saw the new connection arrive: a non-zero rate.
    assert!(
        lines.iter().any(|l| l.contains(" connections/s=")
            && !l.contains(" connections/s=0.0 ")
            && !l.contains(" connections/s=- ")),
        "{text}"
    );
}

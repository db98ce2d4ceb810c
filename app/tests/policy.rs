//! The operator policy against the real `socks5d` binary: the configuration file
//! (`--config`, `--check-config`, SIGHUP), access rules, limits, the egress address, the
//! PROXY protocol and the metrics endpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socks5d_core::socks5::TargetAddr;
use socks5d_tests::peers::{
    self, connect_request, greeting, read_method, read_reply, read_userpass_reply, userpass,
};

const WAIT: Duration = Duration::from_secs(10);

/// Lines a child wrote on one stream.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(&self, r: impl Read + Send + 'static) {
        let me = self.clone();
        thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                me.0.lock().unwrap().push(l);
            }
        });
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits for a line containing every one of `parts`; returns it.
    fn wait_for(&self, parts: &[&str]) -> String {
        let t = Instant::now();
        loop {
            if let Some(l) = self
                .all()
                .into_iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return l;
            }
            assert!(
                t.elapsed() < WAIT,
                "no line with {parts:?}; got:\n{}",
                self.all().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn count(&self, parts: &[&str]) -> usize {
        self.all()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }
}

/// A running `socks5d`; killed on drop.
struct Server {
    child: Child,
    socks: SocketAddr,
    admin: SocketAddr,
    /// The access log.
    out: Lines,
    /// Diagnostics.
    err: Lines,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn hup(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        Self(socks5d_tests::fresh_state_dir())
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use socks5d_tests::free_port;

/// Starts `socks5d --config FILE` (the file is `config`, after the ports and users this
/// adds) with `extra` flags.
fn start(config: &str, extra: &[&str]) -> Server {
    let dir = TempDir::new();
    let (socks, admin) = (free_port(), free_port());
    let text = format!(
        "port = {socks}\nadmin_port = {admin}\nadmin_transport = \"tcp\"\nin_memory = true\n\
         admin = [\"root:rootpw\"]\nuser = [\"alice:secret\", \"bob:secret\"]\n{config}"
    );
    let path = dir.file("socks5d.toml", &text);
    let mut child = Command::new(env!("CARGO_BIN_EXE_socks5d"))
        .arg("--config")
        .arg(&path)
        .args(["--log-level", "info"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (Lines::default(), Lines::default());
    out.follow(child.stdout.take().unwrap());
    err.follow(child.stderr.take().unwrap());
    let s = Server {
        child,
        socks: ([127, 0, 0, 1], socks).into(),
        admin: ([127, 0, 0, 1], admin).into(),
        out,
        err,
        _dir: dir,
    };
    let t = Instant::now();
    while TcpStream::connect(s.admin).is_err() {
        assert!(
            t.elapsed() < WAIT,
            "socks5d did not listen: {:?}",
            s.err.all()
        );
        thread::sleep(Duration::from_millis(20));
    }
    s
}

fn config_path(s: &Server) -> PathBuf {
    s._dir.0.join("socks5d.toml")
}

/// Rewrites the server's file with `config` after its fixed head.
fn rewrite(s: &Server, config: &str) {
    let path = config_path(s);
    let text = std::fs::read_to_string(&path).unwrap();
    let head: String = text.lines().take(6).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, format!("{head}{config}")).unwrap();
}

/// CONNECT through the proxy as `user`; returns the stream and REP (`None`: closed without
/// a reply).
fn connect_as(proxy: SocketAddr, user: &str, target: SocketAddr) -> (TcpStream, Option<u8>) {
    connect_target(proxy, user, &TargetAddr::Ip(target))
}

fn connect_target(proxy: SocketAddr, user: &str, target: &TargetAddr) -> (TcpStream, Option<u8>) {
    let mut s = peers::tcp(proxy).unwrap();
    let mut hello = greeting();
    hello.extend(userpass(user, "secret"));
    hello.extend(connect_request(target));
    if s.write_all(&hello).is_err() {
        return (s, None);
    }
    let rep = (|| {
        (read_method(&mut s).ok()? == 2).then_some(())?;
        (read_userpass_reply(&mut s).ok()? == 0).then_some(())?;
        read_reply(&mut s).ok().map(|(rep, _)| rep)
    })();
    (s, rep)
}

fn echo() -> SocketAddr {
    peers::echo_server(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn ping(s: &mut TcpStream) {
    s.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
}

/// Tells whether the server closed `s` without sending anything.
fn closed_silently(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn check_config(path: &Path) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_socks5d"))
        .arg("--check-config")
        .arg(path)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_config_reads_every_key_and_names_file_line_key() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../example.toml");
    let (code, out, _) = check_config(Path::new(example));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("{example}: ok"));
    // With every optional line uncommented too (every key of the example, set).
    let text = std::fs::read_to_string(example).unwrap();
    let full: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(r) if r.starts_with(|c: char| c.is_ascii_lowercase()) => format!("{r}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let dir = TempDir::new();
    let p = dir.file("full.toml", &full);
    let (code, out, err) = check_config(&p);
    assert_eq!(
        (code, out.trim()),
        (0, &*format!("{}: ok", p.display())),
        "{err}"
    );
    // A bad file: file, line and key, status 2; the server refuses to start with it.
    let bad = dir.file(
        "bad.toml",
        "port = 1080\n\n[limits]\nuser_upload = \"fast\"\n",
    );
    let (code, out, err) = check_config(&bad);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.starts_with(&format!("{}:4: key `limits.user_upload`:", bad.display())),
        "{err}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_socks5d"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(":4: key `limits.user_upload`"));
}

#[test]
fn destination_and_client_rules_answer_02_and_log() {
    let e = echo();
    let s = start(
        &format!(
            "[[rule]]\naction = \"deny\"\nuser = \"bob\"\n\
             [[rule]]\naction = \"deny\"\nto = \"127.0.0.1/32\"\nports = {}\n\
             [[rule]]\naction = \"deny\"\nto = \".blocked.test\"\n",
            e.port()
        ),
        &[],
    );
    // Denied by address and port.
    let (_c, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, Some(2));
    s.out
        .wait_for(&["alice", &format!("127.0.0.1\t{}", e.port()), "\t2"]);
    s.err.wait_for(&["denied by an access rule", "rule 2"]);
    // Denied by user.
    let (_c, rep) = connect_as(s.socks, "bob", echo());
    assert_eq!(rep, Some(2));
    // A name that resolves to a denied address: checked after resolution.
    let (_c, rep) = connect_target(
        s.socks,
        "alice",
        &TargetAddr::Domain("localhost".into(), e.port()),
    );
    assert_eq!(rep, Some(2), "localhost resolves to a denied address");
    // Denied by domain suffix (before resolving: the name does not exist).
    let (_c, rep) = connect_target(
        s.socks,
        "alice",
        &TargetAddr::Domain("x.blocked.test".into(), 80),
    );
    assert_eq!(rep, Some(2));
    // The metadata service needs an explicit allow.
    let (_c, rep) = connect_as(s.socks, "alice", "169.254.169.254:80".parse().unwrap());
    assert_eq!(rep, Some(2));
    // Another port is allowed.
    let other = echo();
    let (mut c, rep) = connect_as(s.socks, "alice", other);
    assert_eq!(rep, Some(0));
    ping(&mut c);
    drop(s);

    // Client rules: denied clients are closed without a word.
    let s = start(
        "[[client_rule]]\nfrom = \"127.0.0.0/8\"\naction = \"deny\"\n",
        &[],
    );
    let mut c = peers::tcp(s.socks).unwrap();
    let _ = c.write_all(&greeting());
    assert!(closed_silently(&mut c));
    s.err
        .wait_for(&["client refused by an access rule", "client rule 1"]);
}

#[test]
fn command_rules_refuse_bind_and_udp() {
    let s = start(
        "[[rule]]\naction = \"deny\"\ncommand = \"bind\"\n[[rule]]\naction = \"deny\"\ncommand = \"udp\"\n",
        &[],
    );
    for cmd in [2u8, 3] {
        let mut c = peers::tcp(s.socks).unwrap();
        let mut hello = greeting();
        hello.extend(userpass("alice", "secret"));
        hello.extend([5, cmd, 0, 1, 127, 0, 0, 1, 0, 0]);
        c.write_all(&hello).unwrap();
        assert_eq!(read_method(&mut c).unwrap(), 2);
        assert_eq!(read_userpass_reply(&mut c).unwrap(), 0);
        assert_eq!(read_reply(&mut c).unwrap().0, 2, "command {cmd}");
    }
}

#[test]
fn sighup_applies_a_changed_rule_and_keeps_live_relays() {
    let e = echo();
    let s = start("", &[]);
    let (mut live, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, Some(0));
    ping(&mut live);
    rewrite(
        &s,
        &format!(
            "[[rule]]\naction = \"deny\"\nto = \"127.0.0.1\"\nports = {}\n",
            e.port()
        ),
    );
    s.hup();
    s.err.wait_for(&["configuration reloaded"]);
    let (_c, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, Some(2), "the new rule applies to the next connection");
    ping(&mut live);
    // A broken file keeps the old configuration.
    rewrite(&s, "[[rule]]\naction = \"perhaps\"\n");
    s.hup();
    s.err
        .wait_for(&["configuration reload failed", "rule[0].action"]);
    let (_c, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, Some(2), "the old rule is kept");
    ping(&mut live);
    // A key that needs a restart is named.
    rewrite(&s, "no_bind = true\n");
    s.hup();
    s.err.wait_for(&["restart", "no_bind"]);
    let (mut c, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, Some(0), "rule gone");
    ping(&mut c);
    ping(&mut live);
}

/// Accepts connections and reports each one's peer address.
fn peer_reporter() -> (SocketAddr, mpsc::Receiver<SocketAddr>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = tx.send(s.peer_addr().unwrap());
            thread::spawn(move || {
                let mut s = s;
                let _ = std::io::copy(&mut s.try_clone().unwrap(), &mut s);
            });
        }
    });
    (addr, rx)
}

#[test]
fn outgoing_addr_is_the_source_the_destination_sees() {
    let (dest, seen) = peer_reporter();
    let s = start("", &["--outgoing-addr", "127.0.0.2"]);
    let (mut c, rep) = connect_as(s.socks, "alice", dest);
    assert_eq!(rep, Some(0));
    ping(&mut c);
    let from = seen.recv_timeout(WAIT).unwrap();
    assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    drop(s);
    // The file's key, and an IPv6-only egress leaves IPv4 destinations unreachable (0x03).
    let s = start("outgoing_addr = \"::1\"\n", &[]);
    let (_c, rep) = connect_as(s.socks, "alice", dest);
    assert_eq!(rep, Some(3));
    // The flag overrides the file.
    drop(s);
    let s = start(
        "outgoing_addr = \"::1\"\n",
        &["--outgoing-addr", "127.0.0.3"],
    );
    let (mut c, rep) = connect_as(s.socks, "alice", dest);
    assert_eq!(rep, Some(0));
    ping(&mut c);
    assert_eq!(
        seen.recv_timeout(WAIT).unwrap().ip(),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
    );
    drop(s);
    // The outgoing interface (SO_BINDTODEVICE): loopback reaches a loopback destination;
    // a device that does not exist fails the dial.
    let s = start("outgoing_interface = \"lo\"\n", &[]);
    let (mut c, rep) = connect_as(s.socks, "alice", dest);
    assert_eq!(
        rep,
        Some(0),
        "bound to lo (as root: SO_BINDTODEVICE needs CAP_NET_RAW)"
    );
    ping(&mut c);
    seen.recv_timeout(WAIT).unwrap();
    drop(s);
    let s = start("", &["--outgoing-interface", "nosuchdev0"]);
    let (_c, rep) = connect_as(s.socks, "alice", dest);
    assert!(matches!(rep, Some(r) if r != 0), "{rep:?}");
    drop(s);
    // A user's own egress replaces the server-wide one.
    let s = start(
        "outgoing_addr = \"127.0.0.6\"\n[users.bob]\negress = \"127.0.0.7\"\n",
        &[],
    );
    for (user, ip) in [("alice", 6), ("bob", 7)] {
        let (mut c, rep) = connect_as(s.socks, user, dest);
        assert_eq!(rep, Some(0));
        ping(&mut c);
        assert_eq!(
            seen.recv_timeout(WAIT).unwrap().ip(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip)),
            "{user}"
        );
    }
}

#[test]
fn user_connection_limit_answers_02() {
    let e = echo();
    let s = start(
        "[limits]\nuser_max_connections = 1\n[users.bob]\nmax_connections = 2\n",
        &[],
    );
    let (mut a, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, Some(0));
    ping(&mut a);
    let (_b, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, Some(2));
    s.err
        .wait_for(&["refused by a limit", "user at its limit of 1"]);
    s.out.wait_for(&["alice", "\t2"]);
    // Bob's exception.
    let (_b1, r1) = connect_as(s.socks, "bob", e);
    let (_b2, r2) = connect_as(s.socks, "bob", e);
    let (_b3, r3) = connect_as(s.socks, "bob", e);
    assert_eq!((r1, r2, r3), (Some(0), Some(0), Some(2)));
    // A closed connection makes room.
    drop(a);
    let t = Instant::now();
    loop {
        let (mut c, rep) = connect_as(s.socks, "alice", e);
        if rep == Some(0) {
            ping(&mut c);
            break;
        }
        assert!(
            t.elapsed() < WAIT,
            "alice's connection was never counted out"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn address_and_handshake_limits_close_on_accept() {
    let e = echo();
    let s = start("[limits]\nip_max_connections = 2\n", &[]);
    let (mut a, _) = connect_as(s.socks, "alice", e);
    let (mut b, _) = connect_as(s.socks, "alice", e);
    ping(&mut a);
    ping(&mut b);
    let (mut c, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, None);
    assert!(closed_silently(&mut c));
    s.err
        .wait_for(&["client address at its limit of 2 connections"]);
    drop(s);

    let s = start("[limits]\nip_connections_per_second = 2\n", &[]);
    let results: Vec<Option<u8>> = (0..4).map(|_| connect_as(s.socks, "alice", e).1).collect();
    assert!(results.iter().any(Option::is_none), "{results:?}");
    assert_eq!(results[0], Some(0));
    s.err.wait_for(&["new connections per second"]);
    drop(s);

    let s = start("[limits]\nmax_handshakes = 1\n", &[]);
    // One client holds the only handshake (it sends nothing).
    let _idle = peers::tcp(s.socks).unwrap();
    thread::sleep(Duration::from_millis(200));
    let (_c, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, None);
    s.err.wait_for(&["handshakes already in progress"]);
}

use socks5d_tests::peers::firehose;

#[test]
fn bandwidth_limit_holds_within_ten_percent() {
    const RATE: f64 = 1024.0 * 1024.0;
    let s = start("[limits]\nuser_download = \"1MiB\"\n", &[]);
    let (mut c, rep) = connect_as(s.socks, "alice", firehose());
    assert_eq!(rep, Some(0));
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while start.elapsed() < Duration::from_secs(5) {
        total += c.read(&mut buf).unwrap() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = total as f64 / secs;
    eprintln!("download: {total} bytes in {secs:.2} s = {rate:.0} B/s");
    assert!(
        (rate - RATE).abs() <= RATE * 0.10,
        "{rate:.0} B/s is not within 10 % of {RATE} B/s"
    );
    c.shutdown(Shutdown::Both).unwrap();
    drop(s);

    // Upload, per user (bob's exception), at the sink.
    const UP: f64 = 512.0 * 1024.0;
    let s = crate::start(
        "[limits]\nuser_upload = \"10MiB\"\n[users.bob]\nupload = \"512KiB\"\n",
        &[],
    );
    let (sink, count) = socks5d_tests::probe_peers::discard_server();
    let (mut c, rep) = connect_as(s.socks, "bob", sink);
    assert_eq!(rep, Some(0));
    c.set_write_timeout(None).unwrap();
    thread::spawn(move || {
        let chunk = vec![0x33u8; 64 * 1024];
        while c.write_all(&chunk).is_ok() {}
    });
    let t0 = Instant::now();
    let before = count.load(std::sync::atomic::Ordering::Relaxed);
    thread::sleep(Duration::from_secs(3));
    let moved = count.load(std::sync::atomic::Ordering::Relaxed) - before;
    let secs = t0.elapsed().as_secs_f64();
    let rate = moved as f64 / secs;
    eprintln!("upload: {moved} bytes in {secs:.2} s = {rate:.0} B/s");
    assert!(
        (rate - UP).abs() <= UP * 0.10,
        "{rate:.0} B/s is not within 10 % of {UP} B/s"
    );
}

#[test]
fn proxy_protocol_from_trusted_only() {
    let e = echo();
    let s = start("[proxy_protocol]\ntrusted = [\"127.0.0.1/32\"]\n", &[]);
    let mut c = peers::tcp(s.socks).unwrap();
    let mut hello = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 1080\r\n".to_vec();
    hello.extend(greeting());
    hello.extend(userpass("alice", "secret"));
    hello.extend(connect_request(&TargetAddr::Ip(e)));
    c.write_all(&hello).unwrap();
    assert_eq!(read_method(&mut c).unwrap(), 2);
    assert_eq!(read_userpass_reply(&mut c).unwrap(), 0);
    assert_eq!(read_reply(&mut c).unwrap().0, 0);
    ping(&mut c);
    let line = s.out.wait_for(&["alice", "203.0.113.7\t5555"]);
    assert!(line.ends_with("\t0"), "{line}");
    // From a trusted sender the header is required.
    let (mut c, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, None);
    assert!(closed_silently(&mut c));
    drop(s);
    // From an untrusted one it is refused.
    let s = start("[proxy_protocol]\ntrusted = [\"10.0.0.0/8\"]\n", &[]);
    let mut c = peers::tcp(s.socks).unwrap();
    c.write_all(&hello).unwrap();
    assert!(closed_silently(&mut c));
    s.err
        .wait_for(&["PROXY protocol header from an address not in proxy_protocol.trusted"]);
    assert_eq!(s.out.count(&["203.0.113.7"]), 0);
}

/// Parses a Prometheus exposition with Python's `prometheus_client.parser` (Debian's
/// python3-prometheus-client): every sample as (name, labels, value).
/// A sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_exposition(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r"import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        labels = ','.join(k + '=' + v for k, v in sorted(s.labels.items()))
        print(s.name + '	' + labels + '	' + repr(float(s.value)))
";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 is needed (with python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the parser refused the exposition (is python3-prometheus-client installed?): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().unwrap().to_owned();
            let labels = f
                .next()
                .unwrap()
                .split(',')
                .filter(|x| !x.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            (name, labels, f.next().unwrap().parse().unwrap())
        })
        .collect()
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0]
}

fn scrape(addr: SocketAddr) -> String {
    let o = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("curl is needed");
    assert!(
        o.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn metrics_agree_with_the_admin_protocol() {
    use socks5d_core::admin::msg::{AdminRequest, AdminResponse, Query};
    use socks5d_core::admin::Dialect;
    let e = echo();
    let denied = echo();
    let port = free_port();
    let metrics: SocketAddr = ([127, 0, 0, 1], port).into();
    let s = start(
        &format!(
            "metrics = \"{metrics}\"\n[[rule]]\naction = \"deny\"\nto = \"127.0.0.1\"\nports = {}\n",
            denied.port()
        ),
        &[],
    );
    for _ in 0..3 {
        let (mut c, rep) = connect_as(s.socks, "alice", e);
        assert_eq!(rep, Some(0));
        ping(&mut c);
        // End of stream both ways: the echo server's trailer comes back, then its close.
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(peers::read_to_end(&mut c).unwrap(), peers::ECHO_TRAILER);
    }
    let (_c, rep) = connect_as(s.socks, "alice", denied);
    assert_eq!(rep, Some(2));
    drop(_c);
    // Every connection closed: the counters are final.
    let mut admin = peers::AdminClient::new(peers::tcp(s.admin).unwrap(), Dialect::Draft);
    assert_eq!(admin.auth("root", "rootpw").unwrap(), 0);
    let mut query = |q: Query| {
        let r = AdminRequest::Query(q);
        match admin.call(&r).unwrap() {
            AdminResponse::Value { value, .. } => value as f64,
            other => panic!("{other:?}"),
        }
    };
    let t = Instant::now();
    while query(Query::CurrentConnections) > 0.0 {
        assert!(t.elapsed() < WAIT);
        thread::sleep(Duration::from_millis(20));
    }
    let m = parse_exposition(&scrape(metrics));
    assert_eq!(
        sample(&m, "socks5d_historic_connections_total", &[]),
        query(Query::HistoricConnections)
    );
    assert_eq!(sample(&m, "socks5d_historic_connections_total", &[]), 4.0);
    assert_eq!(
        sample(&m, "socks5d_bytes_sent_total", &[]),
        query(Query::BytesSent)
    );
    assert_eq!(
        sample(&m, "socks5d_bytes_received_total", &[]),
        query(Query::BytesReceived)
    );
    assert_eq!(sample(&m, "socks5d_current_connections", &[]), 0.0);
    let connect = ("command", "connect");
    assert_eq!(
        sample(
            &m,
            "socks5d_replies_total",
            &[connect, ("code", "succeeded")]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &m,
            "socks5d_replies_total",
            &[connect, ("code", "not_allowed")]
        ),
        1.0
    );
    assert_eq!(
        sample(&m, "socks5d_connections_opened_total", &[connect]),
        3.0
    );
    assert_eq!(sample(&m, "socks5d_rule_denials_total", &[]), 1.0);
    assert_eq!(
        sample(&m, "socks5d_handshake_duration_seconds_count", &[]),
        4.0
    );
    assert_eq!(
        sample(
            &m,
            "socks5d_relayed_bytes_total",
            &[("direction", "upload")]
        ),
        12.0
    );
    let trailer = peers::ECHO_TRAILER.len() as f64;
    assert_eq!(
        sample(
            &m,
            "socks5d_relayed_bytes_total",
            &[("direction", "download")]
        ),
        3.0 * (4.0 + trailer)
    );
    assert_eq!(
        sample(&m, "socks5d_config_reloads_total", &[("result", "ok")]),
        0.0
    );
    // No user name is a label.
    assert!(m
        .iter()
        .all(|(_, l, _)| l.iter().all(|(_, v)| v != "alice")));
    // Reloads and their result.
    s.hup();
    s.err.wait_for(&["configuration reloaded"]);
    rewrite(&s, "bogus = 1\n");
    s.hup();
    s.err.wait_for(&["configuration reload failed"]);
    let m = parse_exposition(&scrape(metrics));
    assert_eq!(
        sample(&m, "socks5d_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        sample(&m, "socks5d_config_reloads_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(
        sample(&m, "socks5d_config_last_reload_successful", &[]),
        0.0
    );
}

/// CONNECTs to `localhost` (spelled `names`, in turn) at the echo server's port, through a
/// server with `config`; returns the `socks5d_dns_cache_lookups_total` samples afterwards:
/// (hit, negative_hit, miss).
fn lookups_for_names(config: &str, extra: &[&str], names: &[&'static str]) -> (f64, f64, f64) {
    let e = echo();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let s = start(&format!("metrics = \"{metrics}\"\n{config}"), extra);
    for name in names {
        let target = TargetAddr::Domain(bytes::Bytes::from_static(name.as_bytes()), e.port());
        let (mut c, rep) = connect_target(s.socks, "alice", &target);
        assert_eq!(rep, Some(0), "CONNECT {name}: {:?}", s.err.all());
        ping(&mut c);
    }
    // Read here rather than with `parse_exposition`: this one needs no Python module.
    let text = scrape(metrics);
    let n = |result: &str| -> f64 {
        let head = format!("socks5d_dns_cache_lookups_total{{result=\"{result}\"}} ");
        let found: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&head))
            .map(|v| v.trim().parse().unwrap())
            .collect();
        assert_eq!(found.len(), 1, "{head}in:\n{text}");
        found[0]
    };
    (n("hit"), n("negative_hit"), n("miss"))
}

#[test]
fn a_name_is_resolved_once_then_answered_from_the_cache() {
    let names = ["localhost", "LocalHost", "localhost"];
    for runtime in ["tokio", "smol", "async-std"] {
        let got = lookups_for_names("", &["--runtime", runtime], &names);
        // The first CONNECT asks the resolver; the others (any case) are answered from the
        // cache (30 s by default).
        assert_eq!(got, (2.0, 0.0, 1.0), "{runtime}");
    }
    // Off: every request asks the resolver; the flag overrides the file.
    let got = lookups_for_names("dns_cache_ttl = 0\n", &[], &names);
    assert_eq!(got, (0.0, 0.0, 3.0));
    let got = lookups_for_names("dns_cache_ttl = 0\n", &["--dns-cache-ttl", "60"], &names);
    assert_eq!(got, (2.0, 0.0, 1.0));
}

#[test]
fn help_names_every_key_of_the_example() {
    let o = Command::new(env!("CARGO_BIN_EXE_socks5d"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(o.stdout).unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../example.toml")).unwrap();
    let full: String = example
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(r) if r.starts_with(|c: char| c.is_ascii_lowercase()) => format!("{r}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let doc: toml::Table = full.parse().unwrap();
    fn keys(t: &toml::Table, under_users: bool, out: &mut Vec<String>) {
        for (k, v) in t {
            if !under_users {
                out.push(k.clone());
            }
            match v {
                toml::Value::Table(t) => keys(t, k == "users", out),
                toml::Value::Array(a) => {
                    for t in a.iter().filter_map(toml::Value::as_table) {
                        keys(t, false, out);
                    }
                }
                _ => {}
            }
        }
    }
    let mut all = Vec::new();
    keys(&doc, false, &mut all);
    assert!(all.len() > 40, "{all:?}");
    for k in all {
        let flag = format!("--{}", k.replace('_', "-"));
        assert!(
            help.contains(&k) || help.contains(&flag),
            "socks5d --help does not name `{k}`"
        );
    }
}

#[test]
fn sighup_moves_a_changed_listener_and_keeps_the_others() {
    let e = echo();
    let s = start("", &[]);
    let (mut live, rep) = connect_as(s.socks, "alice", e);
    assert_eq!(rep, Some(0));
    ping(&mut live);
    let new_port = free_port();
    let path = config_path(&s);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        &format!("port = {}\n", s.socks.port()),
        &format!("port = {new_port}\n"),
        1,
    );
    std::fs::write(&path, text).unwrap();
    s.hup();
    s.err.wait_for(&["SOCKS listener replaced"]);
    s.err.wait_for(&["configuration reloaded"]);
    let moved: SocketAddr = ([127, 0, 0, 1], new_port).into();
    let (mut c, rep) = connect_as(moved, "alice", e);
    assert_eq!(rep, Some(0), "served on the new port");
    ping(&mut c);
    assert!(
        TcpStream::connect(s.socks).is_err(),
        "the old SOCKS listener is closed"
    );
    ping(&mut live);
    // The admin listener did not change: still there.
    assert!(TcpStream::connect(s.admin).is_ok());
    assert_eq!(s.err.count(&["admin listener replaced"]), 0);
    // A port that cannot be bound fails the reload; everything is kept.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        &format!("port = {new_port}\n"),
        &format!("port = {}\n", busy.local_addr().unwrap().port()),
        1,
    );
    std::fs::write(&path, text).unwrap();
    s.hup();
    s.err
        .wait_for(&["configuration reload failed", "cannot listen on"]);
    let (mut c, rep) = connect_as(moved, "alice", e);
    assert_eq!(rep, Some(0), "still on the port before");
    ping(&mut c);
}

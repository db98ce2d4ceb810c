//! Regression probes for the bugs of issue 18 that need the real `socks5d` binary: its
//! standard output on a pipe nobody reads (bug 2) and a low descriptor limit (bug 5). Each
//! probe runs the binary once per `--runtime` in [`RUNTIMES`] and fails naming every runtime
//! it failed on. Loopback only, bounded counts, every wait bounded.
//!
//! The in-process probes are in `tests/tests/probes.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use socks5d_tests::hostile::server::{Launch, ServerProcess};

/// The `--runtime` values the binary accepts.
const RUNTIMES: &[&str] = &["tokio", "smol", "async-std"];

use socks5d_tests::free_port;

/// Starts `socks5d --runtime runtime` (the shared launcher of the hostile suite: admin
/// service over TCP, administrator `root:rootpw`, user `alice:secret`, stderr to a file);
/// `nofile` caps its descriptors (soft and hard); `unread_stdout` puts standard output on a
/// pipe nobody reads.
fn start(runtime: &str, nofile: Option<u64>, unread_stdout: bool) -> ServerProcess {
    let mut launch = Launch::with_args(&["--runtime", runtime, "--log-level", "warn"]);
    launch.nofile = nofile;
    launch.unread_stdout = unread_stdout;
    ServerProcess::start(Path::new(env!("CARGO_BIN_EXE_socks5d")), &launch).expect("start socks5d")
}

/// Greeting (user/password), RFC 1929 as alice, CONNECT to 127.0.0.1:`port`, in one write.
fn handshake(port: u16) -> Vec<u8> {
    let mut hello = vec![5, 1, 2, 1, 5];
    hello.extend_from_slice(b"alice");
    hello.push(6);
    hello.extend_from_slice(b"secret");
    hello.extend_from_slice(&[5, 1, 0, 1, 127, 0, 0, 1]);
    hello.extend_from_slice(&port.to_be_bytes());
    hello
}

/// Method selection, RFC 1929 reply and the CONNECT reply for IPv4 (BND is IPv4 here).
const ANSWER_LEN: usize = 2 + 2 + 10;

/// Runs `probe` once per runtime (one at a time: they load the machine) and fails naming
/// every runtime it failed on.
fn on_every_runtime(probe: fn(&str)) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut failed = Vec::new();
    for &rt in RUNTIMES {
        let t = Instant::now();
        let r = std::panic::catch_unwind(move || probe(rt));
        eprintln!(
            "{rt}: {} in {:?}",
            if r.is_ok() { "passed" } else { "FAILED" },
            t.elapsed()
        );
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{rt}: {msg}"));
        }
    }
    assert!(failed.is_empty(), "failed on:\n{}", failed.join("\n"));
}

// ------------------------------------------------------------------ 2. access log on a pipe

/// Refused CONNECTs to send (one access-log line each: about 650 KB, ten times a pipe's
/// default 64 KiB).
const REFUSED_CONNECTS: usize = 10_000;
/// Client threads sending them.
const CLIENTS: usize = 4;

/// One refused CONNECT: the whole answer, then the server's close. Returns what went wrong.
fn refused_connect(socks: SocketAddr, closed: u16) -> Result<(), String> {
    let mut c = TcpStream::connect(socks).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    c.write_all(&handshake(closed))
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = [0u8; ANSWER_LEN];
    c.read_exact(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    if answer[..6] != [5, 2, 1, 0, 5, 5] {
        return Err(format!("answer {answer:?}, wanted REP 5 (refused)"));
    }
    // The server closes after a failed reply: wait for it, so that this side never holds
    // a TIME_WAIT (10 000 of them would crowd the ephemeral ports).
    let mut rest = [0u8; 16];
    match c.read(&mut rest) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        other => Err(format!("not closed after the reply: {other:?}")),
    }
}

/// Logs in as root on the admin port and asks Get Total User Count; returns the answer.
fn admin_user_count(admin: SocketAddr) -> Result<Vec<u8>, String> {
    let mut c = TcpStream::connect(admin).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut auth = vec![1, 4];
    auth.extend_from_slice(b"root");
    auth.push(6);
    auth.extend_from_slice(b"rootpw");
    auth.extend_from_slice(&[0x00, 0x07]);
    c.write_all(&auth).map_err(|e| format!("write: {e}"))?;
    let mut answer = [0u8; 2 + 3];
    c.read_exact(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    Ok(answer.to_vec())
}

/// Bug 2, "access-log writes block the runtime": standard output is a pipe that nobody
/// reads. After 10 000 refused CONNECTs (each one access-log line), every one answered, the
/// admin port must still answer and SIGTERM must stop the server within 5 s.
fn access_log_on_an_unread_pipe(runtime: &str) {
    // Standard output held open and never read: the pipe fills after about a thousand lines.
    let mut server = start(runtime, None, true);
    let closed = free_port();
    let socks = server.socks;
    let t = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            thread::spawn(move || {
                for i in 0..REFUSED_CONNECTS / CLIENTS {
                    if let Err(e) = refused_connect(socks, closed) {
                        return (i, Some(e));
                    }
                }
                (REFUSED_CONNECTS / CLIENTS, None)
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let served: usize = results.iter().map(|r| r.0).sum();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.1.as_ref()).collect();
    eprintln!(
        "{runtime}: {served} of {REFUSED_CONNECTS} refused CONNECTs answered in {:?}; errors {errors:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let admin = admin_user_count(server.admin);
    eprintln!("{runtime}: admin answer {admin:02x?} in {:?}", t.elapsed());
    let stopped = server.terminate(Duration::from_secs(5)).expect("SIGTERM");
    eprintln!("{runtime}: after SIGTERM: {stopped:?} (None: still running after 5 s)");
    assert!(
        errors.is_empty(),
        "{served} of {REFUSED_CONNECTS} answered, then: {errors:?}"
    );
    assert_eq!(
        admin,
        Ok(vec![0x01, 0x00, 0x00, 0x07, 0x02]),
        "the admin port no longer answers"
    );
    assert!(stopped.is_some(), "SIGTERM ignored for 5 s");
}

// ------------------------------------------------------------------ 5. descriptor budget

use socks5d_tests::peers::firehose;

/// Descriptor limit of the server in the budget probe.
const NOFILE: u64 = 200;
/// Connections held: below what the server derives from the limit ((200 - 64) / 2 = 68
/// proxied connections, two descriptors each).
const HELD: usize = 66;

/// Bug 5, descriptor budget: under `ulimit -n 200` (the server then serves at most 68
/// connections at once), 66 clients connect, one after another, to a destination that sends
/// as fast as it can, and never read what it sends. Every one must get a `00` reply (not
/// `01` general failure, not silence), and the server must not fall into accept failures.
fn descriptor_budget_holds_below_the_limit(runtime: &str) {
    let source = firehose().port();
    let mut server = start(runtime, Some(NOFILE), false);
    let mut held = Vec::new();
    let mut failure = None;
    let t = Instant::now();
    for i in 0..HELD {
        let attempt = (|| {
            let mut c = TcpStream::connect(server.socks).map_err(|e| format!("connect: {e}"))?;
            c.set_read_timeout(Some(Duration::from_secs(3)))
                .map_err(|e| e.to_string())?;
            c.write_all(&handshake(source))
                .map_err(|e| format!("write: {e}"))?;
            let mut answer = [0u8; ANSWER_LEN];
            c.read_exact(&mut answer)
                .map_err(|e| format!("no answer: {e}"))?;
            if answer[..6] != [5, 2, 1, 0, 5, 0] {
                return Err(format!("answer {answer:?}, wanted REP 0"));
            }
            Ok(c)
        })();
        match attempt {
            Ok(c) => held.push(c),
            Err(e) => {
                failure = Some(format!("connection {} of {HELD}: {e}", i + 1));
                break;
            }
        }
        // Give the relay time to take what it needs (the destination fills the path).
        thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{runtime}: {} of {HELD} connections established in {:?}; {failure:?}",
        held.len(),
        t.elapsed()
    );
    // Let an accept loop that fails show itself in the log.
    thread::sleep(Duration::from_millis(500));
    let running = server.is_running();
    let (_, stderr) = server.logs();
    drop(server);
    for c in &held {
        let _ = c.shutdown(Shutdown::Both);
    }
    let accept_failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("accept"))
        .collect();
    eprintln!(
        "{runtime}: {} accept-failure lines on stderr{}",
        accept_failures.len(),
        accept_failures
            .first()
            .map(|l| format!(", first: {l}"))
            .unwrap_or_default()
    );
    assert!(running, "socks5d exited");
    assert!(failure.is_none(), "{}", failure.unwrap_or_default());
    assert!(
        accept_failures.is_empty(),
        "{} accept failures below the limit, first: {}",
        accept_failures.len(),
        accept_failures[0]
    );
}

#[test]
fn access_log_on_an_unread_pipe_does_not_block_the_server() {
    on_every_runtime(access_log_on_an_unread_pipe);
}

#[test]
fn descriptor_budget_holds_connections_below_the_limit() {
    on_every_runtime(descriptor_budget_holds_below_the_limit);
}

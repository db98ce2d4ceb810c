//! A network namespace of a test's own, joined to the host by a veth pair, for peers that
//! must not be on loopback (Dante's `socksify` sends loopback destinations directly, not
//! through the proxy); and child processes that cannot outlive the test.
//!
//! Each [`Netns`] gets a unique name (pid and a counter) and a /30 of its own from
//! 198.18.0.0/15 (RFC 2544's benchmarking range): the host end of the veth pair has the
//! first address, the namespace end the second. The /30 is reserved with an advisory lock
//! on a file under the temporary directory, so parallel tests and parallel test processes
//! never share one; a namespace left behind by a killed test process is removed when the
//! next one is created. Dropping the guard (also while a test panics) removes the
//! namespace and the veth pair.
//!
//! Creating one needs root and `ip` (Debian `iproute2`); without them [`Netns::create`]
//! panics and says what is missing, it does not skip.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// First address of the range the namespaces take their /30s from (198.18.0.0/15).
const RANGE_START: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// How many /30s the /15 holds.
const BLOCKS: u32 = 1 << (32 - 15 - 2);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`, panicking with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` ({e}): apt-get install iproute2"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip ARGS` and ignores the outcome (removing what may already be gone).
fn ip_quiet(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Panics unless the process is root and `ip` runs.
///
/// # Panics
///
/// As described, with what to do.
pub fn require_root_and_ip() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "network-namespace tests need root (ip netns add); run them as root"
    );
    let v = Command::new("ip").arg("-V").output();
    assert!(
        v.is_ok_and(|o| o.status.success()),
        "`ip` is missing: apt-get install iproute2 (network-namespace tests need it)"
    );
}

/// Returns the full path of `program` on `PATH`, if it is there.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A network namespace with a veth pair to the host; removed on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    /// The host end's address (in the namespace's /30); the namespace reaches it.
    pub host: Ipv4Addr,
    /// The namespace end's address; the host reaches it through the veth pair.
    pub inside: Ipv4Addr,
    /// The locked reservation file of the /30 (unlocked when closed).
    lock: File,
}

impl Netns {
    /// Creates a namespace, a veth pair between it and the host, and their addresses; the
    /// namespace's loopback is up too.
    ///
    /// # Panics
    ///
    /// When not root, when `ip` is missing, when no /30 is free, or when an `ip` command
    /// fails (its error is in the message); whatever was created by then is removed.
    pub fn create() -> Self {
        require_root_and_ip();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("s5d{pid}x{n}");
        // Interface names are at most 15 bytes: "s5h" + 7 digits of pid + "x" + counter.
        let host_if = format!("s5h{pid}x{n}");
        let ns_if = format!("s5n{pid}x{n}");
        let (block, lock) = reserve(pid.wrapping_mul(131).wrapping_add(n), &name, &host_if);
        let base = RANGE_START + block * 4;
        let ns = Self {
            name,
            host_if,
            host: Ipv4Addr::from(base + 1),
            inside: Ipv4Addr::from(base + 2),
            lock,
        };
        let host_cidr = format!("{}/30", ns.host);
        let inside_cidr = format!("{}/30", ns.inside);
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
            "netns",
            &ns.name,
        ]);
        ip(&["addr", "add", &host_cidr, "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&["-n", &ns.name, "addr", "add", &inside_cidr, "dev", &ns_if]);
        ip(&["-n", &ns.name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end and so the pair; the host end is
        // deleted first in case a process still holds the namespace open.
        ip_quiet(&["link", "del", &self.host_if]);
        let gone = ip_quiet(&["netns", "del", &self.name]);
        if !gone {
            eprintln!("warning: could not remove network namespace {}", self.name);
        }
        // Nothing left to clean up for whoever takes the /30 next.
        let _ = self.lock.set_len(0);
    }
}

/// Takes the first free /30 from `start` on: locks its reservation file and records `name`
/// and `host_if` there. First removes what killed test processes left behind: every
/// reservation file that is not locked but names a namespace.
fn reserve(start: u32, name: &str, host_if: &str) -> (u32, File) {
    let dir = std::env::temp_dir().join("socks5d-netns");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            drop(take(&e.path()));
        }
    }
    for i in 0..BLOCKS {
        let block = start.wrapping_add(i) % BLOCKS;
        let path = dir.join(format!("{block}.lock"));
        let Some(mut f) = take(&path) else { continue };
        writeln!(f, "{name} {host_if}")
            .and_then(|()| f.flush())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return (block, f);
    }
    panic!("no free /30 in 198.18.0.0/15 for a test network namespace");
}

/// Locks the reservation file at `path` if no one holds it; removes the namespace and the
/// host interface it names (left by a holder that was killed) and empties it. `None` when
/// another test holds it.
fn take(path: &Path) -> Option<File> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    // SAFETY: flock on a descriptor this function owns; it has no memory effects.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return None;
    }
    let mut stale = String::new();
    let _ = f.read_to_string(&mut stale);
    let mut words = stale.split_whitespace();
    if let (Some(old_ns), Some(old_if)) = (words.next(), words.next()) {
        ip_quiet(&["link", "del", old_if]);
        ip_quiet(&["netns", "del", old_ns]);
    }
    f.set_len(0)
        .and_then(|()| f.rewind())
        .unwrap_or_else(|e| panic!("emptying {}: {e}", path.display()));
    Some(f)
}

/// A temporary file removed on drop.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Writes `contents` to a new file named after `stem`, the pid and a counter.
    ///
    /// # Panics
    ///
    /// If it cannot be written.
    pub fn new(stem: &str, contents: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{stem}-{}-{n}", std::process::id()));
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        Self { path }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A child process with its output read line by line on background threads; killed (by its
/// own pid) on drop if it is still running.
#[derive(Debug)]
pub struct Proc {
    what: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// How a [`Proc`] ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Every line it wrote to standard output, in order.
    pub stdout: Vec<String>,
    /// Everything it wrote to standard error.
    pub stderr: String,
}

impl Proc {
    /// Spawns `cmd` with standard input closed and its output captured; `what` names it in
    /// panic messages.
    ///
    /// # Panics
    ///
    /// If it cannot be spawned.
    pub fn spawn(what: &str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(err).read_to_string(&mut s);
            let _ = err_tx.send(s);
        });
        Self {
            what: what.to_owned(),
            child,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for the next line of standard output.
    ///
    /// # Panics
    ///
    /// If none comes in time or the output ends (the process's output is in the message).
    pub fn line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => {
                self.seen.push(l.clone());
                l
            }
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.recv_timeout(Duration::from_secs(1));
                panic!(
                    "{}: no line of output ({e:?}); stdout so far {:?}; stderr: {}",
                    self.what,
                    self.seen,
                    err.unwrap_or_default()
                );
            }
        }
    }

    /// Waits up to `timeout` for the process to exit, and collects the rest of its output.
    ///
    /// # Panics
    ///
    /// If it is still running then (it is killed; its output is in the message).
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let until = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let err = self.stderr.recv_timeout(Duration::from_secs(1));
                    let rest: Vec<String> = self.lines.try_iter().collect();
                    panic!(
                        "{} did not finish within {timeout:?}; stdout {:?} {rest:?}; stderr: {}",
                        self.what,
                        self.seen,
                        err.unwrap_or_default()
                    );
                }
            }
        };
        // The pipes close when the process exits: the readers finish promptly.
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        let mut stdout = std::mem::take(&mut self.seen);
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            stdout.push(l);
        }
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// Kills the process (by its pid) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

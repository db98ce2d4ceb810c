//! The server under test: a `socks5d` child process on loopback, with its output captured
//! and its resources read from `/proc`.

use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{ADMIN_PASS, ADMIN_USER, PASS, USER};

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Caps the server's `RLIMIT_NOFILE` (soft and hard, so it cannot raise it).
    pub nofile: Option<u64>,
    /// Flags after the standard ones (ports, `--admin-transport tcp`, the users).
    pub args: Vec<String>,
    /// Standard output goes to a pipe that nobody reads (held open as long as the
    /// [`ServerProcess`] lives) instead of a file: it fills after a few dozen KiB.
    pub unread_stdout: bool,
}

impl Launch {
    /// A launch with these extra flags.
    pub fn with_args(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::default()
        }
    }
}

/// A running `socks5d`; killed when dropped. Its stdout and stderr go to files in the
/// temporary directory (removed on drop), readable at any time with [`ServerProcess::logs`].
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// The SOCKS5 listener.
    pub socks: SocketAddr,
    /// The admin listener (TCP).
    pub admin: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
    /// With [`Launch::unread_stdout`]: the read end, never read.
    _unread_stdout: Option<std::process::ChildStdout>,
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl ServerProcess {
    /// Starts `bin` (the `socks5d` binary) on two free loopback ports with the admin
    /// service over TCP, proxy user [`USER`] and administrator [`ADMIN_USER`], and waits until
    /// it listens.
    ///
    /// # Errors
    ///
    /// If it cannot be spawned, exits before listening (the error then holds its stderr: a
    /// flag it does not know, for instance), or does not listen within 10 s.
    pub fn start(bin: &Path, launch: &Launch) -> io::Result<Self> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let (socks, admin) = (free_port()?, free_port()?);
        let tag = format!(
            "socks5d-hostile-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir();
        let (stdout, stderr) = (
            dir.join(format!("{tag}.out")),
            dir.join(format!("{tag}.err")),
        );
        let mut cmd = Command::new(bin);
        cmd.env("STATE_DIRECTORY", crate::fresh_state_dir());
        cmd.args(["-l", "127.0.0.1", "-L", "127.0.0.1"])
            .args(["-p", &socks.to_string(), "-P", &admin.to_string()])
            .args(["--admin-transport", "tcp"])
            .args(["-a", &format!("{ADMIN_USER}:{ADMIN_PASS}")])
            .args(["-u", &format!("{USER}:{PASS}")])
            .args(&launch.args)
            .stdin(Stdio::null())
            .stdout(if launch.unread_stdout {
                Stdio::piped()
            } else {
                File::create(&stdout)?.into()
            })
            .stderr(File::create(&stderr)?);
        if let Some(n) = launch.nofile {
            // SAFETY: `setrlimit` is async-signal-safe, and nothing else runs between fork
            // and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn()?;
        let mut server = Self {
            pid: child.id(),
            _unread_stdout: child.stdout.take(),
            child,
            socks: (Ipv4Addr::LOCALHOST, socks).into(),
            admin: (Ipv4Addr::LOCALHOST, admin).into(),
            stdout,
            stderr,
        };
        let t = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait()? {
                let (_, err) = server.logs();
                return Err(io::Error::other(format!(
                    "socks5d exited before listening ({status}): {}",
                    err.trim()
                )));
            }
            // The admin listener is bound after the SOCKS one.
            if TcpStream::connect(server.admin).is_ok() {
                return Ok(server);
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "socks5d did not listen within 10 s",
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns whether the process is still running (not exited, not crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Returns its exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; returns how long it
    /// took, or `None` if it was still running.
    ///
    /// # Errors
    ///
    /// If the signal cannot be sent or the status cannot be read.
    pub fn terminate(&mut self, within: Duration) -> io::Result<Option<Duration>> {
        let pid = libc::pid_t::try_from(self.pid).map_err(io::Error::other)?;
        // SAFETY: `kill` with a valid signal on our own child's pid.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let t = Instant::now();
        while t.elapsed() < within {
            if self.child.try_wait()?.is_some() {
                return Ok(Some(t.elapsed()));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// Returns everything it wrote so far: (stdout, stderr), lossily decoded.
    pub fn logs(&self) -> (String, String) {
        let read =
            |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
        (read(&self.stdout), read(&self.stderr))
    }

    /// Returns its CPU time so far (user + system), from `/proc/PID/stat`.
    ///
    /// # Errors
    ///
    /// If `/proc/PID/stat` cannot be read or parsed.
    pub fn cpu_time(&self) -> io::Result<Duration> {
        let s = fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The command name is in parentheses and may contain spaces.
        let rest = s
            .rfind(')')
            .map(|i| &s[i + 1..])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3 (state); utime and stime are fields 14 and 15.
        let field = |n: usize| -> io::Result<u64> {
            f.get(n - 3)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat field"))
        };
        let ticks = field(14)? + field(15)?;
        Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
    }

    /// Returns (current RSS, peak RSS) in KiB: `VmRSS` and `VmHWM` of `/proc/PID/status`.
    ///
    /// # Errors
    ///
    /// If `/proc/PID/status` cannot be read or lacks those lines.
    pub fn rss_kib(&self) -> io::Result<(u64, u64)> {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let get = |key: &str| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {key}")))
        };
        Ok((get("VmRSS:")?, get("VmHWM:")?))
    }

    /// Returns the inodes of the sockets it holds (the `socket:[N]` links of `/proc/PID/fd`).
    ///
    /// # Errors
    ///
    /// If `/proc/PID/fd` cannot be read.
    pub fn socket_inodes(&self) -> io::Result<Vec<u64>> {
        let mut v = Vec::new();
        for e in fs::read_dir(format!("/proc/{}/fd", self.pid))? {
            let Ok(link) = fs::read_link(e?.path()) else {
                continue; // closed meanwhile
            };
            let link = link.to_string_lossy();
            if let Some(n) = link
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                v.push(n);
            }
        }
        Ok(v)
    }

    /// Returns how many descriptors it holds.
    ///
    /// # Errors
    ///
    /// If `/proc/PID/fd` cannot be read.
    pub fn open_fds(&self) -> io::Result<usize> {
        Ok(fs::read_dir(format!("/proc/{}/fd", self.pid))?.count())
    }

    /// Counts its TCP sockets by state (from `/proc/net/tcp`, as `ss -tan` shows them):
    /// returns (all its TCP sockets, those in CLOSE-WAIT).
    ///
    /// # Errors
    ///
    /// If `/proc` cannot be read.
    pub fn tcp_states(&self) -> io::Result<(usize, usize)> {
        let mine: std::collections::HashSet<u64> = self.socket_inodes()?.into_iter().collect();
        let (mut all, mut close_wait) = (0, 0);
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(s) = fs::read_to_string(table) else {
                continue;
            };
            for line in s.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (Some(st), Some(inode)) = (f.get(3), f.get(9).and_then(|v| v.parse().ok()))
                else {
                    continue;
                };
                if mine.contains(&inode) {
                    all += 1;
                    // 08: TCP_CLOSE_WAIT (include/net/tcp_states.h).
                    if *st == "08" {
                        close_wait += 1;
                    }
                }
            }
        }
        Ok((all, close_wait))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.stdout);
        let _ = fs::remove_file(&self.stderr);
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (the attacks need thousands
/// of sockets, and a child server inherits the hard limit). Returns the hard limit.
///
/// # Errors
///
/// The error of `getrlimit` or `setrlimit`.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
    Ok(u64::from(lim.rlim_max))
}

/// Measures the server's CPU use over an interval.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    wall: Instant,
    cpu: Duration,
}

impl CpuMeter {
    /// Starts measuring now.
    ///
    /// # Errors
    ///
    /// If the server's CPU time cannot be read.
    pub fn start(server: &ServerProcess) -> io::Result<Self> {
        Ok(Self {
            wall: Instant::now(),
            cpu: server.cpu_time()?,
        })
    }

    /// Returns the server's CPU use since [`CpuMeter::start`], in percent of one core.
    ///
    /// # Errors
    ///
    /// If the server's CPU time cannot be read.
    pub fn percent(&self, server: &ServerProcess) -> io::Result<f64> {
        let cpu = server.cpu_time()?.saturating_sub(self.cpu);
        Ok(100.0 * cpu.as_secs_f64() / self.wall.elapsed().as_secs_f64().max(1e-3))
    }
}

//! What the load generator reads about the server from `/proc`, and its own fd limit.
//!
//! Servers that fork (Dante) or run threads (microsocks) are measured as a process tree: the
//! given pid and every live descendant, so `--server-pid` is the pid of the server's main
//! process.

use std::fs;
use std::io;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub(crate) fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// CPU time of a process tree in clock ticks, split into user and system time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTicks {
    /// utime (plus cutime of reaped children).
    pub(crate) user: u64,
    /// stime (plus cstime of reaped children).
    pub(crate) system: u64,
}

impl CpuTicks {
    /// User plus system time.
    pub(crate) fn total(self) -> u64 {
        self.user + self.system
    }

    /// The time spent from `earlier` to `self`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// In seconds.
    pub(crate) fn seconds(self) -> f64 {
        self.total() as f64 / clock_ticks_per_sec() as f64
    }

    /// User time / (user + system) time; `None` when no tick was counted.
    pub(crate) fn user_share(self) -> Option<f64> {
        (self.total() > 0).then(|| self.user as f64 / self.total() as f64)
    }
}

/// Fields of `/proc/<pid>/stat` after the command name: (ppid, own time, time of reaped
/// children).
fn stat_fields(pid: u32) -> io::Result<(u32, CpuTicks, CpuTicks)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces or parentheses.
    let rest = s
        .rfind(')')
        .map(|i| &s[i + 1..])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    let num = |n: usize| -> io::Result<u64> {
        f.get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat field"))
    };
    Ok((
        num(4)? as u32,
        CpuTicks {
            user: num(14)?,
            system: num(15)?,
        },
        CpuTicks {
            user: num(16)?,
            system: num(17)?,
        },
    ))
}

/// `pid` and all its live descendants.
pub(crate) fn process_tree(pid: u32) -> io::Result<Vec<u32>> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in fs::read_dir("/proc")? {
        let Ok(e) = e else { continue };
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok((ppid, _, _)) = stat_fields(p) {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    Ok(tree)
}

/// CPU time (user + system) of the process tree rooted at `pid`, in clock ticks: the live
/// processes' own time plus the time of children they have reaped.
pub(crate) fn cpu_ticks(pid: u32) -> io::Result<CpuTicks> {
    // Fails if the root itself is gone.
    stat_fields(pid)?;
    let mut total = CpuTicks::default();
    for p in process_tree(pid)? {
        if let Ok((_, own, reaped)) = stat_fields(p) {
            total.user += own.user + reaped.user;
            total.system += own.system + reaped.system;
        }
    }
    Ok(total)
}

/// Resident set size of the process tree rooted at `pid` (sum of `VmRSS`), in KiB.
pub(crate) fn rss_kib(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for p in process_tree(pid)? {
        let Ok(s) = fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        if let Some(line) = s.lines().find(|l| l.starts_with("VmRSS:")) {
            total += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Proportional set size of the process tree rooted at `pid` (sum of `Pss` from
/// `smaps_rollup`), in KiB. Unlike the sum of `VmRSS`, pages shared between the processes of
/// a forking server (Dante) are counted once.
pub(crate) fn pss_kib(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for p in process_tree(pid)? {
        let Ok(s) = fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        if let Some(line) = s.lines().find(|l| l.starts_with("Pss:")) {
            total += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Number of processes plus threads in the tree (for the report).
pub(crate) fn thread_count(pid: u32) -> io::Result<u64> {
    let mut n = 0;
    for p in process_tree(pid)? {
        n += fs::read_dir(format!("/proc/{p}/task")).map_or(0, |d| d.count() as u64);
    }
    Ok(n)
}

/// Raises this process's `RLIMIT_NOFILE` to at least `want` (raising the hard limit too when
/// running as root). Returns the soft limit now in force.
pub(crate) fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let mut new = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: `new` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        // Not root: settle for the hard limit.
        new.rlim_cur = lim.rlim_max;
        new.rlim_max = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(new.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_ok());
        assert!(rss_kib(me).unwrap() > 0);
        assert!(pss_kib(me).unwrap() > 0);
        assert!(process_tree(me).unwrap().contains(&me));
        assert!(thread_count(me).unwrap() >= 1);
    }

    #[test]
    fn cpu_ticks_arithmetic() {
        let a = CpuTicks {
            user: 10,
            system: 30,
        };
        let b = CpuTicks {
            user: 25,
            system: 75,
        };
        let d = b.since(a);
        assert_eq!(
            d,
            CpuTicks {
                user: 15,
                system: 45
            }
        );
        assert_eq!(d.total(), 60);
        assert_eq!(d.user_share(), Some(0.25));
        assert_eq!(CpuTicks::default().user_share(), None);
        // A counter that went backwards (a process of the tree exited) never underflows.
        assert_eq!(a.since(b).total(), 0);
    }

    #[test]
    fn user_time_of_a_busy_loop_is_counted() {
        let me = std::process::id();
        let before = cpu_ticks(me).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let d = cpu_ticks(me).unwrap().since(before);
        // 200 ms of spinning is about 20 ticks; a loaded machine may give us fewer.
        assert!(d.user > 0, "{d:?}");
    }
}

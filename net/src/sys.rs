//! Process-level helpers: descriptor limits.

use std::io;
use std::time::Duration;

/// A privileged process raises its hard `RLIMIT_NOFILE` to at least this many descriptors.
pub const WANT_NOFILE: u64 = 1 << 16;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so the server can hold many
/// connections (each proxied connection needs two descriptors). A privileged process (root,
/// `CAP_SYS_RESOURCE`) first raises a hard limit below [`WANT_NOFILE`] to it; elsewhere that
/// attempt fails quietly. Returns the new soft limit.
///
/// # Errors
///
/// The error of `getrlimit` or `setrlimit`.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
    if u64::from(lim.rlim_max) < WANT_NOFILE {
        let want = libc::rlimit {
            rlim_cur: WANT_NOFILE as libc::rlim_t,
            rlim_max: WANT_NOFILE as libc::rlim_t,
        };
        // SAFETY: `want` is a valid `rlimit`. Unprivileged, this fails with EPERM and changes
        // nothing.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            lim = want;
        }
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `want` is a valid `rlimit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
    Ok(u64::from(lim.rlim_cur))
}

/// Returns whether an `accept` error means the process or system ran out of descriptors or
/// memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): the accept loop should back off for a
/// moment and carry on, not exit.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// How long an accept loop pauses after running out of descriptors or memory.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Decides what an accept loop does after `accept` failed with `e`, and logs it (`what`
/// names the listener): when descriptors or memory ran out ([`is_resource_exhaustion`]),
/// returns how long to pause so the loop does not spin; otherwise `None` (accept again at
/// once: the error concerned that one connection).
pub fn accept_backoff(e: &io::Error, what: &str) -> Option<Duration> {
    if is_resource_exhaustion(e) {
        tracing::warn!(error = %e, "{what} accept: out of descriptors or memory; retrying shortly");
        Some(ACCEPT_BACKOFF)
    } else {
        tracing::debug!(error = %e, "{what} accept failed");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_keeps_or_raises_the_limit() {
        let n = raise_nofile_limit().unwrap();
        assert!(n >= 3);
        assert_eq!(raise_nofile_limit().unwrap(), n, "idempotent");
    }

    #[test]
    fn exhaustion_errors() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn backoff_only_on_exhaustion() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(accept_backoff(&emfile, "test"), Some(ACCEPT_BACKOFF));
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(accept_backoff(&aborted, "test"), None);
    }
}

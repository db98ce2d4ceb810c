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
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // `None` is RLIM_INFINITY.
    let value = |v: Option<u64>| v.unwrap_or(u64::MAX);
    let mut lim = getrlimit(Resource::Nofile);
    if value(lim.maximum) < WANT_NOFILE {
        let want = Rlimit {
            current: Some(WANT_NOFILE),
            maximum: Some(WANT_NOFILE),
        };
        // Unprivileged, this fails with EPERM and changes nothing.
        if setrlimit(Resource::Nofile, want).is_ok() {
            lim = want;
        }
    }
    if value(lim.current) < value(lim.maximum) {
        let want = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        setrlimit(Resource::Nofile, want)?;
        lim = want;
    }
    Ok(value(lim.current))
}

/// Returns whether an `accept` error means the process or system ran out of descriptors or
/// memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): the accept loop should back off for a
/// moment and carry on, not exit.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
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
        for (errno, exhausted) in [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOBUFS, true),
            (libc::ENOMEM, true),
            (libc::ECONNABORTED, false),
            (libc::EAGAIN, false),
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(is_resource_exhaustion(&e), exhausted, "{e}");
        }
        assert!(!is_resource_exhaustion(&io::Error::other(
            "not an OS error"
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

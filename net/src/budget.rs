//! The descriptor budget: how many SOCKS connections and relay pipes fit in the open-file
//! limit, so that a connection the server accepted is never refused for lack of descriptors.
//!
//! A proxied connection holds two sockets. A direction with bytes in flight on the splice path
//! also holds a pipe (two descriptors), and the pipe pool keeps up to 16 empty pipes. The
//! listeners, the admin sessions, the log and the runtime's own descriptors come out of a fixed
//! reserve. The connection limit is chosen first (the operator's, or two fifths of what is left
//! after the reserve); the pipes get what remains, and the relay copies instead of splicing
//! when none is free ([`crate::relay::set_pipe_budget`]).

/// Descriptors kept for everything that is not a proxied connection: listeners, the runtime,
/// the log, the store, and the admin sessions (counted separately, see [`Budget::plan`]).
pub const RESERVE: u64 = 64;
/// Empty pipes the pool may keep (two descriptors each).
pub const POOL_PIPES: u64 = 16;
/// The default connection limit where the open-file limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// A plan for the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// SOCKS connections served at once.
    pub max_connections: usize,
    /// Relay pipes in use at once.
    pub pipes: usize,
    /// Whether the operator's connection limit does not fit (then no pipes are left and the
    /// connections themselves may run out of descriptors).
    pub overcommitted: bool,
}

impl Budget {
    /// Plans `limit` descriptors for `asked` connections (the default when `None`) and
    /// `admin_sockets` admin connections at once.
    pub fn plan(limit: u64, asked: Option<usize>, admin_sockets: usize) -> Self {
        let avail = limit.saturating_sub(RESERVE + admin_sockets as u64);
        let max_connections = match asked {
            Some(n) => n,
            None => usize::try_from(avail * 2 / 5)
                .unwrap_or(usize::MAX)
                .clamp(1, DEFAULT_MAX_CONNECTIONS),
        };
        let sockets = 2 * max_connections as u64;
        let overcommitted = sockets > avail;
        let pipes = avail.saturating_sub(sockets + 2 * POOL_PIPES) / 2;
        Self {
            max_connections,
            pipes: usize::try_from(pipes).unwrap_or(usize::MAX),
            overcommitted,
        }
    }

    /// Descriptors the plan uses at most.
    pub fn descriptors(&self, admin_sockets: usize) -> u64 {
        RESERVE
            + admin_sockets as u64
            + 2 * self.max_connections as u64
            + 2 * (self.pipes as u64 + POOL_PIPES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_fits_its_limit() {
        for limit in [100, 200, 1024, 4096, 20_000, 65_536, 1 << 20] {
            for asked in [None, Some(10), Some(50)] {
                let b = Budget::plan(limit, asked, 80);
                if !b.overcommitted && b.pipes > 0 {
                    assert!(b.descriptors(80) <= limit, "{limit} {asked:?}: {b:?}");
                }
            }
        }
    }

    #[test]
    fn defaults() {
        // This container's hard limit: connections get two fifths, pipes most of the rest.
        let b = Budget::plan(20_000, None, 80);
        assert_eq!(b.max_connections, 7_942);
        assert_eq!(b.pipes, (19_856 - 15_884 - 32) / 2);
        assert!(!b.overcommitted);
        // A large limit: the default cap.
        assert_eq!(
            Budget::plan(1 << 20, None, 80).max_connections,
            DEFAULT_MAX_CONNECTIONS
        );
        // 200 descriptors: 22 connections, no pipes (the relay copies), nothing overcommitted.
        let b = Budget::plan(200, None, 80);
        assert_eq!(
            (b.max_connections, b.pipes, b.overcommitted),
            (22, 0, false)
        );
        // An operator's number beyond the limit is kept, and said to be overcommitted.
        assert!(Budget::plan(200, Some(1000), 80).overcommitted);
    }
}

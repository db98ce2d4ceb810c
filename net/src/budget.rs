//! The descriptor budget: how many SOCKS connections and relay pipes fit in the open-file
//! limit, so that a connection the server accepted is never refused for lack of descriptors.
//!
//! A proxied connection holds two sockets. A direction with bytes in flight on the splice path
//! also holds a pipe (two descriptors) for as long as its bytes wait (a client that never
//! reads keeps it), and the pipe pool keeps up to 16 empty pipes. So the split is static: the
//! connection limit is chosen first, each connection counted at two descriptors, and the relay
//! pipes get what remains ([`crate::relay::set_pipe_budget`]); without a free pipe a direction
//! copies through its buffer instead, and no accepted connection ever fails for descriptors.
//!
//! The default limit is half of what is left after a fixed reserve (listeners, the runtime,
//! the log, the store), at most 10 000. Where the open-file limit leaves room (4 096
//! descriptors beyond the reserve or more), the admin sessions and a twentieth of the rest are
//! set aside first, so that splicing stays available; below that every descriptor goes to
//! connections (the old rule, two per connection) and the admin sessions share the reserve.

/// Descriptors kept for everything that is not a proxied connection: listeners, the runtime,
/// the log, the store, and the admin sessions (counted separately, see [`Budget::plan`]).
pub const RESERVE: u64 = 64;
/// Empty pipes the pool may keep (two descriptors each).
pub const POOL_PIPES: u64 = 16;
/// Descriptors beyond the reserve from which admin sessions and a share for pipes are set
/// aside before connections.
pub const ROOMY: u64 = 4096;
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
    /// Whether the admin sessions got descriptors of their own (a roomy limit) rather than
    /// sharing the reserve.
    pub admin_set_aside: bool,
}

impl Budget {
    /// Plans `limit` descriptors for `asked` connections (the default when `None`) and
    /// `admin_sockets` admin connections at once.
    pub fn plan(limit: u64, asked: Option<usize>, admin_sockets: usize) -> Self {
        let mut avail = limit.saturating_sub(RESERVE);
        let mut spare = 0;
        let admin_set_aside = avail >= ROOMY;
        if admin_set_aside {
            avail -= admin_sockets as u64;
            spare = avail / 20;
        }
        let max_connections = match asked {
            Some(n) => n,
            None => usize::try_from((avail - spare) / 2)
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
            admin_set_aside,
        }
    }

    /// Descriptors the plan uses at most.
    pub fn descriptors(&self, admin_sockets: usize) -> u64 {
        let admin = if self.admin_set_aside {
            admin_sockets as u64
        } else {
            0
        };
        RESERVE + admin + 2 * self.max_connections as u64 + 2 * (self.pipes as u64 + POOL_PIPES)
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
        // This container's hard limit: admin sessions and a twentieth set aside, then
        // connections at two descriptors each, pipes the rest.
        let b = Budget::plan(20_000, None, 80);
        let avail = 20_000 - RESERVE - 80;
        assert_eq!(b.max_connections, ((avail - avail / 20) / 2) as usize);
        assert_eq!(
            b.pipes,
            ((avail - 2 * b.max_connections as u64 - 32) / 2) as usize
        );
        assert!(b.pipes > 400, "{b:?}");
        assert!(!b.overcommitted);
        // A large limit: the default cap.
        assert_eq!(
            Budget::plan(1 << 20, None, 80).max_connections,
            DEFAULT_MAX_CONNECTIONS
        );
        // 200 descriptors: two per connection after the reserve (68), no pipes (the relay
        // copies), nothing overcommitted.
        let b = Budget::plan(200, None, 80);
        assert_eq!(
            (b.max_connections, b.pipes, b.overcommitted),
            (68, 0, false)
        );
        // An operator's number beyond the limit is kept, and said to be overcommitted.
        assert!(Budget::plan(200, Some(1000), 80).overcommitted);
    }
}

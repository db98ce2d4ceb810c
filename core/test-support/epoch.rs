//! The one clock read of the core's unit tests: an epoch `Instant` to which they add
//! durations. It lives outside `src/` so that `src/` itself never reads a clock (the sessions
//! only ever see instants they are given). Included by `src/lib.rs` under `cfg(test)` only;
//! the fuzz bodies have their own in `socks5d-testkit`.

use std::sync::OnceLock;
use std::time::Instant;

/// Returns a fixed instant, the same for the whole process. Only differences of instants
/// matter to the sessions, so which instant this is changes nothing.
#[allow(clippy::disallowed_methods)] // the one clock read, outside the sans-IO code
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

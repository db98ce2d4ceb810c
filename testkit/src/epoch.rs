//! The one clock read of the fuzz bodies: an epoch `Instant` to which they add durations (the
//! sessions only ever see instants they are given).

use std::sync::OnceLock;
use std::time::Instant;

/// Returns a fixed instant, the same for the whole process. Only differences of instants
/// matter to the sessions, so which instant this is changes nothing.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

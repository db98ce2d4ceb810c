//! Abuse policies shared by the SOCKS5 and admin drivers, as thread-safe sans-IO types: the
//! driver supplies the clock (`now: Instant`) and does the waiting and the closing.
//!
//! | type | what |
//! |---|---|
//! | [`LoginThrottle`] | exponential back-off on failed logins, per address (admin) or per address and user name (SOCKS5) |
//! | [`AdmissionPool`] | a bounded pool of connections that have not authenticated yet; when full, the oldest is closed to make room |
//!
//! Both are shared by every connection task (`Arc<…>` or a `static`): their methods take
//! `&self`, hold a [`std::sync::Mutex`] for a short critical section and never block for
//! longer, never read a clock and never do I/O.
//!
//! # How a driver uses them
//!
//! On accept, before anything else, the connection takes a [`Ticket`] from the pool of its
//! listener ([`AdmissionPool::admit`]) and races its I/O against
//! `std::future::poll_fn(|cx| ticket.poll_evicted(cx))`; if the pool was full, the oldest
//! ticket's task is told to close. Once authenticated, the connection gives its ticket back
//! ([`Ticket::release`]) and takes a permit of the authenticated limit (the driver's
//! semaphore) instead, so authenticated sessions are never evicted and unauthenticated ones
//! never use up their places.
//!
//! When the session has checked a login (its reply is waiting in `poll_transmit`), the driver,
//! in the same synchronous step (no `.await` in between), asks the throttle for the answer's
//! slot, [`LoginThrottle::begin_attempt`], with the handshake deadline:
//!
//! - [`Slot::Now`]: record the outcome ([`LoginThrottle::record_failure`] or
//!   [`LoginThrottle::record_success`]) and write the reply;
//! - [`Slot::At`]`(t)`: record the outcome, then sleep until `t` (racing the close signal, so
//!   the wait holds nothing but this connection's own place) and write the reply;
//! - [`Slot::Refused`]: record nothing, write nothing, close the connection at once. The
//!   outcome was not revealed, so a right password found while refused is worth nothing to an
//!   attacker, and the close looks the same whatever the password was.
//!
//! The reply is delayed, not the accept and not the check: the reply time is fixed before the
//! outcome is known (it does not depend on it), and the wait never outlasts the handshake
//! deadline. A failed admin login is logged when [`FailureNote::log`] says so (address and
//! user name, never the password), with the number suppressed since the last logged one.

mod admission;
mod throttle;

pub use admission::{AdmissionPool, Evicted, Ticket};
pub use throttle::{
    FailureNote, LoginThrottle, Slot, ThrottleKey, ThrottlePolicy, MAX_POLICY_DURATION,
};

/// Locks a mutex, carrying on if a thread panicked while holding it (every critical section
/// here leaves the data consistent, so poisoning carries no information).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

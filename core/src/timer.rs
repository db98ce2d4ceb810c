//! A fixed-size table of deadlines, one slot per [`Timer`], with no heap.

use std::time::Instant;

/// The deadlines a session can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The handshake (SOCKS5 greeting to reply, or admin authentication) must finish by then.
    Handshake,
    /// SOCKS5 CONNECT: the next connection attempt starts then (RFC 8305 §5, "Connection
    /// Attempt Delay"), unless one fails before.
    NextAttempt,
    /// SOCKS5 BIND: the incoming connection must have arrived by then.
    Accept,
    /// SOCKS5 CONNECT: the connection attempt in this slot (`0..`[`Timer::ATTEMPT_SLOTS`]) is
    /// abandoned then.
    Attempt(u8),
}

impl Timer {
    /// Number of [`Timer::Attempt`] slots: the most connection attempts in flight at once.
    pub const ATTEMPT_SLOTS: usize = 4;
    /// Number of timers.
    pub const COUNT: usize = 3 + Self::ATTEMPT_SLOTS;

    /// Returns the table index of this timer.
    ///
    /// # Panics
    ///
    /// For [`Timer::Attempt`] with a slot of [`Timer::ATTEMPT_SLOTS`] or more.
    const fn index(self) -> usize {
        match self {
            Self::Handshake => 0,
            Self::NextAttempt => 1,
            Self::Accept => 2,
            Self::Attempt(slot) => {
                assert!(
                    (slot as usize) < Self::ATTEMPT_SLOTS,
                    "attempt slot out of range"
                );
                3 + slot as usize
            }
        }
    }
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TimerTable([Option<Instant>; Timer::COUNT]);

impl TimerTable {
    /// Arms `timer` for `at`, replacing any earlier deadline of the same kind.
    ///
    /// # Panics
    ///
    /// For an out-of-range [`Timer::Attempt`] slot.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer.index()] = Some(at);
    }

    /// Disarms `timer`.
    ///
    /// # Panics
    ///
    /// For an out-of-range [`Timer::Attempt`] slot.
    pub fn stop(&mut self, timer: Timer) {
        self.0[timer.index()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.0 = [None; Timer::COUNT];
    }

    /// Returns the deadline of `timer`, if armed.
    ///
    /// # Panics
    ///
    /// For an out-of-range [`Timer::Attempt`] slot.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer.index()]
    }

    /// Returns whether `timer` is armed and due at `now`.
    ///
    /// # Panics
    ///
    /// For an out-of-range [`Timer::Attempt`] slot.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// Returns the earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn slots_are_independent_and_next_is_the_earliest() {
        let t0 = crate::epoch::epoch();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Handshake, t0 + Duration::from_secs(10));
        t.set(Timer::Attempt(3), t0 + Duration::from_secs(2));
        t.set(Timer::Attempt(0), t0 + Duration::from_secs(3));
        t.set(Timer::NextAttempt, t0 + Duration::from_secs(4));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(2)));
        assert!(t.is_expired(Timer::Attempt(3), t0 + Duration::from_secs(2)));
        assert!(!t.is_expired(Timer::Attempt(0), t0 + Duration::from_secs(2)));
        t.stop(Timer::Attempt(3));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(3)));
        assert_eq!(t.get(Timer::Accept), None);
        t.stop_all();
        assert_eq!(t.next(), None);
    }

    #[test]
    #[should_panic(expected = "attempt slot out of range")]
    fn an_attempt_slot_past_the_table_panics() {
        let mut t = TimerTable::default();
        t.set(
            Timer::Attempt(Timer::ATTEMPT_SLOTS as u8),
            crate::epoch::epoch(),
        );
    }
}

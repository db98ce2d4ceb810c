//! A fixed-size table of deadlines, one slot per [`Timer`], with no heap.

use std::time::Instant;

/// The deadlines a session can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The handshake (SOCKS5 greeting to reply, or admin authentication) must finish by then.
    Handshake = 0,
}

impl Timer {
    /// Number of timer kinds.
    pub const COUNT: usize = 1;
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TimerTable([Option<Instant>; Timer::COUNT]);

impl TimerTable {
    /// Arms `timer` for `at`, replacing any earlier deadline of the same kind.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    /// Returns the deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    /// Returns whether `timer` is armed and due at `now`.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// Returns the earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

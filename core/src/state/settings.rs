//! Settings: the initial [`Config`] and the live [`Settings`], readable without a lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use super::{Mutation, Outcome, HANDSHAKE_TIMEOUT, MAX_BUFFER_SIZE, MIN_BUFFER_SIZE};

/// Initial settings of a [`State`](super::State).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Relay buffer size in bytes (default 16384).
    pub buffer_size: u32,
    /// Clean-up routine period in seconds (default 5).
    pub selector_timeout: u8,
    /// Idle time after which the clean-up routine closes a connection, in seconds (default 120).
    pub connection_timeout: u8,
    /// Credential sniffing on (default true; `-N` turns it off).
    pub sniffing: bool,
    /// Clean-up routine on (default true; `-D` turns it off).
    pub cleanup: bool,
    /// Serve SOCKS5 clients that offer no authentication (default false).
    pub allow_anonymous: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            buffer_size: 16384,
            selector_timeout: 5,
            connection_timeout: 120,
            sniffing: true,
            cleanup: true,
            allow_anonymous: false,
        }
    }
}

/// The settings, readable without a lock from any thread.
#[derive(Debug)]
pub struct Settings {
    buffer_size: AtomicU32,
    selector_timeout: AtomicU8,
    connection_timeout: AtomicU8,
    sniffing: AtomicBool,
    cleanup: AtomicBool,
    allow_anonymous: AtomicBool,
}

impl Settings {
    pub(super) fn new(c: &Config) -> Self {
        Self {
            buffer_size: AtomicU32::new(c.buffer_size),
            selector_timeout: AtomicU8::new(c.selector_timeout),
            connection_timeout: AtomicU8::new(c.connection_timeout),
            sniffing: AtomicBool::new(c.sniffing),
            cleanup: AtomicBool::new(c.cleanup),
            allow_anonymous: AtomicBool::new(c.allow_anonymous),
        }
    }

    /// Returns the relay buffer size in bytes.
    pub fn buffer_size(&self) -> u32 {
        self.buffer_size.load(Relaxed)
    }
    /// Returns the clean-up routine's period in seconds.
    pub fn selector_timeout(&self) -> u8 {
        self.selector_timeout.load(Relaxed)
    }
    /// Returns the idle timeout in seconds.
    pub fn connection_timeout(&self) -> u8 {
        self.connection_timeout.load(Relaxed)
    }
    /// Returns whether credential sniffing is on.
    pub fn sniffing(&self) -> bool {
        self.sniffing.load(Relaxed)
    }
    /// Returns whether the clean-up routine is on.
    pub fn cleanup(&self) -> bool {
        self.cleanup.load(Relaxed)
    }
    /// Returns whether clients without authentication are served.
    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous.load(Relaxed)
    }

    /// Returns how long an admin connection may take to authenticate: the shorter of
    /// [`HANDSHAKE_TIMEOUT`] and the connection timeout. PROTOCOL.md: "A connection that has
    /// not completed authentication within the connection timeout is closed", and
    /// independently every handshake within 10 s. Unlike idleness, this holds whether the
    /// clean-up routine is on or off, and it is measured from the accept, not from the last
    /// byte (a client sending a byte every 0.5 s does not extend it).
    pub fn auth_timeout(&self) -> Duration {
        HANDSHAKE_TIMEOUT.min(Duration::from_secs(u64::from(self.connection_timeout())))
    }

    /// Returns all settings as a plain value.
    pub fn snapshot(&self) -> Config {
        Config {
            buffer_size: self.buffer_size(),
            selector_timeout: self.selector_timeout(),
            connection_timeout: self.connection_timeout(),
            sniffing: self.sniffing(),
            cleanup: self.cleanup(),
            allow_anonymous: self.allow_anonymous(),
        }
    }

    /// The settings half of [`State::apply`](super::State::apply): checks the range and
    /// stores. `None` for the mutations that are not settings.
    pub(super) fn apply(&self, m: &Mutation) -> Option<Outcome> {
        match m {
            Mutation::AddUser { .. }
            | Mutation::AddHashedUser { .. }
            | Mutation::RemoveUser { .. } => return None,
            Mutation::SetBufferSize(n) if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(n) => {
                return Some(Outcome::InvalidParameter)
            }
            Mutation::SetSelectorTimeout(0) | Mutation::SetConnectionTimeout(0) => {
                return Some(Outcome::InvalidParameter)
            }
            Mutation::SetSniffing(on) => self.sniffing.store(*on, Relaxed),
            Mutation::SetCleanup(on) => self.cleanup.store(*on, Relaxed),
            Mutation::SetBufferSize(n) => self.buffer_size.store(*n, Relaxed),
            Mutation::SetSelectorTimeout(t) => self.selector_timeout.store(*t, Relaxed),
            Mutation::SetConnectionTimeout(t) => self.connection_timeout.store(*t, Relaxed),
        }
        Some(Outcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::state;
    use super::*;

    #[test]
    fn settings_ranges() {
        let (s, _) = state();
        use Mutation::*;
        assert_eq!(s.apply(None, &SetBufferSize(0)), Outcome::InvalidParameter);
        assert_eq!(s.apply(None, &SetBufferSize(49)), Outcome::InvalidParameter);
        assert_eq!(
            s.apply(None, &SetBufferSize(MAX_BUFFER_SIZE + 1)),
            Outcome::InvalidParameter
        );
        assert_eq!(s.apply(None, &SetBufferSize(50)), Outcome::Applied);
        assert_eq!(s.settings().buffer_size(), 50);
        assert_eq!(
            s.apply(None, &SetSelectorTimeout(0)),
            Outcome::InvalidParameter
        );
        assert_eq!(
            s.apply(None, &SetConnectionTimeout(0)),
            Outcome::InvalidParameter
        );
        assert_eq!(s.apply(None, &SetConnectionTimeout(9)), Outcome::Applied);
        assert_eq!(s.apply(None, &SetSniffing(false)), Outcome::Applied);
        assert!(!s.settings().sniffing());
        assert_eq!(s.settings().connection_timeout(), 9);
    }

    #[test]
    fn auth_timeout_is_the_shorter_of_both() {
        let (s, _) = state();
        assert_eq!(
            s.settings().auth_timeout(),
            HANDSHAKE_TIMEOUT,
            "120 s setting"
        );
        assert_eq!(
            s.apply(None, &Mutation::SetConnectionTimeout(2)),
            Outcome::Applied
        );
        assert_eq!(s.settings().auth_timeout(), Duration::from_secs(2));
        assert_eq!(
            s.apply(None, &Mutation::SetConnectionTimeout(10)),
            Outcome::Applied
        );
        assert_eq!(s.settings().auth_timeout(), HANDSHAKE_TIMEOUT);
        // The clean-up routine's toggle does not matter.
        assert_eq!(
            s.apply(None, &Mutation::SetConnectionTimeout(3)),
            Outcome::Applied
        );
        assert_eq!(
            s.apply(None, &Mutation::SetCleanup(false)),
            Outcome::Applied
        );
        assert_eq!(s.settings().auth_timeout(), Duration::from_secs(3));
    }
}

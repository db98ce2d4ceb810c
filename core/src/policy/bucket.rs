//! [`Bucket`]: a token bucket shared by the connections of one user, fair between them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock;

/// The smallest grant a connection gets per [`BucketHandle::take`] when many share a bucket
/// (bytes), so that thousands of connections do not crawl along in single bytes.
pub const MIN_QUANTUM: u64 = 512;

/// Returns the default burst of a rate: a tenth of a second of traffic, but at least one
/// second of it up to 16 KiB (so that a slow limit still lets a whole buffer through).
pub fn default_burst(rate: u64) -> u64 {
    (rate / 10).max(rate.min(16 * 1024)).max(1)
}

/// A rate in bytes per second and a burst in bytes (both at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Bytes per second.
    pub bytes_per_second: u64,
    /// Most bytes sent at once after a pause.
    pub burst: u64,
}

impl Rate {
    /// Returns the rate with [`default_burst`]; `None` for 0 (no limit).
    pub fn per_second(bytes: u64) -> Option<Self> {
        (bytes > 0).then(|| Self {
            bytes_per_second: bytes,
            burst: default_burst(bytes),
        })
    }

    /// Returns how long `bytes` take at this rate, rounded up to the nanosecond.
    fn time_for(&self, bytes: u64) -> Duration {
        let ns = (u128::from(bytes) * 1_000_000_000).div_ceil(u128::from(self.bytes_per_second));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Returns how many bytes `d` is worth at this rate, rounded down.
    fn bytes_in(&self, d: Duration) -> u64 {
        let b = d.as_nanos() * u128::from(self.bytes_per_second) / 1_000_000_000;
        u64::try_from(b).unwrap_or(u64::MAX)
    }
}

/// What [`BucketHandle::take`] granted: `bytes` (at most what was asked for, at least 1 when
/// something was asked for) may be sent at `wait_until` (`None`: now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Bytes granted.
    pub bytes: u64,
    /// When they may be sent; `None`: at once.
    pub wait_until: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    rate: Option<Rate>,
    /// The instant at which the bucket is full again if nothing more is taken: the tokens
    /// at `now` are `burst - (full_at - now) · rate`, and may be negative (reserved ahead).
    full_at: Option<Instant>,
}

/// A token bucket (sans-IO: every method takes `now`), shared by the connections of one user
/// in one direction, with a fair share for each.
///
/// Rate `R` bytes/s, burst `B`: over any interval of length `T`, at most `B + R·T` bytes are
/// granted. Grants are **reservations in arrival order** (the generic cell rate algorithm):
/// [`BucketHandle::take`] always grants at once, but when the bucket is short the grant's
/// `wait_until` lies in the future, and the next caller queues behind it. A connection sends
/// its grant at `wait_until` and only then asks again, so it holds at most one reservation
/// and the connections of a user take turns. Each grant is at most one **quantum**,
/// `B / (connections attached)` but at least [`MIN_QUANTUM`], so a turn is worth the same
/// number of bytes to everyone who has that many to send.
///
/// A reservation is not given back when its connection closes before sending it (a quantum
/// at most, once per closed connection).
///
/// The rate changes live ([`Bucket::set_rate`]): bytes reserved ahead are re-timed at the
/// new rate, so live connections slow down or speed up from the next grant on.
#[derive(Debug)]
pub struct Bucket {
    inner: Mutex<Inner>,
    attached: AtomicUsize,
}

impl Bucket {
    /// Makes a bucket, full; `None`: no limit.
    pub fn new(rate: Option<Rate>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                rate: rate.map(Self::sane),
                full_at: None,
            }),
            attached: AtomicUsize::new(0),
        })
    }

    fn sane(r: Rate) -> Rate {
        Rate {
            bytes_per_second: r.bytes_per_second.max(1),
            burst: r.burst.max(1),
        }
    }

    /// Returns the rate.
    pub fn rate(&self) -> Option<Rate> {
        lock(&self.inner).rate
    }

    /// Changes the rate (or lifts the limit with `None`) for every connection, at `now`.
    pub fn set_rate(&self, now: Instant, rate: Option<Rate>) {
        let mut g = lock(&self.inner);
        let rate = rate.map(Self::sane);
        // Carry the tokens over (negative: bytes reserved ahead), at most the new burst.
        let tokens = match (g.rate, g.full_at) {
            (Some(old), Some(full_at)) if full_at > now => {
                i128::from(old.burst) - i128::from(old.bytes_in(full_at - now))
            }
            _ => i128::MAX,
        };
        g.full_at = rate.and_then(|new| {
            let deficit = i128::from(new.burst) - tokens.min(i128::from(new.burst));
            let deficit = u64::try_from(deficit).unwrap_or(u64::MAX);
            (deficit > 0).then(|| now + new.time_for(deficit))
        });
        g.rate = rate;
    }

    /// Attaches a connection (one direction of it); it counts towards the quantum until the
    /// handle is dropped.
    pub fn attach(self: &Arc<Self>) -> BucketHandle {
        self.attached.fetch_add(1, Ordering::Relaxed);
        BucketHandle {
            bucket: Arc::clone(self),
        }
    }

    /// Returns the number of handles attached.
    pub fn attached(&self) -> usize {
        self.attached.load(Ordering::Relaxed)
    }

    fn take(&self, now: Instant, want: u64) -> Granted {
        if want == 0 {
            return Granted {
                bytes: 0,
                wait_until: None,
            };
        }
        let mut g = lock(&self.inner);
        let Some(rate) = g.rate else {
            return Granted {
                bytes: want,
                wait_until: None,
            };
        };
        let n = self.attached().max(1) as u64;
        let quantum = (rate.burst / n).max(MIN_QUANTUM).min(rate.burst);
        let bytes = want.min(quantum);
        // The bucket never holds more than `burst`: an old `full_at` counts as `now`.
        let start = g.full_at.filter(|t| *t > now).unwrap_or(now);
        let full_at = start + rate.time_for(bytes);
        g.full_at = Some(full_at);
        // Sendable once the tokens after this grant are not negative.
        let send_at = full_at
            .checked_sub(rate.time_for(rate.burst))
            .filter(|t| *t > now);
        Granted {
            bytes,
            wait_until: send_at,
        }
    }
}

/// One connection's (one direction's) use of a [`Bucket`]; detaches when dropped.
#[derive(Debug)]
pub struct BucketHandle {
    bucket: Arc<Bucket>,
}

impl BucketHandle {
    /// Reserves up to `want` bytes at `now`; see [`Bucket`]. Send the granted bytes at
    /// `wait_until` (sleep until then, racing the close signal), then ask for the rest.
    pub fn take(&self, now: Instant, want: u64) -> Granted {
        self.bucket.take(now, want)
    }

    /// Returns the shared bucket.
    pub fn bucket(&self) -> &Arc<Bucket> {
        &self.bucket
    }
}

impl Drop for BucketHandle {
    fn drop(&mut self) {
        self.bucket.attached.fetch_sub(1, Ordering::Relaxed);
    }
}

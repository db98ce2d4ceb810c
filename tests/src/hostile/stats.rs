//! Small summaries shared by the reports: latency percentiles and the probing client's tally.

use std::fmt;
use std::time::Duration;

/// Percentiles of a set of durations (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Latency {
    /// Summarises `samples` (all zero when there are none).
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut v = samples.to_vec();
        v.sort_unstable();
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            count: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} samples, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.count,
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Returns `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What a probing client saw: how many of its attempts succeeded, their latency, and the
/// first failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeReport {
    /// Attempts made.
    pub attempts: usize,
    /// Attempts that failed (error, wrong answer or over the attempt's time limit).
    pub failed: usize,
    /// Latency of the successful attempts.
    pub latency: Latency,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl ProbeReport {
    /// Tallies the outcomes of a probe's attempts.
    pub fn of(outcomes: &[Result<Duration, String>]) -> Self {
        let ok: Vec<Duration> = outcomes
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .copied()
            .collect();
        Self {
            attempts: outcomes.len(),
            failed: outcomes.len() - ok.len(),
            latency: Latency::of(&ok),
            first_error: outcomes.iter().find_map(|r| r.as_ref().err().cloned()),
        }
    }

    /// Returns how many attempts succeeded.
    pub fn ok(&self) -> usize {
        self.attempts - self.failed
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ok ({}){}",
            self.ok(),
            self.attempts,
            self.latency,
            self.first_error
                .as_ref()
                .map_or(String::new(), |e| format!("; first failure: {e}"))
        )
    }
}

/// The server's resource use during an attack.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU in percent of one core over the attack.
    pub cpu_percent: f64,
    /// Resident set at the end, KiB.
    pub rss_kib: u64,
    /// Peak resident set (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server CPU {:.1} % of a core, RSS {} KiB (peak {} KiB)",
            self.cpu_percent, self.rss_kib, self.peak_rss_kib
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&v);
        assert_eq!(l.count, 100);
        assert_eq!(l.p50, Duration::from_millis(50));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
        let one = Latency::of(&[Duration::from_millis(7)]);
        assert_eq!(
            (one.p50, one.p99, one.max),
            (
                Duration::from_millis(7),
                Duration::from_millis(7),
                Duration::from_millis(7)
            )
        );
        assert_eq!(Latency::of(&[]), Latency::default());
    }

    #[test]
    fn probe_tally() {
        let r = ProbeReport::of(&[
            Ok(Duration::from_millis(1)),
            Err("boom".into()),
            Ok(Duration::from_millis(3)),
            Err("later".into()),
        ]);
        assert_eq!((r.attempts, r.failed, r.ok()), (4, 2, 2));
        assert_eq!(r.first_error.as_deref(), Some("boom"));
        assert_eq!(r.latency.max, Duration::from_millis(3));
    }
}

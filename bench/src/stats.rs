//! Latency percentiles shared by the workloads.

use serde::Serialize;

/// Percentiles of a set of latencies, in microseconds (NaN when there are none).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
}

impl Latency {
    /// Sorts `us` and reads its percentiles (nearest rank).
    pub(crate) fn of(us: &mut [u32]) -> Self {
        us.sort_unstable();
        Self {
            p50_us: percentile(us, 0.50),
            p99_us: percentile(us, 0.99),
            max_us: us.last().map_or(f64::NAN, |v| f64::from(*v)),
        }
    }
}

/// Nearest-rank percentile `q` (0..=1) of the sorted `sorted`; NaN if it is empty.
pub(crate) fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i])
}

/// Microseconds of `d`, saturating at `u32::MAX` (71 minutes).
pub(crate) fn micros(d: std::time::Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        let l = Latency::of(&mut v);
        assert_eq!(l.p50_us, 50.0);
        assert_eq!(l.p99_us, 99.0);
        assert_eq!(l.max_us, 100.0);
        assert_eq!(percentile(&[7], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}

//! [`TimeSketch`]: durations counted in power-of-two buckets, lock-free, for a quantile once
//! a window (how long appends to the log took, for one). Bounded: a fixed array whatever
//! the number of samples.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets: [0, 1) µs, [1, 2), [2, 4), ... [2^38, ∞) µs (the last one is about 76 hours up).
const BUCKETS: usize = 40;

#[derive(Debug)]
pub struct TimeSketch {
    counts: [AtomicU64; BUCKETS],
}

impl Default for TimeSketch {
    fn default() -> Self {
        TimeSketch { counts: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl TimeSketch {
    /// Counts one duration, in microseconds.
    pub fn record(&self, micros: u64) {
        let b = (u64::BITS - micros.leading_zeros()) as usize;
        self.counts[b.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile (0..=1) of what was recorded since the last call, as the upper edge of
    /// its bucket in microseconds (so at most twice the true value), and the number of
    /// samples; starts the next window empty. None without samples.
    pub fn take_quantile(&self, q: f64) -> Option<(u64, u64)> {
        assert!((0.0..=1.0).contains(&q), "a quantile is within [0, 1]");
        let counts: Vec<u64> = self.counts.iter().map(|c| c.swap(0, Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some((1u64 << b, total));
            }
        }
        unreachable!("the ranks add up to the total")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_is_the_upper_edge_of_its_bucket_and_the_window_starts_over() {
        let s = TimeSketch::default();
        for _ in 0..90 {
            s.record(100); // bucket [64, 128)
        }
        for _ in 0..10 {
            s.record(50_000); // bucket [32768, 65536)
        }
        assert_eq!(s.take_quantile(0.9), Some((128, 100)));
        assert_eq!(s.take_quantile(0.9), None, "taken: the next window is empty");
        for _ in 0..89 {
            s.record(100);
        }
        for _ in 0..11 {
            s.record(50_000);
        }
        assert_eq!(s.take_quantile(0.9), Some((65_536, 100)));
        s.record(0);
        s.record(u64::MAX);
        assert_eq!(s.take_quantile(1.0), Some((1 << (BUCKETS - 1), 2)));
    }
}

//! Kafka's windowed rate (`org.apache.kafka.common.metrics.stats.Rate` over `SampledStat`).

use serde::{Deserialize, Serialize};

/// `quota.window.num` samples of `quota.window.size.seconds` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateConfig {
    pub samples: u32,
    pub window_ms: u64,
}

impl Default for RateConfig {
    /// Kafka's defaults: 11 windows of one second.
    fn default() -> Self {
        RateConfig { samples: 11, window_ms: 1000 }
    }
}

impl RateConfig {
    /// The most a client may use in one quota window at `bound` per second: Kafka's
    /// `getMaxValueInQuotaWindow`, which caps what one fetch may return.
    pub fn max_in_window(&self, bound: f64) -> f64 {
        bound * f64::from(self.samples.saturating_sub(1).max(1)) * self.window_ms as f64 / 1000.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: u64,
    value: f64,
}

/// A rate per second over the last `samples` windows. Values are recorded into the current
/// window; windows older than `samples × window_ms` are forgotten. The rate divides the sum
/// by the time covered, counted as at least `samples - 1` whole windows, so a burst at start
/// does not read as an enormous rate (Kafka's `Rate.windowSize`).
#[derive(Debug, Clone)]
pub struct SampledRate {
    config: RateConfig,
    samples: Vec<Sample>,
    current: usize,
}

impl SampledRate {
    pub fn new(config: RateConfig) -> Self {
        assert!(config.samples >= 2 && config.window_ms >= 1, "a rate needs two windows of at least 1 ms");
        SampledRate { config, samples: Vec::with_capacity(config.samples as usize), current: 0 }
    }

    pub fn config(&self) -> RateConfig {
        self.config
    }

    /// Adds `value` at `now_ms`.
    pub fn record(&mut self, value: f64, now_ms: u64) {
        if self.samples.is_empty() {
            self.samples.push(Sample { start_ms: now_ms, value: 0.0 });
            self.current = 0;
        }
        let window = self.config.window_ms;
        if now_ms.saturating_sub(self.samples[self.current].start_ms) >= window {
            self.current = (self.current + 1) % self.config.samples as usize;
            let fresh = Sample { start_ms: now_ms, value: 0.0 };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    /// Takes back what `record` added (a fetch answered empty after all).
    pub fn unrecord(&mut self, value: f64, now_ms: u64) {
        self.record(-value, now_ms);
    }

    fn purge(&mut self, now_ms: u64) {
        let expire = u64::from(self.config.samples) * self.config.window_ms;
        for s in &mut self.samples {
            if now_ms.saturating_sub(s.start_ms) >= expire {
                *s = Sample { start_ms: now_ms, value: 0.0 };
            }
        }
    }

    /// The time the rate divides by, in milliseconds.
    fn window_size_ms(&self, now_ms: u64) -> u64 {
        let oldest = self.samples.iter().map(|s| s.start_ms).min().unwrap_or(now_ms);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full = elapsed / self.config.window_ms;
        let min_full = u64::from(self.config.samples - 1);
        if full < min_full {
            elapsed += (min_full - full) * self.config.window_ms;
        }
        elapsed.max(1)
    }

    /// The rate per second at `now_ms`.
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        self.purge(now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total.max(0.0) * 1000.0 / self.window_size_ms(now_ms) as f64
    }

    /// How long a client over `bound` (per second) must wait for its rate to come back to
    /// it: `(rate - bound) / bound × window` (Kafka's `QuotaUtils.throttleTime`); 0 within it.
    pub fn throttle_ms(&mut self, bound: f64, now_ms: u64) -> u64 {
        self.throttle_ms_with(0.0, bound, now_ms)
    }

    /// The throttle when `others` per second are used elsewhere against the same `bound` (one
    /// quota over many brokers): `(rate + others - bound) / bound × window`.
    pub fn throttle_ms_with(&mut self, others: f64, bound: f64, now_ms: u64) -> u64 {
        let rate = self.rate(now_ms) + others.max(0.0);
        if bound <= 0.0 || !bound.is_finite() || rate <= bound {
            return 0;
        }
        let window = self.window_size_ms(now_ms) as f64;
        ((rate - bound) / bound * window).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate() -> SampledRate {
        SampledRate::new(RateConfig::default())
    }

    #[test]
    fn a_steady_rate_reads_as_itself() {
        let mut r = rate();
        // 100 per second for 30 s, in 10 ms steps.
        for t in (0..30_000).step_by(10) {
            r.record(1.0, t);
        }
        let got = r.rate(30_000);
        assert!((got - 100.0).abs() < 5.0, "{got}");
        assert_eq!(r.throttle_ms(200.0, 30_000), 0);
    }

    #[test]
    fn a_burst_at_start_is_spread_over_the_minimum_window() {
        let mut r = rate();
        r.record(1000.0, 0);
        // 10 windows of a second at least: 100 per second.
        assert!((r.rate(0) - 100.0).abs() < 1e-9);
        // Over a bound of 50: (100 - 50) / 50 × 10 s.
        assert_eq!(r.throttle_ms(50.0, 0), 10_000);
    }

    #[test]
    fn throttling_for_the_given_time_brings_the_rate_back_to_the_bound() {
        let mut r = rate();
        let bound = 1000.0;
        let mut t = 0;
        let mut sent = 0.0;
        // A client that sends 500 every 100 ms, and waits out every throttle it is given.
        while t < 120_000 {
            r.record(500.0, t);
            sent += 500.0;
            let wait = r.throttle_ms(bound, t);
            t += 100 + wait;
        }
        let achieved = sent * 1000.0 / t as f64;
        assert!((achieved - bound).abs() / bound < 0.1, "achieved {achieved} per second against {bound}");
    }

    #[test]
    fn old_windows_are_forgotten() {
        let mut r = rate();
        r.record(10_000.0, 0);
        assert!(r.rate(5_000) > 0.0);
        // 11 windows later the burst is gone.
        assert_eq!(r.rate(11_000), 0.0);
        assert_eq!(r.throttle_ms(1.0, 11_000), 0);
    }

    #[test]
    fn unrecord_takes_a_value_back() {
        let mut r = rate();
        r.record(300.0, 10);
        r.unrecord(300.0, 20);
        assert_eq!(r.rate(30), 0.0);
    }

    #[test]
    fn the_fetch_cap_is_the_window_allowance() {
        assert_eq!(RateConfig::default().max_in_window(1000.0), 10_000.0);
    }
}

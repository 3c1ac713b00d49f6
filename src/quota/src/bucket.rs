//! KIP-599's token bucket for the controller mutation quota.

/// Tokens refill at `rate` per second up to a burst of `rate × samples × window` (Kafka's
/// `TokenBucket` with its quota window); it starts full. Recording takes tokens and may
/// leave the bucket negative: a strict caller refuses new work while it is, a permissive
/// one takes it and throttles.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    pub fn new(rate: f64, config: crate::RateConfig, now_ms: u64) -> Self {
        let burst = rate * f64::from(config.samples) * config.window_ms as f64 / 1000.0;
        TokenBucket { rate, burst, tokens: burst, last_ms: now_ms }
    }

    /// A new rate keeps the tokens there are (capped at the new burst).
    pub fn set_rate(&mut self, rate: f64, config: crate::RateConfig, now_ms: u64) {
        self.refill(now_ms);
        self.rate = rate;
        self.burst = rate * f64::from(config.samples) * config.window_ms as f64 / 1000.0;
        self.tokens = self.tokens.min(self.burst);
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + self.rate * elapsed).min(self.burst);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Whether the bucket is in debt (a strict request is refused while it is).
    pub fn exhausted(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens < 0.0
    }

    /// Takes `value` tokens.
    pub fn record(&mut self, value: f64, now_ms: u64) {
        self.refill(now_ms);
        self.tokens -= value;
    }

    /// The time until the bucket is out of debt.
    pub fn throttle_ms(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        if self.tokens >= 0.0 || self.rate <= 0.0 {
            return 0;
        }
        (-self.tokens / self.rate * 1000.0).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let cfg = crate::RateConfig::default();
        let mut b = TokenBucket::new(2.0, cfg, 0);
        // 22 tokens of burst: a request for 30 is taken (not yet in debt), then refused.
        assert!(!b.exhausted(0));
        b.record(30.0, 0);
        assert!(b.exhausted(0));
        // 8 tokens of debt at 2 per second: 4 s.
        assert_eq!(b.throttle_ms(0), 4000);
        assert_eq!(b.throttle_ms(3000), 1000);
        assert!(!b.exhausted(4000));
        assert_eq!(b.throttle_ms(4000), 0);
        // Refills stop at the burst.
        assert!(!b.exhausted(1_000_000));
        b.record(22.0, 1_000_000);
        assert!(!b.exhausted(1_000_000));
        b.record(0.5, 1_000_000);
        assert!(b.exhausted(1_000_000));
    }
}

//! A broker's safe limits over many tenants.
//!
//! [`scale_to_limit`] is backpressure on bytes: when the tenants of one broker together use
//! more than its safe limit, every tenant's bound there is scaled by one factor, chosen so that
//! tenants under their scaled bound keep their use and the ones over it share the rest in
//! proportion to their allocation. [`Aimd`] is backpressure on request time, for a broker short
//! of CPU.
//!
//! (One quota over a cell's brokers needs no split here: each broker throttles a tenant against
//! its rate over the cell, `SampledRate::throttle_ms_with`.)

/// Scales `bounds` (tenants' bounds on one broker, per second; `f64::INFINITY` for a tenant
/// without a quota) so that the broker's total stays within `limit`, given what each tenant
/// `used`. Returns the factor applied (1 when the broker is within its limit).
pub fn scale_to_limit(limit: f64, bounds: &mut [f64], used: &[f64]) -> f64 {
    assert_eq!(bounds.len(), used.len(), "one use per bound");
    let total: f64 = used.iter().sum();
    if total <= limit || bounds.is_empty() {
        return 1.0;
    }
    // A tenant without a quota is allocated what it uses.
    let alloc: Vec<f64> = bounds.iter().zip(used).map(|(b, u)| if b.is_finite() { *b } else { *u }).collect();
    let served = |f: f64| -> f64 { alloc.iter().zip(used).map(|(a, u)| u.min(f * a)).sum() };
    // served() grows with f; find the largest f whose total is within the limit.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if served(mid) <= limit {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    for (b, a) in bounds.iter_mut().zip(&alloc) {
        *b = a * lo;
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-9)
    }

    #[test]
    fn an_oversubscribed_broker_scales_bounds_in_proportion() {
        // Four tenants with quotas 10, 20, 30, 40, all offering twice their quota, on a
        // broker whose safe limit is 50: each gets half of its quota.
        let mut bounds = vec![10.0, 20.0, 30.0, 40.0];
        let used = vec![10.0, 20.0, 30.0, 40.0];
        let f = scale_to_limit(50.0, &mut bounds, &used);
        assert!(close(f, 0.5, 1e-6), "{f}");
        for (b, q) in bounds.iter().zip([10.0, 20.0, 30.0, 40.0]) {
            assert!(close(*b, q / 2.0, 1e-6), "{bounds:?}");
        }
    }

    #[test]
    fn a_quiet_tenant_keeps_its_use_under_backpressure() {
        // The quiet tenant uses 5 of its 40; the noisy ones share what is left of 50.
        let mut bounds = vec![40.0, 40.0, f64::INFINITY];
        let used = vec![5.0, 40.0, 60.0];
        scale_to_limit(50.0, &mut bounds, &used);
        assert!(bounds[0] >= 5.0, "{bounds:?}");
        let served: f64 = bounds.iter().zip(&used).map(|(b, u)| b.min(*u)).sum();
        assert!(close(served, 50.0, 0.01), "{bounds:?}");
    }

    #[test]
    fn within_the_limit_nothing_changes() {
        let mut bounds = vec![10.0, f64::INFINITY];
        assert_eq!(scale_to_limit(100.0, &mut bounds, &[10.0, 20.0]), 1.0);
        assert_eq!(bounds[0], 10.0);
        assert!(bounds[1].is_infinite());
    }
}

/// Backpressure on request time with no operator in the loop: while the broker is overloaded
/// (requests wait for a thread and the broker itself is using its cores), every tenant's bound
/// on request time is cut to `factor` of what it uses, and the factor falls by a fifth each
/// window; once the overload ends it climbs back by a twentieth a window (additive increase,
/// multiplicative decrease: the broker finds what it can take by itself).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    factor: f64,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd { factor: 1.0 }
    }
}

impl Aimd {
    /// Cut per overloaded window.
    pub const DECREASE: f64 = 0.8;
    /// Recovery per window without overload.
    pub const INCREASE: f64 = 0.05;
    /// Never below this: every tenant keeps some service.
    pub const MIN: f64 = 0.05;

    /// One window's verdict; the factor to apply now (1: no backpressure).
    pub fn update(&mut self, overloaded: bool) -> f64 {
        self.factor = if overloaded {
            (self.factor * Self::DECREASE).max(Self::MIN)
        } else {
            (self.factor + Self::INCREASE).min(1.0)
        };
        self.factor
    }

    pub fn factor(&self) -> f64 {
        self.factor
    }
}

#[cfg(test)]
mod aimd_tests {
    use super::*;

    #[test]
    fn overload_cuts_by_a_fifth_and_recovery_is_gradual() {
        let mut a = Aimd::default();
        assert_eq!(a.update(false), 1.0);
        assert!((a.update(true) - 0.8).abs() < 1e-9);
        assert!((a.update(true) - 0.64).abs() < 1e-9);
        for _ in 0..100 {
            a.update(true);
        }
        assert_eq!(a.factor(), Aimd::MIN);
        let mut windows = 0;
        while a.update(false) < 1.0 {
            windows += 1;
        }
        // From the floor back to no backpressure: 19 windows of a twentieth.
        assert_eq!(windows, 18);
    }
}

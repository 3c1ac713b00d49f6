//! One cell-wide quota over many brokers, and a broker's safe limits over many tenants.
//!
//! A tenant's quota is for the whole cell. Every broker measures what the tenant uses on it
//! and whether it had to throttle it there; brokers exchange those figures each quota window
//! and each computes, with [`share`], the bound it enforces itself. The same inputs give every
//! broker the same split, so the bounds sum to the quota without a coordinator to fail.
//!
//! Throttling is lazy: while the tenant's use over the cell leaves headroom and no broker had
//! to throttle it, every broker may grow into the whole headroom. Once a broker throttles, the
//! unthrottled brokers keep what they use plus a margin and the throttled ones share the rest
//! in proportion to their use, so the quota follows the traffic to where it goes.
//!
//! [`scale_to_limit`] is backpressure: when the tenants of one broker together use more than
//! its safe limit, every tenant's bound there is scaled by one factor, chosen so that tenants
//! under their scaled bound keep their use and the ones over it share the rest in proportion
//! to their allocation.

use serde::{Deserialize, Serialize};

/// Headroom an unthrottled broker keeps over its use.
pub const MARGIN: f64 = 0.10;
/// The least share of a quota any broker gets, so a broker the traffic moves to can start.
pub const FLOOR: f64 = 0.02;

/// What one broker saw of one tenant over the last window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BrokerUse {
    /// Per second.
    pub used: f64,
    /// Whether the broker throttled the tenant in the window (its demand was above its bound).
    pub throttled: bool,
}

/// The bound broker `mine` of `uses` enforces for a cell-wide `quota`.
pub fn share(quota: f64, mine: usize, uses: &[BrokerUse]) -> f64 {
    assert!(mine < uses.len(), "broker {mine} is not among the {} uses", uses.len());
    if uses.len() == 1 {
        return quota;
    }
    let floor = quota * FLOOR;
    let granted: f64 = uses.iter().filter(|u| !u.throttled).map(|u| u.used * (1.0 + MARGIN)).sum();
    let throttled: Vec<&BrokerUse> = uses.iter().filter(|u| u.throttled).collect();
    let me = uses[mine];
    if granted >= quota {
        // Even the unthrottled use is over the quota: everyone in proportion to use.
        let total: f64 = uses.iter().map(|u| u.used.max(floor)).sum();
        return (quota * me.used.max(floor) / total).max(floor);
    }
    let rest = quota - granted;
    if throttled.is_empty() {
        // Lazy: nobody is held back, so each may grow into all the headroom.
        return me.used * (1.0 + MARGIN) + rest;
    }
    if !me.throttled {
        return (me.used * (1.0 + MARGIN)).max(floor);
    }
    let weight: f64 = throttled.iter().map(|u| u.used.max(floor)).sum();
    (rest * me.used.max(floor) / weight).max(floor)
}

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

    /// Brokers with these demands, starting at a bound of the whole quota each, after `rounds`
    /// exchanges: what each one serves.
    fn converge(quota: f64, demand: &[f64], rounds: usize) -> Vec<f64> {
        let mut bounds = vec![quota; demand.len()];
        let mut uses = vec![BrokerUse::default(); demand.len()];
        for _ in 0..rounds {
            for (i, u) in uses.iter_mut().enumerate() {
                *u = BrokerUse { used: demand[i].min(bounds[i]), throttled: demand[i] > bounds[i] };
            }
            for (i, b) in bounds.iter_mut().enumerate() {
                *b = share(quota, i, &uses);
            }
        }
        demand.iter().zip(&bounds).map(|(d, b)| d.min(*b)).collect()
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-9)
    }

    #[test]
    fn one_broker_has_the_whole_quota() {
        assert_eq!(share(100.0, 0, &[BrokerUse { used: 500.0, throttled: true }]), 100.0);
    }

    #[test]
    fn traffic_on_one_broker_gets_the_whole_quota() {
        let served = converge(100.0, &[300.0, 0.0, 0.0], 10);
        assert!(close(served.iter().sum(), 100.0, 0.06), "{served:?}");
        assert!(served[0] > 90.0, "{served:?}");
    }

    #[test]
    fn traffic_split_evenly_splits_the_quota() {
        let served = converge(100.0, &[200.0, 200.0, 200.0], 10);
        for s in &served {
            assert!(close(*s, 100.0 / 3.0, 0.05), "{served:?}");
        }
    }

    #[test]
    fn a_light_broker_keeps_its_use_and_the_heavy_one_gets_the_rest() {
        let served = converge(100.0, &[20.0, 500.0], 10);
        assert!(close(served[0], 20.0, 0.01), "{served:?}");
        assert!(served[1] > 75.0 && served.iter().sum::<f64>() <= 101.0, "{served:?}");
    }

    #[test]
    fn under_the_quota_nobody_is_throttled() {
        let served = converge(100.0, &[30.0, 30.0, 30.0], 10);
        assert_eq!(served, vec![30.0, 30.0, 30.0]);
    }

    #[test]
    fn the_quota_follows_traffic_that_moves() {
        let quota = 100.0;
        let mut bounds = [quota; 3];
        let mut uses = [BrokerUse::default(); 3];
        let mut served = [0.0; 3];
        for round in 0..20 {
            let demand: [f64; 3] = if round < 10 { [300.0, 0.0, 0.0] } else { [0.0, 0.0, 300.0] };
            for i in 0..3 {
                served[i] = demand[i].min(bounds[i]);
                uses[i] = BrokerUse { used: served[i], throttled: demand[i] > bounds[i] };
            }
            for (i, b) in bounds.iter_mut().enumerate() {
                *b = share(quota, i, &uses);
            }
        }
        assert!(served[2] > 90.0 && served.iter().sum::<f64>() <= 101.0, "{served:?}");
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

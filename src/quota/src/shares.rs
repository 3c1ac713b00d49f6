//! A broker's safe limits over many tenants.
//!
//! [`scale_to_limit`] is backpressure on bytes: when the tenants of one broker together use
//! more than its safe limit, every tenant's bound there is scaled by one factor, chosen so that
//! tenants under their scaled bound keep their use and the ones over it share the rest in
//! proportion to their allocation. [`Aimd`] is backpressure on request time, for a broker short
//! of CPU; [`LearnedLimit`] is the ingress limit a broker finds by itself when its disk falls
//! behind.
//!
//! (One quota over a cell's brokers needs no split here: each broker throttles a tenant against
//! its rate over the cell, `SampledRate::throttle_ms_with`.)

/// What each tenant is allocated on a broker: its bound, or, for a tenant without a quota
/// (`f64::INFINITY`), what it uses.
pub fn allocations(bounds: &[f64], used: &[f64]) -> Vec<f64> {
    assert_eq!(bounds.len(), used.len(), "one use per bound");
    bounds.iter().zip(used).map(|(b, u)| if b.is_finite() { *b } else { *u }).collect()
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
    let alloc = allocations(bounds, used);
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

/// Scales `bounds` (as in [`scale_to_limit`]) strictly in proportion to each active tenant's
/// allocation (its bound, or its use for a tenant without a quota): together they come to
/// `limit`, whatever each uses now. For a limit the broker is still learning: a tenant held
/// back by the device rather than by the broker (its appends queue behind a neighbour's
/// larger ones) shows less use than it wants, so sharing by use would hand its part to the
/// neighbour; sharing by allocation leaves its part free, and the learned limit, probing up
/// while the device keeps up, gives what it leaves unused to the others. Tenants that used
/// nothing keep their bounds. Returns the factor applied (1 when within the limit).
pub fn scale_to_allocation(limit: f64, bounds: &mut [f64], used: &[f64]) -> f64 {
    assert_eq!(bounds.len(), used.len(), "one use per bound");
    let total: f64 = used.iter().sum();
    if total <= limit || bounds.is_empty() {
        return 1.0;
    }
    let alloc = allocations(bounds, used);
    let active: f64 = alloc.iter().zip(used).filter(|(_, u)| **u > 0.0).map(|(a, _)| a).sum();
    if active <= 0.0 {
        return 1.0;
    }
    let f = (limit / active).min(1.0);
    for ((b, a), u) in bounds.iter_mut().zip(&alloc).zip(used) {
        if *u > 0.0 {
            *b = a * f;
        }
    }
    f
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
    fn a_learned_limit_is_shared_by_allocation_not_by_use() {
        // Quotas 2 and 6; the first gets little through (its appends wait behind the
        // other's), so by use the second would take nearly all of 2.
        let mut bounds = vec![2.0, 6.0, 4.0];
        let used = vec![0.1, 1.9, 0.0];
        let f = scale_to_allocation(1.6, &mut bounds, &used);
        assert!(close(f, 0.2, 1e-9), "{f}");
        assert!(close(bounds[0], 0.4, 1e-9) && close(bounds[1], 1.2, 1e-9), "{bounds:?}");
        assert_eq!(bounds[2], 4.0, "a tenant that used nothing keeps its bound");
        let mut within = vec![2.0, 6.0];
        assert_eq!(scale_to_allocation(10.0, &mut within, &[1.0, 1.0]), 1.0);
        assert_eq!(within, vec![2.0, 6.0]);
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

/// A safe limit the broker learns instead of being told: ingress bytes/s, from its disk
/// falling behind. While appends wait longer than their target, the limit is what the disk
/// wrote in the window (so the limit follows the device, not the offered load) cut by how far
/// the wait is over its target: a backlog worth `d` seconds more than the target is drained
/// in [`LearnedLimit::DRAIN_S`], and even a small excess cuts to [`LearnedLimit::MAX_FRACTION`]
/// so the queue shrinks. Once appends are back within the target, the limit grows by
/// [`Aimd::INCREASE`] of itself a window (probing for more), and goes away when what tenants
/// could want is well under it, or after [`LearnedLimit::RELEASE_AFTER_CALM`] windows in a row
/// without trouble. It never falls below `floor`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LearnedLimit {
    limit: Option<f64>,
    /// Windows in a row the device has kept up.
    calm: u32,
}

impl LearnedLimit {
    /// Seconds to drain the backlog over the target in.
    pub const DRAIN_S: f64 = 5.0;
    /// The most of what the disk wrote the limit keeps while the disk is behind.
    pub const MAX_FRACTION: f64 = 0.9;
    /// The least.
    pub const MIN_FRACTION: f64 = 0.05;
    /// Above this multiple of what tenants could want, a learned limit is dropped.
    pub const RELEASE: f64 = 1.5;
    /// So is one the device has kept up under for this many windows in a row (it has grown by
    /// 1.05^20, 2.65x, without trouble: the device is no longer the bottleneck). Ten (63%)
    /// dropped a limit still needed: a saturated link's limit, probing up from a deep cut, had
    /// not reached the link's rate again.
    pub const RELEASE_AFTER_CALM: u32 = 20;

    /// One window's verdict: `behind_s`, how many seconds appends waited beyond their target
    /// (None: within it); `written`, the bytes/s the disk completed; `demand`, the most tenants
    /// could want here (bytes/s: within their quotas; a held-back tenant's use understates
    /// it). The limit now.
    pub fn update(&mut self, behind_s: Option<f64>, written: f64, demand: f64, floor: f64) -> Option<f64> {
        assert!(
            written >= 0.0 && demand >= 0.0 && floor > 0.0,
            "rates are not negative, the floor is positive"
        );
        self.calm = if behind_s.is_some() { 0 } else { self.calm.saturating_add(1) };
        self.limit = match behind_s {
            Some(excess) => {
                let keep =
                    (1.0 - excess.max(0.0) / Self::DRAIN_S).clamp(Self::MIN_FRACTION, Self::MAX_FRACTION);
                Some((written * keep).max(floor))
            }
            None => match self.limit {
                Some(l) if l < demand * Self::RELEASE && self.calm < Self::RELEASE_AFTER_CALM => {
                    Some(l * (1.0 + Aimd::INCREASE))
                }
                _ => None,
            },
        };
        self.limit
    }

    pub fn limit(&self) -> Option<f64> {
        self.limit
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

    /// A disk that writes 100 units a second behind a queue: `offered` a window, let through
    /// up to the limit, `target` seconds of wait allowed. Returns what was let in per window.
    fn drive(l: &mut LearnedLimit, windows: usize, offered: f64, backlog: &mut f64) -> Vec<f64> {
        const DISK: f64 = 100.0;
        const TARGET_S: f64 = 0.05;
        let mut taken = Vec::new();
        for _ in 0..windows {
            let input = l.limit().map_or(offered, |x| x.min(offered));
            let written = (*backlog + input).min(DISK);
            *backlog = (*backlog + input - written).max(0.0);
            let wait_s = *backlog / DISK;
            let behind = (wait_s > TARGET_S).then_some(wait_s - TARGET_S);
            l.update(behind, written, offered, 1.0);
            taken.push(input);
        }
        taken
    }

    #[test]
    fn a_learned_limit_settles_around_what_the_disk_writes() {
        let mut l = LearnedLimit::default();
        let mut backlog = 0.0;
        let taken = drive(&mut l, 200, 400.0, &mut backlog);
        let last = &taken[100..];
        let mean = last.iter().sum::<f64>() / last.len() as f64;
        assert!((85.0..=102.0).contains(&mean), "mean taken {mean}: {last:?}");
        assert!(last.iter().all(|t| *t <= 110.0), "{last:?}");
        assert!(backlog < 20.0, "the queue stays short: {backlog}");
        // The offered load gone: the limit is dropped.
        drive(&mut l, 30, 10.0, &mut backlog);
        assert_eq!(l.limit(), None);
        // A faster device: calm windows in a row drop the limit though tenants could want more.
        let mut l = LearnedLimit::default();
        l.update(Some(1.0), 100.0, 10_000.0, 1.0);
        for _ in 0..LearnedLimit::RELEASE_AFTER_CALM - 1 {
            assert!(l.update(None, 100.0, 10_000.0, 1.0).is_some());
        }
        assert_eq!(l.update(None, 100.0, 10_000.0, 1.0), None);
    }

    #[test]
    fn a_deep_backlog_drains_and_the_limit_comes_back() {
        // Ten seconds of the disk's work queued before the broker learned anything.
        let mut l = LearnedLimit::default();
        let mut backlog = 1000.0;
        let taken = drive(&mut l, 40, 400.0, &mut backlog);
        let drained = taken.iter().position(|t| *t >= 80.0).expect("the limit comes back to the disk's rate");
        assert!(drained <= 20, "{drained} windows: {taken:?}");
    }

    #[test]
    fn a_learned_limit_never_falls_below_its_floor() {
        let mut l = LearnedLimit::default();
        for _ in 0..100 {
            l.update(Some(60.0), 1000.0, 1000.0, 50.0);
        }
        assert_eq!(l.limit(), Some(50.0));
        assert_eq!(l.update(Some(0.001), 1000.0, 1000.0, 50.0), Some(900.0), "a small excess still cuts");
    }
}

//! Tenants' quotas on this broker: what each tenant used here in the current quota windows,
//! the bound this broker enforces for it (its share of the cell-wide quota, scaled down when
//! the broker is over its safe limits), and the throttle each request earns.
//!
//! The request edge (`handlers::quota`) records into a connection's [`TenantQuota`] and mutes
//! the connection for the throttle time it is given; the quota coordinator (`quota_sync`)
//! exchanges use with the cell's other brokers each window and sets the shares. The
//! accounting itself is kora-quota's pure logic; this module holds the state, the locks and
//! the clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kora_common::Clock;
use kora_meta::TenantLimits;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{Metrics, TenantLabels};
use kora_quota::{RateConfig, SampledRate, TokenBucket};
use parking_lot::Mutex;

/// quota.window.num, quota.window.size.seconds and the broker's safe limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaConfig {
    pub window: RateConfig,
    /// quota.broker.ingress.bytes.per.second (Kora): produce bytes/s this broker takes from
    /// all tenants together before it scales every tenant's bound down. None: no limit.
    pub ingress_safe_bytes_per_second: Option<f64>,
    /// quota.broker.egress.bytes.per.second (Kora): the same for bytes fetched by consumers.
    pub egress_safe_bytes_per_second: Option<f64>,
    /// quota.broker.request.queue.ms (Kora): how long ready work may wait for a thread (the
    /// 90th percentile over a window) before the broker, if it is also using its cores, counts
    /// as overloaded and cuts tenants' request time (`kora_quota::shares::Aimd`). None: off.
    pub request_queue_ms: Option<u64>,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            window: RateConfig::default(),
            ingress_safe_bytes_per_second: None,
            egress_safe_bytes_per_second: None,
            request_queue_ms: Some(100),
        }
    }
}

/// Which windowed rate of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meter {
    Produce,
    Fetch,
    Request,
}

/// The part of a cell-wide quota this broker enforces, per meter (1: all of it), and the
/// bounds backpressure puts on the tenant here when the broker is over its safe limits (None:
/// none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub produce: f64,
    pub fetch: f64,
    pub request: f64,
    pub produce_cap: Option<f64>,
    pub fetch_cap: Option<f64>,
    /// Request time, percent of a thread (backpressure when the broker is overloaded).
    pub request_cap: Option<f64>,
}

impl Default for Share {
    fn default() -> Self {
        Share {
            produce: 1.0,
            fetch: 1.0,
            request: 1.0,
            produce_cap: None,
            fetch_cap: None,
            request_cap: None,
        }
    }
}

fn min_bound(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// One tenant's accounting on this broker.
#[derive(Debug)]
pub struct TenantQuota {
    pub id: String,
    produce: Mutex<SampledRate>,
    fetch: Mutex<SampledRate>,
    request: Mutex<SampledRate>,
    connection_rate: Mutex<SampledRate>,
    mutations: Mutex<Option<(f64, TokenBucket)>>,
    /// Open connections of the tenant on this broker.
    connections: AtomicU32,
    /// Fractions of the quotas this broker enforces (the coordinator sets them).
    share: Mutex<Share>,
    /// Whether a request of the tenant was throttled since the coordinator last looked.
    throttled: [AtomicBool; 3],
    /// Bytes stored, over the cell (the coordinator's sum), for storage_bytes.
    storage_bytes: AtomicU64,
    /// Totals for /metrics and `kora tenant usage`.
    pub totals: Totals,
}

/// A tenant's totals since the broker started: its series on /metrics (the handles are the
/// registry's, so counting here is counting there).
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub throttle_ms: Counter,
    pub throttled_requests: Counter,
    pub request_seconds: Counter<f64, AtomicU64>,
    pub connections: Gauge,
}

impl Totals {
    fn of(metrics: &Metrics, id: &str) -> Self {
        let l = TenantLabels { tenant: id.to_string() };
        Totals {
            bytes_in: metrics.tenant_bytes_in.get_or_create(&l).clone(),
            bytes_out: metrics.tenant_bytes_out.get_or_create(&l).clone(),
            throttle_ms: metrics.tenant_throttle_ms.get_or_create(&l).clone(),
            throttled_requests: metrics.tenant_throttled_requests.get_or_create(&l).clone(),
            request_seconds: metrics.tenant_request_seconds.get_or_create(&l).clone(),
            connections: metrics.tenant_connections.get_or_create(&l).clone(),
        }
    }
}

fn meter_index(m: Meter) -> usize {
    match m {
        Meter::Produce => 0,
        Meter::Fetch => 1,
        Meter::Request => 2,
    }
}

impl TenantQuota {
    fn new(id: &str, window: RateConfig, totals: Totals) -> Self {
        TenantQuota {
            id: id.to_string(),
            produce: Mutex::new(SampledRate::new(window)),
            fetch: Mutex::new(SampledRate::new(window)),
            request: Mutex::new(SampledRate::new(window)),
            connection_rate: Mutex::new(SampledRate::new(window)),
            mutations: Mutex::new(None),
            connections: AtomicU32::new(0),
            share: Mutex::new(Share::default()),
            throttled: Default::default(),
            storage_bytes: AtomicU64::new(0),
            totals,
        }
    }

    fn rate(&self, m: Meter) -> &Mutex<SampledRate> {
        match m {
            Meter::Produce => &self.produce,
            Meter::Fetch => &self.fetch,
            Meter::Request => &self.request,
        }
    }

    pub fn share(&self) -> Share {
        *self.share.lock()
    }

    pub fn set_share(&self, share: Share) {
        *self.share.lock() = share;
    }

    /// The bound this broker enforces for `m` under `limits` (None: unlimited).
    pub fn bound(&self, limits: &TenantLimits, m: Meter) -> Option<f64> {
        let share = self.share();
        match m {
            Meter::Produce => {
                min_bound(limits.producer_byte_rate.map(|q| q * share.produce), share.produce_cap)
            }
            Meter::Fetch => min_bound(limits.consumer_byte_rate.map(|q| q * share.fetch), share.fetch_cap),
            Meter::Request => {
                min_bound(limits.request_percentage.map(|q| q * share.request), share.request_cap)
            }
        }
    }

    /// Records `value` on meter `m` and returns the throttle it earns under `bound`.
    pub fn record(&self, m: Meter, value: f64, bound: Option<f64>, now_ms: u64) -> u64 {
        let mut rate = self.rate(m).lock();
        rate.record(value, now_ms);
        let throttle = bound.map(|b| rate.throttle_ms(b, now_ms)).unwrap_or(0);
        drop(rate);
        if throttle > 0 {
            self.throttled[meter_index(m)].store(true, Ordering::Relaxed);
        }
        throttle
    }

    /// The rate per second of `m` now.
    pub fn rate_now(&self, m: Meter, now_ms: u64) -> f64 {
        self.rate(m).lock().rate(now_ms)
    }

    /// Whether `m` was throttled since the last call (and clears it).
    pub fn take_throttled(&self, m: Meter) -> bool {
        self.throttled[meter_index(m)].swap(false, Ordering::Relaxed)
    }

    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::Relaxed)
    }

    /// A new connection of the tenant, if it is within `max_connections` (the connection holds
    /// the slot until the returned guard drops), with the delay its creation rate earns.
    pub fn open_connection(
        self: &Arc<Self>,
        limits: &TenantLimits,
        window: RateConfig,
        now_ms: u64,
    ) -> Result<(ConnectionSlot, u64), u32> {
        let max = limits.max_connections.unwrap_or(u32::MAX);
        let taken = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if taken.is_err() {
            return Err(max);
        }
        self.totals.connections.inc();
        let delay = {
            let mut rate = self.connection_rate.lock();
            rate.record(1.0, now_ms);
            // Kafka caps connection throttles at one window.
            limits
                .connection_creation_rate
                .map(|b| rate.throttle_ms(b, now_ms).min(window.window_ms))
                .unwrap_or(0)
        };
        Ok((ConnectionSlot { tenant: self.clone() }, delay))
    }

    /// KIP-599: whether a strict request may mutate now (the bucket is not in debt). Without a
    /// controller_mutation_rate, always.
    pub fn may_mutate(&self, limits: &TenantLimits, window: RateConfig, now_ms: u64) -> bool {
        let mut m = self.mutations.lock();
        match (Self::bucket(&mut m, limits, window, now_ms), limits.controller_mutation_rate) {
            (Some(b), Some(_)) => !b.exhausted(now_ms),
            _ => true,
        }
    }

    /// Takes `partitions` mutations and returns the throttle the tenant is in now.
    pub fn record_mutations(
        &self,
        limits: &TenantLimits,
        window: RateConfig,
        partitions: f64,
        now_ms: u64,
    ) -> u64 {
        let mut m = self.mutations.lock();
        match Self::bucket(&mut m, limits, window, now_ms) {
            Some(b) => {
                b.record(partitions, now_ms);
                b.throttle_ms(now_ms)
            }
            None => 0,
        }
    }

    /// The mutation bucket at the tenant's current rate (None: no rate).
    fn bucket<'a>(
        slot: &'a mut Option<(f64, TokenBucket)>,
        limits: &TenantLimits,
        window: RateConfig,
        now_ms: u64,
    ) -> Option<&'a mut TokenBucket> {
        let Some(rate) = limits.controller_mutation_rate else {
            *slot = None;
            return None;
        };
        match slot {
            Some((r, b)) if *r == rate => {}
            Some((r, b)) => {
                b.set_rate(rate, window, now_ms);
                *r = rate;
            }
            None => *slot = Some((rate, TokenBucket::new(rate, window, now_ms))),
        }
        slot.as_mut().map(|(_, b)| b)
    }

    pub fn storage_bytes(&self) -> u64 {
        self.storage_bytes.load(Ordering::Relaxed)
    }

    pub fn set_storage_bytes(&self, bytes: u64) {
        self.storage_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// A tenant's connection slot on this broker; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    tenant: Arc<TenantQuota>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.tenant.connections.fetch_sub(1, Ordering::AcqRel);
        self.tenant.totals.connections.dec();
    }
}

/// Every tenant's accounting on this broker.
#[derive(Debug)]
pub struct Quotas {
    pub config: QuotaConfig,
    clock: Arc<dyn Clock>,
    /// Milliseconds are counted from here (the broker's start).
    base: Instant,
    tenants: Mutex<HashMap<String, Arc<TenantQuota>>>,
    metrics: Arc<Metrics>,
}

impl Quotas {
    pub fn new(config: QuotaConfig, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        let base = clock.now();
        Quotas { config, clock, base, tenants: Mutex::new(HashMap::new()), metrics }
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Monotonic milliseconds on the broker's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now().saturating_duration_since(self.base).as_millis() as u64
    }

    /// The accounting of tenant `id` (made on first use).
    pub fn tenant(&self, id: &str) -> Arc<TenantQuota> {
        let mut t = self.tenants.lock();
        if let Some(q) = t.get(id) {
            return q.clone();
        }
        let q = Arc::new(TenantQuota::new(id, self.config.window, Totals::of(&self.metrics, id)));
        t.insert(id.to_string(), q.clone());
        q
    }

    /// Every tenant with accounting here.
    pub fn all(&self) -> Vec<Arc<TenantQuota>> {
        self.tenants.lock().values().cloned().collect()
    }

    /// Drops the accounting of tenants that no longer exist (and hold no connection).
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.tenants.lock().retain(|id, q| exists(id) || q.connections() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(f: impl FnOnce(&mut TenantLimits)) -> TenantLimits {
        let mut l = TenantLimits::default();
        f(&mut l);
        l
    }

    #[test]
    fn connections_are_held_to_the_limit_and_freed_on_drop() {
        let q = Arc::new(TenantQuota::new("lkc-a", RateConfig::default(), Totals::default()));
        let l = limits(|l| l.max_connections = Some(2));
        let a = q.open_connection(&l, RateConfig::default(), 0).expect("first");
        let _b = q.open_connection(&l, RateConfig::default(), 0).expect("second");
        assert_eq!(q.open_connection(&l, RateConfig::default(), 0).err(), Some(2));
        drop(a);
        assert!(q.open_connection(&l, RateConfig::default(), 0).is_ok());
    }

    #[test]
    fn a_connection_burst_over_its_rate_is_delayed_at_most_one_window() {
        let q = Arc::new(TenantQuota::new("lkc-a", RateConfig::default(), Totals::default()));
        let l = limits(|l| l.connection_creation_rate = Some(1.0));
        let mut delays = Vec::new();
        let mut slots = Vec::new();
        for _ in 0..30 {
            let (slot, delay) = q.open_connection(&l, RateConfig::default(), 0).expect("no max");
            slots.push(slot);
            delays.push(delay);
        }
        assert_eq!(delays[0], 0);
        assert_eq!(*delays.last().expect("some"), 1000);
    }

    #[test]
    fn the_share_scales_the_bound() {
        let q = TenantQuota::new("lkc-a", RateConfig::default(), Totals::default());
        let l = limits(|l| l.producer_byte_rate = Some(1000.0));
        assert_eq!(q.bound(&l, Meter::Produce), Some(1000.0));
        assert_eq!(q.bound(&l, Meter::Fetch), None);
        q.set_share(Share { produce: 0.25, ..Share::default() });
        assert_eq!(q.bound(&l, Meter::Produce), Some(250.0));
        // Throttled flags are per meter and cleared by reading.
        assert!(q.record(Meter::Produce, 1e6, Some(250.0), 0) > 0);
        assert!(q.take_throttled(Meter::Produce));
        assert!(!q.take_throttled(Meter::Produce));
        assert!(!q.take_throttled(Meter::Fetch));
    }

    #[test]
    fn mutations_follow_the_rate_set_now() {
        let q = TenantQuota::new("lkc-a", RateConfig::default(), Totals::default());
        let none = TenantLimits::default();
        assert!(q.may_mutate(&none, RateConfig::default(), 0));
        assert_eq!(q.record_mutations(&none, RateConfig::default(), 1000.0, 0), 0);
        let l = limits(|l| l.controller_mutation_rate = Some(1.0));
        // Burst of 11: 12 partitions put it 1 in debt, a second at 1 per second.
        assert!(q.may_mutate(&l, RateConfig::default(), 0));
        assert_eq!(q.record_mutations(&l, RateConfig::default(), 12.0, 0), 1000);
        assert!(!q.may_mutate(&l, RateConfig::default(), 500));
        assert!(q.may_mutate(&l, RateConfig::default(), 1000));
    }
}

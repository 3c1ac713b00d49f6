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
    /// quota.broker.append.ms (Kora): how long produce appends may take (the 90th percentile
    /// over a window: the write and any flush it waits for) before the disk counts as falling
    /// behind and the broker learns an ingress limit below what it takes
    /// (`kora_quota::shares::LearnedLimit`). None: off.
    pub append_ms: Option<u64>,
    /// quota.broker.send.ms (Kora): how long responses may take to leave once ready (the 90th
    /// percentile over a window: queued behind the connection's earlier answers and a full
    /// socket buffer) before the network counts as falling behind and the broker learns an
    /// egress limit below what tenants fetch. None: off.
    pub send_ms: Option<u64>,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            window: RateConfig::default(),
            ingress_safe_bytes_per_second: None,
            egress_safe_bytes_per_second: None,
            request_queue_ms: Some(100),
            append_ms: Some(50),
            send_ms: Some(50),
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

/// What this broker knows of a tenant's use elsewhere in the cell, and the bounds
/// backpressure puts on it here when the broker is over its safe limits (None: none).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Share {
    /// The tenant's rate on the cell's other brokers per meter (produce, fetch, request), as
    /// they last reported it.
    pub elsewhere: [f64; 3],
    /// This broker's rate when they did: what it gained since is assumed gained on every
    /// other broker too (they report once a window), so a tenant starting up, or growing,
    /// takes its windows' burst once over the cell, not once per broker.
    pub here_then: [f64; 3],
    /// The tenant's open connections on the other brokers, and their connection creation
    /// rate, as last reported: max_connections and connection_creation_rate are for the cell.
    pub connections_elsewhere: u64,
    pub connection_rate_elsewhere: f64,
    pub produce_cap: Option<f64>,
    pub fetch_cap: Option<f64>,
    /// Request time, percent of a thread (backpressure when the broker is overloaded).
    pub request_cap: Option<f64>,
}

impl Share {
    fn cap(&self, m: Meter) -> Option<f64> {
        match m {
            Meter::Produce => self.produce_cap,
            Meter::Fetch => self.fetch_cap,
            Meter::Request => self.request_cap,
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
    /// Use elsewhere and backpressure caps (the coordinator sets them).
    share: Mutex<Share>,
    /// Brokers in the cell (for the estimate before the first exchange).
    brokers: AtomicU64,
    /// Whether a request of the tenant was throttled since the coordinator last looked.
    throttled: [AtomicBool; 3],
    /// Until when (quota ms) the tenant's connections are muted by a throttle, per meter: a
    /// muted tenant sends nothing, and is held back all that time.
    throttled_until_ms: [AtomicU64; 3],
    /// Per meter, the last backpressure cap and its token bucket (burst: one window), so a cap
    /// binds from when it is set, on what the tenant takes from then on (a bucket idle for a
    /// window between caps is full again): a cap measured
    /// over the quota's windows would throttle for the whole window's past use, for seconds
    /// after the coordinator changed it.
    cap_buckets: [Mutex<Option<(f64, TokenBucket)>>; 3],
    window: RateConfig,
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
    fn new(id: &str, window: RateConfig, totals: Totals, brokers: usize) -> Self {
        TenantQuota {
            id: id.to_string(),
            produce: Mutex::new(SampledRate::new(window)),
            fetch: Mutex::new(SampledRate::new(window)),
            request: Mutex::new(SampledRate::new(window)),
            connection_rate: Mutex::new(SampledRate::new(window)),
            mutations: Mutex::new(None),
            connections: AtomicU32::new(0),
            share: Mutex::new(Share::default()),
            brokers: AtomicU64::new(brokers.max(1) as u64),
            throttled: Default::default(),
            throttled_until_ms: Default::default(),
            cap_buckets: Default::default(),
            window,
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

    /// The tenant's cell-wide quota for `m` (None: unlimited).
    pub fn quota(limits: &TenantLimits, m: Meter) -> Option<f64> {
        match m {
            Meter::Produce => limits.producer_byte_rate,
            Meter::Fetch => limits.consumer_byte_rate,
            Meter::Request => limits.request_percentage,
        }
    }

    /// What the tenant may use here now: its part of the quota in proportion to where its
    /// traffic is (the whole quota on one broker; an even part while it is idle), within any
    /// backpressure cap. None: unlimited.
    pub fn bound(&self, limits: &TenantLimits, m: Meter, now_ms: u64) -> Option<f64> {
        let share = self.share();
        let part = Self::quota(limits, m).map(|q| {
            let here = self.rate_now(m, now_ms);
            let brokers = self.brokers.load(Ordering::Relaxed).max(1) as f64;
            let there = share.elsewhere[meter_index(m)];
            if here + there > 0.0 {
                q * here / (here + there)
            } else {
                q / brokers
            }
        });
        min_bound(part, share.cap(m))
    }

    /// Records `value` on meter `m` and returns the throttle it earns: the tenant's rate over
    /// the cell (here, plus what the other brokers last reported) against its quota, and its
    /// rate here against any backpressure cap.
    pub fn record(&self, m: Meter, value: f64, limits: &TenantLimits, now_ms: u64) -> u64 {
        let share = self.share();
        let mut rate = self.rate(m).lock();
        rate.record(value, now_ms);
        let i = meter_index(m);
        let others = (self.brokers.load(Ordering::Relaxed).max(1) - 1) as f64;
        let gained = (rate.rate(now_ms) - share.here_then[i]).max(0.0);
        let elsewhere = share.elsewhere[i] + gained * others;
        let over_quota = Self::quota(limits, m).map_or(0, |q| rate.throttle_ms_with(elsewhere, q, now_ms));
        drop(rate);
        let over_cap = self.over_cap(m, share.cap(m), value, now_ms);
        let throttle = over_quota.max(over_cap);
        if throttle > 0 {
            self.throttled[meter_index(m)].store(true, Ordering::Relaxed);
            self.throttled_until_ms[meter_index(m)].fetch_max(now_ms + throttle, Ordering::Relaxed);
        }
        throttle
    }

    /// Takes `value` from meter `m`'s backpressure bucket; the throttle its debt earns (0
    /// without a cap).
    fn over_cap(&self, m: Meter, cap: Option<f64>, value: f64, now_ms: u64) -> u64 {
        // No cap (the usual case): no lock. A bucket left from an earlier cap is harmless: it
        // has refilled to its burst by the time a cap is set again.
        let Some(cap) = cap.filter(|c| *c > 0.0 && c.is_finite()) else { return 0 };
        let mut slot = self.cap_buckets[meter_index(m)].lock();
        let burst = RateConfig { samples: 1, ..self.window };
        let (rate, bucket) = slot.get_or_insert_with(|| (cap, TokenBucket::new(cap, burst, now_ms)));
        if *rate != cap {
            bucket.set_rate(cap, burst, now_ms);
            *rate = cap;
        }
        bucket.record(value, now_ms);
        bucket.throttle_ms(now_ms)
    }

    /// The cell's brokers now.
    pub fn set_brokers(&self, brokers: usize) {
        self.brokers.store(brokers.max(1) as u64, Ordering::Relaxed);
    }

    /// The rate per second of `m` now.
    pub fn rate_now(&self, m: Meter, now_ms: u64) -> f64 {
        self.rate(m).lock().rate(now_ms)
    }

    /// Whether `m` was throttled since the last call (and clears that), or is still muted by
    /// a throttle at `now_ms`.
    pub fn take_throttled(&self, m: Meter, now_ms: u64) -> bool {
        let i = meter_index(m);
        self.throttled[i].swap(false, Ordering::Relaxed)
            || self.throttled_until_ms[i].load(Ordering::Relaxed) > now_ms
    }

    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::Relaxed)
    }

    /// New connections per second here.
    pub fn connection_rate_now(&self, now_ms: u64) -> f64 {
        self.connection_rate.lock().rate(now_ms)
    }

    /// A new connection of the tenant, if the cell's connections (here, plus the other brokers'
    /// as they last reported) are within `max_connections` (the connection holds the slot
    /// until the returned guard drops), with the delay its creation rate over the cell earns.
    /// Refused: the limit and the tenant's connections over the cell.
    pub fn open_connection(
        self: &Arc<Self>,
        limits: &TenantLimits,
        window: RateConfig,
        now_ms: u64,
    ) -> Result<(ConnectionSlot, u64), (u32, u64)> {
        let max = u64::from(limits.max_connections.unwrap_or(u32::MAX));
        let share = self.share();
        let elsewhere = share.connections_elsewhere;
        let taken = self.connections.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (u64::from(n) + elsewhere < max).then_some(n + 1)
        });
        if let Err(here) = taken {
            return Err((max.min(u64::from(u32::MAX)) as u32, u64::from(here) + elsewhere));
        }
        self.totals.connections.inc();
        let delay = {
            let mut rate = self.connection_rate.lock();
            rate.record(1.0, now_ms);
            // Kafka caps connection throttles at one window.
            limits
                .connection_creation_rate
                .map(|b| {
                    rate.throttle_ms_with(share.connection_rate_elsewhere, b, now_ms).min(window.window_ms)
                })
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
    /// Brokers in the cell at the last exchange (a new tenant's estimate of its use elsewhere).
    brokers: AtomicU64,
}

impl Quotas {
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn new(config: QuotaConfig, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        let base = clock.now();
        Quotas {
            config,
            clock,
            base,
            tenants: Mutex::new(HashMap::new()),
            metrics,
            brokers: AtomicU64::new(1),
        }
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
        let brokers = self.brokers.load(Ordering::Relaxed) as usize;
        let q = Arc::new(TenantQuota::new(id, self.config.window, Totals::of(&self.metrics, id), brokers));
        t.insert(id.to_string(), q.clone());
        q
    }

    /// The cell's brokers now (every tenant's estimate before its first exchange).
    pub fn set_brokers(&self, brokers: usize) {
        self.brokers.store(brokers.max(1) as u64, Ordering::Relaxed);
        for t in self.all() {
            t.set_brokers(brokers);
        }
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
        let q = Arc::new(TenantQuota::new("lkc-a", RateConfig::default(), Totals::default(), 1));
        let l = limits(|l| l.max_connections = Some(2));
        let a = q.open_connection(&l, RateConfig::default(), 0).expect("first");
        let _b = q.open_connection(&l, RateConfig::default(), 0).expect("second");
        assert_eq!(q.open_connection(&l, RateConfig::default(), 0).err(), Some((2, 2)));
        drop(a);
        assert!(q.open_connection(&l, RateConfig::default(), 0).is_ok());
    }

    #[test]
    fn connections_on_other_brokers_count_against_the_limit() {
        let q = Arc::new(TenantQuota::new("lkc-a", RateConfig::default(), Totals::default(), 3));
        let l = limits(|l| l.max_connections = Some(5));
        q.set_share(Share { connections_elsewhere: 4, ..Share::default() });
        let a = q.open_connection(&l, RateConfig::default(), 0).expect("the fifth over the cell");
        assert_eq!(q.open_connection(&l, RateConfig::default(), 0).err(), Some((5, 5)));
        // One closed elsewhere (the next exchange says so): room for one more here.
        q.set_share(Share { connections_elsewhere: 3, ..Share::default() });
        let _b = q.open_connection(&l, RateConfig::default(), 0).expect("room again");
        drop(a);
    }

    #[test]
    fn a_connection_burst_over_its_rate_is_delayed_at_most_one_window() {
        let q = Arc::new(TenantQuota::new("lkc-a", RateConfig::default(), Totals::default(), 1));
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
    fn one_quota_over_two_brokers_is_held_at_the_cell_rate() {
        // Two brokers' accounting of one tenant, exchanging their rates every second; the
        // tenant's clients send 500 bytes per 10 ms to each and wait out every throttle.
        let cfg = RateConfig::default();
        let a = TenantQuota::new("lkc-a", cfg, Totals::default(), 2);
        let b = TenantQuota::new("lkc-a", cfg, Totals::default(), 2);
        let l = limits(|l| l.producer_byte_rate = Some(50_000.0));
        let (mut next_a, mut next_b, mut sent) = (0u64, 0u64, 0.0f64);
        for now in (0..120_000u64).step_by(10) {
            if now % 1000 == 0 {
                let (ra, rb) = (a.rate_now(Meter::Produce, now), b.rate_now(Meter::Produce, now));
                a.set_share(Share {
                    elsewhere: [rb, 0.0, 0.0],
                    here_then: [ra, 0.0, 0.0],
                    ..Share::default()
                });
                b.set_share(Share {
                    elsewhere: [ra, 0.0, 0.0],
                    here_then: [rb, 0.0, 0.0],
                    ..Share::default()
                });
            }
            for (q, next) in [(&a, &mut next_a), (&b, &mut next_b)] {
                if now >= *next {
                    *next = now + q.record(Meter::Produce, 500.0, &l, now);
                    if now >= 20_000 {
                        sent += 500.0;
                    }
                }
            }
        }
        let achieved = sent / 100.0;
        assert!(
            (achieved - 50_000.0).abs() / 50_000.0 < 0.12,
            "{achieved} per second over the cell against 50000"
        );
        // Each broker's part of the quota follows its traffic: even here.
        let (ba, bb) = (a.bound(&l, Meter::Produce, 120_000), b.bound(&l, Meter::Produce, 120_000));
        let (ba, bb) = (ba.expect("a quota"), bb.expect("a quota"));
        assert!((ba + bb - 50_000.0).abs() < 500.0 && (ba - bb).abs() < 10_000.0, "{ba} + {bb}");
    }

    #[test]
    fn throttled_flags_last_while_the_throttle_does() {
        let q = TenantQuota::new("lkc-a", RateConfig::default(), Totals::default(), 1);
        let l = limits(|l| l.producer_byte_rate = Some(250.0));
        let until = q.record(Meter::Produce, 1e6, &l, 0);
        assert!(until > 0);
        assert!(q.take_throttled(Meter::Produce, 0));
        assert!(q.take_throttled(Meter::Produce, until - 1), "still muted by that throttle");
        assert!(!q.take_throttled(Meter::Produce, until));
        assert!(!q.take_throttled(Meter::Fetch, 0));
    }

    #[test]
    fn mutations_follow_the_rate_set_now() {
        let q = TenantQuota::new("lkc-a", RateConfig::default(), Totals::default(), 1);
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

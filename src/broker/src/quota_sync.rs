//! The quota coordinator of one broker: every quota window it measures what each tenant used
//! here, fetches the same figures from the cell's other brokers (`GET /v1/quota-usage`), and
//! sets the share of each tenant's cell-wide quota this broker enforces (kora-quota's
//! `shares::share`) and, when this broker is over its safe limits, the backpressure bounds
//! (`shares::scale_to_limit`). It also sums tenants' stored bytes over the cell for
//! `storage_bytes`.
//!
//! Every broker runs the same computation on the same figures, so the shares add up to the
//! quota without a coordinator to elect or lose; a broker that does not answer is counted as
//! using nothing (its tenants' traffic will show up where it moves). A single node enforces
//! the whole quota.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kora_api::{BrokerUsage, UsageFigures};
use kora_meta::{MetadataImage, QuotaKey};
use kora_quota::shares::{self, BrokerUse};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::quotas::{Meter, Quotas, Share};
use crate::view::View;

/// How much more than its use a throttled tenant is taken to want.
const THROTTLED_DEMAND: f64 = 1.5;
/// Peers' figures older than this many windows are dropped.
const STALE_WINDOWS: u64 = 3;

/// What the coordinator knows: this broker's last figures and its peers'.
#[derive(Debug, Default)]
pub struct UsageBoard {
    pub local: Mutex<BrokerUsage>,
    /// Peers' figures and when they came (ms on the quota clock).
    pub peers: Mutex<BTreeMap<i32, (u64, BrokerUsage)>>,
}

impl UsageBoard {
    /// Every broker's last figures, this one first.
    pub fn all(&self) -> Vec<BrokerUsage> {
        let mut out = vec![self.local.lock().clone()];
        out.extend(self.peers.lock().values().map(|(_, u)| u.clone()));
        out
    }
}

/// The coordinator's handles.
#[derive(Debug, Clone)]
pub struct QuotaSync {
    pub quotas: Arc<Quotas>,
    pub view: View,
    pub logs: Arc<kora_log::LogManager>,
    pub board: Arc<UsageBoard>,
    pub node_id: i32,
    /// The cell's token, presented to peers' admin endpoints; None outside a cell.
    pub token: Option<Arc<kora_api::Token>>,
}

impl QuotaSync {
    /// This broker's figures now (and clears the throttled flags: one reading per window).
    fn measure(&self, image: &MetadataImage) -> BrokerUsage {
        let now = self.quotas.now_ms();
        let mut tenants = BTreeMap::new();
        let mut bounds = BTreeMap::new();
        for t in image.tenants.values() {
            let q = self.quotas.tenant(&t.id);
            let figures = UsageFigures {
                produce_bytes_per_second: q.rate_now(Meter::Produce, now),
                fetch_bytes_per_second: q.rate_now(Meter::Fetch, now),
                request_percent: q.rate_now(Meter::Request, now),
                connections: u64::from(q.connections()),
                storage_bytes: self.stored_bytes(image, &t.id),
                produce_throttled: q.take_throttled(Meter::Produce),
                fetch_throttled: q.take_throttled(Meter::Fetch),
                request_throttled: q.take_throttled(Meter::Request),
                bytes_in_total: q.totals.bytes_in.get(),
                bytes_out_total: q.totals.bytes_out.get(),
                throttle_ms_total: q.totals.throttle_ms.get(),
                throttled_requests_total: q.totals.throttled_requests.get(),
            };
            let mut b = BTreeMap::new();
            for (key, meter) in [
                (QuotaKey::ProducerByteRate, Meter::Produce),
                (QuotaKey::ConsumerByteRate, Meter::Fetch),
                (QuotaKey::RequestPercentage, Meter::Request),
            ] {
                if let Some(v) = q.bound(&t.limits, meter) {
                    b.insert(key.name().to_string(), v);
                }
            }
            tenants.insert(t.id.clone(), figures);
            bounds.insert(t.id.clone(), b);
        }
        self.quotas.retain(|id| image.tenants.contains_key(id));
        BrokerUsage { broker_id: self.node_id, tenants, bounds }
    }

    /// Bytes of the tenant's partitions this broker leads: the object store's segments plus
    /// the local bytes not yet there.
    fn stored_bytes(&self, image: &MetadataImage, tenant: &str) -> u64 {
        let mut total = 0;
        for topic in image.tenant_topics(tenant) {
            for p in 0..topic.partitions {
                if !topic.leads(p, self.node_id) {
                    continue;
                }
                let remote = image.remote_segments(&topic.topic_id, p);
                let remote_bytes: u64 = remote.iter().map(|s| s.size_bytes).sum();
                let remote_end = remote.last().map_or(0, |s| s.end_offset);
                let local = self.logs.get(&topic.name, p).map_or(0, |l| l.bytes_after(remote_end).0);
                total += remote_bytes + local;
            }
        }
        total
    }

    /// Asks every other unfenced broker of the cell for its figures.
    async fn gather(&self, image: &MetadataImage, timeout: Duration) {
        let now = self.quotas.now_ms();
        let window = self.quotas.config.window.window_ms;
        let peers: Vec<(i32, String)> = image
            .brokers
            .iter()
            .filter(|(id, b)| **id != self.node_id && !b.fenced)
            .map(|(id, b)| (*id, b.registration.admin.clone()))
            .collect();
        let asks = peers.into_iter().map(|(id, admin)| {
            let token = self.token.clone();
            async move {
                let client = kora_api::Client::new(&admin, token, timeout).ok()?;
                match client.broker_usage().await {
                    Ok(u) if u.broker_id == id => Some((id, u)),
                    Ok(u) => {
                        tracing::warn!(
                            broker = id,
                            answered = u.broker_id,
                            "quota figures from the wrong broker"
                        );
                        None
                    }
                    Err(e) => {
                        tracing::debug!(broker = id, error = %e, "no quota figures from a peer");
                        None
                    }
                }
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut peers = self.board.peers.lock();
        for (id, u) in answers.into_iter().flatten() {
            peers.insert(id, (now, u));
        }
        peers.retain(|id, (at, _)| {
            image.brokers.get(id).is_some_and(|b| !b.fenced)
                && now.saturating_sub(*at) <= STALE_WINDOWS * window
        });
    }

    /// Sets every tenant's share and backpressure bounds from the board.
    fn apportion(&self, image: &MetadataImage) {
        let all = self.board.all();
        let mut ingress = (Vec::new(), Vec::new(), Vec::new());
        let mut egress = (Vec::new(), Vec::new(), Vec::new());
        for t in image.tenants.values() {
            let q = self.quotas.tenant(&t.id);
            let figures: Vec<UsageFigures> =
                all.iter().map(|b| b.tenants.get(&t.id).cloned().unwrap_or_default()).collect();
            let fraction = |quota: Option<f64>, used: fn(&UsageFigures) -> (f64, bool)| -> f64 {
                let Some(quota) = quota.filter(|q| *q > 0.0) else { return 1.0 };
                let uses: Vec<BrokerUse> = figures
                    .iter()
                    .map(|f| {
                        let (used, throttled) = used(f);
                        BrokerUse { used, throttled }
                    })
                    .collect();
                shares::share(quota, 0, &uses) / quota
            };
            let share = Share {
                produce: fraction(t.limits.producer_byte_rate, |f| {
                    (f.produce_bytes_per_second, f.produce_throttled)
                }),
                fetch: fraction(t.limits.consumer_byte_rate, |f| {
                    (f.fetch_bytes_per_second, f.fetch_throttled)
                }),
                request: fraction(t.limits.request_percentage, |f| (f.request_percent, f.request_throttled)),
                produce_cap: None,
                fetch_cap: None,
            };
            q.set_share(share);
            q.set_storage_bytes(figures.iter().map(|f| f.storage_bytes).sum());
            let mine = &figures[0];
            let limits = &t.limits;
            ingress.0.push(q.clone());
            ingress.1.push(q.bound(limits, Meter::Produce).unwrap_or(f64::INFINITY));
            // A tenant held back here wants more than it got: its demand counts as more than
            // its use, so backpressure stays on while it holds anyone back.
            let demand = |used: f64, throttled: bool| if throttled { used * THROTTLED_DEMAND } else { used };
            ingress.2.push(demand(mine.produce_bytes_per_second, mine.produce_throttled));
            egress.0.push(q);
            egress
                .1
                .push(egress.0.last().and_then(|q| q.bound(limits, Meter::Fetch)).unwrap_or(f64::INFINITY));
            egress.2.push(demand(mine.fetch_bytes_per_second, mine.fetch_throttled));
        }
        let safe = self.quotas.config;
        for (limit, (tenants, mut bounds, used), produce) in [
            (safe.ingress_safe_bytes_per_second, ingress, true),
            (safe.egress_safe_bytes_per_second, egress, false),
        ] {
            let Some(limit) = limit else { continue };
            let factor = shares::scale_to_limit(limit, &mut bounds, &used);
            if factor >= 1.0 {
                continue;
            }
            tracing::debug!(factor, produce, "broker over its safe limit: tenants' bounds scaled down");
            for (q, b) in tenants.iter().zip(bounds) {
                let mut s = q.share();
                if produce {
                    s.produce_cap = Some(b);
                } else {
                    s.fetch_cap = Some(b);
                }
                q.set_share(s);
            }
        }
    }

    /// One round: measure, exchange (in a cell), apportion.
    pub async fn round(&self) {
        let image = self.view.image();
        let local = self.measure(&image);
        *self.board.local.lock() = local;
        if !image.brokers.is_empty() {
            let timeout = Duration::from_millis((self.quotas.config.window.window_ms / 2).clamp(100, 5000));
            self.gather(&image, timeout).await;
        }
        self.apportion(&image);
    }
}

/// Runs a round every quota window until shutdown.
pub async fn run(sync: QuotaSync, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(sync.quotas.config.window.window_ms);
    let clock = sync.quotas.clock();
    loop {
        tokio::select! {
            _ = clock.sleep(every) => sync.round().await,
            _ = shutdown.changed() => return,
        }
    }
}

//! The quota coordinator of one broker: every quota window it measures what each tenant used
//! here, fetches the same figures from the cell's other brokers (`GET /v1/quota-usage`), and
//! hands each tenant's accounting its rates elsewhere, so this broker throttles the tenant
//! against its rate over the cell (its part of the quota is then its part of the traffic),
//! and, when this broker is over its safe limits, the backpressure bounds
//! (`shares::scale_to_limit`). It also sums tenants' stored bytes over the cell for
//! `storage_bytes`. When the broker is overloaded (a load probe finds ready work waiting longer
//! than `quota.broker.request.queue.ms` for a thread while the process uses most of its cores),
//! every tenant's request time is cut in proportion to what it uses, by a factor that falls
//! while the overload lasts and climbs back after (`shares::Aimd`). When produce appends take
//! longer than `quota.broker.append.ms` (p90 over a window: the disk is falling behind), the
//! broker learns an ingress limit below what it takes, and tenants' produce bounds scale down
//! to it as they do to a configured one (`shares::LearnedLimit`). Likewise for the network:
//! when responses take longer than `quota.broker.send.ms` to leave (p90: queued behind the
//! connection's earlier answers and full socket buffers, as on a saturated NIC), the broker
//! learns an egress limit below what tenants fetched, and their fetch bounds scale down to it.
//!
//! Every broker throttles by the same excess over the quota, so the cell is held to it without
//! a coordinator to elect or lose; the figures are at most a window old. A broker that does not
//! answer is counted as using nothing (its tenants' traffic will show up where it moves);
//! before the first exchange a broker assumes the others see what it sees. A single node
//! enforces the whole quota.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kora_api::{BrokerUsage, UsageFigures};
use kora_meta::{MetadataImage, QuotaKey};
use kora_quota::shares;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::quotas::{Meter, Quotas, Share};
use crate::view::View;

/// How much more than its use a throttled tenant is taken to want.
const THROTTLED_DEMAND: f64 = 1.5;
/// Peers' figures older than this many windows are dropped.
const STALE_WINDOWS: u64 = 3;

/// How often the load probe checks how late the runtime wakes it.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Probe samples kept per window (more are dropped until the round reads them).
const MAX_PROBES: usize = 1024;
/// A learned ingress or egress limit never goes below this, bytes/s (every tenant keeps some
/// service).
const LEARNED_FLOOR: f64 = 256.0 * 1024.0;
/// The share of its cores a broker must be using to count as overloaded (waits while it is
/// idle are someone else's load, which throttling its tenants would not relieve).
const BUSY_CPU_FRACTION: f64 = 0.8;

/// A device (the disk, the network) over the last round: seconds its work's p90 was beyond
/// its target (quota.broker.append.ms, quota.broker.send.ms; None: within it), and the bytes/s
/// of tenants' traffic it carried (appended, fetched).
#[derive(Debug, Clone, Copy)]
struct DeviceLoad {
    behind_s: Option<f64>,
    done: f64,
}

/// Which safe limit a device's load sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// What the coordinator knows: this broker's last figures and its peers', and its load.
#[derive(Debug, Default)]
pub struct UsageBoard {
    pub local: Mutex<BrokerUsage>,
    /// Peers' figures and when they came (ms on the quota clock).
    pub peers: Mutex<BTreeMap<i32, (u64, BrokerUsage)>>,
    /// How late the runtime woke the load probe, in ms, since the last round.
    lags_ms: Mutex<Vec<u64>>,
    /// Backpressure on request time, and the process's CPU seconds at the last round.
    load: Mutex<(kora_quota::shares::Aimd, Option<(f64, u64)>)>,
    /// How long produce appends took (µs), and the bytes they wrote, since the last round.
    pub append_times: kora_quota::TimeSketch,
    pub appended_bytes: std::sync::atomic::AtomicU64,
    /// How long responses took to leave once ready (µs), since the last round; of those
    /// rounds (`send_round`), the connections that had a response over quota.broker.send.ms,
    /// and the bytes sent in all and by those slow responses.
    send_times: kora_quota::TimeSketch,
    send_round: std::sync::atomic::AtomicU64,
    slow_connections: std::sync::atomic::AtomicU64,
    sent_bytes: std::sync::atomic::AtomicU64,
    slow_bytes: std::sync::atomic::AtomicU64,
    /// The limits learned from the disk and the network falling behind.
    ingress: Mutex<kora_quota::shares::LearnedLimit>,
    egress: Mutex<kora_quota::shares::LearnedLimit>,
    /// When (ms on the quota clock) the last round read the devices' figures, and tenants'
    /// fetched bytes then.
    last_read: Mutex<Option<(u64, u64)>>,
}

impl UsageBoard {
    /// This broker's last figures with the rates read at this moment (what peers are told).
    pub fn local_now(&self, quotas: &Quotas) -> BrokerUsage {
        let mut u = self.local.lock().clone();
        let now = quotas.now_ms();
        for (id, f) in u.tenants.iter_mut() {
            let q = quotas.tenant(id);
            f.produce_bytes_per_second = q.rate_now(Meter::Produce, now);
            f.fetch_bytes_per_second = q.rate_now(Meter::Fetch, now);
            f.request_percent = q.rate_now(Meter::Request, now);
            f.connections = u64::from(q.connections());
            f.connections_per_second = q.connection_rate_now(now);
        }
        u
    }

    /// A response of `bytes` left for its client `waited` after it was ready (`slow_after`:
    /// quota.broker.send.ms; `conn`: its connection's tally).
    pub fn response_sent(
        &self,
        bytes: usize,
        waited: Duration,
        slow_after: Option<Duration>,
        conn: &mut ConnectionSends,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.send_times.record(waited.as_micros().min(u128::from(u64::MAX)) as u64);
        self.sent_bytes.fetch_add(bytes as u64, Relaxed);
        if slow_after.is_some_and(|t| waited > t) {
            self.slow_bytes.fetch_add(bytes as u64, Relaxed);
            let round = self.send_round.load(Relaxed);
            if conn.slow_in_round != Some(round) {
                conn.slow_in_round = Some(round);
                self.slow_connections.fetch_add(1, Relaxed);
            }
        }
    }

    /// Every broker's last figures, this one first.
    pub fn all(&self) -> Vec<BrokerUsage> {
        let mut out = vec![self.local.lock().clone()];
        out.extend(self.peers.lock().values().map(|(_, u)| u.clone()));
        out
    }
}

/// The lower of a configured and a learned limit, either of which may be absent.
fn lower(configured: Option<f64>, learned: Option<f64>) -> Option<f64> {
    match (configured, learned) {
        (Some(c), Some(l)) => Some(c.min(l)),
        (c, l) => c.or(l),
    }
}

/// How far a p90 (µs) is beyond its target (ms), in seconds; None: within it, or no target.
fn beyond(target_ms: Option<u64>, p90_us: Option<u64>) -> Option<f64> {
    match (target_ms, p90_us) {
        (Some(t), Some(us)) if us > t * 1000 => Some((us - t * 1000) as f64 / 1_000_000.0),
        _ => None,
    }
}

/// One connection's part in the network's figures: the round it last counted as slow in.
#[derive(Debug, Default)]
pub struct ConnectionSends {
    slow_in_round: Option<u64>,
}

/// The network falls behind only when at least this many connections had a slow response in
/// the round, carrying at least [`SLOW_BYTES_SHARE`] of the bytes sent: a saturated link
/// slows the bulk of the traffic, while one client that does not read its responses slows
/// only its own (and throttling every tenant for it would hurt the others).
const MIN_SLOW_CONNECTIONS: u64 = 2;
const SLOW_BYTES_SHARE: f64 = 0.5;

/// Whether slow responses were the network's, not a client's: enough connections, carrying
/// enough of the bytes.
fn widespread(slow_connections: u64, sent_bytes: u64, slow_bytes: u64) -> bool {
    slow_connections >= MIN_SLOW_CONNECTIONS && slow_bytes as f64 >= SLOW_BYTES_SHARE * sent_bytes as f64
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
                connections_per_second: q.connection_rate_now(now),
                storage_bytes: self.stored_bytes(image, &t.id),
                produce_throttled: q.take_throttled(Meter::Produce, now),
                fetch_throttled: q.take_throttled(Meter::Fetch, now),
                request_throttled: q.take_throttled(Meter::Request, now),
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
                if let Some(v) = q.bound(&t.limits, meter, now) {
                    b.insert(key.name().to_string(), v);
                }
            }
            tenants.insert(t.id.clone(), figures);
            bounds.insert(t.id.clone(), b);
        }
        self.quotas.retain(|id| image.tenants.contains_key(id));
        let load = self.load(&tenants);
        BrokerUsage { broker_id: self.node_id, tenants, bounds, load }
    }

    /// This broker's load: the largest of its tenants' request time against its cores and
    /// their bytes against the ingress and egress limits in force (1.0: at them).
    fn load(&self, tenants: &BTreeMap<String, UsageFigures>) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let sum = |f: fn(&UsageFigures) -> f64| tenants.values().map(f).sum::<f64>();
        let config = self.quotas.config;
        let against = |used: f64, limit: Option<f64>| limit.filter(|l| *l > 0.0).map_or(0.0, |l| used / l);
        let ingress = against(
            sum(|f| f.produce_bytes_per_second),
            lower(config.ingress_safe_bytes_per_second, self.board.ingress.lock().limit()),
        );
        let egress = against(
            sum(|f| f.fetch_bytes_per_second),
            lower(config.egress_safe_bytes_per_second, self.board.egress.lock().limit()),
        );
        (sum(|f| f.request_percent) / (100.0 * cores)).max(ingress).max(egress).max(0.0)
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

    /// Whether the broker is overloaded: ready work waited longer than
    /// quota.broker.request.queue.ms for a thread (90th percentile of the probe's delays) while
    /// the process used most of its cores.
    async fn overloaded(&self) -> bool {
        let lags = std::mem::take(&mut *self.board.lags_ms.lock());
        let Some(limit) = self.quotas.config.request_queue_ms else { return false };
        let now = self.quotas.now_ms();
        let cpu = tokio::task::spawn_blocking(process_cpu_seconds).await.ok().flatten();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = {
            let mut load = self.board.load.lock();
            let busy = match (cpu, load.1) {
                (Some(c), Some((c0, t0))) if now > t0 => (c - c0) / ((now - t0) as f64 / 1000.0) / cores,
                _ => 0.0,
            };
            load.1 = cpu.map(|c| (c, now));
            busy
        };
        let mut sorted = lags;
        sorted.sort_unstable();
        let p90 = sorted.get(sorted.len() * 9 / 10).copied().unwrap_or(0);
        tracing::debug!(wait_p90_ms = p90, cpu = busy, probes = sorted.len(), "broker load");
        p90 > limit && busy >= BUSY_CPU_FRACTION
    }

    /// The disk and the network since the last round: how far produce appends' p90 is beyond
    /// `quota.broker.append.ms` and what they wrote, and how far responses' p90 is beyond
    /// `quota.broker.send.ms` and what tenants fetched.
    fn device_loads(&self, image: &MetadataImage) -> (DeviceLoad, DeviceLoad) {
        let now = self.quotas.now_ms();
        let appended = self.board.appended_bytes.swap(0, std::sync::atomic::Ordering::Relaxed);
        let fetched: u64 = image.tenants.keys().map(|id| self.quotas.tenant(id).totals.bytes_out.get()).sum();
        let since = self.board.last_read.lock().replace((now, fetched));
        let per_second = |bytes: u64| match since {
            Some((t0, _)) if now > t0 => bytes as f64 * 1000.0 / (now - t0) as f64,
            _ => 0.0,
        };
        let fetched_since = since.map_or(0, |(_, f0)| fetched.saturating_sub(f0));
        let metrics = self.quotas.metrics();
        let append_p90 = self.board.append_times.take_quantile(0.9).map(|(us, _)| us);
        metrics.append_p90_micros.set(append_p90.unwrap_or(0) as i64);
        let send_p90 = self.board.send_times.take_quantile(0.9).map(|(us, _)| us);
        metrics.send_p90_micros.set(send_p90.unwrap_or(0) as i64);
        let (slow_connections, sent, slow) = {
            use std::sync::atomic::Ordering::Relaxed;
            self.board.send_round.fetch_add(1, Relaxed);
            (
                self.board.slow_connections.swap(0, Relaxed),
                self.board.sent_bytes.swap(0, Relaxed),
                self.board.slow_bytes.swap(0, Relaxed),
            )
        };
        let config = self.quotas.config;
        (
            DeviceLoad { behind_s: beyond(config.append_ms, append_p90), done: per_second(appended) },
            DeviceLoad {
                behind_s: beyond(config.send_ms, send_p90)
                    .filter(|_| widespread(slow_connections, sent, slow)),
                done: per_second(fetched_since),
            },
        )
    }

    /// Gives every tenant's accounting its rates elsewhere (from the board) and any
    /// backpressure caps.
    fn apportion(&self, image: &MetadataImage, overloaded: bool, disk: DeviceLoad, network: DeviceLoad) {
        let request_factor = {
            let mut load = self.board.load.lock();
            let before = load.0.factor();
            let f = load.0.update(overloaded);
            if (f < 1.0) != (before < 1.0) {
                if f < 1.0 {
                    tracing::warn!(
                        factor = f,
                        "broker overloaded: tenants' request time cut to what they use, scaled"
                    );
                } else {
                    tracing::info!("broker load back to normal: request-time backpressure off");
                }
            }
            f
        };
        self.quotas.metrics().request_backpressure_percent.set((request_factor * 100.0).round() as i64);
        let all = self.board.all();
        let now = self.quotas.now_ms();
        let mut ingress = (Vec::new(), Vec::new(), Vec::new());
        let mut egress = (Vec::new(), Vec::new(), Vec::new());
        for t in image.tenants.values() {
            let q = self.quotas.tenant(&t.id);
            let figures: Vec<UsageFigures> =
                all.iter().map(|b| b.tenants.get(&t.id).cloned().unwrap_or_default()).collect();
            // The tenant's rates on the other brokers: every broker throttles against the
            // tenant's rate over the cell, so each one's part follows where the traffic is.
            let rates =
                |f: &UsageFigures| [f.produce_bytes_per_second, f.fetch_bytes_per_second, f.request_percent];
            let mut elsewhere = [0.0; 3];
            for (m, slot) in elsewhere.iter_mut().enumerate() {
                *slot = figures[1..].iter().map(|f| rates(f)[m]).sum();
            }
            let mut share = Share {
                elsewhere,
                here_then: rates(&figures[0]),
                connections_elsewhere: figures[1..].iter().map(|f| f.connections).sum(),
                connection_rate_elsewhere: figures[1..].iter().map(|f| f.connections_per_second).sum(),
                ..Share::default()
            };
            if request_factor < 1.0 {
                // Every tenant in proportion to what it uses here; at least 1% of a thread.
                share.request_cap = Some((figures[0].request_percent * request_factor).max(1.0));
            }
            q.set_share(share);
            q.set_storage_bytes(figures.iter().map(|f| f.storage_bytes).sum());
            let mine = &figures[0];
            let limits = &t.limits;
            ingress.0.push(q.clone());
            ingress.1.push(q.bound(limits, Meter::Produce, now).unwrap_or(f64::INFINITY));
            // A tenant held back here wants more than it got: its demand counts as more than
            // its use, so backpressure stays on while it holds anyone back.
            let demand = |used: f64, throttled: bool| if throttled { used * THROTTLED_DEMAND } else { used };
            ingress.2.push(demand(mine.produce_bytes_per_second, mine.produce_throttled));
            egress.0.push(q);
            egress.1.push(
                egress.0.last().and_then(|q| q.bound(limits, Meter::Fetch, now)).unwrap_or(f64::INFINITY),
            );
            egress.2.push(demand(mine.fetch_bytes_per_second, mine.fetch_throttled));
        }
        let safe = self.quotas.config;
        // What tenants could take here within their own quotas (a tenant without one: its
        // demand): a learned limit above it holds nobody back.
        let (ingress_limit, ingress_learned) = self.learned_limit(
            Direction::Ingress,
            disk,
            shares::allocations(&ingress.1, &ingress.2).iter().sum(),
            safe.ingress_safe_bytes_per_second,
        );
        let (egress_limit, egress_learned) = self.learned_limit(
            Direction::Egress,
            network,
            shares::allocations(&egress.1, &egress.2).iter().sum(),
            safe.egress_safe_bytes_per_second,
        );
        for (limit, (tenants, mut bounds, used), produce, by_allocation) in
            [(ingress_limit, ingress, true, ingress_learned), (egress_limit, egress, false, egress_learned)]
        {
            let Some(limit) = limit else { continue };
            // A learned limit is shared by quota, a configured one by use (work-conserving:
            // what a tenant leaves unused goes to the others at once).
            let factor = if by_allocation {
                shares::scale_to_allocation(limit, &mut bounds, &used)
            } else {
                shares::scale_to_limit(limit, &mut bounds, &used)
            };
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

    /// The ingress (egress) limit for this round: the configured one, or lower when the disk
    /// (network) has been falling behind, learned from what it carried (`demand`: what tenants
    /// could take here within their own quotas, bytes/s). Also whether the learned limit is
    /// the one that binds.
    fn learned_limit(
        &self,
        direction: Direction,
        load: DeviceLoad,
        demand: f64,
        configured: Option<f64>,
    ) -> (Option<f64>, bool) {
        let (cell, gauge) = match direction {
            Direction::Ingress => {
                (&self.board.ingress, &self.quotas.metrics().ingress_limit_bytes_per_second)
            }
            Direction::Egress => (&self.board.egress, &self.quotas.metrics().egress_limit_bytes_per_second),
        };
        let learned = {
            let mut l = cell.lock();
            let before = l.limit();
            let now = l.update(load.behind_s, load.done, demand, LEARNED_FLOOR);
            match (before, now, direction) {
                (None, Some(x), Direction::Ingress) => tracing::warn!(
                    limit_bytes_per_second = x as u64,
                    written_bytes_per_second = load.done as u64,
                    "disk falling behind (produce appends over quota.broker.append.ms): ingress limited to what it writes"
                ),
                (None, Some(x), Direction::Egress) => tracing::warn!(
                    limit_bytes_per_second = x as u64,
                    fetched_bytes_per_second = load.done as u64,
                    "network falling behind (responses over quota.broker.send.ms to leave): egress limited to what it sends"
                ),
                (Some(_), None, Direction::Ingress) => tracing::info!("disk keeping up again: learned ingress limit off"),
                (Some(_), None, Direction::Egress) => {
                    tracing::info!("network keeping up again: learned egress limit off")
                }
                _ => {}
            }
            now
        };
        let limit = lower(configured, learned);
        let learned_binds = learned.is_some_and(|l| configured.is_none_or(|c| l < c));
        gauge.set(limit.map_or(0, |x| x as i64));
        (limit, learned_binds)
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
        self.quotas.set_brokers(self.board.all().len());
        let overloaded = self.overloaded().await;
        let (disk, network) = self.device_loads(&image);
        self.apportion(&image, overloaded, disk, network);
    }

    /// Records how late the runtime wakes a timer, until shutdown: the time ready work waits
    /// for a thread.
    async fn probe(
        board: Arc<UsageBoard>,
        clock: Arc<dyn kora_common::Clock>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let before = clock.now();
            tokio::select! {
                _ = clock.sleep(PROBE_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            let late = clock.elapsed(before).saturating_sub(PROBE_INTERVAL).as_millis() as u64;
            let mut lags = board.lags_ms.lock();
            if lags.len() < MAX_PROBES {
                lags.push(late);
            }
        }
    }
}

/// This process's user + system CPU seconds (from /proc/self/stat; None off Linux).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// Runs a round every quota window until shutdown.
pub async fn run(sync: QuotaSync, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(sync.quotas.config.window.window_ms);
    let clock = sync.quotas.clock();
    if sync.quotas.config.request_queue_ms.is_some() {
        tokio::spawn(QuotaSync::probe(sync.board.clone(), clock.clone(), shutdown.clone()));
    }
    loop {
        tokio::select! {
            _ = clock.sleep(every) => sync.round().await,
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_cpu_time_is_read_and_grows() {
        let before = process_cpu_seconds().expect("/proc/self/stat on Linux");
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = process_cpu_seconds().expect("again");
        assert!(after - before >= 0.1, "{before} -> {after}");
    }

    #[test]
    fn one_slow_client_is_not_a_slow_network() {
        let board = UsageBoard::default();
        let target = Some(Duration::from_millis(50));
        let (mut slow, mut fast) = (ConnectionSends::default(), ConnectionSends::default());
        for _ in 0..10 {
            board.response_sent(1 << 20, Duration::from_millis(900), target, &mut slow);
            board.response_sent(1 << 10, Duration::from_millis(1), target, &mut fast);
        }
        let count = |b: &UsageBoard| {
            use std::sync::atomic::Ordering::Relaxed;
            (b.slow_connections.load(Relaxed), b.sent_bytes.load(Relaxed), b.slow_bytes.load(Relaxed))
        };
        let (conns, sent, slow_bytes) = count(&board);
        assert_eq!(conns, 1, "a connection counts once a round");
        assert!(!widespread(conns, sent, slow_bytes), "one slow connection, however many bytes");
        // A second slow connection carrying most of the bytes: the link is behind.
        let mut other = ConnectionSends::default();
        board.response_sent(1 << 20, Duration::from_millis(400), target, &mut other);
        let (conns, sent, slow_bytes) = count(&board);
        assert_eq!(conns, 2);
        assert!(widespread(conns, sent, slow_bytes));
        // Many slow connections moving few of the bytes: the bulk is fast.
        assert!(!widespread(5, 1000, 100));
        // Counted again in the next round.
        board.send_round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        board.response_sent(10, Duration::from_millis(60), target, &mut slow);
        assert_eq!(count(&board).0, 3);
    }
}

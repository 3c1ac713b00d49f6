//! Replication inside a cell, in Kafka's model.
//!
//! - The leader of a partition appends produced batches stamped with its leader epoch. Each
//!   follower fetches from it (a Fetch with its replica id) starting at its own log end, and
//!   appends the batches byte for byte. The offset a follower fetches from is its log end:
//!   the leader learns each follower's progress from its fetches.
//! - The high watermark is the smallest log end over the ISR. Consumers read below it;
//!   acks=all produce answers once it passes the batch.
//! - A follower not caught up with the leader's log end for replica.lag.time.max.ms, or one
//!   lagging far behind its peers (a straggler), leaves the ISR; one that reaches the high
//!   watermark (and the start of the leader's epoch) joins again. ISR changes go to the
//!   active controller (AlterPartition) and count once committed.
//! - A follower whose log diverged (it led an epoch whose tail was never committed) learns
//!   this from the leader's answer (Fetch v12's diverging epoch, KIP-320's rule) and cuts its
//!   log there before fetching again.
//!
//! Deliberately not here: choosing leaders (the controller does, from the ISR only: unclean
//! election is off) and replica movement.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kora_common::Clock;
use kora_log::PartitionLog;
use kora_meta::MetadataImage;
use parking_lot::Mutex;

use crate::config::ReplicationConfig;
use crate::faults::Faults;
use crate::metrics::Metrics;

pub(crate) type PartitionKey = (String, i32);

/// Pause of a partition whose leader does not know yet that it leads.
const LEADERSHIP_RETRY: Duration = Duration::from_millis(50);

/// Fetch version followers use: topic names, replica id in the request, diverging epochs.
const REPLICA_FETCH_VERSION: i16 = 12;

/// A follower's progress as its leader sees it.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's log end (the offset it last fetched from); -1 until it fetches.
    leo: i64,
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end at the follower's previous fetch.
    last_fetch_leader_leo: i64,
}

/// A partition this broker leads.
#[derive(Debug)]
pub(crate) struct Leading {
    pub(crate) epoch: i32,
    /// The log end when this epoch began: a follower joins the ISR only past it.
    epoch_start: i64,
    inner: Mutex<LeadingInner>,
    /// An ISR change is on its way to the controller.
    altering: AtomicBool,
}

#[derive(Debug)]
struct LeadingInner {
    replicas: Vec<i32>,
    isr: Vec<i32>,
    partition_epoch: i32,
    followers: HashMap<i32, Progress>,
}

impl Leading {
    pub(crate) fn isr_len(&self) -> usize {
        self.inner.lock().isr.len()
    }
}

/// An ISR change for the controller.
#[derive(Debug, Clone)]
pub(crate) struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    leading: Arc<Leading>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Following {
    leader: i32,
    epoch: i32,
}

#[derive(Debug, Default)]
struct State {
    leading: HashMap<PartitionKey, Arc<Leading>>,
    following: HashMap<PartitionKey, Following>,
    fetchers: HashMap<i32, tokio::task::JoinHandle<()>>,
    /// The topic images the roles above reflect (unchanged ones are skipped).
    seen: HashMap<String, Arc<kora_meta::TopicImage>>,
}

impl State {
    /// Drops the roles of partitions `0..partitions` of `topic`.
    fn forget(&mut self, topic: &str, partitions: i32) {
        for p in 0..partitions {
            let key = (topic.to_string(), p);
            self.leading.remove(&key);
            self.following.remove(&key);
        }
    }
}

/// A byte-rate limit: a token bucket holding at most one second of the rate; rate 0 means
/// unlimited. Going over (one batch larger than what is left) is a debt paid back first.
#[derive(Debug)]
pub(crate) struct Throttle {
    rate_bytes_per_s: u64,
    clock: Arc<dyn Clock>,
    /// (tokens, when last refilled in ms)
    state: Mutex<(f64, i64)>,
}

impl Throttle {
    pub(crate) fn new(rate_bytes_per_s: u64, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now_ms();
        Throttle { rate_bytes_per_s, clock, state: Mutex::new((rate_bytes_per_s as f64, now)) }
    }

    fn refill(&self, st: &mut (f64, i64)) {
        let now = self.clock.now_ms();
        let rate = self.rate_bytes_per_s as f64;
        st.0 = (st.0 + rate * (now - st.1).max(0) as f64 / 1000.0).min(rate);
        st.1 = now;
    }

    /// Bytes that may go now.
    pub(crate) fn available(&self) -> usize {
        if self.rate_bytes_per_s == 0 {
            return usize::MAX;
        }
        let mut st = self.state.lock();
        self.refill(&mut st);
        st.0.max(0.0) as usize
    }

    pub(crate) fn consume(&self, bytes: usize) {
        if self.rate_bytes_per_s == 0 {
            return;
        }
        let mut st = self.state.lock();
        self.refill(&mut st);
        st.0 -= bytes as f64;
    }
}

/// What replication works with: the logs it appends to and reads, the image and controller it
/// takes roles from and sends ISR changes to, its metrics, and the fault-injection switch.
#[derive(Debug, Clone)]
pub struct ReplicaHandles {
    pub logs: Arc<kora_log::LogManager>,
    pub controller: Arc<kora_meta::Controller>,
    pub metrics: Arc<Metrics>,
    pub faults: Arc<Faults>,
    /// How fetchers dial leaders: the inter-broker listener's TLS and SASL login.
    pub inter_broker: crate::inter_broker::InterBrokerClient,
    pub entropy: Arc<dyn kora_common::Entropy>,
}

#[derive(Debug)]
pub struct Replication {
    node_id: i32,
    config: ReplicationConfig,
    clock: Arc<dyn Clock>,
    h: ReplicaHandles,
    /// Set by `stop`: fetchers end.
    stopped: AtomicBool,
    state: Mutex<State>,
    /// leader.replication.throttled.rate: what this leader serves to replicas being added.
    pub(crate) leader_throttle: Throttle,
    /// follower.replication.throttled.rate: what this broker fetches as a replica being added.
    pub(crate) follower_throttle: Throttle,
}

impl Replication {
    pub fn new(node_id: i32, config: ReplicationConfig, clock: Arc<dyn Clock>, h: ReplicaHandles) -> Self {
        Replication {
            node_id,
            h,
            stopped: AtomicBool::new(false),
            leader_throttle: Throttle::new(config.leader_throttled_rate, clock.clone()),
            follower_throttle: Throttle::new(config.follower_throttled_rate, clock.clone()),
            config,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn leading(&self, topic: &str, partition: i32) -> Option<Arc<Leading>> {
        self.state.lock().leading.get(&(topic.to_string(), partition)).cloned()
    }

    /// Whether this broker still follows `key` from `leader` at `epoch` (a fetch answered
    /// after a role change is dropped).
    pub(crate) fn is_following(&self, key: &PartitionKey, leader: i32, epoch: i32) -> bool {
        self.state.lock().following.get(key).is_some_and(|f| f.leader == leader && f.epoch == epoch)
    }

    /// Partitions this broker follows, with the leader it fetches from.
    pub fn following(&self) -> BTreeMap<PartitionKey, i32> {
        self.state.lock().following.iter().map(|(k, f)| (k.clone(), f.leader)).collect()
    }

    /// Brings roles in line with the image: partitions this broker now leads start a leader
    /// epoch; those it follows get a fetcher for their leader. Called after the logs were
    /// synced with the same image. Returns the `__consumer_offsets` partitions this broker
    /// leads (their groups follow that leadership).
    pub(crate) fn sync(self: &Arc<Self>, image: &MetadataImage) -> std::collections::BTreeSet<i32> {
        let mut st = self.state.lock();
        // Only topics whose image changed since the last sync are looked at: a metadata change
        // costs the partitions it touched, not every partition of the cell.
        let removed: Vec<String> =
            st.seen.keys().filter(|n| !image.topics.contains_key(*n)).cloned().collect();
        for name in removed {
            if let Some(old) = st.seen.remove(&name) {
                st.forget(&name, old.partitions);
            }
        }
        for (name, t) in &image.topics {
            let old = st.seen.get(name).cloned();
            if old.as_ref().is_some_and(|o| Arc::ptr_eq(o, t)) {
                continue;
            }
            if let Some(o) = old.as_ref().filter(|o| o.topic_id != t.topic_id || o.partitions > t.partitions)
            {
                // A new topic under an old name: nothing of the old one carries over.
                st.forget(name, o.partitions);
            }
            if self.sync_topic(&mut st, name, t) {
                st.seen.insert(name.clone(), t.clone());
            }
        }
        let offsets_led: std::collections::BTreeSet<i32> =
            st.leading.keys().filter(|(t, _)| t == kora_group::OFFSETS_TOPIC).map(|(_, p)| *p).collect();
        // One fetcher per leader broker.
        let needed: std::collections::BTreeSet<i32> = st.following.values().map(|f| f.leader).collect();
        st.fetchers.retain(|leader, task| {
            let keep = needed.contains(leader) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for leader in needed {
            st.fetchers.entry(leader).or_insert_with(|| tokio::spawn(fetcher(self.clone(), leader)));
        }
        offsets_led
    }

    /// Brings the roles of one topic's partitions in line with its image. False when a hosted
    /// partition has no log yet (the next sync looks again).
    fn sync_topic(&self, st: &mut State, name: &str, t: &Arc<kora_meta::TopicImage>) -> bool {
        let me = self.node_id;
        let now = self.clock.now_ms();
        let mut complete = true;
        for (p, s) in t.assignments.iter().enumerate() {
            let p = p as i32;
            let key = (name.to_string(), p);
            if !s.replicas.contains(&me) {
                st.leading.remove(&key);
                st.following.remove(&key);
                continue;
            }
            let Some(log) = self.h.logs.get(name, p) else {
                complete = false;
                continue;
            };
            if s.leader == me {
                st.following.remove(&key);
                let existing = st.leading.get(&key).filter(|l| l.epoch == s.leader_epoch).cloned();
                let l = match existing {
                    Some(l) => {
                        let mut inner = l.inner.lock();
                        inner.isr = s.isr.clone();
                        inner.partition_epoch = s.partition_epoch;
                        inner.replicas = s.replicas.clone();
                        drop(inner);
                        l
                    }
                    None => {
                        log.set_replicated(true);
                        if let Err(e) = log.become_leader(s.leader_epoch) {
                            tracing::error!(topic = %name, partition = p, error = %e, "cannot start leader epoch");
                            st.leading.remove(&key);
                            complete = false;
                            continue;
                        }
                        let followers = s
                            .replicas
                            .iter()
                            .filter(|r| **r != me)
                            .map(|r| {
                                let p = Progress {
                                    leo: -1,
                                    last_caught_up_ms: now,
                                    last_fetch_ms: now,
                                    last_fetch_leader_leo: -1,
                                };
                                (*r, p)
                            })
                            .collect();
                        tracing::info!(topic = %name, partition = p, epoch = s.leader_epoch, isr = ?s.isr, "leading");
                        Arc::new(Leading {
                            epoch: s.leader_epoch,
                            epoch_start: log.log_end_offset(),
                            inner: Mutex::new(LeadingInner {
                                replicas: s.replicas.clone(),
                                isr: s.isr.clone(),
                                partition_epoch: s.partition_epoch,
                                followers,
                            }),
                            altering: AtomicBool::new(false),
                        })
                    }
                };
                advance_hw(me, &l, &log);
                st.leading.insert(key, l);
            } else {
                st.leading.remove(&key);
                log.set_replicated(true);
                if s.leader >= 0 {
                    let f = Following { leader: s.leader, epoch: s.leader_epoch };
                    if st.following.get(&key).is_none_or(|old| old.leader != s.leader) {
                        tracing::info!(topic = %name, partition = p, leader = s.leader, epoch = s.leader_epoch, "following");
                    }
                    st.following.insert(key, f);
                } else {
                    st.following.remove(&key);
                }
            }
        }
        complete
    }

    /// Stops every fetcher (shutdown).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        for (_, t) in self.state.lock().fetchers.drain() {
            t.abort();
        }
    }

    /// A follower fetched `fetch_offset` (its log end): its progress, the high watermark, and
    /// maybe its return to the ISR.
    pub(crate) fn on_follower_fetch(
        &self,
        topic: &str,
        partition: i32,
        log: &PartitionLog,
        replica: i32,
        fetch_offset: i64,
        eligible: bool,
    ) -> Option<IsrChange> {
        let l = self.leading(topic, partition)?;
        let now = self.clock.now_ms();
        let leader_leo = log.log_end_offset();
        {
            let mut inner = l.inner.lock();
            if !inner.replicas.contains(&replica) {
                return None;
            }
            let p = inner.followers.entry(replica).or_insert(Progress {
                leo: -1,
                last_caught_up_ms: now,
                last_fetch_ms: now,
                last_fetch_leader_leo: -1,
            });
            p.leo = fetch_offset.min(leader_leo);
            if fetch_offset >= leader_leo {
                p.last_caught_up_ms = now;
            } else if fetch_offset >= p.last_fetch_leader_leo && p.last_fetch_leader_leo >= 0 {
                p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
            }
            p.last_fetch_leader_leo = leader_leo;
            p.last_fetch_ms = now;
        }
        let hw = advance_hw(self.node_id, &l, log);
        // Back into the ISR once it has everything committed of this epoch, and (with straggler
        // detection on) is not lagging.
        let inner = l.inner.lock();
        let p = inner.followers.get(&replica)?;
        let lag_ok = self.config.straggler_factor == 0
            || now - p.last_caught_up_ms <= self.config.straggler_min_lag_ms as i64;
        // A fenced broker (one shutting down keeps fetching while it drains) may not rejoin:
        // the controller would refuse it (KIP-841).
        if eligible && !inner.isr.contains(&replica) && p.leo >= hw && p.leo >= l.epoch_start && lag_ok {
            let mut isr = inner.isr.clone();
            isr.push(replica);
            return self.change(topic, partition, &l, &inner, isr);
        }
        None
    }

    fn change(
        &self,
        topic: &str,
        partition: i32,
        l: &Arc<Leading>,
        inner: &LeadingInner,
        isr: Vec<i32>,
    ) -> Option<IsrChange> {
        if l.altering.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(IsrChange {
            topic: topic.to_string(),
            partition,
            leader_epoch: l.epoch,
            partition_epoch: inner.partition_epoch,
            isr,
            leading: l.clone(),
        })
    }

    /// After an append by this leader: with no other ISR member the high watermark follows.
    pub(crate) fn after_append(&self, topic: &str, partition: i32, log: &PartitionLog) {
        if let Some(l) = self.leading(topic, partition) {
            advance_hw(self.node_id, &l, log);
        }
    }

    /// ISR shrinks due now: followers not caught up for replica.lag.time.max.ms, and
    /// stragglers (lag above straggler.factor × the median of their peers').
    pub(crate) fn shrinks(&self) -> Vec<IsrChange> {
        let now = self.clock.now_ms();
        let all: Vec<(PartitionKey, Arc<Leading>)> =
            self.state.lock().leading.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut out = Vec::new();
        for ((topic, partition), l) in all {
            let inner = l.inner.lock();
            let lag = |r: &i32| inner.followers.get(r).map_or(0, |p| now - p.last_caught_up_ms);
            let members: Vec<i32> = inner.isr.iter().copied().filter(|r| *r != self.node_id).collect();
            let mut out_of_sync: Vec<i32> =
                members.iter().copied().filter(|r| lag(r) > self.config.lag_time_max_ms as i64).collect();
            if self.config.straggler_factor > 0 && members.len() >= 2 {
                for r in &members {
                    let mut peers: Vec<i64> = members.iter().filter(|x| *x != r).map(lag).collect();
                    peers.sort_unstable();
                    let median = peers[peers.len() / 2].max(1);
                    let mine = lag(r);
                    if mine > self.config.straggler_min_lag_ms as i64
                        && mine > median.saturating_mul(self.config.straggler_factor as i64)
                        && !out_of_sync.contains(r)
                    {
                        tracing::warn!(%topic, partition, replica = r, lag_ms = mine, peers_median_ms = median, "straggler leaves the ISR");
                        out_of_sync.push(*r);
                    }
                }
            }
            if out_of_sync.is_empty() {
                continue;
            }
            let isr: Vec<i32> = inner.isr.iter().copied().filter(|r| !out_of_sync.contains(r)).collect();
            if let Some(c) = self.change(&topic, partition, &l, &inner, isr) {
                out.push(c);
            }
        }
        out
    }
}

/// Waits until `log`'s high watermark reaches `upto`; false after `timeout` on `clock`.
pub(crate) async fn wait_for_high_watermark(
    clock: &dyn Clock,
    log: &PartitionLog,
    upto: i64,
    timeout: Duration,
) -> bool {
    let mut rx = log.subscribe();
    kora_common::timeout(clock, timeout, rx.wait_for(|hw| *hw >= upto)).await.is_ok_and(|r| r.is_ok())
}

/// The high watermark: the smallest log end over the ISR (unknown follower: no move).
fn advance_hw(me: i32, l: &Leading, log: &PartitionLog) -> i64 {
    let mut hw = log.log_end_offset();
    {
        let inner = l.inner.lock();
        for r in inner.isr.iter().filter(|r| **r != me) {
            match inner.followers.get(r) {
                Some(p) if p.leo >= 0 => hw = hw.min(p.leo),
                _ => return log.high_watermark(),
            }
        }
    }
    log.advance_high_watermark(hw)
}

/// Sends an ISR change to the controller, off the async workers.
pub(crate) fn submit(r: &Replication, c: IsrChange) {
    let (controller, logs, counter, me) =
        (r.h.controller.clone(), r.h.logs.clone(), r.h.metrics.isr_changes.clone(), r.node_id);
    tokio::spawn(async move {
        let (topic, partition, isr) = (c.topic.clone(), c.partition, c.isr.clone());
        let (le, pe) = (c.leader_epoch, c.partition_epoch);
        let res = tokio::task::spawn_blocking(move || {
            controller.alter_partition(&topic, partition, me, le, pe, isr)
        })
        .await;
        match res {
            Ok(Ok(s)) => {
                tracing::info!(topic = %c.topic, partition = c.partition, isr = ?s.isr, "ISR changed");
                counter.inc();
                let mut inner = c.leading.inner.lock();
                if s.leader_epoch == c.leading.epoch && s.partition_epoch > inner.partition_epoch {
                    inner.isr = s.isr.clone();
                    inner.partition_epoch = s.partition_epoch;
                }
            }
            Ok(Err(e)) => {
                tracing::info!(topic = %c.topic, partition = c.partition, error = %e, "ISR change refused")
            }
            Err(e) => tracing::warn!(error = %e, "ISR change task failed"),
        }
        c.leading.altering.store(false, Ordering::Release);
        if let Some(log) = logs.get(&c.topic, c.partition) {
            advance_hw(me, &c.leading, &log);
        }
    });
}

/// Checks for ISR shrinks every half replica.lag.time.max.ms (at most every second), and
/// checkpoints high watermarks.
pub(crate) async fn isr_loop(r: Arc<Replication>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let period = Duration::from_millis((r.config.lag_time_max_ms / 2).clamp(50, 1_000));
    let checkpoint_every = r.config.high_watermark_checkpoint_interval_ms as i64;
    let mut last_checkpoint = r.clock.now_ms();
    loop {
        tokio::select! {
            _ = r.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        for c in r.shrinks() {
            submit(&r, c);
        }
        if r.clock.now_ms() - last_checkpoint >= checkpoint_every {
            last_checkpoint = r.clock.now_ms();
            let logs = r.h.logs.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for (topic, partition, log) in logs.all() {
                    if let Err(e) = log.checkpoint_high_watermark() {
                        tracing::warn!(%topic, partition, error = %e, "high watermark checkpoint failed");
                    }
                }
            })
            .await;
        }
    }
}

/// Fetches every partition this broker follows from `leader`, until stopped.
async fn fetcher(r: Arc<Replication>, leader: i32) {
    let cfg = r.config.clone();
    let backoff = Duration::from_millis(cfg.fetch_backoff_ms.max(10));
    let mut conn: Option<kora_client::Connection> = None;
    // When the connection's SASL session must be renewed (KIP-368): a new connection then.
    let mut renew_at: Option<std::time::Instant> = None;
    // Partitions that answered an error wait until this time (or a new epoch).
    let mut paused: HashMap<PartitionKey, (i32, std::time::Instant)> = HashMap::new();
    loop {
        if r.stopped.load(Ordering::Acquire) {
            return;
        }
        if r.h.faults.isolated() {
            conn = None;
            r.clock.sleep(backoff).await;
            continue;
        }
        let now = r.clock.now();
        // Partitions this broker is being added to (a reassignment) fetch within
        // follower.replication.throttled.rate.
        let image = r.h.controller.image();
        let me = r.node_id;
        let throttled = |k: &PartitionKey| {
            image.topic(&k.0).and_then(|t| t.partition(k.1)).is_some_and(|s| s.adding.contains(&me))
        };
        let allowance = r.follower_throttle.available();
        let parts: Vec<(PartitionKey, i32, Arc<PartitionLog>)> = {
            let st = r.state.lock();
            st.following
                .iter()
                .filter(|(_, f)| f.leader == leader)
                .filter(|(k, f)| paused.get(*k).is_none_or(|(e, until)| *e != f.epoch || *until <= now))
                .filter(|(k, _)| allowance > 0 || !throttled(k))
                .filter_map(|(k, f)| r.h.logs.get(&k.0, k.1).map(|log| (k.clone(), f.epoch, log)))
                .collect()
        };
        let throttled_keys: std::collections::HashSet<PartitionKey> =
            parts.iter().map(|(k, _, _)| k.clone()).filter(|k| throttled(k)).collect();
        drop(image);
        if parts.is_empty() {
            r.clock.sleep(Duration::from_millis(50)).await;
            continue;
        }
        let addr = {
            let image = r.h.controller.image();
            image.brokers.get(&leader).map(|x| format!("{}:{}", x.registration.host, x.registration.port))
        };
        let Some(addr) = addr else {
            r.clock.sleep(backoff).await;
            continue;
        };
        if conn.as_ref().is_none_or(|c| c.addr() != addr) || renew_at.is_some_and(|at| now >= at) {
            let timeout = Duration::from_millis(cfg.fetch_wait_max_ms) + Duration::from_secs(10);
            let security = r.h.inter_broker.security(r.h.entropy.clone());
            let client_id = format!("kora-replica-{}", r.node_id);
            match kora_client::Connection::connect_with(&addr, &client_id, timeout, &security).await {
                Ok(c) => {
                    // Renewed at 85% of the session's lifetime, as Kafka clients re-authenticate
                    // between 85% and 95%: a long poll then still ends inside the session.
                    renew_at = (c.session_lifetime_ms() > 0).then(|| {
                        r.clock.now() + Duration::from_millis(c.session_lifetime_ms() as u64 * 85 / 100)
                    });
                    conn = Some(c);
                }
                Err(e @ kora_client::ClientError::Authentication { .. })
                | Err(e @ kora_client::ClientError::Tls { .. }) => {
                    // Misconfigured credentials or certificates: an operator must see it.
                    tracing::warn!(leader, %addr, error = %e, "cannot log in to the leader on the inter-broker listener");
                    conn = None;
                    r.clock.sleep(backoff.max(Duration::from_secs(1))).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(leader, %addr, error = %e, "cannot reach leader");
                    r.clock.sleep(backoff).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let req = build_request(r.node_id, &parts, &cfg, &throttled_keys, allowance);
        let resp = match c.send(&req, REPLICA_FETCH_VERSION).await {
            Ok((_, r)) => r,
            Err(e) => {
                tracing::debug!(leader, %addr, error = %e, "follower fetch failed");
                conn = None;
                r.clock.sleep(backoff).await;
                continue;
            }
        };
        // A response that arrives after fault injection cut this broker off is dropped, as a
        // partitioned network would drop it.
        if r.h.faults.isolated() {
            conn = None;
            continue;
        }
        if resp.error_code != 0 {
            tracing::debug!(leader, code = resp.error_code, "follower fetch refused");
            r.clock.sleep(backoff).await;
            continue;
        }
        let by_key: HashMap<PartitionKey, (i32, Arc<PartitionLog>)> =
            parts.into_iter().map(|(k, e, l)| (k, (e, l))).collect();
        for t in resp.responses {
            let topic = t.topic.0.to_string();
            for pd in t.partitions {
                let key = (topic.clone(), pd.partition_index);
                let Some((epoch, log)) = by_key.get(&key) else { continue };
                if throttled_keys.contains(&key) {
                    let n = pd.records.as_ref().map_or(0, |r| r.len());
                    r.follower_throttle.consume(n);
                }
                if !r.is_following(&key, leader, *epoch) {
                    // Its role changed while the fetch was out (it leads now, or follows a
                    // newer epoch): what the old leader sent must not go in.
                    continue;
                }
                if let Err(code) = apply(&r.h.metrics, &key, log, pd) {
                    tracing::debug!(topic = %key.0, partition = key.1, code, "follower fetch partition error");
                    // A leader that has not seen its own election yet answers these for a
                    // moment: retry soon rather than after a full backoff.
                    let leadership = [
                        ResponseError::NotLeaderOrFollower.code(),
                        ResponseError::UnknownLeaderEpoch.code(),
                        ResponseError::FencedLeaderEpoch.code(),
                        ResponseError::UnknownTopicOrPartition.code(),
                    ];
                    let wait =
                        if leadership.contains(&code) { LEADERSHIP_RETRY.min(backoff) } else { backoff };
                    paused.insert(key, (*epoch, r.clock.now() + wait));
                }
            }
        }
    }
}

fn build_request(
    me: i32,
    parts: &[(PartitionKey, i32, Arc<PartitionLog>)],
    cfg: &ReplicationConfig,
    throttled: &std::collections::HashSet<PartitionKey>,
    allowance: usize,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic, partition), epoch, log) in parts {
        let offsets = log.offsets();
        let key = (topic.clone(), *partition);
        let max =
            if throttled.contains(&key) { cfg.fetch_max_bytes.min(allowance) } else { cfg.fetch_max_bytes };
        let fp = FetchPartition::default()
            .with_partition(*partition)
            .with_current_leader_epoch(*epoch)
            .with_fetch_offset(offsets.log_end_offset)
            .with_last_fetched_epoch(log.latest_epoch())
            .with_log_start_offset(offsets.log_start_offset)
            .with_partition_max_bytes(max.clamp(1, i32::MAX as usize) as i32);
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == topic => t.partitions.push(fp),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(kafka_protocol::protocol::StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![fp]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(cfg.fetch_wait_max_ms.min(i32::MAX as u64) as i32)
        .with_min_bytes(1)
        .with_max_bytes(cfg.fetch_response_max_bytes.min(i32::MAX as usize) as i32)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies one partition of a follower fetch; Err(code) pauses the partition.
fn apply(
    metrics: &Metrics,
    key: &PartitionKey,
    log: &PartitionLog,
    pd: kafka_protocol::messages::fetch_response::PartitionData,
) -> Result<(), i16> {
    let code = pd.error_code;
    let storage = |e: kora_log::LogError| {
        tracing::warn!(topic = %key.0, partition = key.1, error = %e, "follower log operation failed");
        ResponseError::KafkaStorageError.code()
    };
    if code == ResponseError::OffsetOutOfRange.code()
        || code == ResponseError::OffsetMovedToTieredStorage.code()
    {
        let end = log.log_end_offset();
        if end < pd.log_start_offset || code == ResponseError::OffsetMovedToTieredStorage.code() {
            // Too far behind the leader's (local) log start: start again there.
            tracing::warn!(topic = %key.0, partition = key.1, from = end, to = pd.log_start_offset, "follower restarts its log at the leader's start");
            tokio::task::block_in_place(|| log.truncate_fully_and_start_at(pd.log_start_offset))
                .map_err(storage)?;
        } else {
            tokio::task::block_in_place(|| log.truncate_to(pd.high_watermark.max(0))).map_err(storage)?;
        }
        return Ok(());
    }
    if code != 0 {
        return Err(code);
    }
    if pd.diverging_epoch.epoch >= 0 || pd.diverging_epoch.end_offset >= 0 {
        let (leader_epoch, leader_end) = (pd.diverging_epoch.epoch, pd.diverging_epoch.end_offset);
        let (mine_epoch, mine_end) = log.end_offset_for_epoch(leader_epoch);
        let target = if mine_end < 0 { log.high_watermark() } else { leader_end.min(mine_end) };
        tracing::info!(topic = %key.0, partition = key.1, leader_epoch, leader_end, mine_epoch, mine_end, target, "diverged from the leader; truncating");
        tokio::task::block_in_place(|| log.truncate_to(target)).map_err(storage)?;
        metrics.replica_truncations.inc();
        return Ok(());
    }
    if let Some(records) = pd.records.filter(|r| !r.is_empty()) {
        let n = records.len() as u64;
        log.append_replicated(&records).map_err(|e| match e {
            // A newer epoch started here between the check and the append (see above).
            kora_log::LogError::StaleLeaderEpoch { .. } => crate::errors::log_error_code(&e),
            e => storage(e),
        })?;
        metrics.replication_bytes_in.inc_by(n);
    }
    let end = log.log_end_offset();
    log.advance_high_watermark(pd.high_watermark.min(end));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kora_common::ManualClock;

    fn leading(isr: Vec<i32>, replicas: Vec<i32>, now: i64) -> Arc<Leading> {
        let followers = replicas
            .iter()
            .filter(|r| **r != 1)
            .map(|r| {
                (
                    *r,
                    Progress { leo: 0, last_caught_up_ms: now, last_fetch_ms: now, last_fetch_leader_leo: 0 },
                )
            })
            .collect();
        Arc::new(Leading {
            epoch: 0,
            epoch_start: 0,
            inner: Mutex::new(LeadingInner { replicas, isr, partition_epoch: 0, followers }),
            altering: AtomicBool::new(false),
        })
    }

    /// Handles over a scratch log manager and controller (the tests drive `Leading` directly).
    fn handles(dir: &std::path::Path, clock: Arc<ManualClock>) -> ReplicaHandles {
        let config = kora_meta::controller::ControllerConfig {
            default_partitions: 1,
            default_replication_factor: 1,
            broker_count: 1,
            topic_defaults: Default::default(),
            max_partitions_per_topic: 1000,
        };
        ReplicaHandles {
            logs: Arc::new(kora_log::LogManager::open(&dir.join("logs"), clock).expect("logs")),
            controller: Arc::new(kora_meta::Controller::open(&dir.join("meta"), config).expect("controller")),
            metrics: Arc::new(Metrics::new()),
            faults: Arc::new(Faults::new(false)),
            inter_broker: Default::default(),
            entropy: Arc::new(kora_common::OsEntropy),
        }
    }

    fn open_log(dir: &std::path::Path, clock: Arc<ManualClock>) -> PartitionLog {
        PartitionLog::open(dir, kora_common::TopicConfig::default(), clock, true).expect("log")
    }

    fn produce(log: &PartitionLog, n: i32) {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        // The log's clock starts at 1,000,000 ms; CreateTime must be near it.
        let now = 1_000_000;
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch only while sequences advance.
                sequence: i,
                timestamp: now,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions { version: 2, compression: Compression::None },
        )
        .expect("encode");
        let (h, bytes) = kora_log::batch::split_batches(&buf.freeze()).expect("split").remove(0);
        log.append(&h, &bytes).expect("append");
    }

    #[test]
    fn high_watermark_isr_shrink_and_stragglers() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let cfg = ReplicationConfig {
            lag_time_max_ms: 10_000,
            straggler_factor: 10,
            straggler_min_lag_ms: 2_000,
            ..Default::default()
        };
        let dir = tempfile::tempdir().expect("tmp");
        let r = Replication::new(1, cfg, clock.clone(), handles(dir.path(), clock.clone()));
        let log = open_log(dir.path(), clock.clone());
        log.set_replicated(true);
        let l = leading(vec![1, 2, 3], vec![1, 2, 3], clock.now_ms());
        r.state.lock().leading.insert(("t".into(), 0), l.clone());
        produce(&log, 10);
        // Followers have not fetched past 0: the high watermark waits for every ISR member.
        r.after_append("t", 0, &log);
        assert_eq!(log.high_watermark(), 0);
        assert!(r.on_follower_fetch("t", 0, &log, 2, 10, true).is_none());
        assert_eq!(log.high_watermark(), 0, "broker 3 has nothing yet");
        assert!(r.on_follower_fetch("t", 0, &log, 3, 4, true).is_none());
        assert_eq!(log.high_watermark(), 4, "the smallest log end in the ISR");
        // Broker 3 keeps fetching but never catches up; broker 2 stays current.
        for _ in 0..3 {
            clock.advance_ms(1_000);
            produce(&log, 1);
            let end = log.log_end_offset();
            r.on_follower_fetch("t", 0, &log, 2, end, true);
            r.on_follower_fetch("t", 0, &log, 3, 5, true);
        }
        // 3 s behind while its peer is current: a straggler, before the 10 s lag limit.
        let shrinks = r.shrinks();
        assert_eq!(shrinks.len(), 1);
        assert_eq!(shrinks[0].isr, vec![1, 2]);
        assert!(r.shrinks().is_empty(), "one change in flight per partition");
        l.altering.store(false, Ordering::Release);
        // Without straggler detection only replica.lag.time.max.ms counts.
        let cfg = ReplicationConfig { lag_time_max_ms: 10_000, straggler_factor: 0, ..Default::default() };
        let dir2 = tempfile::tempdir().expect("tmp");
        let r2 = Replication::new(1, cfg, clock.clone(), handles(dir2.path(), clock.clone()));
        let l2 = leading(vec![1, 2, 3], vec![1, 2, 3], clock.now_ms() - 3_000);
        r2.state.lock().leading.insert(("t".into(), 0), l2);
        assert!(r2.shrinks().is_empty());
        clock.advance_ms(8_000);
        let s = r2.shrinks();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].isr, vec![1], "both followers lagged past replica.lag.time.max.ms");
        // Broker 3 catches up: back into the ISR once it has the high watermark.
        l.inner.lock().isr = vec![1, 2];
        let end = log.log_end_offset();
        r.on_follower_fetch("t", 0, &log, 2, end, true);
        assert!(r.on_follower_fetch("t", 0, &log, 3, end, false).is_none(), "a fenced broker stays out");
        let back = r.on_follower_fetch("t", 0, &log, 3, end, true).expect("expand");
        assert_eq!(back.isr, vec![1, 2, 3]);
    }
}

//! The group coordinator's edges on a broker: its internal log (`__consumer_offsets`
//! partitions in the broker's own log manager), loading it at start, and the background work
//! (timeouts, offset expiry, checkpoints that keep the internal log bounded).
//!
//! Checkpoints stand in for log compaction of the internal topic: when a partition holds far
//! more records than live keys, the coordinator rewrites every live record of that partition at
//! its end (under its lock, so no change interleaves) and the log start moves past everything
//! older. Replay of the remaining log yields exactly the live state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kora_common::Clock;
use kora_group::{Coordinator, GroupError, GroupLog, Topics, OFFSETS_TOPIC};
use kora_log::{LogError, LogManager};
use kora_meta::controller::TopicRequest;
use kora_meta::{Controller, MetaError, MetadataImage};
use tokio::sync::watch;
use uuid::Uuid;

/// The coordinator's work on this broker, with the handles it takes: the broker's logs (its
/// internal log), the metadata image (who leads which offsets partition, topics for expiry)
/// and the clock.
#[derive(Debug)]
pub struct GroupsEdge {
    pub coordinator: Arc<Coordinator>,
    logs: Arc<LogManager>,
    controller: Arc<Controller>,
    clock: Arc<dyn Clock>,
    node_id: i32,
    /// offsets.retention.check.interval.ms
    retention_check_interval_ms: u64,
    /// `__consumer_offsets` partitions whose groups are being loaded (cells).
    loads: parking_lot::Mutex<std::collections::HashSet<i32>>,
}

impl GroupsEdge {
    pub fn new(
        coordinator: Arc<Coordinator>,
        logs: Arc<LogManager>,
        controller: Arc<Controller>,
        clock: Arc<dyn Clock>,
        node_id: i32,
        retention_check_interval_ms: u64,
    ) -> Self {
        Self {
            coordinator,
            logs,
            controller,
            clock,
            node_id,
            retention_check_interval_ms,
            loads: Default::default(),
        }
    }
}

/// Records in a partition beyond `CHECKPOINT_FACTOR` × live keys + `CHECKPOINT_SLACK` trigger a
/// checkpoint.
const CHECKPOINT_FACTOR: i64 = 4;
const CHECKPOINT_SLACK: i64 = 10_000;
/// How often the coordinator's timers run.
const TICK: Duration = Duration::from_millis(50);
/// Bytes read per call while replaying the internal log.
const REPLAY_READ_BYTES: usize = 4 << 20;

/// The coordinator's view of topics: the broker's current metadata image.
pub(crate) struct ImageTopics(pub(crate) Arc<MetadataImage>);

impl Topics for ImageTopics {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0.topic(name).map(|t| (t.topic_id, t.partitions))
    }
    fn by_id(&self, id: &Uuid) -> Option<(String, i32)> {
        self.0.topic_by_id(id).map(|t| (t.name.clone(), t.partitions))
    }
    fn names(&self) -> Vec<String> {
        self.0.topics.keys().filter(|n| !is_internal(n)).cloned().collect()
    }
}

pub fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC
}

/// `GroupLog` over the broker's `__consumer_offsets` partitions.
#[derive(Debug)]
pub(crate) struct OffsetsLog {
    pub(crate) logs: Arc<LogManager>,
    pub(crate) clock: Arc<dyn Clock>,
    /// In a cell: the metadata and this broker's id. Only the leader of a partition writes
    /// to it (a follower's log is the leader's copy).
    pub(crate) leader_check: Option<(Arc<kora_meta::Controller>, i32)>,
}

impl GroupLog for OffsetsLog {
    fn append(&self, partition: i32, records: &[(Bytes, Option<Bytes>)]) -> Result<(), GroupError> {
        if records.is_empty() {
            return Ok(());
        }
        if let Some((c, me)) = &self.leader_check {
            let image = c.image();
            if !image.topic(OFFSETS_TOPIC).is_some_and(|t| t.leads(partition, *me)) {
                return Err(GroupError::Log(format!("{OFFSETS_TOPIC}-{partition} is not led here")));
            }
        }
        let log = self
            .logs
            .get(OFFSETS_TOPIC, partition)
            .ok_or_else(|| GroupError::Log(format!("{OFFSETS_TOPIC}-{partition} is not hosted here")))?;
        let batch = encode_batch(records, self.clock.now_ms())?;
        // The same validation a produced batch gets: what recovery will accept.
        let header = kora_log::batch::validate_batch(&batch).map_err(|e| GroupError::Log(e.to_string()))?;
        match log.append(&header, &batch) {
            Ok(_) => Ok(()),
            Err(e @ LogError::MessageTooLarge { .. }) => Err(GroupError::TooLarge(e.to_string())),
            Err(e) => Err(GroupError::Log(e.to_string())),
        }
    }
}

/// One uncompressed record batch holding `records` (key, value-or-tombstone).
fn encode_batch(records: &[(Bytes, Option<Bytes>)], now: i64) -> Result<Bytes, GroupError> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch unless offset - sequence stays constant; -1 + i
            // keeps one batch with base sequence -1 (no producer).
            sequence: i as i32 - 1,
            timestamp: now,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .map_err(|e| GroupError::Log(format!("encoding records: {e}")))?;
    Ok(buf.freeze())
}

/// Creates `__consumer_offsets` if it does not exist, compacted as in Kafka (the cleaner keeps
/// the latest record per group, offset and member key), and brings an existing one's configs
/// to that shape. Coordinator checkpoints bound it as well, also before any segment rolls.
pub(crate) fn ensure_offsets_topic(
    c: &Controller,
    partitions: i32,
    segment_bytes: u32,
    replication_factor: i16,
) -> Result<(), MetaError> {
    let configs: BTreeMap<String, String> = [
        ("cleanup.policy", "compact".to_string()),
        ("segment.bytes", segment_bytes.to_string()),
        ("max.message.bytes", "10485760".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(t) = c.image().topic(OFFSETS_TOPIC) {
        if t.configs != configs {
            c.set_topic_configs(OFFSETS_TOPIC, configs, false)?;
        }
        return Ok(());
    }
    c.create_topic(
        &TopicRequest { name: OFFSETS_TOPIC.into(), partitions, replication_factor, configs },
        false,
    )?;
    Ok(())
}

/// Replays every `__consumer_offsets` partition into the coordinator. Corrupt records are
/// skipped with an error log (the rest of the group state is still usable).
pub(crate) fn load(logs: &LogManager, coordinator: &Coordinator, partitions: i32) -> Result<usize, LogError> {
    let mut n = 0;
    for p in 0..partitions {
        n += load_partition(logs, coordinator, p)?;
    }
    Ok(n)
}

/// Replays one `__consumer_offsets` partition, to its log end (a leader's whole log will be
/// committed: leaders never truncate).
pub(crate) fn load_partition(
    logs: &LogManager,
    coordinator: &Coordinator,
    p: i32,
) -> Result<usize, LogError> {
    let mut n = 0;
    {
        let Some(log) = logs.get(OFFSETS_TOPIC, p) else { return Ok(0) };
        let mut offset = log.offsets().log_start_offset;
        loop {
            let r = log.read_replica(offset, REPLAY_READ_BYTES)?;
            if r.records.is_empty() {
                break;
            }
            let mut buf = r.records.clone();
            let mut next = offset;
            while !buf.is_empty() {
                let set = match RecordBatchDecoder::decode(&mut buf) {
                    Ok(s) => s,
                    Err(e) => {
                        return Err(LogError::CorruptBatch(format!("{OFFSETS_TOPIC}-{p} at {next}: {e}")));
                    }
                };
                for rec in set.records {
                    next = rec.offset + 1;
                    if rec.offset < offset {
                        continue;
                    }
                    let Some(key) = rec.key.as_deref() else { continue };
                    if let Err(e) = coordinator.replay(key, rec.value.as_deref()) {
                        tracing::error!(partition = p, offset = rec.offset, error = %e, "skipping group record");
                    }
                    n += 1;
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
    }
    Ok(n)
}

/// In a cell: the coordinator serves the groups of the `__consumer_offsets` partitions this
/// broker leads. Partitions it lost are released at once; those it gained are replayed from
/// the log first (clients get NOT_COORDINATOR meanwhile, and retry).
pub(crate) fn sync_ownership(e: &Arc<GroupsEdge>, led: std::collections::BTreeSet<i32>) {
    let owned: std::collections::BTreeSet<i32> =
        e.coordinator.owned_partitions().unwrap_or_default().into_iter().collect();
    let b = e;
    for p in owned.difference(&led) {
        let n = b.coordinator.release_partition(*p);
        tracing::info!(
            partition = p,
            groups = n,
            "no longer coordinating the groups of this offsets partition"
        );
    }
    for p in led.difference(&owned).copied() {
        if !b.loads.lock().insert(p) {
            continue;
        }
        let b = b.clone();
        tokio::task::spawn_blocking(move || {
            let started = b.clock.now();
            b.coordinator.release_partition(p);
            match load_partition(&b.logs, &b.coordinator, p) {
                Ok(n) => {
                    let image = b.controller.image();
                    if image.topic(OFFSETS_TOPIC).is_some_and(|t| t.leads(p, b.node_id)) {
                        b.coordinator.take_partition(p);
                        tracing::info!(
                            partition = p,
                            records = n,
                            elapsed_ms = b.clock.elapsed(started).as_millis() as u64,
                            "coordinating the groups of this offsets partition"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "loading groups failed; the next metadata change retries")
                }
            }
            b.loads.lock().remove(&p);
        });
    }
}

/// Timeouts of every group, every `TICK`.
pub(crate) async fn tick_loop(b: Arc<GroupsEdge>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = b.clock.sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        let b2 = b.clone();
        let _ = tokio::task::spawn_blocking(move || b2.coordinator.tick()).await;
    }
}

/// Offset expiry and internal-log checkpoints, every offsets.retention.check.interval.ms (and
/// checkpoints at least every minute).
pub(crate) async fn maintenance_loop(b: Arc<GroupsEdge>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(b.retention_check_interval_ms.min(60_000));
    let mut last_expiry = b.clock.now();
    loop {
        tokio::select! {
            _ = b.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let b2 = b.clone();
        let expire = b.clock.elapsed(last_expiry).as_millis() as u64 >= b.retention_check_interval_ms;
        if expire {
            last_expiry = b.clock.now();
        }
        let _ = tokio::task::spawn_blocking(move || {
            if expire {
                let n = b2.coordinator.expire_offsets(&ImageTopics(b2.controller.image()));
                if n > 0 {
                    tracing::info!(offsets = n, "expired committed offsets");
                }
            }
            checkpoint_if_due(&b2);
            delete_orphaned_groups(&b2);
        })
        .await;
    }
}

/// Groups of tenants that no longer exist are deleted once empty (their members' sessions
/// ended when the tenant's credentials went).
fn delete_orphaned_groups(b: &GroupsEdge) {
    let image = b.controller.image();
    let orphans: Vec<kafka_protocol::messages::GroupId> = b
        .coordinator
        .summary()
        .into_iter()
        .filter(|(g, _, members)| {
            *members == 0
                && kora_common::namespace::owner(g).is_some_and(|t| !image.tenants.contains_key(t.as_str()))
        })
        .map(|(g, _, _)| {
            kafka_protocol::messages::GroupId(kafka_protocol::protocol::StrBytes::from_string(g))
        })
        .collect();
    if orphans.is_empty() {
        return;
    }
    let req = kafka_protocol::messages::DeleteGroupsRequest::default().with_groups_names(orphans);
    let deleted = b.coordinator.delete_groups(&req).results.iter().filter(|r| r.error_code == 0).count();
    if deleted > 0 {
        tracing::info!(groups = deleted, "deleted the groups of deleted tenants");
    }
}

fn checkpoint_if_due(b: &GroupsEdge) {
    let owned = b.coordinator.owned_partitions();
    for p in 0..b.coordinator.config().offsets_topic_partitions {
        if owned.as_ref().is_some_and(|o| !o.contains(&p)) {
            continue;
        }
        let Some(log) = b.logs.get(OFFSETS_TOPIC, p) else { continue };
        let o = log.offsets();
        let live = b.coordinator.live_records(p) as i64;
        if o.high_watermark - o.log_start_offset <= CHECKPOINT_FACTOR * live + CHECKPOINT_SLACK {
            continue;
        }
        let start = o.high_watermark;
        match b.coordinator.checkpoint(p) {
            Ok(n) => match log.delete_records_before(start) {
                Ok(_) => tracing::info!(
                    partition = p,
                    live = n,
                    dropped = start - o.log_start_offset,
                    "checkpointed offsets log"
                ),
                Err(e) => tracing::warn!(partition = p, error = %e, "moving the offsets log start failed"),
            },
            Err(e) => tracing::warn!(partition = p, error = %e, "offsets log checkpoint failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_batches_pass_log_validation() {
        for n in 1..5 {
            let records: Vec<(Bytes, Option<Bytes>)> = (0..n)
                .map(|i| (Bytes::from(format!("k{i}")), (i % 2 == 0).then(|| Bytes::from(format!("v{i}")))))
                .collect();
            let b = encode_batch(&records, 1_700_000_000_000).expect("encode");
            let h = kora_log::batch::validate_batch(&b).expect("valid");
            assert_eq!(h.records_count, n);
        }
    }
}

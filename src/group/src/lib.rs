//! The group coordinator: consumer groups over the classic protocol (JoinGroup/SyncGroup/
//! Heartbeat/LeaveGroup) and the KIP-848 consumer protocol (ConsumerGroupHeartbeat with
//! server-side assignors), committed offsets, and their durable form in the internal
//! `__consumer_offsets` log.
//!
//! Owns: group state machines ([`classic`], [`consumer`]), server-side assignors
//! ([`assignor`]), the record layouts of the internal log ([`codec`]) and the coordinator that
//! serialises every group operation ([`coordinator`]).
//!
//! Invariants:
//! - a state change is written to the internal log before any client sees its effect (a join
//!   completion, a sync, a commit); replaying the log in order rebuilds the same groups and
//!   offsets;
//! - a partition is assigned to at most one KIP-848 member at a time: a partition moves only
//!   after its previous owner has acknowledged the revocation (or was fenced);
//! - generations and member epochs only grow.
//!
//! Deliberately not here: the network, the record-batch log itself (reached through
//! [`GroupLog`]), topic metadata (reached through [`Topics`]) and wall-clock time (a
//! [`kora_common::Clock`]). The crate does no I/O of its own.

pub mod assignor;
pub mod classic;
pub mod codec;
pub mod consumer;
pub mod coordinator;

use bytes::Bytes;
use uuid::Uuid;

pub use coordinator::{Coordinator, GroupLag, JoinOutcome, SyncOutcome};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("corrupt group record: {0}")]
    Corrupt(String),
    #[error("writing the offsets log failed: {0}")]
    Log(String),
    #[error("record batch too large for the offsets log: {0}")]
    TooLarge(String),
}

/// Coordinator settings, with Kafka's config names and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// group.min.session.timeout.ms
    pub min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms
    pub max_session_timeout_ms: i32,
    /// group.initial.rebalance.delay.ms
    pub initial_rebalance_delay_ms: i32,
    /// group.max.size
    pub max_size: usize,
    /// offset.metadata.max.bytes
    pub offset_metadata_max_bytes: usize,
    /// offsets.retention.minutes, in ms
    pub offsets_retention_ms: i64,
    /// offsets.topic.num.partitions
    pub offsets_topic_partitions: i32,
    /// group.consumer.session.timeout.ms
    pub consumer_session_timeout_ms: i32,
    /// group.consumer.heartbeat.interval.ms
    pub consumer_heartbeat_interval_ms: i32,
    /// group.consumer.max.size
    pub consumer_max_size: usize,
    /// group.consumer.assignors: the first is the default.
    pub consumer_assignors: Vec<String>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offsets_topic_partitions: 50,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_max_size: i32::MAX as usize,
            consumer_assignors: vec!["uniform".into(), "range".into()],
        }
    }
}

/// What the coordinator needs to know about topics.
pub trait Topics {
    /// (topic id, partition count) of a topic by name.
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)>;
    /// (name, partition count) of a topic by id.
    fn by_id(&self, id: &Uuid) -> Option<(String, i32)>;
    /// Every user-visible topic name (internal topics excluded), for regex subscriptions.
    fn names(&self) -> Vec<String>;
}

/// Where the coordinator writes its records: one partition of the internal log per call,
/// appended in order as one batch. Returns once the records are in the log (readable by
/// replay after a process crash).
pub trait GroupLog: Send + Sync + std::fmt::Debug {
    fn append(&self, partition: i32, records: &[(Bytes, Option<Bytes>)]) -> Result<(), GroupError>;
}

/// The internal-log partition of a group: Kafka's `abs(groupId.hashCode) % partitions`, with
/// Java's String hash, so a group lands on the same partition number as in Kafka.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "offsets topic needs partitions");
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    #[test]
    fn partition_matches_java_hash() {
        // "my-group".hashCode() == -1_906_497_762 in Java; (h & 0x7fffffff) % 50 == 36.
        assert_eq!(super::partition_for("my-group", 50), 36);
        assert_eq!(super::partition_for("", 50), 0);
    }
}

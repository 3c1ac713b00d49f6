//! Metadata records: the only way metadata changes. Serialized as JSON in the store and, later,
//! in the Raft log; new fields must be optional so old records keep decoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// First record of a cell: its cluster id.
    InitCluster {
        cluster_id: String,
    },
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `count` partitions.
    CreatePartitions {
        name: String,
        count: i32,
    },
    /// Replaces a topic's config overrides with `configs`.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Hands out producer ids `[start, start + count)`.
    AllocateProducerIds {
        start: i64,
        count: i64,
    },
}

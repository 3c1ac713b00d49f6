//! Metadata records: the only way metadata changes. Serialized as JSON in the store and, later,
//! in the Raft log; new fields must be optional so old records keep decoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        /// Replicas of each partition (broker ids, preferred leader first); empty on a single
        /// node, where the one broker holds everything.
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `count` partitions.
    CreatePartitions {
        name: String,
        count: i32,
        /// Replicas of each new partition (as in CreateTopic).
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
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
    /// A closed segment is in the object store: it joins the partition's remote manifest.
    AddRemoteSegment {
        topic_id: Uuid,
        partition: i32,
        segment: RemoteSegment,
    },
    /// A broker joined the cell (or restarted: a new incarnation). It is unfenced.
    RegisterBroker {
        broker: BrokerRegistration,
    },
    /// A broker's lease lapsed (or it shut down): it leads nothing until it heartbeats again.
    FenceBroker {
        broker_id: i32,
        incarnation: Uuid,
    },
    /// A fenced broker heartbeats again with the same incarnation.
    UnfenceBroker {
        broker_id: i32,
        incarnation: Uuid,
    },
    /// A partition leader changes its ISR (Kafka's AlterPartition). Applied only while
    /// `leader` still leads at `leader_epoch` and the partition is at `partition_epoch`.
    AlterPartition {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// A partition moves to `target` replicas (KIP-455): the new ones join as followers and
    /// the old ones leave once every new one is in sync. None cancels an ongoing move.
    ReassignPartition {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Every added replica of an ongoing move is in sync: the move completes.
    CompleteReassignment {
        topic: String,
        partition: i32,
    },
    /// `leader` (an unfenced ISR member) takes over the partition: preferred-leader election.
    ElectLeader {
        topic: String,
        partition: i32,
        leader: i32,
    },
    /// A tenant joins the cell (its id and name both unused).
    CreateTenant {
        tenant: crate::security::TenantImage,
    },
    /// Replaces a tenant's limits and quotas.
    SetTenantLimits {
        id: String,
        limits: crate::security::TenantLimits,
    },
    /// A tenant leaves the cell with its credentials, limits and quotas (its topics went
    /// first, by DeleteTopic).
    DeleteTenant {
        id: String,
    },
    /// Creates or replaces a credential (an API key, or a SCRAM user's secrets).
    PutCredential {
        credential: crate::security::Credential,
    },
    DeleteCredential {
        login: String,
    },
    /// ACLs join a namespace's set (`tenant` None: the default namespace's).
    CreateAcls {
        tenant: Option<String>,
        bindings: Vec<kora_auth::AclBinding>,
    },
    /// ACLs leave a namespace's set.
    DeleteAcls {
        tenant: Option<String>,
        bindings: Vec<kora_auth::AclBinding>,
    },
    /// Remote segments leave the manifest (retention); their objects may then be deleted.
    RemoveRemoteSegments {
        topic_id: Uuid,
        partition: i32,
        /// Base offsets of the segments removed.
        bases: Vec<i64>,
    },
}

/// One segment in the object store, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    pub base_offset: i64,
    /// One past the last offset.
    pub end_offset: i64,
    pub size_bytes: u64,
    pub max_timestamp: i64,
    /// The writer's leader epoch; it is also in every object key.
    pub leader_epoch: i32,
    /// Object keys: the segment, its offset index and time index.
    pub log_key: String,
    pub index_key: String,
    pub time_index_key: String,
    /// Idempotent-producer state as of `end_offset`, when the broker still had it.
    #[serde(default)]
    pub producer_snapshot_key: Option<String>,
}

impl RemoteSegment {
    /// Every object key of the segment.
    pub fn keys(&self) -> Vec<&str> {
        let mut k = vec![self.log_key.as_str(), self.index_key.as_str(), self.time_index_key.as_str()];
        k.extend(self.producer_snapshot_key.as_deref());
        k
    }
}

/// A broker as it registers with the cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// New at every start: a restarted broker is told apart from its earlier run.
    pub incarnation: Uuid,
    /// broker.rack (the zone); replicas of a partition are spread over racks.
    pub rack: Option<String>,
    /// Advertised Kafka listener.
    pub host: String,
    pub port: u16,
    /// Admin HTTP listener (metrics, health), for `kora cell status`.
    pub admin: String,
    /// Every Kafka listener's advertised endpoint, by listener name (`host`/`port` are the
    /// inter-broker listener's). Clients are told the endpoints of the listener they use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl BrokerRegistration {
    /// The endpoint of `listener` (the inter-broker one when the broker has no such listener).
    pub fn endpoint(&self, listener: &str) -> (&str, u16) {
        match self.listeners.iter().find(|l| l.name == listener) {
            Some(l) => (&l.host, l.port),
            None => (&self.host, self.port),
        }
    }
}

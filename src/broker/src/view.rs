//! The broker's view of its cell's metadata: leadership questions answered from the current
//! image for this node, and controller calls run off the async workers. A narrow handle that
//! handlers, tiering and the admin API share; it holds no state of its own.

use std::sync::Arc;

use kora_common::TopicConfig;
use kora_meta::{Controller, MetaError};

/// A partition's current leader, for KIP-951 responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaderHint {
    pub leader_id: i32,
    pub leader_epoch: i32,
    /// (host, port, rack) when the leader is a live broker.
    pub endpoint: Option<(String, u16, Option<String>)>,
}

/// The metadata image and controller, as this node sees them.
#[derive(Debug, Clone)]
pub struct View {
    pub controller: Arc<Controller>,
    pub node_id: i32,
}

impl View {
    pub fn new(controller: Arc<Controller>, node_id: i32) -> Self {
        Self { controller, node_id }
    }

    /// Runs a blocking controller call off the async workers.
    /// The metadata image this broker holds now.
    pub(crate) fn image(&self) -> Arc<kora_meta::MetadataImage> {
        self.controller.image()
    }

    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Controller) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let c = self.controller.clone();
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .map_err(|e| MetaError::Store(format!("metadata task failed: {e}")))?
    }

    /// Effective config of a topic; falls back to broker defaults if its stored overrides no
    /// longer validate (they were valid when committed).
    pub fn topic_config(&self, overrides: &std::collections::BTreeMap<String, String>) -> TopicConfig {
        self.controller.topic_config(overrides).unwrap_or_else(|e| {
            tracing::error!(error = %e, "stored topic config no longer valid; using broker defaults");
            self.controller.topic_config(&Default::default()).unwrap_or_default()
        })
    }

    /// Why this broker cannot serve `partition` of `topic` to clients (a Kafka error code), or
    /// None when it leads it.
    pub(crate) fn leadership_error(&self, topic: &str, partition: i32) -> Option<i16> {
        use kafka_protocol::error::ResponseError;
        let image = self.controller.image();
        match image.topic(topic) {
            Some(t) if partition >= 0 && partition < t.partitions => {
                (!t.leads(partition, self.node_id)).then(|| ResponseError::NotLeaderOrFollower.code())
            }
            _ => Some(ResponseError::UnknownTopicOrPartition.code()),
        }
    }

    /// Whether this broker holds a follower replica of the partition (in a cell).
    pub(crate) fn follows(&self, topic: &str, partition: i32) -> bool {
        let image = self.controller.image();
        let me = self.node_id;
        image
            .topic(topic)
            .and_then(|t| t.partition(partition))
            .is_some_and(|s| s.leader != me && s.replicas.contains(&me))
    }

    /// KIP-392: for a consumer in `rack`, an in-sync follower in that rack, when this broker
    /// leads the partition and is not in the rack itself.
    pub(crate) fn preferred_read_replica(&self, topic: &str, partition: i32, rack: &str) -> Option<i32> {
        let image = self.controller.image();
        let me = self.node_id;
        let s = image.topic(topic)?.partition(partition)?;
        if s.leader != me {
            return None;
        }
        let in_rack = |id: &i32| {
            image.brokers.get(id).is_some_and(|b| !b.fenced && b.registration.rack.as_deref() == Some(rack))
        };
        if in_rack(&me) {
            return None;
        }
        s.isr.iter().copied().find(|r| *r != me && in_rack(r))
    }

    /// KIP-951: who leads a partition this broker does not (leader id, epoch), and that
    /// broker's listener (host, port, rack), so clients need no Metadata round trip.
    pub(crate) fn leader_hint(&self, topic: &str, partition: i32) -> Option<LeaderHint> {
        let image = self.controller.image();
        let s = image.topic(topic)?.partition(partition)?;
        let endpoint = image.brokers.get(&s.leader).filter(|b| !b.fenced).map(|b| {
            let r = &b.registration;
            (r.host.clone(), r.port, r.rack.clone())
        });
        Some(LeaderHint { leader_id: s.leader, leader_epoch: s.leader_epoch, endpoint })
    }

    /// The partition's leader epoch (0 on a single node).
    pub(crate) fn leader_epoch(&self, topic: &str, partition: i32) -> i32 {
        let image = self.controller.image();
        image.topic(topic).and_then(|t| t.partition(partition)).map_or(0, |s| s.leader_epoch)
    }

    /// The error for a client's `current_leader_epoch` (-1: none given) against this leader's.
    pub(crate) fn epoch_error(&self, topic: &str, partition: i32, epoch: i32) -> Option<i16> {
        use kafka_protocol::error::ResponseError;
        if epoch < 0 {
            return None;
        }
        let ours = self.leader_epoch(topic, partition);
        match epoch.cmp(&ours) {
            std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch.code()),
            std::cmp::Ordering::Less => Some(ResponseError::FencedLeaderEpoch.code()),
            std::cmp::Ordering::Equal => None,
        }
    }
}

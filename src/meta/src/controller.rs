//! The controller: validates metadata requests against the current image and commits records
//! through a [`RecordLog`].
//!
//! The log is the cell's Raft quorum (kora-quorum: `kora dev` runs a single voter in process)
//! or, for tools and tests, [`LocalLog`], which commits by applying a record and persisting it
//! in one LMDB transaction. Validation and commit happen under one lock, so two requests never
//! both pass validation against the same image. Brokers read the image and watch it for
//! changes; they never write metadata except through these calls.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kora_common::TopicConfig;
use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

use crate::image::{MetadataImage, TopicImage};
use crate::record::MetadataRecord;
use crate::store::MetaStore;
use crate::MetaError;

/// Kafka's longest legal topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Static settings of the controller, from the broker config.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// num.partitions: partitions of a topic created without a count.
    pub default_partitions: i32,
    /// default.replication.factor
    pub default_replication_factor: i16,
    /// Brokers that can hold replicas (1 in `kora dev`).
    pub broker_count: usize,
    /// Topic config defaults set at broker level, by topic config name.
    pub topic_defaults: BTreeMap<String, String>,
    /// Upper bound on partitions per topic.
    pub max_partitions_per_topic: i32,
}

/// A CreateTopics entry. -1 means "broker default" for partitions and replication factor.
#[derive(Debug, Clone)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// Where committed records go: applied, in order and durably, to the image readers see.
pub trait RecordLog: Send + Sync + std::fmt::Debug {
    /// Commits `record`; returns once it is durable and applied here, with the image after it.
    /// Blocking: call it from a blocking thread.
    fn commit(&self, record: MetadataRecord) -> Result<Arc<MetadataImage>, MetaError>;
    /// The applied image, as it changes.
    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>>;
}

/// A single writer without Raft: applies a record to a copy of the image and persists it in
/// one LMDB transaction.
#[derive(Debug)]
pub struct LocalLog {
    store: Mutex<MetaStore>,
    image_tx: watch::Sender<Arc<MetadataImage>>,
}

impl LocalLog {
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        let (store, image) = MetaStore::open(dir)?;
        let (image_tx, _) = watch::channel(Arc::new(image));
        Ok(Self { store: Mutex::new(store), image_tx })
    }
}

impl RecordLog for LocalLog {
    fn commit(&self, record: MetadataRecord) -> Result<Arc<MetadataImage>, MetaError> {
        let store = self.store.lock();
        let mut next = (*self.image_tx.borrow().clone()).clone();
        let index = next.applied_index + 1;
        next.apply(index, &record);
        store.commit(&record, &next)?;
        let next = Arc::new(next);
        self.image_tx.send_replace(next.clone());
        Ok(next)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_tx.subscribe()
    }
}

#[derive(Debug)]
pub struct Controller {
    log: Arc<dyn RecordLog>,
    image_rx: watch::Receiver<Arc<MetadataImage>>,
    /// Held from validation to commit.
    write_lock: Mutex<()>,
    config: ControllerConfig,
}

/// Kafka's topic name rules: 1..=249 of `[a-zA-Z0-9._-]`, not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), MetaError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(MetaError::InvalidTopicName(format!("'{name}' is not a legal topic name")));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(MetaError::InvalidTopicName(format!(
            "topic name is {} characters, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(MetaError::InvalidTopicName(format!(
            "'{name}' contains '{c}'; legal characters are ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

impl Controller {
    /// A controller over a [`LocalLog`] in `dir`, with a cluster id.
    pub fn open(dir: &Path, config: ControllerConfig) -> Result<Self, MetaError> {
        let c = Self::with_log(Arc::new(LocalLog::open(dir)?), config);
        c.ensure_cluster_id()?;
        Ok(c)
    }

    pub fn with_log(log: Arc<dyn RecordLog>, config: ControllerConfig) -> Self {
        let image_rx = log.subscribe();
        Controller { log, image_rx, write_lock: Mutex::new(()), config }
    }

    /// Commits the cell's cluster id if it has none yet (the first record of a cell).
    pub fn ensure_cluster_id(&self) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        if self.image().cluster_id.is_empty() {
            let cluster_id = Uuid::new_v4().simple().to_string();
            self.commit(MetadataRecord::InitCluster { cluster_id })?;
        }
        Ok(())
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image_rx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.log.subscribe()
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Commits through the log; the caller holds `write_lock`.
    fn commit(&self, record: MetadataRecord) -> Result<Arc<MetadataImage>, MetaError> {
        tracing::debug!(?record, "committing metadata record");
        self.log.commit(record)
    }

    /// Resolves the effective config for a topic's overrides.
    pub fn topic_config(&self, overrides: &BTreeMap<String, String>) -> Result<TopicConfig, MetaError> {
        Ok(TopicConfig::resolve(&self.config.topic_defaults, overrides)?)
    }

    fn check_name_free(image: &MetadataImage, name: &str) -> Result<(), MetaError> {
        if image.topics.contains_key(name) {
            return Err(MetaError::TopicExists(name.to_string()));
        }
        // '.' and '_' collide in metric names; Kafka refuses such pairs.
        let norm = name.replace('.', "_");
        if let Some(other) = image.topics.keys().find(|t| t.replace('.', "_") == norm) {
            return Err(MetaError::InvalidTopicName(format!(
                "'{name}' collides with existing topic '{other}' ('.' and '_' are equivalent in metric names)"
            )));
        }
        Ok(())
    }

    /// CreateTopics for one topic. With `validate_only` nothing is committed; the would-be
    /// topic is returned either way.
    pub fn create_topic(&self, req: &TopicRequest, validate_only: bool) -> Result<TopicImage, MetaError> {
        validate_topic_name(&req.name)?;
        let partitions = if req.partitions == -1 { self.config.default_partitions } else { req.partitions };
        if partitions < 1 || partitions > self.config.max_partitions_per_topic {
            return Err(MetaError::InvalidPartitions(format!(
                "{partitions} partitions; must be between 1 and {}",
                self.config.max_partitions_per_topic
            )));
        }
        let rf = if req.replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            req.replication_factor
        };
        if rf < 1 || rf as usize > self.config.broker_count {
            return Err(MetaError::InvalidReplicationFactor(format!(
                "replication factor {rf} with {} available broker(s)",
                self.config.broker_count
            )));
        }
        self.topic_config(&req.configs)?;
        let _w = self.write_lock.lock();
        Self::check_name_free(&self.image(), &req.name)?;
        let topic = TopicImage {
            name: req.name.clone(),
            topic_id: Uuid::new_v4(),
            partitions,
            replication_factor: rf,
            configs: req.configs.clone(),
        };
        if !validate_only {
            self.commit(MetadataRecord::CreateTopic {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
                partitions,
                replication_factor: rf,
                configs: topic.configs.clone(),
            })?;
        }
        Ok(topic)
    }

    pub fn delete_topic(&self, name: &str) -> Result<Uuid, MetaError> {
        let _w = self.write_lock.lock();
        let id = self
            .image()
            .topic(name)
            .map(|t| t.topic_id)
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        self.commit(MetadataRecord::DeleteTopic { name: name.to_string() })?;
        Ok(id)
    }

    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        let t = image.topic(name).ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        if count <= t.partitions {
            return Err(MetaError::InvalidPartitions(format!(
                "topic '{name}' has {} partitions; the new count {count} must be larger",
                t.partitions
            )));
        }
        if count > self.config.max_partitions_per_topic {
            return Err(MetaError::InvalidPartitions(format!(
                "{count} partitions exceeds the limit of {}",
                self.config.max_partitions_per_topic
            )));
        }
        if !validate_only {
            self.commit(MetadataRecord::CreatePartitions { name: name.to_string(), count })?;
        }
        Ok(())
    }

    /// Replaces a topic's overrides (AlterConfigs) after validating the resulting config.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), MetaError> {
        self.topic_config(&configs)?;
        let _w = self.write_lock.lock();
        if self.image().topic(name).is_none() {
            return Err(MetaError::UnknownTopic(name.to_string()));
        }
        if !validate_only {
            self.commit(MetadataRecord::SetTopicConfigs { name: name.to_string(), configs })?;
        }
        Ok(())
    }

    /// Adds an uploaded segment to a partition's remote manifest.
    pub fn add_remote_segment(
        &self,
        topic_id: uuid::Uuid,
        partition: i32,
        segment: crate::record::RemoteSegment,
    ) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        if self.image().topic_by_id(&topic_id).is_none() {
            return Err(MetaError::UnknownTopic(topic_id.to_string()));
        }
        self.commit(MetadataRecord::AddRemoteSegment { topic_id, partition, segment }).map(|_| ())
    }

    /// Removes remote segments (by base offset) from a partition's manifest.
    pub fn remove_remote_segments(
        &self,
        topic_id: uuid::Uuid,
        partition: i32,
        bases: Vec<i64>,
    ) -> Result<(), MetaError> {
        if bases.is_empty() {
            return Ok(());
        }
        let _w = self.write_lock.lock();
        self.commit(MetadataRecord::RemoveRemoteSegments { topic_id, partition, bases }).map(|_| ())
    }

    /// Reserves `count` producer ids and returns the first.
    pub fn allocate_producer_ids(&self, count: i64) -> Result<i64, MetaError> {
        if count < 1 {
            return Err(MetaError::InvalidRequest(format!("cannot allocate {count} producer ids")));
        }
        let _w = self.write_lock.lock();
        let start = self.image().next_producer_id;
        self.commit(MetadataRecord::AllocateProducerIds { start, count })?;
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ControllerConfig {
        ControllerConfig {
            default_partitions: 1,
            default_replication_factor: 1,
            broker_count: 1,
            topic_defaults: BTreeMap::new(),
            max_partitions_per_topic: 1000,
        }
    }

    fn req(name: &str, partitions: i32) -> TopicRequest {
        TopicRequest { name: name.into(), partitions, replication_factor: -1, configs: BTreeMap::new() }
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let (cluster, id) = {
            let c = Controller::open(dir.path(), cfg()).expect("open");
            let t = c.create_topic(&req("orders", 8), false).expect("create");
            c.create_partitions("orders", 12, false).expect("grow");
            let mut over = BTreeMap::new();
            over.insert("retention.ms".to_string(), "1000".to_string());
            c.set_topic_configs("orders", over, false).expect("alter");
            assert_eq!(c.allocate_producer_ids(1000).expect("pids"), 0);
            c.create_topic(&req("gone", 1), false).expect("create");
            c.delete_topic("gone").expect("delete");
            (c.image().cluster_id.clone(), t.topic_id)
        };
        let c = Controller::open(dir.path(), cfg()).expect("reopen");
        let img = c.image();
        assert_eq!(img.cluster_id, cluster);
        let t = img.topic("orders").expect("orders");
        assert_eq!((t.partitions, t.topic_id), (12, id));
        assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("1000"));
        assert!(img.topic("gone").is_none());
        assert_eq!(c.allocate_producer_ids(1000).expect("pids"), 1000);
    }

    #[test]
    fn validation_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Controller::open(dir.path(), cfg()).expect("open");
        assert!(matches!(c.create_topic(&req("bad name", 1), false), Err(MetaError::InvalidTopicName(_))));
        assert!(matches!(
            c.create_topic(&req(&"x".repeat(250), 1), false),
            Err(MetaError::InvalidTopicName(_))
        ));
        assert!(matches!(c.create_topic(&req("t", 0), false), Err(MetaError::InvalidPartitions(_))));
        let mut r = req("t", 1);
        r.replication_factor = 3;
        assert!(matches!(c.create_topic(&r, false), Err(MetaError::InvalidReplicationFactor(_))));
        let mut r = req("t", 1);
        r.configs.insert("segment.bytes".into(), "x".into());
        assert!(matches!(c.create_topic(&r, false), Err(MetaError::InvalidConfig(_))));
        c.create_topic(&req("a.b", 1), false).expect("create");
        assert!(matches!(c.create_topic(&req("a.b", 1), false), Err(MetaError::TopicExists(_))));
        assert!(matches!(c.create_topic(&req("a_b", 1), false), Err(MetaError::InvalidTopicName(_))));
        assert!(c.create_topic(&req("v", 1), true).is_ok());
        assert!(c.image().topic("v").is_none(), "validate_only commits nothing");
        assert!(matches!(c.create_partitions("a.b", 1, false), Err(MetaError::InvalidPartitions(_))));
        assert!(matches!(c.delete_topic("nope"), Err(MetaError::UnknownTopic(_))));
    }
}

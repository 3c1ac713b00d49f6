//! Keeps the logs in line with the metadata image: creates the partitions this broker hosts,
//! deletes removed topics (and replicas that moved away), pushes config changes. Idempotent and
//! serialised, so the metadata loop and handlers may both call it.

use std::collections::HashMap;
use std::sync::Arc;

use kora_log::{LogManager, PartitionSpec};
use kora_meta::MetadataImage;
use parking_lot::Mutex;

use crate::view::View;

/// What `apply` last applied for a topic.
type AppliedTopic = Arc<kora_meta::TopicImage>;

#[derive(Debug)]
pub struct LogSync {
    logs: Arc<LogManager>,
    view: View,
    /// Topic id and config overrides of every topic the logs reflect; guards `apply`.
    known: Mutex<HashMap<String, AppliedTopic>>,
}

impl LogSync {
    /// `known`: the topics the logs were loaded with at start.
    pub fn new(logs: Arc<LogManager>, view: View, known: HashMap<String, AppliedTopic>) -> Self {
        Self { logs, view, known: Mutex::new(known) }
    }

    /// Makes the logs match `image`: creates new partitions, deletes removed topics, pushes
    /// config changes. Idempotent; serialised so concurrent callers do not race.
    pub fn apply(&self, image: &MetadataImage) -> Result<(), kora_log::LogError> {
        let mut known = self.known.lock();
        // Topics that went away, or came back with a new id.
        let gone: Vec<String> = known
            .iter()
            .filter(|(name, k)| image.topic(name).is_none_or(|t| t.topic_id != k.topic_id))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.logs.delete_topic(&name)?;
            known.remove(&name);
            tracing::info!(topic = %name, "deleted topic logs");
        }
        for (name, t) in &image.topics {
            // Unchanged topics (the same image) need nothing: a change costs what it touched.
            if known.get(name).is_some_and(|k| Arc::ptr_eq(k, t)) {
                continue;
            }
            let cfg_changed = known.get(name).is_none_or(|k| k.configs != t.configs);
            let config = self.view.topic_config(&t.configs);
            for p in 0..t.partitions {
                // In a cell a broker keeps only the partitions it holds a replica of; one that
                // moved away (a completed reassignment) is deleted here.
                if !t.hosts(p, self.view.node_id) {
                    if self.logs.get(name, p).is_some() {
                        self.logs.delete_partition(name, p)?;
                        tracing::info!(topic = %name, partition = p, "replica moved away; deleted its log");
                    }
                    continue;
                }
                match self.logs.get(name, p) {
                    Some(log) if cfg_changed => log.set_config(config.clone()),
                    Some(_) => {}
                    None => {
                        self.logs.create(&PartitionSpec {
                            topic: name.clone(),
                            topic_id: t.topic_id.to_string(),
                            partition: p,
                            config: config.clone(),
                        })?;
                    }
                }
            }
            known.insert(name.clone(), t.clone());
        }
        Ok(())
    }
}

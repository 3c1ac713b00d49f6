//! The Raft state machine: kora-meta's metadata image, persisted by kora-meta's `MetaStore`.
//!
//! Applying a batch of entries clones the image once, applies every record in order
//! (`MetadataImage::apply`, deterministic), persists the touched state together with Raft's
//! applied log id and membership in one LMDB transaction, and only then publishes the new image
//! to readers. So the stored state is always the image after some prefix of the log, and what
//! readers see is always durable.
//!
//! The image's `applied_index` counts records, not Raft entries (blank and membership entries
//! do not touch it), so a data directory written before Raft keeps its numbering.
//!
//! Snapshots are the image in `ImageSnapshot` form (JSON), with Raft's snapshot meta; the
//! current snapshot is kept in the store so a restarted voter can still send it.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use kora_meta::store::MetaStore;
use kora_meta::{ImageSnapshot, MetadataImage, MetadataRecord};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{Node, NodeId, TypeConfig};

const APPLIED_KEY: &str = "raft_applied";
const MEMBERSHIP_KEY: &str = "raft_membership";
const SNAPSHOT_KEY: &str = "raft_snapshot";

/// What applying one entry returns to the client that proposed it: the image's record index
/// after it (unchanged for blank and membership entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub record_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: ImageSnapshot,
}

/// Raft's applied log id and membership.
type RaftApplied = (Option<LogId<NodeId>>, StoredMembership<NodeId, Node>);

#[derive(Debug)]
struct Inner {
    store: MetaStore,
    image_tx: watch::Sender<Arc<MetadataImage>>,
    /// Raft's view: last applied log id and membership. Behind a lock with the store so
    /// snapshot builds see a consistent (image, applied) pair.
    raft: Mutex<RaftApplied>,
    snapshots_built: std::sync::atomic::AtomicU64,
}

/// The state machine; clones share it (the snapshot builder is a clone).
#[derive(Debug, Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

fn sm_read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn sm_write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

impl StateMachine {
    /// Opens the state in `dir` (the same layout `kora dev` used before Raft).
    pub fn open(dir: &Path) -> Result<Self, crate::QuorumError> {
        let (store, image) = MetaStore::open(dir).map_err(|e| crate::QuorumError::Store(e.to_string()))?;
        let parse = |key: &str| -> Result<Option<serde_json::Value>, crate::QuorumError> {
            store.extra(key).map_err(|e| crate::QuorumError::Store(e.to_string()))
        };
        let applied: Option<LogId<NodeId>> = match parse(APPLIED_KEY)? {
            Some(v) => serde_json::from_value(v).map_err(|e| crate::QuorumError::Store(e.to_string()))?,
            None => None,
        };
        let membership: StoredMembership<NodeId, Node> = match parse(MEMBERSHIP_KEY)? {
            Some(v) => serde_json::from_value(v).map_err(|e| crate::QuorumError::Store(e.to_string()))?,
            None => StoredMembership::default(),
        };
        let (image_tx, _) = watch::channel(Arc::new(image));
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                image_tx,
                raft: Mutex::new((applied, membership)),
                snapshots_built: Default::default(),
            }),
        })
    }

    /// The applied image, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.image_tx.subscribe()
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.image_tx.borrow().clone()
    }

    fn current_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError<NodeId>> {
        match self.inner.store.extra(SNAPSHOT_KEY).map_err(sm_read_err)? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v).map(Some).map_err(sm_read_err),
        }
    }
}

fn raft_extras(
    applied: &Option<LogId<NodeId>>,
    membership: &StoredMembership<NodeId, Node>,
) -> Result<[(&'static str, serde_json::Value); 2], StorageError<NodeId>> {
    Ok([
        (APPLIED_KEY, serde_json::to_value(applied).map_err(sm_write_err)?),
        (MEMBERSHIP_KEY, serde_json::to_value(membership).map_err(sm_write_err)?),
    ])
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (image, applied, membership) = {
            let raft = self.inner.raft.lock();
            (self.image(), raft.0, raft.1.clone())
        };
        let n = self.inner.snapshots_built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{n}", l.leader_id.term, l.index),
            None => format!("none-{n}"),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: image.to_snapshot() };
        let bytes = serde_json::to_vec(&stored.data).map_err(sm_read_err)?;
        let v = serde_json::to_value(&stored).map_err(sm_write_err)?;
        // Only the snapshot key changes: the image itself is already stored.
        self.inner.store.commit_batch(&[], &image, &[(SNAPSHOT_KEY, v)]).map_err(sm_write_err)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let raft = self.inner.raft.lock();
        Ok((raft.0, raft.1.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut raft = self.inner.raft.lock();
        let mut next = (*self.image()).clone();
        let mut records: Vec<MetadataRecord> = Vec::new();
        let mut replies = Vec::new();
        for entry in entries {
            raft.0 = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(record) => {
                    let index = next.applied_index + 1;
                    next.apply(index, &record);
                    records.push(record);
                }
                EntryPayload::Membership(m) => {
                    raft.1 = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            replies.push(Applied { record_index: next.applied_index });
        }
        let extras = raft_extras(&raft.0, &raft.1)?;
        let refs: Vec<&MetadataRecord> = records.iter().collect();
        self.inner.store.commit_batch(&refs, &next, &extras).map_err(sm_write_err)?;
        if !records.is_empty() {
            self.inner.image_tx.send_replace(Arc::new(next));
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data: ImageSnapshot = serde_json::from_slice(snapshot.get_ref()).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                &std::io::Error::other(e.to_string()),
            ))
        })?;
        let image = MetadataImage::from_snapshot(data.clone());
        let mut raft = self.inner.raft.lock();
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let [a, m] = raft_extras(&meta.last_log_id, &meta.last_membership)?;
        let s = (SNAPSHOT_KEY, serde_json::to_value(&stored).map_err(sm_write_err)?);
        self.inner.store.replace_all(&image, &[a, m, s]).map_err(sm_write_err)?;
        *raft = (meta.last_log_id, meta.last_membership.clone());
        self.inner.image_tx.send_replace(Arc::new(image));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(stored) = self.current_snapshot()? else { return Ok(None) };
        let bytes = serde_json::to_vec(&stored.data).map_err(sm_read_err)?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}

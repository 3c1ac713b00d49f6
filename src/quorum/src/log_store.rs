//! The Raft log, vote and committed id in LMDB (heed).
//!
//! Databases: `log` (index, big-endian u64 -> entry as JSON) and `state` (`vote`, `committed`,
//! `last_purged` -> JSON). Every call is one LMDB transaction; LMDB commits are durable (fsync)
//! before they return, so `append` reports the flush only after the entries are on disk, as
//! openraft requires. Purging records `last_purged` in the same transaction that deletes the
//! entries, so the log state is never a gap.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use heed::byteorder::BigEndian;
use heed::types::{SerdeJson, Str, U64};
use heed::{Database, Env, EnvOpenOptions};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote};

use crate::{NodeId, TypeConfig};

/// Virtual size of the LMDB map (sparse on Linux): the log is purged behind snapshots, so
/// this bounds the unpurged tail.
const MAP_SIZE_BYTES: usize = 4 << 30;

type Log = Database<U64<BigEndian>, SerdeJson<Entry<TypeConfig>>>;

#[derive(Debug)]
struct Inner {
    env: Env,
    log: Log,
    state: Database<Str, SerdeJson<serde_json::Value>>,
}

/// The log store; clones share it (the reader openraft asks for is a clone).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

fn read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_logs(&std::io::Error::other(e.to_string())).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into()
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, crate::QuorumError> {
        let open_err = |e: String| crate::QuorumError::Store(format!("raft log at {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        // SAFETY: heed requires that one LMDB file is not opened twice in a process; each voter
        // opens its log directory once, and the directory belongs to that voter alone.
        #[allow(unsafe_code)]
        let env = unsafe { EnvOpenOptions::new().map_size(MAP_SIZE_BYTES).max_dbs(2).open(dir) }
            .map_err(|e| open_err(e.to_string()))?;
        let mut wtxn = env.write_txn().map_err(|e| open_err(e.to_string()))?;
        let log = env.create_database(&mut wtxn, Some("log")).map_err(|e| open_err(e.to_string()))?;
        let state = env.create_database(&mut wtxn, Some("state")).map_err(|e| open_err(e.to_string()))?;
        wtxn.commit().map_err(|e| open_err(e.to_string()))?;
        Ok(Self { inner: Arc::new(Inner { env, log, state }) })
    }

    fn get_state<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let rtxn = self.inner.env.read_txn().map_err(read_err)?;
        match self.inner.state.get(&rtxn, key).map_err(read_err)? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v).map(Some).map_err(read_err),
        }
    }

    fn put_state<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError<NodeId>> {
        let v = serde_json::to_value(value).map_err(write_err)?;
        let mut wtxn = self.inner.env.write_txn().map_err(write_err)?;
        self.inner.state.put(&mut wtxn, key, &v).map_err(write_err)?;
        wtxn.commit().map_err(write_err)
    }

    /// Entries in the log (for status output).
    pub fn len(&self) -> Result<u64, StorageError<NodeId>> {
        let rtxn = self.inner.env.read_txn().map_err(read_err)?;
        self.inner.log.len(&rtxn).map_err(read_err)
    }

    pub fn is_empty(&self) -> Result<bool, StorageError<NodeId>> {
        Ok(self.len()? == 0)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let bounds: (Bound<u64>, Bound<u64>) = (range.start_bound().cloned(), range.end_bound().cloned());
        let rtxn = self.inner.env.read_txn().map_err(read_err)?;
        let mut out = Vec::new();
        for item in self.inner.log.range(&rtxn, &bounds).map_err(read_err)? {
            let (_, entry) = item.map_err(read_err)?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_state("last_purged")?;
        let rtxn = self.inner.env.read_txn().map_err(read_err)?;
        let last = self.inner.log.last(&rtxn).map_err(read_err)?.map(|(_, e)| *e.get_log_id());
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_state("vote", vote)
            .map_err(|e| StorageIOError::write_vote(&std::io::Error::other(e.to_string())).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_state("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.put_state("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_state::<Option<LogId<NodeId>>>("committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = (|| {
            let mut wtxn = self.inner.env.write_txn().map_err(write_err)?;
            for entry in entries {
                let index = entry.get_log_id().index;
                self.inner.log.put(&mut wtxn, &index, &entry).map_err(write_err)?;
            }
            wtxn.commit().map_err(write_err)
        })();
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut wtxn = self.inner.env.write_txn().map_err(write_err)?;
        self.inner.log.delete_range(&mut wtxn, &(log_id.index..)).map_err(write_err)?;
        wtxn.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let v = serde_json::to_value(log_id).map_err(write_err)?;
        let mut wtxn = self.inner.env.write_txn().map_err(write_err)?;
        self.inner.state.put(&mut wtxn, "last_purged", &v).map_err(write_err)?;
        self.inner.log.delete_range(&mut wtxn, &(..=log_id.index)).map_err(write_err)?;
        wtxn.commit().map_err(write_err)
    }
}

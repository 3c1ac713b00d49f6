//! Idempotent producer state of one partition: per producer id, its epoch and the last five
//! batches' sequence ranges and offsets (Kafka's window for max.in.flight.requests=5).
//!
//! Rules (as Kafka's ProducerStateManager):
//! - an older epoch than known is fenced: INVALID_PRODUCER_EPOCH;
//! - a newer epoch must start at sequence 0;
//! - a batch whose sequence range equals a cached one is a retry: it is not appended again and
//!   the original offsets are returned;
//! - otherwise the base sequence must follow the last one (wrapping at i32::MAX);
//! - an unknown producer id may start at any sequence (KIP-360: its state may have expired).
//!
//! The state is rebuilt after a restart from the newest snapshot at or below the log end plus
//! the batch headers after it; snapshots are written at segment roll and at clean shutdown.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::BatchHeader;
use crate::segment::write_atomic;
use crate::{io_err, LogError};

/// Batches remembered per producer for duplicate detection.
pub const MAX_CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<CachedBatch>,
}

/// What an append should do with a batch carrying a producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    Duplicate(CachedBatch),
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    offset: i64,
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, LogError> {
        if !h.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let Some(e) = self.producers.get(&h.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < e.epoch {
            return Err(LogError::InvalidProducerEpoch { current: e.epoch, got: h.producer_epoch });
        }
        if h.producer_epoch > e.epoch {
            if h.base_sequence != 0 {
                return Err(LogError::OutOfOrderSequence(format!(
                    "producer {} epoch {} must start at sequence 0, not {}",
                    h.producer_id, h.producer_epoch, h.base_sequence
                )));
            }
            return Ok(SequenceCheck::Append);
        }
        let last_seq = h.last_sequence();
        if let Some(dup) = e.batches.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        if let Some(last) = e.batches.back() {
            if h.base_sequence != next_seq(last.last_seq) {
                return Err(LogError::OutOfOrderSequence(format!(
                    "producer {} expected sequence {}, got {}",
                    h.producer_id,
                    next_seq(last.last_seq),
                    h.base_sequence
                )));
            }
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch (with its final offsets) that was appended to the log.
    pub fn record(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() {
            return;
        }
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry { epoch: h.producer_epoch, batches: VecDeque::new() });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        if e.batches.len() == MAX_CACHED_BATCHES {
            e.batches.pop_front();
        }
        e.batches.push_back(CachedBatch {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Writes a snapshot of the state as of `offset` (every batch below it is included) and
    /// keeps only the two newest snapshots.
    pub(crate) fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<(), LogError> {
        let snap = Snapshot { offset, producers: self.producers.clone() };
        let data = serde_json::to_vec(&snap)
            .map_err(|e| LogError::Corrupt(format!("encode producer snapshot: {e}")))?;
        write_atomic(&snapshot_path(dir, offset), &data)?;
        let mut all = list_snapshots(dir)?;
        all.sort();
        while all.len() > 2 {
            let (o, p) = all.remove(0);
            if o != offset {
                let _ = fs::remove_file(p);
            }
        }
        Ok(())
    }

    /// Loads the newest readable snapshot at or below `log_end`; returns it and its offset.
    /// Snapshots above the log end (the log was truncated) are deleted.
    pub(crate) fn load_snapshot(dir: &Path, log_end: i64) -> Result<(Self, i64), LogError> {
        let mut all = list_snapshots(dir)?;
        all.sort();
        while let Some((offset, path)) = all.pop() {
            if offset > log_end {
                let _ = fs::remove_file(&path);
                continue;
            }
            let read = fs::read(&path).map_err(|e| io_err(e, format!("read {}", path.display())));
            match read.and_then(|d| {
                serde_json::from_slice::<Snapshot>(&d)
                    .map_err(|e| LogError::Corrupt(format!("{}: {e}", path.display())))
            }) {
                Ok(s) if s.offset == offset => {
                    return Ok((ProducerState { producers: s.producers }, offset));
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(snapshot = %path.display(), "ignoring unreadable producer snapshot");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok((ProducerState::default(), -1))
    }
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

fn list_snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| io_err(e, format!("list {}", dir.display())))?;
    for ent in rd.flatten() {
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if let Some(num) = name.strip_suffix(".snapshot") {
            if let Ok(o) = num.parse::<i64>() {
                out.push((o, ent.path()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::make_batch;

    fn header(pid: i64, epoch: i16, seq: i32, n: i32, base: i64) -> BatchHeader {
        let mut h = BatchHeader::parse(&make_batch(n, 0, pid, epoch, seq)).expect("parse");
        h.base_offset = base;
        h
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerState::default();
        let a = header(1, 0, 0, 3, 0);
        assert_eq!(s.check(&a).expect("first"), SequenceCheck::Append);
        s.record(&a);
        // Retry of the same batch is a duplicate with the original offsets.
        match s.check(&header(1, 0, 0, 3, 99)).expect("dup") {
            SequenceCheck::Duplicate(b) => assert_eq!((b.base_offset, b.last_offset), (0, 2)),
            other => panic!("expected duplicate, got {other:?}"),
        }
        // A gap is out of order.
        assert!(matches!(s.check(&header(1, 0, 4, 1, 3)), Err(LogError::OutOfOrderSequence(_))));
        let b = header(1, 0, 3, 1, 3);
        assert_eq!(s.check(&b).expect("next"), SequenceCheck::Append);
        s.record(&b);
        // Old epoch is fenced; new epoch must restart at 0.
        assert!(matches!(s.check(&header(1, -1, 4, 1, 4)), Err(LogError::InvalidProducerEpoch { .. })));
        assert!(matches!(s.check(&header(1, 1, 4, 1, 4)), Err(LogError::OutOfOrderSequence(_))));
        assert_eq!(s.check(&header(1, 1, 0, 1, 4)).expect("new epoch"), SequenceCheck::Append);
        // Unknown producers start anywhere.
        assert_eq!(s.check(&header(2, 0, 17, 1, 5)).expect("unknown"), SequenceCheck::Append);
    }

    #[test]
    fn window_is_five_batches() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&header(1, 0, i, 1, i as i64));
        }
        assert!(matches!(s.check(&header(1, 0, 1, 1, 0)), Err(LogError::OutOfOrderSequence(_))));
        assert!(matches!(s.check(&header(1, 0, 2, 1, 0)), Ok(SequenceCheck::Duplicate(_))));
    }

    #[test]
    fn snapshots_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = ProducerState::default();
        s.record(&header(9, 2, 0, 4, 10));
        s.write_snapshot(dir.path(), 14).expect("write");
        let (loaded, at) = ProducerState::load_snapshot(dir.path(), 20).expect("load");
        assert_eq!((loaded, at), (s, 14));
        let (empty, at) = ProducerState::load_snapshot(dir.path(), 13).expect("load");
        assert!(empty.is_empty());
        assert_eq!(at, -1);
    }
}

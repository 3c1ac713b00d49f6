//! What replication needs from a partition log: leader epochs (Kafka's leader-epoch cache),
//! a high watermark that the broker moves, appends of batches a leader already stamped, and
//! truncation of a diverged tail.
//!
//! Invariants:
//! - the epoch cache is ascending in epoch and in start offset, and every entry starts below
//!   the log end;
//! - the high watermark never passes the log end, and only moves back by truncation;
//! - a follower's log holds the leader's batches byte for byte (offsets and epochs included).

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::batch::{split_stored_batches, RewrittenBatch, HEADER_LEN};
use crate::log::{Inner, PartitionLog};
use crate::producer::ProducerState;
use crate::segment::{self, write_atomic, OpenMode, Segment};
use crate::{io_err, LogError};

const EPOCHS_FILE: &str = "leader-epoch-checkpoint";

/// The epoch cache on disk; None when the file does not exist.
pub(crate) fn load_epochs(dir: &Path) -> Result<Option<Vec<(i32, i64)>>, LogError> {
    match fs::read(dir.join(EPOCHS_FILE)) {
        Ok(d) => match serde_json::from_slice::<Vec<(i32, i64)>>(&d) {
            Ok(mut v) => {
                // Keep the invariant whatever the file says.
                let mut last = (i32::MIN, i64::MIN);
                v.retain(|e| {
                    let ok = e.0 > last.0 && e.1 >= last.1;
                    if ok {
                        last = *e;
                    }
                    ok
                });
                Ok(Some(v))
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "unreadable leader-epoch-checkpoint; rebuilding");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(e, format!("read {}", dir.join(EPOCHS_FILE).display()))),
    }
}

/// Kafka's `endOffsetFor`: the largest epoch at or below `requested` and the offset where it
/// ended (the next epoch's start, or `log_end` for the latest). (-1, -1) when `requested` is
/// above every epoch known or negative.
pub fn end_offset_for(epochs: &[(i32, i64)], log_end: i64, requested: i32) -> (i32, i64) {
    if requested < 0 {
        return (-1, -1);
    }
    match epochs.last() {
        Some(&(latest, _)) if latest == requested => return (requested, log_end),
        None => return (-1, -1),
        _ => {}
    }
    let higher = epochs.iter().find(|e| e.0 > requested);
    let floor = epochs.iter().rev().find(|e| e.0 <= requested);
    match (floor, higher) {
        (_, None) => (-1, -1),
        (None, Some(h)) => (requested, h.1),
        (Some(f), Some(h)) => (f.0, h.1),
    }
}

impl PartitionLog {
    pub(crate) fn persist_epochs(&self, epochs: &[(i32, i64)]) -> Result<(), LogError> {
        let data = serde_json::to_vec(epochs)
            .map_err(|e| LogError::Corrupt(format!("encode leader epochs: {e}")))?;
        write_atomic(&self.dir().join(EPOCHS_FILE), &data)
    }

    /// Whether the broker's replication moves the high watermark (true), or it follows the
    /// log end (false: a partition with no other replica).
    pub fn set_replicated(&self, replicated: bool) {
        let end = {
            let mut inner = self.inner.lock();
            let was_auto = inner.auto_hw;
            inner.auto_hw = !replicated;
            if replicated {
                if !was_auto {
                    return;
                }
                // What the ISR had before this start; nothing above it was known committed.
                inner.high_watermark = inner.high_watermark.min(inner.recovered_hw);
            } else {
                inner.high_watermark = inner.log_end();
            }
            inner.high_watermark
        };
        self.hw_tx.send_replace(end);
    }

    /// This broker leads the partition from now on at `epoch`: appends are stamped with it,
    /// and the epoch starts at the current log end.
    pub fn become_leader(&self, epoch: i32) -> Result<(), LogError> {
        let mut inner = self.inner.lock();
        inner.leader_epoch = inner.leader_epoch.max(epoch);
        let end = inner.log_end();
        if inner.epochs.last().is_none_or(|e| e.0 < epoch) {
            inner.epochs.push((epoch, end));
            self.persist_epochs(&inner.epochs)?;
        }
        Ok(())
    }

    /// The newest leader epoch in the log (-1: none).
    pub fn latest_epoch(&self) -> i32 {
        self.inner.lock().epochs.last().map_or(-1, |e| e.0)
    }

    /// The epoch cache: (epoch, start offset), ascending.
    pub fn epochs(&self) -> Vec<(i32, i64)> {
        self.inner.lock().epochs.clone()
    }

    /// OffsetForLeaderEpoch for this log (see [`end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let inner = self.inner.lock();
        end_offset_for(&inner.epochs, inner.log_end(), epoch)
    }

    /// Moves the high watermark up to `hw` (never past the log end, never back).
    pub fn advance_high_watermark(&self, hw: i64) -> i64 {
        let now = {
            let mut inner = self.inner.lock();
            let target = hw.min(inner.log_end());
            if target <= inner.high_watermark {
                return inner.high_watermark;
            }
            inner.high_watermark = target;
            target
        };
        self.hw_tx.send_replace(now);
        now
    }

    /// Writes partition.state when the high watermark moved since it was last written (called
    /// periodically, as Kafka checkpoints high watermarks).
    pub fn checkpoint_high_watermark(&self) -> Result<(), LogError> {
        if self.high_watermark() == self.persisted_hw.load(Ordering::Acquire) {
            return Ok(());
        }
        self.persist_state()
    }

    /// A follower's append: batches as the leader stored them (offsets, epochs, timestamps
    /// kept), each CRC-checked. Batches wholly below the log end are skipped (a repeat); a gap
    /// or an overlap inside a batch is an error (the fetcher resynchronises). Returns the new
    /// log end.
    pub fn append_replicated(&self, records: &Bytes) -> Result<i64, LogError> {
        let batches = split_stored_batches(records)?;
        if batches.is_empty() {
            return Ok(self.log_end_offset());
        }
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(LogError::Closed);
        }
        let mut epochs_changed = false;
        for (h, bytes) in &batches {
            let end = inner.log_end();
            if h.next_offset() <= end {
                continue;
            }
            if h.base_offset != end {
                return Err(LogError::CorruptBatch(format!(
                    "replicated batch at offset {} does not follow the log end {end}",
                    h.base_offset
                )));
            }
            // A fetch answered by the old leader that lands after this broker started a newer
            // epoch (it became leader, or follows a newer one) must not go in behind that
            // epoch's start: followers would find an epoch-N batch inside epoch N+1 and
            // diverge from this log forever.
            if let Some(&(latest, _)) = inner.epochs.last().filter(|e| e.0 > h.partition_leader_epoch) {
                return Err(LogError::StaleLeaderEpoch {
                    offset: h.base_offset,
                    batch_epoch: h.partition_leader_epoch,
                    latest,
                });
            }
            self.maybe_roll(&mut inner, bytes.len(), h.last_offset_delta, now)?;
            let mut header = [0u8; HEADER_LEN];
            header.copy_from_slice(&bytes[..HEADER_LEN]);
            let batch = RewrittenBatch { header, body: bytes.slice(HEADER_LEN..) };
            inner.active_mut()?.append(std::slice::from_ref(&batch))?;
            inner.producers.record(h);
            if inner.epochs.last().is_none_or(|e| e.0 < h.partition_leader_epoch) {
                inner.epochs.push((h.partition_leader_epoch, h.base_offset));
                epochs_changed = true;
            }
            inner.leader_epoch = inner.leader_epoch.max(h.partition_leader_epoch);
            if inner.first_unflushed_ms.is_none() {
                inner.first_unflushed_ms = Some(now);
            }
        }
        if epochs_changed {
            self.persist_epochs(&inner.epochs)?;
        }
        self.touched.store(true, Ordering::Release);
        let end = inner.log_end();
        let auto_hw = inner.auto_hw;
        if auto_hw {
            inner.high_watermark = end;
        }
        drop(inner);
        self.end_tx.send_replace(end);
        if auto_hw {
            self.hw_tx.send_replace(end);
        }
        Ok(end)
    }

    /// Removes every batch at or after the one holding `offset` (a follower's diverged tail).
    /// The log end becomes the start of that batch. Nothing at or below the high watermark may
    /// go: the caller truncates only what the leader says diverged.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        let _no_flush = self.flush_lock.lock();
        let mut inner = self.inner.lock();
        let end = inner.log_end();
        if offset >= end {
            // No batch to cut, but an epoch that started here holds nothing (a leadership that
            // ended before any write): it goes, as Kafka's truncateFromEnd drops it. Kept, the
            // follower would fetch with that epoch forever, the leader answering each time that
            // it diverged (and the follower, never counted as fetching, would hold back the high
            // watermark until replica.lag.time.max.ms removed it from the ISR).
            if inner.epochs.last().is_some_and(|e| e.1 >= offset) {
                inner.epochs.retain(|e| e.1 < offset);
                self.persist_epochs(&inner.epochs)?;
            }
            return Ok(end);
        }
        let dir = self.dir().to_path_buf();
        let now = self.clock.now_ms();
        let interval = inner.config.index_interval_bytes;
        // Whole segments at or after the offset go.
        let doomed: Vec<i64> = inner.segments.range(offset..).map(|(b, _)| *b).collect();
        let mut removed = Vec::new();
        for b in doomed {
            if let Some(s) = inner.segments.remove(&b) {
                // Gone before a new segment may reuse its file name.
                s.delete_files()?;
                removed.push(s.file.clone());
            }
        }
        // The segment holding the offset is cut at the batch holding it.
        if let Some((&base, seg)) = inner.segments.iter().next_back() {
            if offset < seg.next_offset {
                let pos = seg.position_of(offset, seg.size)?.unwrap_or(seg.size);
                seg.file.get()?.set_len(pos).map_err(|e| io_err(e, format!("truncate segment {base}")))?;
                for ext in ["index", "timeindex"] {
                    let _ = fs::remove_file(segment::file_name(&dir, base, ext));
                }
                let (reopened, _) = Segment::open(&dir, base, OpenMode::Trust, now, interval)?;
                inner.segments.insert(base, reopened);
            }
        }
        if inner.segments.is_empty() {
            inner.segments.insert(offset, Segment::create(&dir, offset, now, interval)?);
            inner.log_start_offset = inner.log_start_offset.min(offset);
        }
        inner.pending.retain(|p| removed.iter().all(|f| !std::sync::Arc::ptr_eq(f, &p.file)));
        let new_end = inner.log_end();
        self.after_truncation(&mut inner, new_end)?;
        drop(inner);
        self.persist_state()?;
        self.end_tx.send_replace(new_end);
        tracing::info!(dir = %dir.display(), from = end, to = new_end, "truncated diverged log tail");
        Ok(new_end)
    }

    /// Empties the log and restarts it at `offset` (a follower too far behind its leader's log
    /// start).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        let _no_flush = self.flush_lock.lock();
        let mut inner = self.inner.lock();
        let dir = self.dir().to_path_buf();
        let now = self.clock.now_ms();
        let interval = inner.config.index_interval_bytes;
        let removed: Vec<Segment> = std::mem::take(&mut inner.segments).into_values().collect();
        for s in &removed {
            s.delete_files()?;
        }
        inner.pending.clear();
        inner.segments.insert(offset, Segment::create(&dir, offset, now, interval)?);
        inner.log_start_offset = offset;
        inner.epochs.clear();
        inner.high_watermark = offset;
        inner.recovered_hw = offset;
        inner.producers = ProducerState::default();
        self.after_truncation(&mut inner, offset)?;
        drop(inner);
        self.persist_state()?;
        self.end_tx.send_replace(offset);
        Ok(())
    }

    /// Brings the derived state in line with a log that now ends at `new_end`.
    fn after_truncation(&self, inner: &mut Inner, new_end: i64) -> Result<(), LogError> {
        self.touched.store(true, Ordering::Release);
        inner.epochs.retain(|e| e.1 < new_end);
        self.persist_epochs(&inner.epochs)?;
        inner.high_watermark = inner.high_watermark.min(new_end);
        inner.recovered_hw = inner.recovered_hw.min(new_end);
        inner.recovery_point = inner.recovery_point.min(new_end);
        inner.cleaner_offset = inner.cleaner_offset.min(new_end);
        self.flushed_offset.fetch_min(new_end, Ordering::AcqRel);
        // Producer state: the newest snapshot at or below the new end, then the batches after.
        let (mut producers, snap) = ProducerState::load_snapshot(self.dir(), new_end)?;
        for seg in inner.segments.values() {
            if seg.next_offset <= snap {
                continue;
            }
            seg.for_each_header(|h| {
                if h.base_offset >= snap {
                    producers.record(h);
                }
            })?;
        }
        inner.producers = producers;
        self.hw_tx.send_replace(inner.high_watermark);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::end_offset_for;

    #[test]
    fn end_offsets_follow_kafka() {
        let epochs = [(0, 0), (2, 10), (5, 30)];
        assert_eq!(end_offset_for(&epochs, 50, 5), (5, 50), "latest epoch ends at the log end");
        assert_eq!(end_offset_for(&epochs, 50, 0), (0, 10));
        assert_eq!(end_offset_for(&epochs, 50, 1), (0, 10), "an unknown epoch maps to the one below");
        assert_eq!(end_offset_for(&epochs, 50, 3), (2, 30));
        assert_eq!(end_offset_for(&epochs, 50, 6), (-1, -1), "above every epoch");
        assert_eq!(end_offset_for(&epochs, 50, -1), (-1, -1));
        assert_eq!(end_offset_for(&[(3, 7)], 9, 1), (1, 7), "below the first epoch");
        assert_eq!(end_offset_for(&[], 0, 0), (-1, -1));
    }
}

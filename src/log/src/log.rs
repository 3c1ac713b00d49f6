//! One partition's log: an ordered set of segments, the last one active.
//!
//! Concurrency: one mutex guards the segment map and producer state. An append validates the
//! batch (CRC) before taking it, then writes into the page cache and releases it; fsync runs
//! in [`PartitionLog::flush_to`] without that mutex, serialised by a second lock so concurrent
//! callers share one fsync (group commit). Readers take the mutex only to find the file and
//! position, then read with `pread` outside it.
//!
//! Durability: `recovery_point` is the base offset of the first segment that may hold unsynced
//! bytes. After an unclean stop, segments from there on are validated batch by batch and a
//! torn tail is truncated. It is persisted in `partition.state` with the log start offset.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kora_common::{Clock, TimestampType, TopicConfig};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::batch::{rewrite_header, BatchHeader, HEADER_LEN};
use crate::producer::{ProducerState, SequenceCheck};
use crate::replica::load_epochs;
use crate::segment::{self, write_atomic, IndexSnapshot, OpenMode, Segment};
use crate::{io_err, records, LogError};

const STATE_FILE: &str = "partition.state";

fn unknown_hw() -> i64 {
    -1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PersistedState {
    log_start_offset: i64,
    recovery_point: i64,
    /// Offsets below this were compacted (cleanup.policy=compact).
    #[serde(default)]
    cleaner_offset: i64,
    /// The high watermark when the state was written (-1: unknown, logs from before
    /// replication, whose high watermark is their end).
    #[serde(default = "unknown_hw")]
    high_watermark: i64,
}

impl Default for PersistedState {
    fn default() -> Self {
        PersistedState { log_start_offset: 0, recovery_point: 0, cleaner_offset: 0, high_watermark: -1 }
    }
}

/// Outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The stamped time for LogAppendTime topics, else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// The batch was a retry of one already in the log; nothing was written.
    pub duplicate: bool,
    /// The flush policy (flush.messages) asks for an fsync before acknowledging.
    pub flush_required: bool,
    /// A segment was rolled; its fsync and index files are pending (see `flush_to`).
    pub rolled: bool,
}

/// Bytes for a fetch, with the offsets the response reports.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start_offset: i64,
    /// The offset up to which every in-sync replica has the log: what consumers may read.
    pub high_watermark: i64,
    /// One past the last offset written here (may be above the high watermark).
    pub log_end_offset: i64,
    pub size_bytes: u64,
    pub segments: usize,
}

/// A closed, fsynced segment with its index files written: what tiering uploads.
#[derive(Debug, Clone)]
pub struct ClosedSegment {
    pub base_offset: i64,
    /// One past the last offset.
    pub next_offset: i64,
    pub size_bytes: u64,
    pub max_timestamp: i64,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
    /// The idempotent-producer snapshot as of the segment's end, when it is still on disk
    /// (the two newest are kept; a recent roll has one).
    pub producer_snapshot_path: Option<PathBuf>,
}

/// Work left by a roll: the closed segment's fsync, its index files, a producer snapshot.
#[derive(Debug)]
pub(crate) struct PendingClose {
    pub(crate) file: Arc<crate::files::SegmentFile>,
    indexes: IndexSnapshot,
    snapshot_offset: i64,
    producers: ProducerState,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start_offset: i64,
    pub(crate) recovery_point: i64,
    /// Offsets below this were compacted.
    pub(crate) cleaner_offset: i64,
    pub(crate) producers: ProducerState,
    pub(crate) config: TopicConfig,
    /// The epoch stamped on batches this log appends as leader.
    pub(crate) leader_epoch: i32,
    /// (epoch, first offset) of every leader epoch in the log, ascending in both.
    pub(crate) epochs: Vec<(i32, i64)>,
    pub(crate) high_watermark: i64,
    /// The high watermark checkpointed before this start (for a replicated log).
    pub(crate) recovered_hw: i64,
    /// The high watermark follows the log end (a single replica). Off while the broker's
    /// replication decides it.
    pub(crate) auto_hw: bool,
    pub(crate) first_unflushed_ms: Option<i64>,
    pub(crate) pending: Vec<PendingClose>,
    pub(crate) closed: bool,
}

impl Inner {
    pub(crate) fn active(&self) -> Result<&Segment, LogError> {
        self.segments.values().next_back().ok_or(LogError::Closed)
    }
    pub(crate) fn active_mut(&mut self) -> Result<&mut Segment, LogError> {
        self.segments.values_mut().next_back().ok_or(LogError::Closed)
    }
    pub(crate) fn log_end(&self) -> i64 {
        self.segments.values().next_back().map(|s| s.next_offset).unwrap_or(0)
    }
}

#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) inner: Mutex<Inner>,
    /// One compaction pass at a time.
    pub(crate) clean_lock: Mutex<()>,
    pub(crate) flush_lock: Mutex<()>,
    /// One writer of partition.state at a time: writers share its temporary file, and the
    /// state is read under this lock so the last file written holds the newest state.
    state_lock: Mutex<()>,
    pub(crate) flushed_offset: AtomicI64,
    /// cleanup.policy includes compact (appends then check keys); kept outside the lock so the
    /// append path does not take it twice.
    compacted: AtomicBool,
    /// The log end offset (followers' fetches wait on it).
    pub(crate) end_tx: watch::Sender<i64>,
    /// The high watermark (consumers' fetches wait on it).
    pub(crate) hw_tx: watch::Sender<i64>,
    /// The high watermark last written to partition.state.
    pub(crate) persisted_hw: AtomicI64,
    /// Written to since it was opened after a clean stop (or opened after an unclean one):
    /// closing must write indexes, a producer snapshot and the state. An idle log closes
    /// without touching the disk.
    pub(crate) touched: AtomicBool,
}

impl PartitionLog {
    /// Opens the log in `dir`, creating it when empty. `clean` says the last stop was clean.
    pub fn open(
        dir: &Path,
        config: TopicConfig,
        clock: Arc<dyn Clock>,
        clean: bool,
    ) -> Result<Self, LogError> {
        fs::create_dir_all(dir).map_err(|e| io_err(e, format!("create {}", dir.display())))?;
        let now = clock.now_ms();
        let state: Option<PersistedState> = match fs::read(dir.join(STATE_FILE)) {
            Ok(d) => serde_json::from_slice(&d)
                .map_err(|e| {
                    tracing::warn!(dir = %dir.display(), error = %e, "unreadable partition.state; recovering all segments");
                })
                .ok(),
            Err(_) => None,
        };
        let state_known = state.is_some();
        let state = state.unwrap_or_default();
        let mut bases = Vec::new();
        for ent in fs::read_dir(dir).map_err(|e| io_err(e, format!("list {}", dir.display())))? {
            let ent = ent.map_err(|e| io_err(e, "list partition dir"))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if let Some(num) = name.strip_suffix(".log") {
                if let Ok(b) = num.parse::<i64>() {
                    bases.push(b);
                }
            } else if name.ends_with(".tmp") {
                let _ = fs::remove_file(ent.path());
            }
        }
        bases.sort_unstable();
        let interval = config.index_interval_bytes;
        let mut segments = BTreeMap::new();
        // The first segment that needs validation after an unclean stop.
        let recover_from =
            bases.iter().rev().find(|&&b| b <= state.recovery_point).copied().unwrap_or(i64::MIN);
        let mut truncated_at: Option<i64> = None;
        let last_base = bases.last().copied();
        for &base in &bases {
            if truncated_at.is_some() {
                // Everything after a torn segment is unreachable garbage from the same crash.
                for ext in ["log", "index", "timeindex"] {
                    let _ = fs::remove_file(segment::file_name(dir, base, ext));
                }
                continue;
            }
            let mode = if clean || base < recover_from { OpenMode::Trust } else { OpenMode::Recover };
            let (seg, bad_tail) = Segment::open(dir, base, mode, now, interval)?;
            if let Some(file_len) = bad_tail {
                if mode == OpenMode::Recover || Some(base) == last_base {
                    // A torn write from the crash (or a bad tail on the active segment): cut it.
                    seg.truncate_file_to_size()?;
                    tracing::warn!(dir = %dir.display(), segment = base, from_bytes = file_len, to_bytes = seg.size, "truncated a torn or corrupt segment tail");
                    if mode == OpenMode::Recover {
                        truncated_at = Some(seg.next_offset);
                    }
                } else {
                    // Bytes that were durable once no longer read back: never delete data on
                    // that evidence. Serve the readable prefix and keep the rest for inspection.
                    tracing::error!(dir = %dir.display(), segment = base, readable_bytes = seg.size, file_bytes = file_len, "segment has unreadable bytes; serving the readable prefix");
                }
            }
            segments.insert(base, seg);
        }
        // Drop empty segments that are not the last (left by a crash right after a roll).
        let empties: Vec<i64> =
            segments.iter().rev().skip(1).filter(|(_, s)| s.is_empty()).map(|(b, _)| *b).collect();
        for b in empties {
            if let Some(s) = segments.remove(&b) {
                s.delete_files()?;
            }
        }
        if segments.is_empty() {
            let base = state.log_start_offset.max(0);
            segments.insert(base, Segment::create(dir, base, now, interval)?);
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_end = segments.values().next_back().map(|s| s.next_offset).unwrap_or(0);
        // The state file is written before segments are deleted, so it is never behind them;
        // compaction may leave the first segments empty or gone without moving the log start.
        let log_start_offset =
            if state_known { state.log_start_offset.max(0) } else { first_base }.min(log_end);

        // Producer state: newest snapshot plus the batches after it.
        let (mut producers, snap_offset) = ProducerState::load_snapshot(dir, log_end)?;
        let replay_from = snap_offset.max(first_base);
        for seg in segments.values() {
            if seg.next_offset <= replay_from {
                continue;
            }
            seg.for_each_header(|h| {
                if h.base_offset >= replay_from {
                    producers.record(h);
                }
            })?;
        }
        let recovery_point =
            if clean { log_end } else { segments.values().next_back().map(|s| s.base_offset).unwrap_or(0) };
        // A missing epoch file (a log from before replication) is written with the next epoch
        // change, not at open: opening must not need free space.
        let mut epochs = load_epochs(dir)?.unwrap_or_else(|| {
            // Logs written before replication carry epoch 0 throughout.
            if log_end > first_base {
                vec![(0, first_base)]
            } else {
                Vec::new()
            }
        });
        epochs.retain(|(_, start)| *start < log_end);
        let leader_epoch = epochs.last().map_or(0, |e| e.0);
        // A single replica's high watermark is its log end; the checkpointed one counts once the
        // broker says the log is replicated (`set_replicated`).
        let recovered_hw = if state.high_watermark < 0 { log_end } else { state.high_watermark.min(log_end) };
        let high_watermark = log_end;
        let (end_tx, _) = watch::channel(log_end);
        let (hw_tx, _) = watch::channel(high_watermark);
        let compacts = config.cleanup_policy.compacts();
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            clock,
            inner: Mutex::new(Inner {
                segments,
                log_start_offset,
                recovery_point,
                cleaner_offset: state.cleaner_offset,
                producers,
                config,
                leader_epoch,
                epochs,
                high_watermark,
                recovered_hw,
                auto_hw: true,
                first_unflushed_ms: None,
                pending: Vec::new(),
                closed: false,
            }),
            flush_lock: Mutex::new(()),
            state_lock: Mutex::new(()),
            clean_lock: Mutex::new(()),
            flushed_offset: AtomicI64::new(if clean { log_end } else { 0 }),
            compacted: AtomicBool::new(compacts),
            end_tx,
            hw_tx,
            persisted_hw: AtomicI64::new(state.high_watermark),
            touched: AtomicBool::new(!clean),
        };
        // Rewrite the state file only when it changed: start-up with many partitions should
        // not cost one fsync each.
        if (log_start_offset, recovery_point) != (state.log_start_offset, state.recovery_point) {
            log.persist_state()?;
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set_config(&self, config: TopicConfig) {
        self.compacted.store(config.cleanup_policy.compacts(), Ordering::Release);
        self.inner.lock().config = config;
    }

    pub fn config(&self) -> TopicConfig {
        self.inner.lock().config.clone()
    }

    /// Validates and appends one produced batch (already split and CRC-checked by
    /// [`crate::batch::split_batches`]).
    pub fn append(&self, header: &BatchHeader, batch: &Bytes) -> Result<AppendResult, LogError> {
        let now = self.clock.now_ms();
        if header.total_len() != batch.len() {
            // One batch per call: anything else would be misread by recovery.
            return Err(LogError::CorruptBatch(format!(
                "batch header says {} bytes, {} given",
                header.total_len(),
                batch.len()
            )));
        }
        if header.is_control() {
            return Err(LogError::InvalidRecord("clients may not write control batches".into()));
        }
        if header.is_transactional() {
            return Err(LogError::InvalidRecord("transactional batches are not supported yet".into()));
        }
        if self.compacted.load(Ordering::Acquire) {
            // The cleaner keeps the latest record per key: a record without one has no meaning
            // in a compacted topic (Kafka refuses it the same way).
            let records = crate::cleaner::decode_records(batch)?;
            if records.iter().any(|r| r.key.is_none()) {
                return Err(LogError::InvalidRecord(
                    "compacted topic cannot accept a record without a key".into(),
                ));
            }
        }
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(LogError::Closed);
        }
        let cfg = &inner.config;
        if batch.len() > cfg.max_message_bytes as usize {
            return Err(LogError::MessageTooLarge { size: batch.len(), max: cfg.max_message_bytes });
        }
        let append_time = match cfg.message_timestamp_type {
            TimestampType::LogAppendTime => Some(now),
            TimestampType::CreateTime => {
                for ts in [header.base_timestamp, header.max_timestamp] {
                    if ts < now.saturating_sub(cfg.message_timestamp_before_max_ms)
                        || ts > now.saturating_add(cfg.message_timestamp_after_max_ms)
                    {
                        return Err(LogError::InvalidTimestamp { timestamp: ts });
                    }
                }
                None
            }
        };
        if let SequenceCheck::Duplicate(c) = inner.producers.check(header)? {
            return Ok(AppendResult {
                base_offset: c.base_offset,
                last_offset: c.last_offset,
                log_append_time_ms: if append_time.is_some() { c.timestamp } else { -1 },
                log_start_offset: inner.log_start_offset,
                duplicate: true,
                flush_required: false,
                rolled: false,
            });
        }
        let rolled = self.maybe_roll(&mut inner, batch.len(), header.last_offset_delta, now)?;
        let base_offset = inner.log_end();
        if inner.epochs.last().is_none_or(|e| e.0 < inner.leader_epoch) {
            let epoch = inner.leader_epoch;
            inner.epochs.push((epoch, base_offset));
            self.persist_epochs(&inner.epochs)?;
        }
        let rewritten = rewrite_header(batch, base_offset, inner.leader_epoch, append_time);
        inner.active_mut()?.append(std::slice::from_ref(&rewritten))?;
        let mut stored = *header;
        stored.base_offset = base_offset;
        if let Some(ts) = append_time {
            stored.max_timestamp = ts;
        }
        inner.producers.record(&stored);
        if inner.first_unflushed_ms.is_none() {
            inner.first_unflushed_ms = Some(now);
        }
        let end = stored.next_offset();
        let unflushed = end - self.flushed_offset.load(Ordering::Acquire);
        let result = AppendResult {
            base_offset,
            last_offset: stored.last_offset(),
            log_append_time_ms: append_time.unwrap_or(-1),
            log_start_offset: inner.log_start_offset,
            duplicate: false,
            flush_required: unflushed >= inner.config.flush_messages,
            rolled,
        };
        let auto_hw = inner.auto_hw;
        if auto_hw {
            inner.high_watermark = end;
        }
        self.touched.store(true, Ordering::Release);
        drop(inner);
        self.end_tx.send_replace(end);
        if auto_hw {
            self.hw_tx.send_replace(end);
        }
        Ok(result)
    }

    /// Rolls the active segment when the next batch would overflow it, or it is older than
    /// segment.ms. The closed segment's fsync and index files are left to `flush_to`.
    pub(crate) fn maybe_roll(
        &self,
        inner: &mut Inner,
        next_len: usize,
        next_delta: i32,
        now: i64,
    ) -> Result<bool, LogError> {
        let cfg = &inner.config;
        let active = inner.active()?;
        if active.is_empty() {
            return Ok(false);
        }
        let too_big = active.size + next_len as u64 > cfg.segment_bytes as u64;
        let too_old = now - active.created_ms >= cfg.segment_ms;
        let rel_overflow = active.next_offset + next_delta as i64 - active.base_offset >= u32::MAX as i64;
        if !(too_big || too_old || rel_overflow) {
            return Ok(false);
        }
        self.roll(inner, now)?;
        Ok(true)
    }

    pub(crate) fn roll(&self, inner: &mut Inner, now: i64) -> Result<(), LogError> {
        self.touched.store(true, Ordering::Release);
        let base = inner.log_end();
        let interval = inner.config.index_interval_bytes;
        let new_seg = Segment::create(&self.dir, base, now, interval)?;
        let old_base = inner.active()?.base_offset;
        let old = inner.segments.get(&old_base).ok_or(LogError::Closed)?;
        inner.pending.push(PendingClose {
            file: old.file.clone(),
            indexes: old.index_snapshot(),
            snapshot_offset: base,
            producers: inner.producers.clone(),
        });
        inner.segments.insert(base, new_seg);
        Ok(())
    }

    /// Makes everything up to `offset` durable: pending closed segments (fsync, index files,
    /// producer snapshot) and the active segment. Concurrent callers are served by one fsync.
    pub fn flush_to(&self, offset: i64) -> Result<(), LogError> {
        let _g = self.flush_lock.lock();
        let (end, file, pending) = {
            let mut inner = self.inner.lock();
            let pending = std::mem::take(&mut inner.pending);
            if pending.is_empty() && self.flushed_offset.load(Ordering::Acquire) >= offset {
                return Ok(());
            }
            inner.first_unflushed_ms = None;
            (inner.log_end(), inner.active()?.file.clone(), pending)
        };
        let had_pending = !pending.is_empty();
        for p in pending {
            p.file.get()?.sync_data().map_err(|e| io_err(e, "fsync closed segment"))?;
            p.indexes.write()?;
            p.producers.write_snapshot(&self.dir, p.snapshot_offset)?;
        }
        file.get()?.sync_data().map_err(|e| io_err(e, "fsync active segment"))?;
        self.flushed_offset.fetch_max(end, Ordering::AcqRel);
        if had_pending {
            {
                let mut inner = self.inner.lock();
                let active_base = inner.active()?.base_offset;
                inner.recovery_point = inner.recovery_point.max(active_base);
            }
            self.persist_state()?;
        }
        Ok(())
    }

    /// Flushes everything appended so far.
    pub fn flush(&self) -> Result<(), LogError> {
        let end = self.inner.lock().log_end();
        self.flush_to(end)
    }

    /// True when data older than flush.ms is unsynced, or a rolled segment awaits its fsync.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        let inner = self.inner.lock();
        !inner.pending.is_empty()
            || inner.first_unflushed_ms.is_some_and(|t| now_ms.saturating_sub(t) >= inner.config.flush_ms)
    }

    pub fn offsets(&self) -> LogOffsets {
        let inner = self.inner.lock();
        LogOffsets {
            log_start_offset: inner.log_start_offset,
            high_watermark: inner.high_watermark,
            log_end_offset: inner.log_end(),
            size_bytes: inner.segments.values().map(|s| s.size).sum(),
            segments: inner.segments.len(),
        }
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw_tx.borrow()
    }

    pub fn log_end_offset(&self) -> i64 {
        *self.end_tx.borrow()
    }

    /// A receiver that changes whenever the high watermark moves (consumers' long polls).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// A receiver that changes whenever the log end moves (followers' long polls).
    pub fn subscribe_end(&self) -> watch::Receiver<i64> {
        self.end_tx.subscribe()
    }

    /// Reads whole batches starting with the one that holds `offset`, up to the high
    /// watermark: what a consumer may see.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        self.read_bounded(offset, max_bytes, false)
    }

    /// Reads whole batches up to the log end: what a follower replicates.
    pub fn read_replica(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        self.read_bounded(offset, max_bytes, true)
    }

    fn read_bounded(&self, offset: i64, max_bytes: usize, to_end: bool) -> Result<ReadResult, LogError> {
        let (file, start_pos, seg_size, hw, log_start, limit) = {
            let inner = self.inner.lock();
            let end = inner.log_end();
            let hw = inner.high_watermark;
            let log_start = inner.log_start_offset;
            if offset < log_start || offset > end {
                return Err(LogError::OffsetOutOfRange { offset, log_start, log_end: end });
            }
            let limit = if to_end { end } else { hw };
            let local_start = inner.segments.keys().next().copied().unwrap_or(0);
            if inner.config.remote_storage_enable && offset < local_start {
                return Err(LogError::NotLocal { offset, local_start });
            }
            if offset >= limit {
                return Ok(ReadResult {
                    records: Bytes::new(),
                    high_watermark: hw,
                    log_start_offset: log_start,
                });
            }
            // The segment holding `offset`, or the next non-empty one.
            let seg = inner
                .segments
                .range(..=offset)
                .next_back()
                .map(|(_, s)| s)
                .filter(|s| offset < s.next_offset)
                .or_else(|| inner.segments.range(offset + 1..).map(|(_, s)| s).find(|s| !s.is_empty()));
            let Some(seg) = seg else {
                return Ok(ReadResult {
                    records: Bytes::new(),
                    high_watermark: hw,
                    log_start_offset: log_start,
                });
            };
            // Opened under the lock: the file read is the segment found (see crate::files).
            (seg.file.get()?, seg.index_floor(offset), seg.size, hw, log_start, limit)
        };
        let pos = segment::find_batch(&file, start_pos, seg_size, offset)?;
        let mut records = match pos {
            Some(pos) => segment::read_batches_from(&file, pos, max_bytes, seg_size)?,
            None => Bytes::new(),
        };
        // Nothing at or past the limit (batches above the high watermark are not committed).
        let mut cut = 0usize;
        while let Some((base, len)) = crate::batch::peek_offset_and_len(&records[cut..]) {
            if base >= limit || cut + len > records.len() {
                break;
            }
            cut += len;
        }
        records.truncate(cut);
        Ok(ReadResult { records, high_watermark: hw, log_start_offset: log_start })
    }

    /// ListOffsets by timestamp: the first record whose timestamp is >= `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let inner = self.inner.lock();
        let log_start = inner.log_start_offset;
        for seg in inner.segments.values() {
            if seg.max_timestamp < ts {
                continue;
            }
            let Some((pos, h)) = seg.position_of_timestamp(ts, seg.size)? else { continue };
            let batch = seg.read_batches(pos, h.total_len(), seg.size)?;
            let batch = batch.slice(..h.total_len().min(batch.len()));
            if let Some((o, t)) = records::first_at_or_after(&h, &batch, ts)? {
                if o >= log_start {
                    return Ok(Some((o, t)));
                }
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP (-3): the record with the largest timestamp.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, LogError> {
        let inner = self.inner.lock();
        let Some(seg) = inner
            .segments
            .values()
            .filter(|s| s.max_timestamp_batch >= inner.log_start_offset)
            .max_by_key(|s| s.max_timestamp)
        else {
            return Ok(None);
        };
        let Some(pos) = seg.position_of(seg.max_timestamp_batch, seg.size)? else { return Ok(None) };
        let batch = seg.read_batches(pos, HEADER_LEN, seg.size)?;
        let h = BatchHeader::parse(&batch)?;
        records::max_timestamp_record(&h, &batch.slice(..h.total_len().min(batch.len())))
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1: the high watermark) and
    /// deletes segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let new_start = {
            let mut inner = self.inner.lock();
            let hw = inner.high_watermark;
            let target = if offset == -1 { hw } else { offset };
            if target < 0 || target > hw {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: inner.log_start_offset,
                    log_end: hw,
                });
            }
            inner.log_start_offset = inner.log_start_offset.max(target);
            inner.log_start_offset
        };
        self.persist_state()?;
        self.delete_segments(|_, _| false)?;
        Ok(new_start)
    }

    /// Applies retention.ms and retention.bytes; returns how many segments were deleted.
    pub fn apply_retention(&self) -> Result<usize, LogError> {
        let now = self.clock.now_ms();
        {
            // A fully expired active segment is rolled first so it can go too.
            let mut inner = self.inner.lock();
            let cfg = inner.config.clone();
            let active = inner.active()?;
            if cfg.cleanup_policy.deletes()
                && !cfg.remote_storage_enable
                && cfg.retention_ms >= 0
                && !active.is_empty()
                && active.max_timestamp < now - cfg.retention_ms
            {
                self.roll(&mut inner, now)?;
            }
        }
        self.delete_segments(|cfg, s| cfg.retention_ms >= 0 && s.max_timestamp < now - cfg.retention_ms)
    }

    /// Deletes closed segments from the oldest on while they are below the log start offset,
    /// `expired` says so, or the log is over retention.bytes.
    fn delete_segments(&self, expired: impl Fn(&TopicConfig, &Segment) -> bool) -> Result<usize, LogError> {
        let doomed = {
            let mut inner = self.inner.lock();
            let cfg = inner.config.clone();
            let mut total: u64 = inner.segments.values().map(|s| s.size).sum();
            let active_base = inner.active()?.base_offset;
            let mut doomed = Vec::new();
            for (&base, s) in inner.segments.iter() {
                if base == active_base {
                    break;
                }
                let below_start = s.next_offset <= inner.log_start_offset;
                // compact-only topics keep everything the cleaner leaves, whatever its age or size.
                // Tiered topics: retention over both tiers is the tier manager's (it moves the
                // log start); local deletion waits for the upload (`delete_uploaded`).
                let deletes = cfg.cleanup_policy.deletes() && !cfg.remote_storage_enable;
                let over_size =
                    deletes && cfg.retention_bytes >= 0 && total - s.size >= cfg.retention_bytes as u64;
                if below_start || over_size || (deletes && expired(&cfg, s)) {
                    total -= s.size;
                    doomed.push(base);
                } else {
                    break;
                }
            }
            let mut segs = Vec::with_capacity(doomed.len());
            for b in doomed {
                if let Some(s) = inner.segments.remove(&b) {
                    segs.push(s);
                }
            }
            // Local segments of a tiered log may start past the log start: the rest is remote.
            if !cfg.remote_storage_enable {
                if let Some(first) = inner.segments.keys().next().copied() {
                    inner.log_start_offset = inner.log_start_offset.max(first);
                }
            }
            // Pending closes of deleted segments need no fsync any more.
            inner.pending.retain(|p| !segs.iter().any(|s| Arc::ptr_eq(&s.file, &p.file)));
            segs
        };
        let n = doomed.len();
        if n > 0 {
            // The new log start is durable before any file goes (open() trusts it).
            self.persist_state()?;
        }
        for s in doomed {
            s.delete_files()?;
        }
        if n > 0 {
            tracing::debug!(dir = %self.dir.display(), segments = n, "deleted segments");
        }
        Ok(n)
    }

    /// Closed segments whose roll is complete (fsynced, index files written), oldest first,
    /// starting at `from_offset` (segments ending at or before it are skipped).
    pub fn closed_segments(&self, from_offset: i64) -> Vec<ClosedSegment> {
        let inner = self.inner.lock();
        let Ok(active) = inner.active().map(|a| a.base_offset) else { return Vec::new() };
        let mut out = Vec::new();
        for (&base, s) in inner.segments.iter() {
            if base == active || inner.pending.iter().any(|p| Arc::ptr_eq(&p.file, &s.file)) {
                break;
            }
            if s.next_offset <= from_offset || s.is_empty() {
                continue;
            }
            out.push(ClosedSegment {
                base_offset: base,
                next_offset: s.next_offset,
                size_bytes: s.size,
                max_timestamp: s.max_timestamp,
                log_path: segment::file_name(&self.dir, base, "log"),
                index_path: segment::file_name(&self.dir, base, "index"),
                time_index_path: segment::file_name(&self.dir, base, "timeindex"),
                producer_snapshot_path: Some(crate::producer::snapshot_path(&self.dir, s.next_offset))
                    .filter(|p| p.exists()),
            });
        }
        out
    }

    /// First offset still on local disk.
    pub fn local_start_offset(&self) -> i64 {
        let inner = self.inner.lock();
        inner.segments.keys().next().copied().unwrap_or(0).max(inner.log_start_offset)
    }

    /// Local bytes from `from_offset` on that are not in the object store yet (upload lag), and
    /// the age in ms of the oldest such closed segment (0: none).
    pub fn bytes_after(&self, from_offset: i64) -> (u64, i64) {
        let inner = self.inner.lock();
        let now = self.clock.now_ms();
        let active = inner.active().map(|a| a.base_offset).unwrap_or(i64::MAX);
        let mut bytes = 0;
        let mut oldest = 0;
        for (&base, s) in inner.segments.iter() {
            if s.next_offset <= from_offset {
                continue;
            }
            bytes += s.size;
            if base != active && oldest == 0 {
                oldest = (now - s.created_ms).max(0);
            }
        }
        (bytes, oldest)
    }

    /// Deletes local segments that are in the object store (ending at or before
    /// `uploaded_end`) beyond local.retention.ms / local.retention.bytes. The log start offset
    /// does not move: the data is still in the log, remotely. Returns segments deleted.
    pub fn delete_uploaded(&self, uploaded_end: i64) -> Result<usize, LogError> {
        let now = self.clock.now_ms();
        let doomed = {
            let mut inner = self.inner.lock();
            let cfg = inner.config.clone();
            let active = inner.active()?.base_offset;
            let mut local: u64 = inner.segments.values().map(|s| s.size).sum();
            let mut doomed = Vec::new();
            for (&base, s) in inner.segments.iter() {
                if base == active
                    || s.next_offset > uploaded_end
                    || inner.pending.iter().any(|p| Arc::ptr_eq(&p.file, &s.file))
                {
                    break;
                }
                let over_bytes =
                    cfg.local_retention_bytes >= 0 && local - s.size >= cfg.local_retention_bytes as u64;
                let too_old = cfg.local_retention_ms >= 0 && s.max_timestamp < now - cfg.local_retention_ms;
                if !(over_bytes || too_old) {
                    break;
                }
                local -= s.size;
                doomed.push(base);
            }
            let segs: Vec<Segment> = doomed.iter().filter_map(|b| inner.segments.remove(b)).collect();
            segs
        };
        let n = doomed.len();
        for s in doomed {
            s.delete_files()?;
        }
        Ok(n)
    }

    /// Flushes everything and writes index files, a producer snapshot and the state, so the
    /// next start needs no recovery. The log refuses appends afterwards.
    pub fn close(&self) -> Result<(), LogError> {
        if !self.touched.load(Ordering::Acquire) {
            self.inner.lock().closed = true;
            return self.checkpoint_high_watermark();
        }
        self.flush()?;
        let mut inner = self.inner.lock();
        inner.closed = true;
        let end = inner.log_end();
        inner.active()?.write_index_files()?;
        inner.producers.write_snapshot(&self.dir, end)?;
        inner.recovery_point = end;
        drop(inner);
        self.persist_state()
    }

    pub(crate) fn persist_state(&self) -> Result<(), LogError> {
        let _one_writer = self.state_lock.lock();
        let state = {
            let inner = self.inner.lock();
            PersistedState {
                log_start_offset: inner.log_start_offset,
                recovery_point: inner.recovery_point,
                cleaner_offset: inner.cleaner_offset,
                high_watermark: inner.high_watermark,
            }
        };
        self.persisted_hw.store(state.high_watermark, Ordering::Release);
        let data = serde_json::to_vec(&state)
            .map_err(|e| LogError::Corrupt(format!("encode partition state: {e}")))?;
        write_atomic(&self.dir.join(STATE_FILE), &data)
    }

    /// Producer ids with state in this partition (for metrics and tests).
    pub fn producer_count(&self) -> usize {
        self.inner.lock().producers.len()
    }
}

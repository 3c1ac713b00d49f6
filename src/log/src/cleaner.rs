//! Log compaction (cleanup.policy=compact): keep the latest record per key.
//!
//! One pass over a partition:
//! 1. The cleanable range is the closed segments (never the active one, never one whose roll is
//!    still being fsynced) whose newest record is older than min.compaction.lag.ms. The dirty
//!    part starts at the cleaner checkpoint (persisted in partition.state).
//! 2. It runs when dirty bytes / cleanable bytes reach min.cleanable.dirty.ratio, or when dirty
//!    data is older than max.compaction.lag.ms.
//! 3. A map from a 128-bit key hash to the key's latest offset is built over the dirty part,
//!    bounded by `max_keys`; if it fills, the pass cleans only up to where it stopped.
//! 4. Every cleanable segment is rewritten: a record goes when a later record with the same key
//!    lies below the cleaned-up-to offset, and a tombstone goes when it is older than
//!    delete.retention.ms as well. Offsets never change (batches keep their records' offsets,
//!    with gaps); untouched batches are copied byte for byte, changed ones are re-encoded with
//!    their codec. The new file is written and fsynced beside the old one, the old index files
//!    are removed, then it is renamed over the old segment and swapped in under the partition
//!    lock; readers holding the old file keep reading the old bytes.
//!
//! Records without a key cannot be compacted; the append path refuses them for compacted
//! topics (INVALID_RECORD), as Kafka does.

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::batch::{peek_offset_and_len, BatchHeader};
use crate::log::PartitionLog;
use crate::segment::{self, OpenMode, Segment};
use crate::{io_err, LogError};

/// Bytes read from a segment at a time while cleaning.
const READ_CHUNK_BYTES: usize = 8 << 20;

/// What one cleaning pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Offsets below this are clean.
    pub cleaned_up_to: i64,
}

/// 128 bits of key hash: two SipHash runs with different prefixes. A collision would drop a live
/// record, so 64 bits are not enough for large key sets (Kafka uses MD5, also 128 bits).
fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    0u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    1u8.hash(&mut b);
    key.hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// The records of one stored batch.
pub(crate) fn decode_records(batch: &Bytes) -> Result<Vec<Record>, LogError> {
    let mut b = batch.clone();
    RecordBatchDecoder::decode(&mut b)
        .map(|s| s.records)
        .map_err(|e| LogError::CorruptBatch(format!("decode records: {e}")))
}

fn codec(h: &BatchHeader) -> Compression {
    match h.compression() {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Calls `f` with every batch of a segment, reading it in bounded chunks.
fn for_each_batch(
    file: &File,
    size: u64,
    mut f: impl FnMut(BatchHeader, Bytes) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut pos = 0u64;
    while pos < size {
        let chunk = segment::read_batches_from(file, pos, READ_CHUNK_BYTES, size)?;
        if chunk.is_empty() {
            break;
        }
        let mut at = 0usize;
        while let Some((_, len)) = peek_offset_and_len(&chunk[at..]) {
            if at + len > chunk.len() {
                break;
            }
            let b = chunk.slice(at..at + len);
            f(BatchHeader::parse(&b)?, b)?;
            at += len;
        }
        if at == 0 {
            return Err(LogError::CorruptBatch(format!("no whole batch at position {pos}")));
        }
        pos += at as u64;
    }
    Ok(())
}

struct Candidate {
    base: i64,
    /// The segment's handle (its identity) and its file, opened under the partition lock.
    handle: Arc<crate::files::SegmentFile>,
    file: Arc<File>,
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
}

impl PartitionLog {
    /// One compaction pass (see the module docs). `None`: nothing to do now.
    pub fn compact(&self, max_keys: usize) -> Result<Option<CleanStats>, LogError> {
        let _one_cleaner = self.clean_lock.lock();
        let now = self.clock.now_ms();
        let (cfg, candidates, dirty_start) = {
            let inner = self.inner.lock();
            if !inner.config.cleanup_policy.compacts() || inner.closed {
                return Ok(None);
            }
            let active = inner.active()?.base_offset;
            let mut c = Vec::new();
            for (&base, s) in inner.segments.iter() {
                // Closed segments only, in order, stopping at one whose roll is in flight.
                if base == active || inner.pending.iter().any(|p| Arc::ptr_eq(&p.file, &s.file)) {
                    break;
                }
                c.push(Candidate {
                    base,
                    handle: s.file.clone(),
                    file: s.file.get()?,
                    size: s.size,
                    next_offset: s.next_offset,
                    max_timestamp: s.max_timestamp,
                });
            }
            (inner.config.clone(), c, inner.cleaner_offset)
        };
        let lag_limit = now.saturating_sub(cfg.min_compaction_lag_ms);
        let cleanable: Vec<Candidate> =
            candidates.into_iter().take_while(|c| c.max_timestamp <= lag_limit).collect();
        let Some(end_all) = cleanable.last().map(|c| c.next_offset) else { return Ok(None) };
        if end_all <= dirty_start {
            return Ok(None);
        }
        let total: u64 = cleanable.iter().map(|c| c.size).sum();
        let dirty: u64 = cleanable.iter().filter(|c| c.next_offset > dirty_start).map(|c| c.size).sum();
        let overdue = cleanable
            .iter()
            .find(|c| c.next_offset > dirty_start)
            .is_some_and(|c| c.max_timestamp < now.saturating_sub(cfg.max_compaction_lag_ms));
        if dirty * 1000 < cfg.min_cleanable_dirty_ratio_milli as u64 * total && !overdue {
            return Ok(None);
        }

        // The key map over the dirty part, bounded.
        let mut latest: HashMap<u128, i64> = HashMap::new();
        let mut end = end_all;
        'map: for c in cleanable.iter().filter(|c| c.next_offset > dirty_start) {
            let mut full_at: Option<i64> = None;
            for_each_batch(&c.file, c.size, |h, b| {
                if full_at.is_some() || h.next_offset() <= dirty_start {
                    return Ok(());
                }
                for r in decode_records(&b)? {
                    if r.offset < dirty_start {
                        continue;
                    }
                    let Some(k) = &r.key else { continue };
                    let hk = key_hash(k);
                    if latest.len() >= max_keys && !latest.contains_key(&hk) {
                        full_at = Some(r.offset);
                        return Ok(());
                    }
                    latest.insert(hk, r.offset);
                }
                Ok(())
            })?;
            if let Some(at) = full_at {
                end = at;
                break 'map;
            }
        }
        if end <= dirty_start {
            tracing::warn!(dir = %self.dir().display(), max_keys, "cleaner key map too small for one record batch");
            return Ok(None);
        }

        let tombstone_horizon = now.saturating_sub(cfg.delete_retention_ms);
        let mut stats = CleanStats { cleaned_up_to: end, ..CleanStats::default() };
        for c in cleanable.iter().filter(|c| c.base < end) {
            let tmp = segment::file_name(self.dir(), c.base, "cleaned.tmp");
            let out = File::create(&tmp).map_err(|e| io_err(e, format!("create {}", tmp.display())))?;
            let mut w = BufWriter::with_capacity(1 << 20, out);
            let (mut removed, mut written) = (0u64, 0u64);
            for_each_batch(&c.file, c.size, |h, b| {
                if h.base_offset >= end {
                    written += b.len() as u64;
                    return w.write_all(&b).map_err(|e| io_err(e, "write cleaned segment"));
                }
                let records = decode_records(&b)?;
                let n = records.len();
                let kept: Vec<Record> = records
                    .into_iter()
                    .filter(|r| {
                        if r.offset >= end {
                            return true;
                        }
                        let superseded = r
                            .key
                            .as_ref()
                            .is_some_and(|k| latest.get(&key_hash(k)).is_some_and(|&last| last > r.offset));
                        let expired_tombstone = r.value.is_none() && h.max_timestamp < tombstone_horizon;
                        !superseded && !expired_tombstone
                    })
                    .collect();
                removed += (n - kept.len()) as u64;
                if kept.len() == n {
                    written += b.len() as u64;
                    return w.write_all(&b).map_err(|e| io_err(e, "write cleaned segment"));
                }
                if kept.is_empty() {
                    return Ok(());
                }
                let mut buf = BytesMut::new();
                RecordBatchEncoder::encode(
                    &mut buf,
                    &kept,
                    &RecordEncodeOptions { version: 2, compression: codec(&h) },
                )
                .map_err(|e| LogError::CorruptBatch(format!("re-encode compacted batch: {e}")))?;
                written += buf.len() as u64;
                w.write_all(&buf).map_err(|e| io_err(e, "write cleaned segment"))
            })?;
            let out = w.into_inner().map_err(|e| io_err(e.into_error(), "flush cleaned segment"))?;
            if removed == 0 {
                drop(out);
                let _ = fs::remove_file(&tmp);
                continue;
            }
            out.sync_all().map_err(|e| io_err(e, "fsync cleaned segment"))?;
            drop(out);
            if self.swap_cleaned(c, &tmp, written)? {
                stats.segments_rewritten += 1;
                stats.records_removed += removed;
                stats.bytes_before += c.size;
                stats.bytes_after += written;
            }
        }
        {
            let mut inner = self.inner.lock();
            inner.cleaner_offset = inner.cleaner_offset.max(end);
        }
        self.persist_state()?;
        Ok(Some(stats))
    }

    /// Puts a cleaned copy in place of segment `c` if it is still there unchanged. The segment
    /// goes entirely when nothing in it survived.
    fn swap_cleaned(&self, c: &Candidate, tmp: &std::path::Path, written: u64) -> Result<bool, LogError> {
        let mut inner = self.inner.lock();
        let unchanged = inner.segments.get(&c.base).is_some_and(|s| Arc::ptr_eq(&s.file, &c.handle));
        if !unchanged {
            // Retention or DeleteRecords removed it meanwhile.
            let _ = fs::remove_file(tmp);
            return Ok(false);
        }
        let interval = inner.config.index_interval_bytes;
        for ext in ["index", "timeindex"] {
            let _ = fs::remove_file(segment::file_name(self.dir(), c.base, ext));
        }
        let path = segment::file_name(self.dir(), c.base, "log");
        if written == 0 {
            if let Some(s) = inner.segments.remove(&c.base) {
                drop(inner);
                let _ = fs::remove_file(tmp);
                s.delete_files()?;
                return Ok(true);
            }
            return Ok(false);
        }
        fs::rename(tmp, &path).map_err(|e| io_err(e, format!("rename {}", tmp.display())))?;
        segment::fsync_dir(self.dir())?;
        let (seg, bad_tail) =
            Segment::open(self.dir(), c.base, OpenMode::Recover, self.clock.now_ms(), interval)?;
        if bad_tail.is_some() {
            return Err(LogError::Corrupt(format!("cleaned segment {} does not read back", path.display())));
        }
        seg.write_index_files()?;
        inner.segments.insert(c.base, seg);
        Ok(true)
    }
}

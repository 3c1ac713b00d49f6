//! Segment objects: their keys, the upload of a closed segment, reads through the chunk cache,
//! and the orphan sweep.
//!
//! Keys: `<prefix>/<topic>-<topic id>/<partition>/<base offset, 20 digits>-e<epoch>-<uuid>.<ext>`
//! with ext `log`, `index`, `timeindex`. The topic id keeps a re-created topic apart from the
//! old one; the epoch and uuid make every upload's keys new, so nothing is overwritten.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use kora_common::Clock;
use kora_log::batch::{peek_offset_and_len, BatchHeader};
use kora_log::ClosedSegment;
use kora_meta::RemoteSegment;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

use crate::{ChunkCache, Store, TierError};

/// Objects at least this large are uploaded in parts of this size.
const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Chunks fetched ahead of a sequential remote reader.
const READ_AHEAD_CHUNKS: u64 = 4;
/// Offset indexes kept in memory for remote reads.
const MAX_CACHED_INDEXES: usize = 4096;

/// Upload bandwidth, shared by every upload of a broker.
#[derive(Debug)]
pub struct UploadLimits {
    /// 0: unlimited.
    bytes_per_second: u64,
    window: Mutex<(Instant, u64)>,
    /// Windows are measured, and waits slept, on this clock.
    clock: Arc<dyn Clock>,
}

impl UploadLimits {
    pub fn new(bytes_per_second: u64, clock: Arc<dyn Clock>) -> Self {
        Self { bytes_per_second, window: Mutex::new((clock.now(), 0)), clock }
    }

    /// Waits until `n` more bytes fit in the budget (one-second windows).
    async fn take(&self, n: u64) {
        if self.bytes_per_second == 0 {
            return;
        }
        loop {
            let wait = {
                let mut w = self.window.lock();
                if self.clock.elapsed(w.0) >= Duration::from_secs(1) {
                    *w = (self.clock.now(), 0);
                }
                if w.1 == 0 || w.1 + n <= self.bytes_per_second {
                    w.1 += n;
                    None
                } else {
                    Some(Duration::from_secs(1).saturating_sub(self.clock.elapsed(w.0)))
                }
            };
            match wait {
                None => return,
                Some(d) => self.clock.sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }
}

pub fn object_prefix(store: &Store, topic: &str, topic_id: &uuid::Uuid) -> Path {
    store.prefix.clone().join(format!("{topic}-{topic_id}"))
}

pub fn partition_prefix(store: &Store, topic: &str, topic_id: &uuid::Uuid, partition: i32) -> Path {
    object_prefix(store, topic, topic_id).join(partition.to_string())
}

fn io(path: &std::path::Path, source: std::io::Error) -> TierError {
    TierError::Io { path: path.display().to_string(), source }
}

async fn put_small(store: &Store, key: &Path, body: Bytes) -> Result<(), TierError> {
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    store.inner.put_opts(key, PutPayload::from_bytes(body), opts).await?;
    Ok(())
}

/// Uploads one closed segment and its indexes; returns its manifest entry. Nothing refers to
/// the objects until the caller commits that entry.
pub async fn upload_segment(
    store: &Store,
    seg: &ClosedSegment,
    topic: &str,
    topic_id: &uuid::Uuid,
    partition: i32,
    leader_epoch: i32,
    limits: &UploadLimits,
) -> Result<RemoteSegment, TierError> {
    let dir = partition_prefix(store, topic, topic_id, partition);
    let stem = format!("{:020}-e{leader_epoch}-{}", seg.base_offset, uuid::Uuid::new_v4().simple());
    let log_key = dir.clone().join(format!("{stem}.log"));
    let index_key = dir.clone().join(format!("{stem}.index"));
    let time_index_key = dir.clone().join(format!("{stem}.timeindex"));

    let mut file = tokio::fs::File::open(&seg.log_path).await.map_err(|e| io(&seg.log_path, e))?;
    let size = seg.size_bytes as usize;
    if size < PART_BYTES {
        let mut buf = vec![0u8; size];
        file.read_exact(&mut buf).await.map_err(|e| io(&seg.log_path, e))?;
        limits.take(size as u64).await;
        put_small(store, &log_key, Bytes::from(buf)).await?;
    } else {
        let upload = store.inner.put_multipart(&log_key).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut left = size;
        let mut buf = vec![0u8; PART_BYTES];
        while left > 0 {
            let n = left.min(PART_BYTES);
            if let Err(e) = file.read_exact(&mut buf[..n]).await {
                w.abort().await.ok();
                return Err(io(&seg.log_path, e));
            }
            limits.take(n as u64).await;
            if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                w.abort().await.ok();
                return Err(e.into());
            }
            w.write(&buf[..n]);
            left -= n;
        }
        w.finish().await?;
    }
    let index = tokio::fs::read(&seg.index_path).await.map_err(|e| io(&seg.index_path, e))?;
    let time_index = tokio::fs::read(&seg.time_index_path).await.map_err(|e| io(&seg.time_index_path, e))?;
    put_small(store, &index_key, Bytes::from(index)).await?;
    put_small(store, &time_index_key, Bytes::from(time_index)).await?;
    // The producer state as of the segment's end (idempotence after a restore from the store).
    let mut producer_snapshot_key = None;
    if let Some(path) = &seg.producer_snapshot_path {
        // Retention may have removed it since it was listed: then there is none to keep.
        if let Ok(snapshot) = tokio::fs::read(path).await {
            let key = dir.clone().join(format!("{stem}.snapshot"));
            put_small(store, &key, Bytes::from(snapshot)).await?;
            producer_snapshot_key = Some(key.to_string());
        }
    }
    Ok(RemoteSegment {
        base_offset: seg.base_offset,
        end_offset: seg.next_offset,
        size_bytes: seg.size_bytes,
        max_timestamp: seg.max_timestamp,
        leader_epoch,
        log_key: log_key.to_string(),
        index_key: index_key.to_string(),
        time_index_key: time_index_key.to_string(),
        producer_snapshot_key,
    })
}

/// Deletes objects under the store's prefix that no manifest references and that are older
/// than `min_age` by `clock`'s wall time (younger ones may be uploads in flight). Returns
/// (objects, bytes) deleted.
pub async fn sweep_orphans(
    store: &Store,
    referenced: &HashSet<String>,
    min_age: Duration,
    clock: &dyn Clock,
) -> Result<(u64, u64), TierError> {
    let cutoff = chrono_cutoff(clock.now_ms(), min_age);
    let listed: Vec<object_store::ObjectMeta> = store.inner.list(Some(&store.prefix)).try_collect().await?;
    let (mut n, mut bytes) = (0, 0);
    for o in listed {
        let key = o.location.to_string();
        if referenced.contains(&key) || key.contains("_kora/") || o.last_modified > cutoff {
            continue;
        }
        match store.inner.delete(&o.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                n += 1;
                bytes += o.size;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((n, bytes))
}

fn chrono_cutoff(now_ms: i64, min_age: Duration) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    now - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::zero())
}

/// A downloaded offset index: (offset relative to the segment base, file position) pairs.
type OffsetIndex = Arc<Vec<(u32, u32)>>;

/// Reads record batches of remote segments through the chunk cache.
#[derive(Debug)]
pub struct RemoteReader {
    store: Store,
    cache: Arc<ChunkCache>,
    indexes: Mutex<std::collections::HashMap<String, OffsetIndex>>,
}

impl RemoteReader {
    pub fn new(store: Store, cache: Arc<ChunkCache>) -> Self {
        Self { store, cache, indexes: Mutex::new(Default::default()) }
    }

    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn index(&self, seg: &RemoteSegment) -> Result<OffsetIndex, TierError> {
        if let Some(i) = self.indexes.lock().get(&seg.index_key) {
            return Ok(i.clone());
        }
        let raw = self.store.inner.get(&Path::from(seg.index_key.as_str())).await?.bytes().await?;
        if raw.len() % 8 != 0 {
            return Err(TierError::Corrupt {
                key: seg.index_key.clone(),
                reason: "index size not a multiple of 8".into(),
            });
        }
        let entries: Vec<(u32, u32)> = raw
            .chunks_exact(8)
            .map(|c| {
                (u32::from_be_bytes([c[0], c[1], c[2], c[3]]), u32::from_be_bytes([c[4], c[5], c[6], c[7]]))
            })
            .collect();
        let entries = Arc::new(entries);
        let mut idx = self.indexes.lock();
        if idx.len() >= MAX_CACHED_INDEXES {
            idx.clear();
        }
        idx.insert(seg.index_key.clone(), entries.clone());
        Ok(entries)
    }

    /// Bytes `[start, end)` of a segment object: a slice of one cached chunk when the range
    /// lies in one (no copy), else assembled from the chunks it spans.
    async fn range(&self, seg: &RemoteSegment, start: u64, end: u64) -> Result<Bytes, TierError> {
        debug_assert!(start < end && end <= seg.size_bytes);
        let chunk = self.cache.chunk_bytes;
        let (first, last) = (start / chunk, (end - 1) / chunk);
        if first == last {
            let c = self.cache.chunk(&self.store, &seg.log_key, first, seg.size_bytes).await?;
            let (a, b) = ((start - first * chunk) as usize, (end - first * chunk) as usize);
            if b > c.len() {
                return Err(TierError::Corrupt { key: seg.log_key.clone(), reason: "short chunk".into() });
            }
            return Ok(c.slice(a..b));
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for i in first..=last {
            let c = self.cache.chunk(&self.store, &seg.log_key, i, seg.size_bytes).await?;
            let lo = start.max(i * chunk) - i * chunk;
            let hi = (end.min((i + 1) * chunk) - i * chunk).min(c.len() as u64);
            if lo >= hi {
                return Err(TierError::Corrupt { key: seg.log_key.clone(), reason: "short chunk".into() });
            }
            out.extend_from_slice(&c[lo as usize..hi as usize]);
        }
        Ok(out.freeze())
    }

    /// Whole batches from the first one holding `offset` (or after it), up to `max_bytes` but at
    /// least one batch. `None`: no remote segment holds anything at or after `offset`.
    ///
    /// Batch headers are walked in place (through the cache) to find the byte range; the range
    /// is then returned as one slice of a cached chunk whenever it does not cross a chunk edge.
    pub async fn read(
        &self,
        segments: &[RemoteSegment],
        offset: i64,
        max_bytes: usize,
    ) -> Result<Option<Bytes>, TierError> {
        const HEADER: u64 = kora_log::batch::HEADER_LEN as u64;
        let Some(seg) = segments.iter().find(|s| s.end_offset > offset) else { return Ok(None) };
        let corrupt = |reason: String| TierError::Corrupt { key: seg.log_key.clone(), reason };
        let index = self.index(seg).await?;
        let rel = (offset - seg.base_offset).max(0).min(u32::MAX as i64) as u32;
        let at = index.partition_point(|&(r, _)| r <= rel);
        let mut pos = if at == 0 { 0 } else { index[at - 1].1 as u64 };
        let mut first: Option<u64> = None;
        let chunk = self.cache.chunk_bytes;
        // The chunk the walk is in, held so headers inside it cost no cache lookup.
        let mut held: Option<(u64, Bytes)> = None;
        while pos + HEADER <= seg.size_bytes {
            let (ci, off) = (pos / chunk, (pos % chunk) as usize);
            let head = match &held {
                Some((i, c)) if *i == ci && off + HEADER as usize <= c.len() => {
                    c.slice(off..off + HEADER as usize)
                }
                _ if off + HEADER as usize <= chunk as usize => {
                    let c = self.cache.chunk(&self.store, &seg.log_key, ci, seg.size_bytes).await?;
                    if off + HEADER as usize > c.len() {
                        return Err(corrupt(format!("short chunk at {pos}")));
                    }
                    let h = c.slice(off..off + HEADER as usize);
                    held = Some((ci, c));
                    h
                }
                // A header across a chunk edge.
                _ => self.range(seg, pos, pos + HEADER).await?,
            };
            let (_, len) =
                peek_offset_and_len(&head).ok_or_else(|| corrupt(format!("bad batch header at {pos}")))?;
            let h = BatchHeader::parse(&head).map_err(|e| corrupt(e.to_string()))?;
            let len = len as u64;
            if len < HEADER || pos + len > seg.size_bytes {
                return Err(corrupt(format!("batch at {pos} runs past the segment")));
            }
            if h.next_offset() <= offset {
                pos += len;
                continue;
            }
            match first {
                None => first = Some(pos),
                Some(f) if pos + len - f > max_bytes as u64 => break,
                Some(_) => {}
            }
            pos += len;
            if first.is_some_and(|f| pos - f >= max_bytes as u64) {
                break;
            }
        }
        // Read-ahead for a catching-up consumer: the next chunks are on their way before it
        // asks, so object-store latency overlaps with serving.
        let last_chunk = pos.saturating_sub(1) / chunk;
        for next in last_chunk + 1..=last_chunk + READ_AHEAD_CHUNKS {
            if next * chunk >= seg.size_bytes || self.cache.has(&seg.log_key, next) {
                continue;
            }
            let (store, cache, key, size) =
                (self.store.clone(), self.cache.clone(), seg.log_key.clone(), seg.size_bytes);
            tokio::spawn(async move {
                let _ = cache.chunk(&store, &key, next, size).await;
            });
        }
        match first {
            Some(f) => Ok(Some(self.range(seg, f, pos).await?)),
            None => {
                // Everything in this segment was below `offset`: try the next one.
                let rest: Vec<RemoteSegment> =
                    segments.iter().filter(|s| s.base_offset >= seg.end_offset).cloned().collect();
                Box::pin(self.read(&rest, offset.max(seg.end_offset), max_bytes)).await
            }
        }
    }
}

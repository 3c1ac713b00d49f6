//! A bounded cache of fixed-size chunks of remote objects, in two levels: memory (LRU by bytes)
//! over local disk (LRU by bytes, files under a cache directory). A chunk missing from both is
//! read from the object store, kept in memory and written to disk in the background.
//!
//! Concurrent readers of the same missing chunk share one download (a `OnceCell` per chunk
//! in flight), so read-ahead and the read it anticipates never fetch twice.
//!
//! Disk files are named by a counter, not by their key: each starts with a header naming its
//! object key, chunk index and length, checked on every read, so a file can never be served
//! for another chunk. Files are written to a temporary name and renamed, and the directory is
//! re-indexed at start, so the disk level survives restarts (objects are immutable: a chunk
//! is valid for as long as its key exists).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::{Store, TierError};

type Key = (String, u64);

/// Least-recently-used entries with a byte budget.
#[derive(Debug)]
struct Lru<K, V> {
    map: HashMap<K, (V, u64, u64)>,
    order: BTreeMap<u64, K>,
    bytes: u64,
    tick: u64,
    capacity_bytes: u64,
}

impl<K: Clone + Eq + Hash, V: Clone> Lru<K, V> {
    fn new(capacity_bytes: u64) -> Self {
        Self { map: HashMap::new(), order: BTreeMap::new(), bytes: 0, tick: 0, capacity_bytes }
    }

    fn get(&mut self, k: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (v, old) = self.map.get_mut(k).map(|(v, _, t)| {
            let old = *t;
            *t = tick;
            (v.clone(), old)
        })?;
        self.order.remove(&old);
        self.order.insert(tick, k.clone());
        Some(v)
    }

    fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    /// Inserts (unless present) and returns what was evicted to stay within the budget.
    fn insert(&mut self, k: K, v: V, size: u64) -> Vec<V> {
        if self.map.contains_key(&k) {
            return Vec::new();
        }
        self.tick += 1;
        let tick = self.tick;
        self.bytes += size;
        self.order.insert(tick, k.clone());
        self.map.insert(k, (v, size, tick));
        let mut evicted = Vec::new();
        while self.bytes > self.capacity_bytes {
            let Some((_, victim)) = self.order.pop_first() else { break };
            if let Some((v, size, _)) = self.map.remove(&victim) {
                self.bytes -= size;
                evicted.push(v);
            }
        }
        evicted
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let (v, size, tick) = self.map.remove(k)?;
        self.order.remove(&tick);
        self.bytes -= size;
        Some(v)
    }
}

const MAGIC: &[u8; 8] = b"KORACHK1";

fn encode_header(key: &str, index: u64, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + 4 + key.len() + 16);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(key.len() as u32).to_be_bytes());
    h.extend_from_slice(key.as_bytes());
    h.extend_from_slice(&index.to_be_bytes());
    h.extend_from_slice(&(len as u64).to_be_bytes());
    h
}

/// (key, index, data offset, data length) of a chunk file's contents.
fn decode_header(b: &[u8]) -> Option<(String, u64, usize, usize)> {
    if b.len() < 12 || &b[..8] != MAGIC {
        return None;
    }
    let klen = u32::from_be_bytes(b[8..12].try_into().ok()?) as usize;
    let rest = b.get(12..)?;
    let key = std::str::from_utf8(rest.get(..klen)?).ok()?.to_string();
    let tail = rest.get(klen..klen + 16)?;
    let index = u64::from_be_bytes(tail[..8].try_into().ok()?);
    let len = u64::from_be_bytes(tail[8..16].try_into().ok()?) as usize;
    Some((key, index, 12 + klen + 16, len))
}

/// The disk level: chunk files under `dir`, at most `capacity_bytes` of them.
#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    index: Mutex<Lru<Key, PathBuf>>,
    next_file: AtomicU64,
    /// Chunk files being written in the background.
    writing: AtomicU64,
}

impl Disk {
    /// Indexes what an earlier run left (oldest modification first), deleting anything that is
    /// not a whole chunk file.
    fn open(dir: &FsPath, capacity_bytes: u64) -> Result<Self, TierError> {
        let io = |e: std::io::Error| TierError::Io { path: dir.display().to_string(), source: e };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut found = Vec::new();
        let mut max_n = 0u64;
        for entry in std::fs::read_dir(dir).map_err(io)?.flatten() {
            let path = entry.path();
            let n = path
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.strip_suffix(".chunk"))
                .and_then(|f| f.parse::<u64>().ok());
            let meta = entry.metadata().ok();
            let header = n.and_then(|_| {
                use std::io::Read;
                let mut head = vec![0u8; 4096];
                let mut f = std::fs::File::open(&path).ok()?;
                let got = f.read(&mut head).ok()?;
                decode_header(&head[..got])
            });
            match (n, header, meta) {
                (Some(n), Some((key, index, at, len)), Some(meta)) if meta.len() == (at + len) as u64 => {
                    max_n = max_n.max(n);
                    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    found.push((modified, (key, index), path, meta.len()));
                }
                _ => {
                    // Torn writes (temporary files), foreign or damaged files.
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort_by_key(|f| f.0);
        let mut lru = Lru::new(capacity_bytes);
        for (_, key, path, size) in found {
            for victim in lru.insert(key, path, size) {
                let _ = std::fs::remove_file(victim);
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            index: Mutex::new(lru),
            next_file: AtomicU64::new(max_n + 1),
            writing: AtomicU64::new(0),
        })
    }

    async fn read(&self, k: &Key) -> Option<Bytes> {
        let path = self.index.lock().get(k)?;
        let raw = match tokio::fs::read(&path).await {
            Ok(raw) => raw,
            Err(_) => {
                // Evicted between the lookup and the read: a miss.
                self.index.lock().remove(k);
                return None;
            }
        };
        match decode_header(&raw) {
            Some((key, index, at, len)) if key == k.0 && index == k.1 && raw.len() == at + len => {
                Some(Bytes::from(raw).slice(at..))
            }
            _ => {
                tracing::warn!(path = %path.display(), "damaged remote-cache file dropped");
                self.index.lock().remove(k);
                let _ = tokio::fs::remove_file(&path).await;
                None
            }
        }
    }

    /// Writes a chunk file (temporary name, then rename), indexes it, deletes what it evicts.
    fn write(&self, k: Key, data: &Bytes) -> std::io::Result<()> {
        use std::io::Write;
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{n}.chunk"));
        let tmp = self.dir.join(format!("{n}.tmp"));
        let header = encode_header(&k.0, k.1, data.len());
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&header)?;
        f.write_all(data)?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        let size = (header.len() + data.len()) as u64;
        let evicted = self.index.lock().insert(k, path.clone(), size);
        for victim in evicted {
            let _ = std::fs::remove_file(victim);
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct ChunkCache {
    pub chunk_bytes: u64,
    memory: Mutex<Lru<Key, Bytes>>,
    inflight: Mutex<HashMap<Key, Arc<OnceCell<Bytes>>>>,
    disk: Option<Arc<Disk>>,
    hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    fetched_bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Chunks served from memory.
    pub hits: u64,
    /// Chunks served from the disk level.
    pub disk_hits: u64,
    /// Chunks read from the object store.
    pub misses: u64,
    pub cached_bytes: u64,
    pub disk_bytes: u64,
    pub fetched_bytes: u64,
}

impl ChunkCache {
    /// A memory-only cache.
    pub fn new(chunk_bytes: u64, capacity_bytes: u64) -> Self {
        assert!(chunk_bytes > 0, "chunks have a size");
        Self {
            chunk_bytes,
            memory: Mutex::new(Lru::new(capacity_bytes.max(chunk_bytes))),
            inflight: Mutex::new(HashMap::new()),
            disk: None,
            hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    /// Memory over a disk level in `dir` holding at most `disk_bytes` (0: no disk level).
    pub fn with_disk(
        chunk_bytes: u64,
        memory_bytes: u64,
        dir: &FsPath,
        disk_bytes: u64,
    ) -> Result<Self, TierError> {
        let mut c = Self::new(chunk_bytes, memory_bytes);
        if disk_bytes > 0 {
            c.disk = Some(Arc::new(Disk::open(dir, disk_bytes.max(chunk_bytes))?));
        }
        Ok(c)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            cached_bytes: self.memory.lock().bytes,
            disk_bytes: self.disk.as_ref().map_or(0, |d| d.index.lock().bytes),
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
        }
    }

    /// Chunk `index` of object `key` (of `object_size` bytes): from memory, local disk or the
    /// store.
    pub async fn chunk(
        &self,
        store: &Store,
        key: &str,
        index: u64,
        object_size: u64,
    ) -> Result<Bytes, TierError> {
        let k = (key.to_string(), index);
        if let Some(b) = self.memory.lock().get(&k) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(b);
        }
        let start = index * self.chunk_bytes;
        let end = (start + self.chunk_bytes).min(object_size);
        if start >= end {
            return Err(TierError::Corrupt {
                key: key.to_string(),
                reason: format!("chunk {index} is past the end"),
            });
        }
        let cell = self.inflight.lock().entry(k.clone()).or_default().clone();
        let got = cell
            .get_or_try_init(|| async {
                if let Some(disk) = &self.disk {
                    if let Some(b) = disk.read(&k).await {
                        if b.len() as u64 == end - start {
                            self.disk_hits.fetch_add(1, Ordering::Relaxed);
                            return Ok(b);
                        }
                    }
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                let b = store.inner.get_range(&Path::from(key), start..end).await?;
                self.fetched_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                if let Some(disk) = &self.disk {
                    // Off the read path: the reader has its bytes already.
                    let (disk, k, data) = (disk.clone(), k.clone(), b.clone());
                    disk.writing.fetch_add(1, Ordering::AcqRel);
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = disk.write(k, &data) {
                            tracing::warn!(error = %e, "writing a remote-cache file failed");
                        }
                        disk.writing.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                Ok::<Bytes, TierError>(b)
            })
            .await;
        match got {
            Ok(b) => {
                let b = b.clone();
                // In memory before it stops being in flight: read-ahead never sees a gap.
                let _ = self.memory.lock().insert(k.clone(), b.clone(), b.len() as u64);
                self.inflight.lock().remove(&k);
                Ok(b)
            }
            Err(e) => {
                self.inflight.lock().remove(&k);
                Err(e)
            }
        }
    }

    /// Chunk files still being written to the disk level.
    pub fn pending_disk_writes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.writing.load(Ordering::Acquire))
    }

    /// Whether a chunk is in memory or being fetched (read-ahead skips those).
    pub fn has(&self, key: &str, index: u64) -> bool {
        let k = (key.to_string(), index);
        self.memory.lock().contains(&k) || self.inflight.lock().contains_key(&k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_store(dir: &FsPath) -> Store {
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).expect("fs");
        Store { url: "file://test".into(), inner: Arc::new(fs), prefix: Path::from("") }
    }

    #[tokio::test]
    async fn chunks_come_from_memory_then_disk_then_the_store() {
        let objects = tempfile::tempdir().expect("tmp");
        let cache_dir = tempfile::tempdir().expect("tmp");
        let store = file_store(objects.path());
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        store.inner.put(&Path::from("a/seg.log"), body.clone().into()).await.expect("put");
        let c = ChunkCache::with_disk(4096, 4096, cache_dir.path(), 1 << 20).expect("cache");
        let c0 = c.chunk(&store, "a/seg.log", 0, 10_000).await.expect("chunk 0");
        assert_eq!(&c0[..], &body[..4096]);
        let c2 = c.chunk(&store, "a/seg.log", 2, 10_000).await.expect("chunk 2");
        assert_eq!(&c2[..], &body[8192..]);
        assert_eq!(c.stats().misses, 2);
        // Memory holds one chunk: chunk 0 went to disk only.
        for _ in 0..500 {
            if c.pending_disk_writes() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let again = c.chunk(&store, "a/seg.log", 0, 10_000).await.expect("chunk 0 again");
        assert_eq!(&again[..], &body[..4096]);
        assert_eq!((c.stats().misses, c.stats().disk_hits), (2, 1));
        // A new cache over the same directory (a restart) finds both on disk, even with the
        // objects gone from the store.
        drop(c);
        store.inner.delete(&Path::from("a/seg.log")).await.expect("delete");
        let c = ChunkCache::with_disk(4096, 4096, cache_dir.path(), 1 << 20).expect("reopen");
        let c2 = c.chunk(&store, "a/seg.log", 2, 10_000).await.expect("chunk 2 from disk");
        assert_eq!(&c2[..], &body[8192..]);
        assert_eq!((c.stats().misses, c.stats().disk_hits), (0, 1));
    }

    #[tokio::test]
    async fn the_disk_level_stays_within_its_budget_and_drops_damaged_files() {
        let objects = tempfile::tempdir().expect("tmp");
        let cache_dir = tempfile::tempdir().expect("tmp");
        let store = file_store(objects.path());
        let body = vec![5u8; 64 * 1024];
        store.inner.put(&Path::from("b.log"), body.clone().into()).await.expect("put");
        let c = ChunkCache::with_disk(4096, 4096, cache_dir.path(), 3 * 4200).expect("cache");
        for i in 0..16 {
            c.chunk(&store, "b.log", i, body.len() as u64).await.expect("chunk");
        }
        for _ in 0..500 {
            if c.pending_disk_writes() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(c.pending_disk_writes(), 0, "background writes finish");
        assert!(c.stats().disk_bytes <= 3 * 4200, "{:?}", c.stats());
        assert!(std::fs::read_dir(cache_dir.path()).expect("dir").count() <= 3);
        // Damage every file: reads fall back to the store and still return the right bytes.
        drop(c);
        for f in std::fs::read_dir(cache_dir.path()).expect("dir").flatten() {
            std::fs::write(f.path(), b"KORACHK1garbage").expect("damage");
        }
        let c = ChunkCache::with_disk(4096, 4096, cache_dir.path(), 3 * 4200).expect("reopen");
        assert_eq!(c.stats().disk_bytes, 0, "damaged files are not indexed");
        let got = c.chunk(&store, "b.log", 15, body.len() as u64).await.expect("chunk");
        assert_eq!(&got[..], &body[15 * 4096..]);
        assert_eq!(c.stats().misses, 1);
    }
}

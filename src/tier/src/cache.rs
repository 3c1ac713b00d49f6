//! A bounded cache of fixed-size chunks of remote objects, least recently used out first.
//!
//! Concurrent readers of the same missing chunk share one download (a `OnceCell` per chunk
//! in flight), so read-ahead and the read it anticipates never fetch twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::{Store, TierError};

type Key = (String, u64);

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, (Bytes, u64)>,
    order: BTreeMap<u64, Key>,
    bytes: u64,
    tick: u64,
    inflight: HashMap<Key, Arc<OnceCell<Bytes>>>,
}

#[derive(Debug)]
pub struct ChunkCache {
    pub chunk_bytes: u64,
    capacity_bytes: u64,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    fetched_bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub cached_bytes: u64,
    pub fetched_bytes: u64,
}

impl ChunkCache {
    pub fn new(chunk_bytes: u64, capacity_bytes: u64) -> Self {
        assert!(chunk_bytes > 0, "chunks have a size");
        Self {
            chunk_bytes,
            capacity_bytes: capacity_bytes.max(chunk_bytes),
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            cached_bytes: self.inner.lock().bytes,
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
        }
    }

    fn lookup(&self, k: &Key) -> Option<Bytes> {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let (b, old) = inner.map.get_mut(k).map(|(b, t)| {
            let old = *t;
            *t = tick;
            (b.clone(), old)
        })?;
        inner.order.remove(&old);
        inner.order.insert(tick, k.clone());
        Some(b)
    }

    fn insert(&self, k: Key, b: Bytes) {
        let mut inner = self.inner.lock();
        inner.inflight.remove(&k);
        if inner.map.contains_key(&k) {
            return;
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.bytes += b.len() as u64;
        inner.order.insert(tick, k.clone());
        inner.map.insert(k, (b, tick));
        while inner.bytes > self.capacity_bytes {
            let Some((_, victim)) = inner.order.pop_first() else { break };
            if let Some((b, _)) = inner.map.remove(&victim) {
                inner.bytes -= b.len() as u64;
            }
        }
    }

    /// Chunk `index` of object `key` (of `object_size` bytes), from the cache or the store.
    pub async fn chunk(
        &self,
        store: &Store,
        key: &str,
        index: u64,
        object_size: u64,
    ) -> Result<Bytes, TierError> {
        let k = (key.to_string(), index);
        if let Some(b) = self.lookup(&k) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(b);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let cell = self.inner.lock().inflight.entry(k.clone()).or_default().clone();
        let start = index * self.chunk_bytes;
        let end = (start + self.chunk_bytes).min(object_size);
        if start >= end {
            return Err(TierError::Corrupt {
                key: key.to_string(),
                reason: format!("chunk {index} is past the end"),
            });
        }
        let path = Path::from(key);
        let got = cell
            .get_or_try_init(|| async {
                let b = store.inner.get_range(&path, start..end).await?;
                self.fetched_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok::<Bytes, TierError>(b)
            })
            .await;
        match got {
            Ok(b) => {
                let b = b.clone();
                self.insert(k, b.clone());
                Ok(b)
            }
            Err(e) => {
                self.inner.lock().inflight.remove(&k);
                Err(e)
            }
        }
    }

    /// Whether a chunk is cached or being fetched (read-ahead skips those).
    pub fn has(&self, key: &str, index: u64) -> bool {
        let k = (key.to_string(), index);
        let inner = self.inner.lock();
        inner.map.contains_key(&k) || inner.inflight.contains_key(&k)
    }
}

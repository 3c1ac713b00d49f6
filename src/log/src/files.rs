//! Segment files opened on demand, at most [`max_open_files`] at once in this process.
//!
//! A partition's log keeps a handle ([`SegmentFile`]) per segment, not an open file: the file is
//! opened on first use and closed again when the process holds too many (least recently used
//! first). 100,000 partitions need 100,000 segment files, more than a process may usually keep
//! open. An evicted file is simply reopened by path on its next use; anyone still using it holds
//! the open file (an `Arc<File>`) until done.
//!
//! Rule for callers: turn a handle into an open file while holding the partition's lock, since
//! a segment may be replaced (compaction renames over its path) or deleted once the lock is
//! released; the open file keeps reading what it opened.
//!
//! Closing a file does not lose unsynced writes: they stay in the page cache and a later fsync
//! through a new descriptor makes them durable.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;

use crate::{io_err, LogError};

/// Open files kept per process when nothing set a limit.
const DEFAULT_MAX_OPEN: usize = 8192;

struct Registry {
    open: Mutex<HashMap<u64, Weak<SegmentFile>>>,
    max: AtomicUsize,
    next_id: AtomicU64,
    tick: AtomicU64,
    reopened: AtomicU64,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    open: Mutex::new(HashMap::new()),
    max: AtomicUsize::new(DEFAULT_MAX_OPEN),
    next_id: AtomicU64::new(1),
    tick: AtomicU64::new(1),
    reopened: AtomicU64::new(0),
});

/// Sets how many segment files this process keeps open at once (at least 16). A process-wide
/// limit, as the file descriptors it guards are.
pub fn set_max_open_files(max: usize) {
    REGISTRY.max.store(max.max(16), Ordering::Release);
}

pub fn max_open_files() -> usize {
    REGISTRY.max.load(Ordering::Acquire)
}

/// Segment files open now, and how many times an evicted one was opened again.
pub fn open_files_stats() -> (usize, u64) {
    (REGISTRY.open.lock().len(), REGISTRY.reopened.load(Ordering::Relaxed))
}

/// One segment file: its path, and the open file while the cache keeps it.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    path: PathBuf,
    id: u64,
    slot: Mutex<Option<Arc<File>>>,
    last_use: AtomicU64,
}

impl SegmentFile {
    /// A handle for a file just opened (or created) by the caller.
    pub(crate) fn with_open(path: &Path, file: File) -> Arc<Self> {
        let f = Arc::new(SegmentFile {
            path: path.to_path_buf(),
            id: REGISTRY.next_id.fetch_add(1, Ordering::Relaxed),
            slot: Mutex::new(Some(Arc::new(file))),
            last_use: AtomicU64::new(REGISTRY.tick.fetch_add(1, Ordering::Relaxed)),
        });
        register(&f);
        f
    }

    /// The open file, opening it again if it was closed to stay under the limit.
    pub(crate) fn get(self: &Arc<Self>) -> Result<Arc<File>, LogError> {
        self.last_use.store(REGISTRY.tick.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        if let Some(f) = self.slot.lock().as_ref() {
            return Ok(f.clone());
        }
        // O_APPEND as at creation: writes land at the end, also after a truncation.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io_err(e, format!("reopen {}", self.path.display())))?;
        let file = Arc::new(file);
        {
            let mut slot = self.slot.lock();
            if let Some(f) = slot.as_ref() {
                return Ok(f.clone());
            }
            *slot = Some(file.clone());
        }
        REGISTRY.reopened.fetch_add(1, Ordering::Relaxed);
        register(self);
        Ok(file)
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        REGISTRY.open.lock().remove(&self.id);
    }
}

/// Records `f` as open; past the limit, closes the least recently used eighth.
fn register(f: &Arc<SegmentFile>) {
    let mut open = REGISTRY.open.lock();
    open.insert(f.id, Arc::downgrade(f));
    let max = REGISTRY.max.load(Ordering::Acquire);
    if open.len() <= max {
        return;
    }
    let mut live: Vec<(u64, u64, Arc<SegmentFile>)> = Vec::with_capacity(open.len());
    open.retain(|_, w| match w.upgrade() {
        Some(s) => {
            live.push((s.last_use.load(Ordering::Relaxed), s.id, s));
            true
        }
        None => false,
    });
    if live.len() <= max {
        return;
    }
    live.sort_unstable_by_key(|(t, _, _)| *t);
    let target = max - max / 8;
    let excess = live.len() - target;
    for (_, id, s) in live.into_iter().filter(|(_, id, _)| *id != f.id).take(excess) {
        // Holders of the open file keep it until they are done.
        s.slot.lock().take();
        open.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_close_past_the_limit_and_reopen_on_use() {
        let dir = tempfile::tempdir().expect("tmp");
        let handles: Vec<Arc<SegmentFile>> = (0..40)
            .map(|i| {
                let path = dir.path().join(format!("{i}.log"));
                std::fs::write(&path, format!("file {i}")).expect("write");
                SegmentFile::with_open(&path, File::open(&path).expect("open"))
            })
            .collect();
        let open_now = handles.iter().filter(|h| h.slot.lock().is_some()).count();
        // Other tests in this process share the limit: only check these files' own state.
        assert!(open_now <= 40);
        set_max_open_files(16);
        let extra_path = dir.path().join("extra.log");
        std::fs::write(&extra_path, "extra").expect("write");
        let extra = SegmentFile::with_open(&extra_path, File::open(&extra_path).expect("open"));
        let open_now = handles.iter().filter(|h| h.slot.lock().is_some()).count();
        assert!(open_now < 16, "the oldest were closed: {open_now} still open");
        // A closed file reads back through its handle.
        let f = handles[0].get().expect("reopen");
        let mut buf = String::new();
        use std::io::Read;
        (&*f).read_to_string(&mut buf).expect("read");
        assert_eq!(buf, "file 0");
        assert!(extra.slot.lock().is_some());
        set_max_open_files(DEFAULT_MAX_OPEN);
    }
}

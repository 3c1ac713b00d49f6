//! The partitions on one broker's disk: `<root>/<topic>-<partition>/`.
//!
//! Each partition directory carries `partition.metadata` with the topic id, so a directory left
//! by a deleted topic is never mistaken for a new topic of the same name. `<root>/.clean-shutdown`
//! is written after every log closed cleanly and removed at start, so its presence means the
//! previous stop left nothing to recover.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kora_common::{Clock, TopicConfig};
use parking_lot::RwLock;

use crate::log::PartitionLog;
use crate::{io_err, LogError};

const CLEAN_MARKER: &str = ".clean-shutdown";
const TOPIC_ID_FILE: &str = "partition.metadata";

/// A partition the metadata says this broker hosts.
#[derive(Debug, Clone)]
pub struct PartitionSpec {
    pub topic: String,
    pub topic_id: String,
    pub partition: i32,
    pub config: TopicConfig,
}

type Key = (String, i32);

#[derive(Debug)]
pub struct LogManager {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    clean_start: bool,
    logs: RwLock<HashMap<Key, Arc<PartitionLog>>>,
}

impl LogManager {
    pub fn open(root: &Path, clock: Arc<dyn Clock>) -> Result<Self, LogError> {
        fs::create_dir_all(root).map_err(|e| io_err(e, format!("create {}", root.display())))?;
        let marker = root.join(CLEAN_MARKER);
        let clean_start = marker.exists();
        if clean_start {
            fs::remove_file(&marker).map_err(|e| io_err(e, "remove clean-shutdown marker"))?;
        }
        Ok(Self { root: root.to_path_buf(), clock, clean_start, logs: RwLock::new(HashMap::new()) })
    }

    /// The directory every partition's log lives under (Kafka's log dir).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn clean_start(&self) -> bool {
        self.clean_start
    }

    fn dir_for(&self, topic: &str, partition: i32) -> PathBuf {
        self.root.join(format!("{topic}-{partition}"))
    }

    /// Opens every partition in `specs` (creating missing ones) on `threads` threads, and
    /// removes directories that belong to no partition in `specs`.
    pub fn load(&self, specs: Vec<PartitionSpec>, threads: usize) -> Result<(), LogError> {
        let wanted: HashMap<PathBuf, &PartitionSpec> =
            specs.iter().map(|s| (self.dir_for(&s.topic, s.partition), s)).collect();
        let rd = fs::read_dir(&self.root).map_err(|e| io_err(e, "list log dir"))?;
        for ent in rd.flatten() {
            let path = ent.path();
            if !path.is_dir() {
                continue;
            }
            let stale = match wanted.get(&path) {
                None => true,
                Some(spec) => read_topic_id(&path).is_some_and(|id| id != spec.topic_id),
            };
            if stale {
                tracing::info!(dir = %path.display(), "removing log of a deleted topic");
                fs::remove_dir_all(&path).map_err(|e| io_err(e, format!("remove {}", path.display())))?;
            }
        }
        let chunks: Vec<Vec<PartitionSpec>> = {
            let n = threads.max(1);
            let mut c = vec![Vec::new(); n];
            for (i, s) in specs.into_iter().enumerate() {
                c[i % n].push(s);
            }
            c
        };
        let results: Vec<Result<Vec<(Key, PartitionLog)>, LogError>> = std::thread::scope(|sc| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    sc.spawn(move || {
                        let mut out = Vec::with_capacity(chunk.len());
                        for s in chunk {
                            let log = self.open_one(&s)?;
                            out.push(((s.topic.clone(), s.partition), log));
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| Err(LogError::Corrupt("log loader thread panicked".into())))
                })
                .collect()
        });
        let mut logs = self.logs.write();
        for r in results {
            for (k, log) in r? {
                logs.insert(k, Arc::new(log));
            }
        }
        Ok(())
    }

    fn open_one(&self, s: &PartitionSpec) -> Result<PartitionLog, LogError> {
        let dir = self.dir_for(&s.topic, s.partition);
        fs::create_dir_all(&dir).map_err(|e| io_err(e, format!("create {}", dir.display())))?;
        if read_topic_id(&dir).is_none() {
            let body = format!("version: 0\ntopic_id: {}\n", s.topic_id);
            crate::segment::write_atomic(&dir.join(TOPIC_ID_FILE), body.as_bytes())?;
        }
        PartitionLog::open(&dir, s.config.clone(), self.clock.clone(), self.clean_start)
    }

    /// Opens (or creates) one partition and registers it.
    pub fn create(&self, spec: &PartitionSpec) -> Result<Arc<PartitionLog>, LogError> {
        if let Some(l) = self.get(&spec.topic, spec.partition) {
            return Ok(l);
        }
        let log = Arc::new(self.open_one(spec)?);
        self.logs.write().insert((spec.topic.clone(), spec.partition), log.clone());
        Ok(log)
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.logs.read().get(&(topic.to_string(), partition)).cloned()
    }

    pub fn all(&self) -> Vec<(String, i32, Arc<PartitionLog>)> {
        self.logs.read().iter().map(|((t, p), l)| (t.clone(), *p, l.clone())).collect()
    }

    /// Forgets every partition of `topic` and deletes its directories.
    pub fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        self.delete_where(|t, _| t == topic)
    }

    /// Forgets one partition and deletes its directory (its replica moved elsewhere).
    pub fn delete_partition(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        self.delete_where(|t, p| t == topic && p == partition)
    }

    fn delete_where(&self, doomed: impl Fn(&str, i32) -> bool) -> Result<(), LogError> {
        let removed: Vec<Arc<PartitionLog>> = {
            let mut logs = self.logs.write();
            let keys: Vec<Key> = logs.keys().filter(|(t, p)| doomed(t, *p)).cloned().collect();
            keys.into_iter().filter_map(|k| logs.remove(&k)).collect()
        };
        for log in removed {
            let dir = log.dir().to_path_buf();
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e, format!("remove {}", dir.display()))),
            }
        }
        Ok(())
    }

    /// Closes every log and marks the shutdown clean if all closed.
    pub fn shutdown(&self) -> Result<(), LogError> {
        // Closing is fsync-bound: several threads, as loading uses.
        const CLOSE_THREADS: usize = 8;
        let all = self.all();
        let chunk = all.len().div_ceil(CLOSE_THREADS).max(1);
        let errors: Vec<LogError> = std::thread::scope(|sc| {
            let handles: Vec<_> = all
                .chunks(chunk)
                .map(|part| {
                    sc.spawn(move || {
                        let mut errs = Vec::new();
                        for (_, _, log) in part {
                            if let Err(e) = log.close() {
                                tracing::error!(dir = %log.dir().display(), error = %e, "closing log failed");
                                errs.push(e);
                            }
                        }
                        errs
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| vec![LogError::Corrupt("log close thread panicked".into())])
                })
                .collect()
        });
        let first_err = errors.into_iter().next();
        match first_err {
            Some(e) => Err(e),
            None => {
                crate::segment::write_atomic(&self.root.join(CLEAN_MARKER), b"")?;
                Ok(())
            }
        }
    }
}

fn read_topic_id(dir: &Path) -> Option<String> {
    let s = fs::read_to_string(dir.join(TOPIC_ID_FILE)).ok()?;
    s.lines().find_map(|l| l.strip_prefix("topic_id: ").map(|v| v.trim().to_string()))
}

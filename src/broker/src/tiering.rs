//! The tier manager: uploads closed segments of `remote.storage.enable` topics to the object
//! store, records them in the remote manifest (metadata), trims local disk to
//! local.retention.*, applies retention.* over both tiers, and sweeps orphaned objects.
//!
//! Order of effects, so that a crash at any point loses nothing and exposes nothing partial:
//! upload objects → commit the manifest entry → only then delete local segments. For retention:
//! remove manifest entries → move the log start offset → only then delete objects. An upload
//! interrupted before its manifest commit leaves orphans, which the sweep deletes (at start
//! every unreferenced object; later only ones older than `ORPHAN_MIN_AGE`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kora_common::Clock;
use kora_log::PartitionLog;
use kora_meta::RemoteSegment;
use kora_tier::{ChunkCache, RemoteReader, Store, UploadLimits};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use tokio::sync::{watch, Semaphore};

use crate::metrics::{Metrics, PartitionLabels};
use crate::view::View;

/// Objects younger than this may belong to an upload in flight.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(600);
/// How often the orphan sweep runs after the first one at start.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Longest pause between upload attempts of a partition whose uploads fail.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Tiering settings (Kafka's names where Kafka has one).
#[derive(Debug, Clone)]
pub struct TieringConfig {
    /// object_store.url
    pub url: String,
    /// Provider settings by environment name (AWS_ENDPOINT, ...), read by the binary.
    pub options: std::collections::BTreeMap<String, String>,
    /// remote.log.manager.task.interval.ms
    pub task_interval_ms: u64,
    /// remote.log.manager.copier.thread.pool.size: uploads in flight.
    pub upload_concurrency: usize,
    /// remote.log.manager.copy.max.bytes.per.second (0: unlimited)
    pub upload_bytes_per_second: u64,
    /// remote.log.reader.cache.bytes (Kora): local disk for chunks read from the store (0: none).
    pub cache_bytes: u64,
    /// remote.log.reader.memory.bytes (Kora): memory for chunks read from the store.
    pub memory_bytes: u64,
    /// remote.log.reader.chunk.bytes (Kora)
    pub chunk_bytes: u64,
    /// remote.fetch.max.wait.ms: longest a fetch waits for an object-store read.
    pub fetch_max_wait_ms: u64,
}

#[derive(Debug)]
pub struct Tiering {
    pub store: Store,
    pub reader: RemoteReader,
    limits: UploadLimits,
    config: TieringConfig,
    backoff: parking_lot::Mutex<HashMap<(String, i32), (Instant, Duration)>>,
    /// The broker's clock: upload back-off, bandwidth windows and the orphan sweep's age.
    clock: Arc<dyn Clock>,
}

impl Tiering {
    pub fn fetch_max_wait_ms(&self) -> u64 {
        self.config.fetch_max_wait_ms
    }

    /// Opens the store and checks it can write, read and delete; the read cache's disk level
    /// lives in `cache_dir`.
    pub async fn open(
        config: TieringConfig,
        cache_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, kora_tier::TierError> {
        let store = kora_tier::open_store(&config.url, &config.options)?;
        kora_tier::probe(&store).await?;
        let cache = Arc::new(ChunkCache::with_disk(
            config.chunk_bytes,
            config.memory_bytes,
            cache_dir,
            config.cache_bytes,
        )?);
        Ok(Tiering {
            reader: RemoteReader::new(store.clone(), cache),
            store,
            limits: UploadLimits::new(config.upload_bytes_per_second, clock.clone()),
            config,
            backoff: parking_lot::Mutex::new(HashMap::new()),
            clock,
        })
    }
}

/// The tier manager's handles: the tier itself, the logs it uploads from and trims, the
/// metadata view (manifests, leadership, controller calls), metrics and the clock.
#[derive(Debug)]
pub struct TierManager {
    pub tiering: Arc<Tiering>,
    logs: Arc<kora_log::LogManager>,
    view: View,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl TierManager {
    pub fn new(
        tiering: Arc<Tiering>,
        logs: Arc<kora_log::LogManager>,
        view: View,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { tiering, logs, view, metrics, clock }
    }
}

fn ready(t: &Tiering, key: &(String, i32)) -> bool {
    let now = t.clock.now();
    t.backoff.lock().get(key).is_none_or(|(at, _)| now >= *at)
}

fn failed(t: &Tiering, key: (String, i32)) {
    let mut b = t.backoff.lock();
    let delay = b.get(&key).map(|(_, d)| (*d * 2).min(MAX_BACKOFF)).unwrap_or(Duration::from_millis(500));
    b.insert(key, (t.clock.now() + delay, delay));
}

/// Uploads what is due for one partition, then trims local disk. Returns bytes uploaded.
async fn upload_partition(
    b: &Arc<TierManager>,
    t: &Tiering,
    topic: &str,
    partition: i32,
    log: Arc<PartitionLog>,
) -> Result<u64, String> {
    let image = b.view.controller.image();
    let Some(topic_image) = image.topic(topic) else { return Ok(0) };
    let topic_id = topic_image.topic_id;
    let manifest = image.remote_segments(&topic_id, partition);
    let remote_end = manifest.last().map(|s| s.end_offset).unwrap_or(0).max(log.offsets().log_start_offset);
    let mut uploaded = 0;
    let mut end = remote_end;
    // In a cell only the leader uploads, and only what every in-sync replica has (a follower
    // just trims what the manifest holds).
    let leads = b.view.leadership_error(topic, partition).is_none();
    let hw = log.high_watermark();
    for seg in log.closed_segments(remote_end) {
        if !leads || seg.next_offset > hw {
            break;
        }
        let started = b.clock.now();
        let entry = kora_tier::upload_segment(&t.store, &seg, topic, &topic_id, partition, 0, &t.limits)
            .await
            .map_err(|e| e.to_string())?;
        let committed = entry.clone();
        b.view
            .call(move |c| c.add_remote_segment(topic_id, partition, committed))
            .await
            .map_err(|e| e.to_string())?;
        uploaded += seg.size_bytes;
        end = seg.next_offset;
        b.metrics.remote_bytes_uploaded.inc_by(seg.size_bytes);
        b.metrics.remote_upload_seconds.observe(b.clock.elapsed(started).as_secs_f64());
        tracing::debug!(%topic, partition, base = seg.base_offset, bytes = seg.size_bytes, key = %entry.log_key, "segment uploaded");
    }
    let log2 = log.clone();
    let deleted = tokio::task::spawn_blocking(move || log2.delete_uploaded(end))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if deleted > 0 {
        tracing::debug!(%topic, partition, segments = deleted, "local segments trimmed after upload");
    }
    Ok(uploaded)
}

/// retention.ms / retention.bytes over both tiers: drops the oldest remote segments, moves the
/// log start past them, then deletes their objects.
async fn remote_retention(
    b: &Arc<TierManager>,
    t: &Tiering,
    topic: &str,
    partition: i32,
    log: &Arc<PartitionLog>,
) -> Result<(), String> {
    let image = b.view.controller.image();
    let Some(topic_image) = image.topic(topic) else { return Ok(()) };
    let topic_id = topic_image.topic_id;
    let manifest: Vec<RemoteSegment> = image.remote_segments(&topic_id, partition).to_vec();
    let Some(first) = manifest.first() else { return Ok(()) };
    // A log start that an earlier pass failed to move past removed segments moves now.
    if first.base_offset > log.offsets().log_start_offset {
        let (log2, to) = (log.clone(), first.base_offset);
        tokio::task::spawn_blocking(move || log2.delete_records_before(to))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let cfg = log.config();
    let now = b.clock.now_ms();
    let remote_end = manifest.last().map(|s| s.end_offset).unwrap_or(0);
    let mut total: u64 = manifest.iter().map(|s| s.size_bytes).sum::<u64>() + log.bytes_after(remote_end).0;
    let mut doomed = Vec::new();
    for s in &manifest {
        let too_old = cfg.retention_ms >= 0 && s.max_timestamp < now - cfg.retention_ms;
        let too_big = cfg.retention_bytes >= 0 && total - s.size_bytes >= cfg.retention_bytes as u64;
        if !(too_old || too_big) {
            break;
        }
        total -= s.size_bytes;
        doomed.push(s.clone());
    }
    let Some(last) = doomed.last() else { return Ok(()) };
    let new_start = last.end_offset;
    let bases: Vec<i64> = doomed.iter().map(|s| s.base_offset).collect();
    b.view
        .call(move |c| c.remove_remote_segments(topic_id, partition, bases))
        .await
        .map_err(|e| e.to_string())?;
    let log2 = log.clone();
    if new_start > log.offsets().log_start_offset {
        // The manifest no longer names the objects, so no reader can reach them whatever
        // happens here: a failure to move the log start is reported and retried on the next
        // pass, and the objects go now rather than waiting for the orphan sweep.
        match tokio::task::spawn_blocking(move || log2.delete_records_before(new_start)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(%topic, partition, error = %e, "moving the log start failed"),
            Err(e) => tracing::warn!(%topic, partition, error = %e, "moving the log start failed"),
        }
    }
    for s in doomed {
        for key in s.keys() {
            match t.store.inner.delete(&Path::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                // The manifest no longer refers to it: the sweep retries.
                Err(e) => tracing::warn!(%key, error = %e, "deleting a remote object failed"),
            }
        }
        b.metrics.remote_bytes_deleted.inc_by(s.size_bytes);
    }
    tracing::info!(%topic, partition, new_start, "remote retention removed segments");
    Ok(())
}

async fn sweep(b: &Arc<TierManager>, t: &Tiering, min_age: Duration) {
    let image = b.view.controller.image();
    let referenced: HashSet<String> = image
        .remote
        .values()
        // Every key a segment names (RemoteSegment::keys), snapshots included: an earlier
        // version listed three of the four here and the start-up sweep deleted every
        // producer snapshot as an orphan.
        .flat_map(|segs| {
            segs.iter().flat_map(|s| s.keys().into_iter().map(str::to_string).collect::<Vec<_>>())
        })
        .collect();
    match kora_tier::sweep_orphans(&t.store, &referenced, min_age, &*t.clock).await {
        Ok((0, _)) => {}
        Ok((n, bytes)) => {
            b.metrics.remote_bytes_deleted.inc_by(bytes);
            tracing::info!(objects = n, bytes, "deleted orphaned remote objects");
        }
        Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
    }
}

/// The manager's loop: every remote.log.manager.task.interval.ms, upload and trim every
/// tiered partition (bounded concurrency), apply retention, refresh lag gauges.
pub(crate) async fn run(b: Arc<TierManager>, mut shutdown: watch::Receiver<bool>) {
    let t = b.tiering.clone();
    sweep(&b, &t, Duration::ZERO).await;
    let mut last_sweep = b.clock.now();
    let period = Duration::from_millis(t.config.task_interval_ms);
    let slots = Arc::new(Semaphore::new(t.config.upload_concurrency.max(1)));
    loop {
        tokio::select! {
            _ = b.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (topic, partition, log) in b.logs.all() {
            if !log.config().remote_storage_enable || crate::groups::is_internal(&topic) {
                continue;
            }
            let key = (topic.clone(), partition);
            if !ready(&t, &key) {
                continue;
            }
            let (b, t, slots) = (b.clone(), t.clone(), slots.clone());
            tasks.spawn(async move {
                let Ok(_permit) = slots.acquire_owned().await else { return };
                match upload_partition(&b, &t, &topic, partition, log.clone()).await {
                    Ok(_) => {
                        t.backoff.lock().remove(&key);
                    }
                    Err(e) => {
                        tracing::warn!(%topic, partition, error = %e, "upload failed; retrying with backoff");
                        b.metrics.remote_upload_errors.inc();
                        failed(&t, key);
                    }
                }
                if b.view.leadership_error(&topic, partition).is_some() {
                    return;
                }
                if let Err(e) = remote_retention(&b, &t, &topic, partition, &log).await {
                    tracing::warn!(%topic, partition, error = %e, "remote retention failed");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        if b.clock.elapsed(last_sweep) >= SWEEP_EVERY {
            sweep(&b, &t, ORPHAN_MIN_AGE).await;
            last_sweep = b.clock.now();
        }
    }
}

/// Upload lag gauges: bytes and age of local data not yet in the object store. Computed when
/// /metrics is scraped, so they are current even while a long upload backlog drains.
pub(crate) fn refresh_lag(b: &TierManager) {
    let image = b.view.controller.image();
    b.metrics.remote_upload_lag_bytes.clear();
    b.metrics.remote_upload_lag_seconds.clear();
    b.metrics.remote_bytes.clear();
    for (topic, partition, log) in b.logs.all() {
        if !log.config().remote_storage_enable {
            continue;
        }
        let Some(ti) = image.topic(&topic) else { continue };
        let segs = image.remote_segments(&ti.topic_id, partition);
        let remote_end = segs.last().map(|s| s.end_offset).unwrap_or(0);
        // The active segment is never uploaded; only closed segments count as lag.
        let closed: u64 = log.closed_segments(remote_end).iter().map(|s| s.size_bytes).sum();
        let (_, age_ms) = log.bytes_after(remote_end);
        let l = PartitionLabels { topic: topic.clone(), partition: partition.to_string() };
        b.metrics.remote_upload_lag_bytes.get_or_create(&l).set(closed as i64);
        b.metrics.remote_upload_lag_seconds.get_or_create(&l).set(if closed > 0 { age_ms / 1000 } else { 0 });
        b.metrics.remote_bytes.get_or_create(&l).set(segs.iter().map(|s| s.size_bytes).sum::<u64>() as i64);
    }
}

//! The broker: wires metadata, logs, the Kafka listener and the admin endpoint together, and
//! runs the background work (metadata → logs sync, retention, time-based flush).

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kora_common::{Clock, TopicConfig};
use kora_log::{LogManager, PartitionSpec};
use kora_meta::controller::ControllerConfig;
use kora_meta::{Controller, MetaError, MetadataImage};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::metrics::Metrics;

/// Producer ids reserved from the controller at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// How long a broker keeps answering after its controlled shutdown moved its partitions.
const CONTROLLED_SHUTDOWN_DRAIN: Duration = Duration::from_millis(500);
/// Threads that open partition logs at start-up.
const LOG_LOAD_THREADS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("logs: {0}")]
    Log(#[from] kora_log::LogError),
    #[error("{0}")]
    ObjectStore(#[from] kora_tier::TierError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("metadata quorum: {0}")]
    Quorum(#[from] kora_quorum::QuorumError),
}

/// A partition's current leader, for KIP-951 responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaderHint {
    pub leader_id: i32,
    pub leader_epoch: i32,
    /// (host, port, rack) when the leader is a live broker.
    pub endpoint: Option<(String, u16, Option<String>)>,
}

/// What `apply_image` last applied for a topic.
type AppliedTopic = Arc<kora_meta::TopicImage>;

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub controller: Arc<Controller>,
    /// The metadata quorum: a single in-process voter, or this broker's learner of its cell's
    /// quorum.
    pub quorum: Arc<kora_quorum::Quorum>,
    /// This run of the broker (new at every start), as registered with the cell.
    pub incarnation: uuid::Uuid,
    pub logs: Arc<LogManager>,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    /// The group coordinator (every group: a single-node cell coordinates them all).
    pub groups: Arc<kora_group::Coordinator>,
    /// The object-store tier, when `object_store.url` is set.
    pub tiering: Option<Arc<crate::tiering::Tiering>>,
    pub(crate) sessions: Mutex<FetchSessionCache>,
    /// Leader and follower roles of this broker's partitions in a cell, and the fetchers.
    pub replication: crate::replication::Replication,
    /// Injected faults (tests of whole cells; inert unless fault.injection.enable).
    pub faults: Arc<crate::faults::Faults>,
    /// `__consumer_offsets` partitions whose groups are being loaded (cells).
    pub(crate) group_loads: Mutex<std::collections::HashSet<i32>>,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Topic id and config overrides of every topic the logs reflect; guards `apply_image`.
    sync_lock: Mutex<HashMap<String, AppliedTopic>>,
    shutting_down: AtomicBool,
    /// A controlled shutdown began: no more heartbeats (they would bring this run back).
    pub(crate) leaving_cell: AtomicBool,
    /// A creation of `__consumer_offsets` is under way (cells create it on demand).
    creating_offsets_topic: Arc<AtomicBool>,
    _dir_lock: File,
}

/// A running broker and its tasks.
pub struct BrokerHandle {
    pub broker: Arc<Broker>,
    pub kafka_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock_data_dir(dir: &Path) -> Result<File, StartError> {
    let err = |message: String| StartError::DataDir { path: dir.display().to_string(), message };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let f = File::create(dir.join(".lock")).map_err(|e| err(format!("create lock file: {e}")))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(err("in use by another kora process".into())),
        Err(std::fs::TryLockError::Error(e)) => Err(err(format!("lock: {e}"))),
    }
}

impl Broker {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Runs a blocking controller call off the async workers.
    pub(crate) async fn meta<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Controller) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let c = self.controller.clone();
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .map_err(|e| MetaError::Store(format!("metadata task failed: {e}")))?
    }

    /// Effective config of a topic; falls back to broker defaults if its stored overrides no
    /// longer validate (they were valid when committed).
    pub fn topic_config(&self, overrides: &std::collections::BTreeMap<String, String>) -> TopicConfig {
        self.controller.topic_config(overrides).unwrap_or_else(|e| {
            tracing::error!(error = %e, "stored topic config no longer valid; using broker defaults");
            self.controller.topic_config(&Default::default()).unwrap_or_default()
        })
    }

    /// Makes the logs match `image`: creates new partitions, deletes removed topics, pushes
    /// config changes. Idempotent; serialised so concurrent callers do not race.
    pub fn apply_image(&self, image: &MetadataImage) -> Result<(), kora_log::LogError> {
        let mut known = self.sync_lock.lock();
        // Topics that went away, or came back with a new id.
        let gone: Vec<String> = known
            .iter()
            .filter(|(name, k)| image.topic(name).is_none_or(|t| t.topic_id != k.topic_id))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.logs.delete_topic(&name)?;
            known.remove(&name);
            tracing::info!(topic = %name, "deleted topic logs");
        }
        for (name, t) in &image.topics {
            // Unchanged topics (the same image) need nothing: a change costs what it touched.
            if known.get(name).is_some_and(|k| Arc::ptr_eq(k, t)) {
                continue;
            }
            let cfg_changed = known.get(name).is_none_or(|k| k.configs != t.configs);
            let config = self.topic_config(&t.configs);
            for p in 0..t.partitions {
                // In a cell a broker keeps only the partitions it holds a replica of; one that
                // moved away (a completed reassignment) is deleted here.
                if !t.hosts(p, self.config.node_id) {
                    if self.logs.get(name, p).is_some() {
                        self.logs.delete_partition(name, p)?;
                        tracing::info!(topic = %name, partition = p, "replica moved away; deleted its log");
                    }
                    continue;
                }
                match self.logs.get(name, p) {
                    Some(log) if cfg_changed => log.set_config(config.clone()),
                    Some(_) => {}
                    None => {
                        self.logs.create(&PartitionSpec {
                            topic: name.clone(),
                            topic_id: t.topic_id.to_string(),
                            partition: p,
                            config: config.clone(),
                        })?;
                    }
                }
            }
            known.insert(name.clone(), t.clone());
        }
        Ok(())
    }

    /// Why this broker cannot serve `partition` of `topic` to clients (a Kafka error code), or
    /// None when it leads it.
    pub(crate) fn leadership_error(&self, topic: &str, partition: i32) -> Option<i16> {
        use kafka_protocol::error::ResponseError;
        let image = self.controller.image();
        match image.topic(topic) {
            Some(t) if partition >= 0 && partition < t.partitions => {
                (!t.leads(partition, self.config.node_id)).then(|| ResponseError::NotLeaderOrFollower.code())
            }
            _ => Some(ResponseError::UnknownTopicOrPartition.code()),
        }
    }

    /// Whether this broker holds a follower replica of the partition (in a cell).
    pub(crate) fn follows(&self, topic: &str, partition: i32) -> bool {
        let image = self.controller.image();
        let me = self.config.node_id;
        image
            .topic(topic)
            .and_then(|t| t.partition(partition))
            .is_some_and(|s| s.leader != me && s.replicas.contains(&me))
    }

    /// KIP-392: for a consumer in `rack`, an in-sync follower in that rack, when this broker
    /// leads the partition and is not in the rack itself.
    pub(crate) fn preferred_read_replica(&self, topic: &str, partition: i32, rack: &str) -> Option<i32> {
        let image = self.controller.image();
        let me = self.config.node_id;
        let s = image.topic(topic)?.partition(partition)?;
        if s.leader != me {
            return None;
        }
        let in_rack = |id: &i32| {
            image.brokers.get(id).is_some_and(|b| !b.fenced && b.registration.rack.as_deref() == Some(rack))
        };
        if in_rack(&me) {
            return None;
        }
        s.isr.iter().copied().find(|r| *r != me && in_rack(r))
    }

    /// In a cell: creates `__consumer_offsets` (once brokers are registered), without waiting.
    pub(crate) fn create_offsets_topic_in_background(&self) {
        if self.creating_offsets_topic.swap(true, Ordering::AcqRel) {
            return;
        }
        let (c, parts, seg, rf) = (
            self.controller.clone(),
            self.config.groups.offsets_topic_partitions,
            self.config.offsets_topic_segment_bytes,
            self.config.offsets_topic_replication_factor,
        );
        let flag = self.creating_offsets_topic.clone();
        tokio::task::spawn_blocking(move || {
            // In a cell: as many replicas as asked and registered brokers allow.
            let live = c.image().brokers.values().filter(|b| !b.fenced).count().max(1);
            let rf = rf.min(live.min(i16::MAX as usize) as i16);
            match crate::groups::ensure_offsets_topic(&c, parts, seg, rf) {
                Ok(()) => tracing::info!("created __consumer_offsets"),
                Err(e) => {
                    tracing::warn!(error = %e, "creating __consumer_offsets failed; the next FindCoordinator retries")
                }
            }
            flag.store(false, Ordering::Release);
        });
    }

    /// KIP-951: who leads a partition this broker does not (leader id, epoch), and that
    /// broker's listener (host, port, rack), so clients need no Metadata round trip.
    pub(crate) fn leader_hint(&self, topic: &str, partition: i32) -> Option<LeaderHint> {
        let image = self.controller.image();
        let s = image.topic(topic)?.partition(partition)?;
        let endpoint = image.brokers.get(&s.leader).filter(|b| !b.fenced).map(|b| {
            let r = &b.registration;
            (r.host.clone(), r.port, r.rack.clone())
        });
        Some(LeaderHint { leader_id: s.leader, leader_epoch: s.leader_epoch, endpoint })
    }

    /// The partition's leader epoch (0 on a single node).
    pub(crate) fn leader_epoch(&self, topic: &str, partition: i32) -> i32 {
        let image = self.controller.image();
        image.topic(topic).and_then(|t| t.partition(partition)).map_or(0, |s| s.leader_epoch)
    }

    /// The error for a client's `current_leader_epoch` (-1: none given) against this leader's.
    pub(crate) fn epoch_error(&self, topic: &str, partition: i32, epoch: i32) -> Option<i16> {
        use kafka_protocol::error::ResponseError;
        if epoch < 0 {
            return None;
        }
        let ours = self.leader_epoch(topic, partition);
        match epoch.cmp(&ours) {
            std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch.code()),
            std::cmp::Ordering::Less => Some(ResponseError::FencedLeaderEpoch.code()),
            std::cmp::Ordering::Equal => None,
        }
    }

    /// `apply_image` for request handlers: it creates directories and fsyncs, so it runs with
    /// the worker handed over to the blocking pool (the runtime is always multi-threaded).
    pub(crate) fn sync_logs_from_handler(&self) {
        let image = self.controller.image();
        if let Err(e) = tokio::task::block_in_place(|| self.apply_image(&image)) {
            tracing::error!(error = %e, "bringing logs in line with metadata failed");
        }
    }

    /// Hands out one producer id, reserving a block from the controller when needed.
    pub(crate) async fn next_producer_id(&self) -> Result<i64, MetaError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let start = self.meta(|c| c.allocate_producer_ids(PRODUCER_ID_BLOCK)).await?;
            *ids = (start, start + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Opens metadata and logs, binds the listeners and starts every task.
    pub async fn start(config: BrokerConfig, clock: Arc<dyn Clock>) -> Result<BrokerHandle, StartError> {
        let dir_lock = lock_data_dir(&config.data_dir)?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // The object store first: a broker that cannot use its store says so before anything.
        let tiering = match &config.tiering {
            Some(t) => {
                let cache_dir = config.data_dir.join("remote-cache");
                Some(Arc::new(crate::tiering::Tiering::open(t.clone(), &cache_dir, clock.clone()).await?))
            }
            None => None,
        };
        let controller_config = ControllerConfig {
            default_partitions: config.num_partitions,
            default_replication_factor: config.default_replication_factor,
            // In a cell, replicas go to the registered, unfenced brokers.
            broker_count: if config.cell.is_some() { 0 } else { 1 },
            topic_defaults: config.topic_defaults.clone(),
            max_partitions_per_topic: config.max_partitions_per_topic,
        };
        let faults = Arc::new(crate::faults::Faults::new(config.fault_injection_enable));
        let (quorum, controller, metadata_server) = match &config.cell {
            // A single node: a single-voter Raft quorum in this process, the same state machine
            // and log store a cell's `kora meta` voters run. The state keeps its pre-Raft place
            // (`meta/`).
            None => {
                let quorum = kora_quorum::Quorum::open_single(
                    config.node_id.max(0) as u64,
                    &config.data_dir.join("meta-raft"),
                    &config.data_dir.join("meta"),
                )
                .await?;
                let log =
                    Arc::new(kora_quorum::RaftLog::new(quorum.clone(), tokio::runtime::Handle::current()));
                let controller =
                    Arc::new(Controller::with_log(log, controller_config).with_clock(clock.clone()));
                (quorum, controller, None)
            }
            Some(cell) => {
                let (quorum, controller, server) =
                    crate::cell::join(&config, cell, controller_config, faults.clone(), shutdown_rx.clone())
                        .await?;
                (quorum, controller, Some(server))
            }
        };
        // Partitions beyond the open-file limit keep their segment files closed until used.
        let max_open = match config.log_max_open_files {
            0 => {
                let soft =
                    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20);
                (soft / 2).clamp(256, 1 << 20) as usize
            }
            n => n,
        };
        kora_log::files::set_max_open_files(max_open);
        let logs = Arc::new(LogManager::open(&config.data_dir.join("logs"), clock.clone())?);
        {
            // Commits block on the quorum: off the async workers.
            let (c, parts, seg) = (
                controller.clone(),
                config.groups.offsets_topic_partitions,
                config.offsets_topic_segment_bytes,
            );
            let in_cell = config.cell.is_some();
            tokio::task::spawn_blocking(move || {
                c.ensure_cluster_id()?;
                // In a cell, replicas need registered brokers: the topic is created on the
                // first FindCoordinator instead (as Kafka does).
                if in_cell {
                    return Ok(());
                }
                crate::groups::ensure_offsets_topic(&c, parts, seg, -1)
            })
            .await
            .map_err(|e| MetaError::Store(format!("metadata task failed: {e}")))??;
        }
        let image = controller.image();
        let mut specs = Vec::with_capacity(image.partition_count());
        let mut known = HashMap::new();
        for (name, t) in &image.topics {
            let cfg = controller.topic_config(&t.configs).unwrap_or_default();
            for p in (0..t.partitions).filter(|p| t.hosts(*p, config.node_id)) {
                specs.push(PartitionSpec {
                    topic: name.clone(),
                    topic_id: t.topic_id.to_string(),
                    partition: p,
                    config: cfg.clone(),
                });
            }
            known.insert(name.clone(), t.clone());
        }
        let started = clock.now();
        let n = specs.len();
        let load_logs = logs.clone();
        tokio::task::spawn_blocking(move || load_logs.load(specs, LOG_LOAD_THREADS))
            .await
            .map_err(|e| kora_log::LogError::Corrupt(format!("log loading failed: {e}")))??;
        tracing::info!(
            partitions = n,
            clean = logs.clean_start(),
            elapsed_ms = clock.elapsed(started).as_millis() as u64,
            "logs loaded"
        );

        // The internal topic's partition count is fixed once created; the coordinator must hash
        // groups with the count that exists.
        let mut group_config = config.groups.clone();
        if let Some(t) = image.topic(kora_group::OFFSETS_TOPIC) {
            group_config.offsets_topic_partitions = t.partitions;
        }
        let offsets_partitions = group_config.offsets_topic_partitions;
        let groups = Arc::new(kora_group::Coordinator::new(
            group_config,
            clock.clone(),
            Arc::new(crate::groups::OffsetsLog {
                logs: logs.clone(),
                clock: clock.clone(),
                leader_check: config.cell.is_some().then(|| (controller.clone(), config.node_id)),
            }),
        ));
        if config.cell.is_some() {
            // Groups follow the leadership of their offsets partition (loaded on becoming
            // leader, see `groups::sync_ownership`).
            groups.serve_owned_partitions_only();
        } else {
            let (logs, groups) = (logs.clone(), groups.clone());
            let started = clock.now();
            let n =
                tokio::task::spawn_blocking(move || crate::groups::load(&logs, &groups, offsets_partitions))
                    .await
                    .map_err(|e| kora_log::LogError::Corrupt(format!("group loading failed: {e}")))??;
            tracing::info!(
                records = n,
                elapsed_ms = clock.elapsed(started).as_millis() as u64,
                "groups loaded"
            );
        }

        let listener = tokio::net::TcpListener::bind(config.listener)
            .await
            .map_err(|source| StartError::Bind { addr: config.listener, source })?;
        let admin = crate::admin::bind(config.admin_listener)
            .await
            .map_err(|source| StartError::Bind { addr: config.admin_listener, source })?;
        let kafka_addr =
            listener.local_addr().map_err(|source| StartError::Bind { addr: config.listener, source })?;
        let admin_addr =
            admin.local_addr().map_err(|source| StartError::Bind { addr: config.admin_listener, source })?;
        let mut config = config;
        if config.advertised.port == 0 {
            config.advertised.port = kafka_addr.port();
        }
        let broker = Arc::new(Broker {
            sessions: Mutex::new(FetchSessionCache::new(config.fetch_session_cache_slots)),
            group_loads: Mutex::new(Default::default()),
            faults,
            replication: crate::replication::Replication::new(
                config.node_id,
                config.replication.clone(),
                clock.clone(),
            ),
            config,
            controller,
            quorum,
            incarnation: uuid::Uuid::new_v4(),
            logs,
            metrics: Metrics::new(),
            clock,
            groups,
            tiering,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            sync_lock: Mutex::new(known),
            shutting_down: AtomicBool::new(false),
            leaving_cell: AtomicBool::new(false),
            creating_offsets_topic: Arc::new(AtomicBool::new(false)),
            _dir_lock: dir_lock,
        });
        let mut tasks = Vec::new();
        if let Some(server) = metadata_server {
            tasks.push(server);
        }
        if let Some(cell) = broker.config.cell.clone() {
            broker.replication.sync(&broker, &broker.controller.image());
            tasks.push(tokio::spawn(crate::replication::isr_loop(broker.clone(), shutdown_rx.clone())));
            // Registered once the listeners are bound: the registration carries their addresses.
            crate::cell::register(&broker, &cell, admin_addr).await?;
            tasks.push(tokio::spawn(crate::cell::heartbeat_loop(
                broker.clone(),
                cell,
                admin_addr,
                shutdown_rx.clone(),
            )));
        }
        let max_connections = broker.config.max_connections;
        tasks.push(tokio::spawn(crate::server::serve(
            listener,
            broker.clone(),
            max_connections,
            shutdown_rx.clone(),
        )));
        {
            let mut rx = shutdown_rx.clone();
            let b = broker.clone();
            tasks.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.changed().await;
                };
                if let Err(e) = crate::admin::serve(admin, b, stop).await {
                    tracing::error!(error = %e, "admin endpoint failed");
                }
            }));
        }
        tasks.push(tokio::spawn(metadata_sync(broker.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(retention_loop(broker.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(crate::groups::tick_loop(broker.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(crate::groups::maintenance_loop(broker.clone(), shutdown_rx.clone())));
        if broker.tiering.is_some() {
            tasks.push(tokio::spawn(crate::tiering::run(broker.clone(), shutdown_rx.clone())));
        }
        if broker.config.log_cleaner_enable {
            tasks.push(tokio::spawn(cleaner_loop(broker.clone(), shutdown_rx.clone())));
        }
        tasks.push(tokio::spawn(flush_loop(broker.clone(), shutdown_rx)));
        Ok(BrokerHandle { broker, kafka_addr, admin_addr, shutdown_tx, tasks })
    }
}

impl BrokerHandle {
    /// Stops accepting work, closes every log cleanly (flush, indexes, snapshots) and waits
    /// for the tasks to end.
    pub async fn shutdown(self) -> Result<(), kora_log::LogError> {
        if self.broker.config.cell.is_some() {
            // Controlled shutdown: the cell stops routing to this broker before it stops.
            self.broker.leaving_cell.store(true, Ordering::Release);
            let (id, inc) = (self.broker.config.node_id, self.broker.incarnation);
            let done = kora_common::timeout(
                &*self.broker.clock,
                Duration::from_secs(10),
                self.broker.meta(move |c| c.broker_shutdown(id, inc)),
            )
            .await;
            match done {
                Ok(Ok(())) => {
                    tracing::info!("controlled shutdown: the cell no longer routes to this broker");
                    // Keep answering a moment: requests still arriving get NOT_LEADER_OR_FOLLOWER
                    // naming the new leaders (KIP-951), so clients move without a metadata
                    // round trip instead of finding the listener closed.
                    self.broker.clock.sleep(CONTROLLED_SHUTDOWN_DRAIN).await;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "controlled shutdown failed; the lease will lapse"),
                Err(_) => tracing::warn!("controlled shutdown timed out; the lease will lapse"),
            }
        }
        self.broker.shutting_down.store(true, Ordering::Release);
        self.broker.replication.stop();
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let _ = kora_common::timeout(&*self.broker.clock, Duration::from_secs(5), t).await;
        }
        let logs = self.broker.logs.clone();
        let result = tokio::task::spawn_blocking(move || logs.shutdown())
            .await
            .map_err(|e| kora_log::LogError::Corrupt(format!("shutdown task failed: {e}")))?;
        self.broker.quorum.shutdown().await;
        result
    }
}

async fn metadata_sync(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut rx = b.controller.subscribe();
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let image = rx.borrow_and_update().clone();
                let b2 = b.clone();
                let applied = image.clone();
                match tokio::task::spawn_blocking(move || b2.apply_image(&applied)).await {
                    Ok(Ok(())) => {
                        if b.config.cell.is_some() && !b.is_shutting_down() {
                            b.replication.sync(&b, &image);
                        }
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "applying metadata to logs failed"),
                    Err(e) => tracing::error!(error = %e, "metadata sync task failed"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn retention_loop(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(b.config.log_retention_check_interval_ms);
    loop {
        tokio::select! {
            _ = b.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let logs = b.logs.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut deleted = 0;
            for (topic, partition, log) in logs.all() {
                match log.apply_retention() {
                    Ok(n) => deleted += n,
                    Err(e) => tracing::error!(%topic, partition, error = %e, "retention failed"),
                }
            }
            deleted
        })
        .await;
        if let Ok(n) = res {
            if n > 0 {
                tracing::info!(segments = n, "retention deleted segments");
            }
        }
    }
}

/// Compaction: one pass over every compacted partition, then log.cleaner.backoff.ms of rest.
/// Runs on the blocking pool, one partition at a time, so it takes at most one core.
async fn cleaner_loop(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(b.config.log_cleaner_backoff_ms);
    // 24 bytes per key map entry, as Kafka sizes its offset map.
    let max_keys = (b.config.log_cleaner_dedupe_buffer_size / 24).max(1024) as usize;
    loop {
        tokio::select! {
            _ = b.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let b2 = b.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for (topic, partition, log) in b2.logs.all() {
                if b2.is_shutting_down() {
                    return;
                }
                match log.compact(max_keys) {
                    Ok(Some(s)) if s.records_removed > 0 => {
                        b2.metrics
                            .cleaner_records_removed
                            .get_or_create(&crate::metrics::TopicLabels { topic: topic.clone() })
                            .inc_by(s.records_removed);
                        tracing::info!(
                            %topic,
                            partition,
                            removed = s.records_removed,
                            segments = s.segments_rewritten,
                            bytes_before = s.bytes_before,
                            bytes_after = s.bytes_after,
                            cleaned_up_to = s.cleaned_up_to,
                            "compacted"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(%topic, partition, error = %e, "compaction failed"),
                }
            }
        })
        .await;
    }
}

/// Runs fsyncs that are due by flush.ms, and the fsync of segments closed by a roll.
async fn flush_loop(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(b.config.log_flush_scheduler_interval_ms);
    loop {
        tokio::select! {
            _ = b.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let now = b.clock.now_ms();
        let due: Vec<_> = b.logs.all().into_iter().filter(|(_, _, l)| l.flush_due(now)).collect();
        if due.is_empty() {
            continue;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for (topic, partition, log) in due {
                if let Err(e) = log.flush() {
                    tracing::error!(%topic, partition, error = %e, "flush failed");
                }
            }
        })
        .await;
    }
}

//! The composition root: start-up wiring (data-dir lock, object store, quorum and controller,
//! logs, groups, replication, tiering, listeners), the background loops, and shutdown order.
//! Every component gets the narrow handles it uses here; only request handlers see `Broker`.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kora_common::Clock;
use kora_log::{LogManager, PartitionSpec};
use kora_meta::controller::ControllerConfig;
use kora_meta::{Controller, MetaError};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::broker::{Broker, StartError};
use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::metrics::Metrics;

/// How long a broker keeps answering after its controlled shutdown moved its partitions.
const CONTROLLED_SHUTDOWN_DRAIN: Duration = Duration::from_millis(500);
/// Threads that open partition logs at start-up.
const LOG_LOAD_THREADS: usize = 4;
/// Longest a starting broker waits to join its cell's quorum and receive its metadata.
const CELL_JOIN_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Opens metadata and logs, binds the listeners and starts every task.
    pub async fn start(mut config: BrokerConfig, clock: Arc<dyn Clock>) -> Result<BrokerHandle, StartError> {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20);
        config.resolve_file_budget(nofile);
        tracing::info!(
            open_file_limit = nofile,
            log_max_open_files = config.log_max_open_files,
            max_connections = config.max_connections,
            "descriptor budget"
        );
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
        let faults = Arc::new(crate::faults::Faults::new(config.fault_injection_enable));
        let (quorum, controller, metadata_server) =
            open_metadata(&config, &clock, &faults, shutdown_rx.clone()).await?;
        let (logs, known) = open_logs(&config, &controller, &clock).await?;
        let image = controller.image();
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

        let mut kafka_listeners = Vec::new();
        for l in &config.listeners {
            let bound = tokio::net::TcpListener::bind(l.bind)
                .await
                .map_err(|source| StartError::Bind { addr: l.bind, source })?;
            kafka_listeners.push(bound);
        }
        let admin = crate::admin::bind(config.admin_listener)
            .await
            .map_err(|source| StartError::Bind { addr: config.admin_listener, source })?;
        let mut config = config;
        for (l, bound) in config.listeners.iter_mut().zip(&kafka_listeners) {
            let addr = bound.local_addr().map_err(|source| StartError::Bind { addr: l.bind, source })?;
            l.bind = addr;
            if l.advertised.port == 0 {
                l.advertised.port = addr.port();
            }
        }
        let kafka_addr = config.listeners[0].bind;
        config.listener = kafka_addr;
        config.advertised = config.listeners[0].advertised.clone();
        let admin_addr =
            admin.local_addr().map_err(|source| StartError::Bind { addr: config.admin_listener, source })?;
        let stopping = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::new());
        let view = crate::view::View::new(controller.clone(), config.node_id);
        let log_sync = Arc::new(crate::log_sync::LogSync::new(logs.clone(), view.clone(), known));
        let entropy: Arc<dyn kora_common::Entropy> = Arc::new(kora_common::OsEntropy);
        let replication = Arc::new(crate::replication::Replication::new(
            config.node_id,
            config.replication.clone(),
            clock.clone(),
            crate::replication::ReplicaHandles {
                logs: logs.clone(),
                controller: controller.clone(),
                metrics: metrics.clone(),
                faults: faults.clone(),
                inter_broker: config.inter_broker.clone(),
                entropy: entropy.clone(),
            },
        ));
        let group_edge = Arc::new(crate::groups::GroupsEdge::new(
            groups.clone(),
            logs.clone(),
            controller.clone(),
            clock.clone(),
            config.node_id,
            config.offsets_retention_check_interval_ms,
        ));
        let tier_manager = tiering.as_ref().map(|t| {
            Arc::new(crate::tiering::TierManager::new(
                t.clone(),
                logs.clone(),
                view.clone(),
                metrics.clone(),
                clock.clone(),
            ))
        });
        let leaving_cell = Arc::new(AtomicBool::new(false));
        let quotas = Arc::new(crate::quotas::Quotas::new(config.quotas, clock.clone(), metrics.clone()));
        let broker = Arc::new(Broker {
            quotas: quotas.clone(),
            usage: Arc::new(crate::quota_sync::UsageBoard::default()),
            sessions: Mutex::new(FetchSessionCache::new(config.fetch_session_cache_slots)),
            faults: faults.clone(),
            replication: replication.clone(),
            controller: controller.clone(),
            view: view.clone(),
            quorum,
            incarnation: uuid::Uuid::new_v4(),
            logs: logs.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            entropy: entropy.clone(),
            authz: crate::handlers::authz::Authz::new(config.authorizer.clone(), &config.sasl.super_users),
            listener_users: crate::inter_broker::ListenerUsers::derive(&config.listeners, &*entropy),
            groups: groups.clone(),
            group_edge: group_edge.clone(),
            tiering,
            log_sync: log_sync.clone(),
            producer_ids: crate::broker::ProducerIds::default(),
            shutting_down: stopping.clone(),
            leaving_cell: leaving_cell.clone(),
            offsets_topic: crate::broker::OffsetsTopic::new(controller.clone(), &config),
            _dir_lock: dir_lock,
            config,
        });
        let config = &broker.config;
        let mut tasks = Vec::new();
        // Tenants' quota shares and storage, every quota window (exchanged with the cell).
        tasks.push(tokio::spawn(crate::quota_sync::run(
            crate::quota_sync::QuotaSync {
                quotas: quotas.clone(),
                view: view.clone(),
                logs: logs.clone(),
                board: broker.usage.clone(),
                node_id: config.node_id,
                token: config.admin_token.clone(),
            },
            shutdown_rx.clone(),
        )));
        if let Some(server) = metadata_server {
            tasks.push(server);
        }
        let in_cell = config.cell.is_some();
        if let Some(cell) = config.cell.clone() {
            let led = replication.sync(&controller.image());
            crate::groups::sync_ownership(&group_edge, led);
            tasks.push(tokio::spawn(crate::replication::isr_loop(replication.clone(), shutdown_rx.clone())));
            // Registered once the listeners are bound: the registration carries their addresses.
            let membership = crate::cell::Membership::new(
                view.clone(),
                clock.clone(),
                crate::cell::registration(config, &cell, admin_addr, broker.incarnation),
                Duration::from_millis(cell.heartbeat_interval_ms),
                leaving_cell,
            );
            membership.register().await?;
            tasks.push(tokio::spawn(membership.heartbeat_loop(shutdown_rx.clone())));
        }
        let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
        for (l, bound) in config.listeners.iter().zip(kafka_listeners) {
            tasks.push(tokio::spawn(crate::server::serve(
                bound,
                crate::server::Listener::of(l),
                broker.clone(),
                slots.clone(),
                shutdown_rx.clone(),
            )));
            // A TLS listener's certificates are re-read every ssl.reload.interval.ms, so renewed
            // files are served to new connections without a restart.
            if let Some(tls) = &l.tls {
                if let Some(every) = tls.reload_interval {
                    tasks.push(tokio::spawn(tls.server.clone().watch(every, shutdown_rx.clone())));
                }
            }
        }
        // So are the ones this broker dials its cell's other brokers with.
        if let (Some(tls), Some(every)) = (&config.inter_broker.tls, config.inter_broker.reload_interval) {
            tasks.push(tokio::spawn(tls.clone().watch(every, shutdown_rx.clone())));
        }
        {
            let mut rx = shutdown_rx.clone();
            let state = crate::admin::AdminState {
                view: view.clone(),
                logs: logs.clone(),
                metrics: metrics.clone(),
                groups: groups.clone(),
                tier_manager: tier_manager.clone(),
                faults,
                stopping: stopping.clone(),
            };
            let token = config.admin_token.clone();
            let tenants = Arc::new(broker.tenant_admin());
            // The admin endpoint (metrics, health, operators' calls) runs on a runtime of its
            // own, so it answers while the Kafka listeners' workers are saturated: an
            // overloaded broker is when on-call needs its /metrics most.
            let listener = admin
                .into_std()
                .map_err(|source| StartError::Bind { addr: config.admin_listener, source })?;
            let serve = move || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("kora-admin")
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let stop = async move {
                        let _ = rx.changed().await;
                    };
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    crate::admin::serve(listener, Arc::new(state), tenants, token, stop).await
                })
            };
            let thread = std::thread::Builder::new()
                .name("kora-admin".into())
                .spawn(move || {
                    if let Err(e) = serve() {
                        tracing::error!(error = %e, "admin endpoint failed");
                    }
                })
                .map_err(|source| StartError::Bind { addr: config.admin_listener, source })?;
            tasks.push(tokio::task::spawn_blocking(move || {
                if thread.join().is_err() {
                    tracing::error!("admin endpoint thread panicked");
                }
            }));
        }
        let loops = LogLoops { logs, clock, metrics, stopping };
        tasks.push(tokio::spawn(metadata_sync(
            controller,
            log_sync,
            in_cell.then(|| replication.clone()),
            group_edge.clone(),
            loops.stopping.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(retention_loop(
            loops.clone(),
            Duration::from_millis(config.log_retention_check_interval_ms),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::groups::tick_loop(group_edge.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(crate::groups::maintenance_loop(group_edge, shutdown_rx.clone())));
        if let Some(m) = tier_manager {
            tasks.push(tokio::spawn(crate::tiering::run(m, shutdown_rx.clone())));
        }
        if config.log_cleaner_enable {
            tasks.push(tokio::spawn(cleaner_loop(
                loops.clone(),
                Duration::from_millis(config.log_cleaner_backoff_ms),
                // 24 bytes per key map entry, as Kafka sizes its offset map.
                (config.log_cleaner_dedupe_buffer_size / 24).max(1024) as usize,
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(flush_loop(
            loops,
            Duration::from_millis(config.log_flush_scheduler_interval_ms),
            shutdown_rx,
        )));
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
                self.broker.view.call(move |c| c.broker_shutdown(id, inc)),
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

/// The metadata quorum and a controller over it: a single in-process voter, or this broker's
/// learner of its cell's quorum (with the listener the leader replicates to).
async fn open_metadata(
    config: &BrokerConfig,
    clock: &Arc<dyn Clock>,
    faults: &Arc<crate::faults::Faults>,
    shutdown_rx: watch::Receiver<bool>,
) -> Result<(Arc<kora_quorum::Quorum>, Arc<Controller>, Option<tokio::task::JoinHandle<()>>), StartError> {
    let controller_config = ControllerConfig {
        default_partitions: config.num_partitions,
        default_replication_factor: config.default_replication_factor,
        // In a cell, replicas go to the registered, unfenced brokers.
        broker_count: if config.cell.is_some() { 0 } else { 1 },
        topic_defaults: config.topic_defaults.clone(),
        max_partitions_per_topic: config.max_partitions_per_topic,
    };
    Ok(match &config.cell {
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
            let log = Arc::new(kora_quorum::RaftLog::new(quorum.clone(), tokio::runtime::Handle::current()));
            let controller = Arc::new(Controller::with_log(log, controller_config).with_clock(clock.clone()));
            (quorum, controller, None)
        }
        Some(cell) => {
            let listener = tokio::net::TcpListener::bind(cell.metadata_listener)
                .await
                .map_err(|source| StartError::Bind { addr: cell.metadata_listener, source })?;
            let gate = faults.clone();
            let learner = kora_quorum::Learner::join(kora_quorum::LearnerOptions {
                node_id: config.node_id.max(0) as u64,
                listener,
                log_dir: config.data_dir.join("meta-raft"),
                state_dir: config.data_dir.join("meta"),
                voters: cell.voters.iter().map(|(_, a)| a.clone()).collect(),
                token: config.admin_token.clone(),
                controller: controller_config,
                join_timeout: CELL_JOIN_TIMEOUT,
                // Fault injection: an isolated broker neither receives metadata nor reaches
                // the controller.
                cut_off: Some(Arc::new(move || gate.isolated())),
                shutdown: shutdown_rx.clone(),
                clock: clock.clone(),
            })
            .await?;
            tracing::info!(cell = %cell.name, "following the cell's metadata quorum");
            (learner.quorum, learner.controller, Some(learner.server))
        }
    })
}

/// Opens the logs of every partition this broker hosts (after the cluster id, and on a single
/// node `__consumer_offsets`, exist). Returns them with the topics they reflect.
async fn open_logs(
    config: &BrokerConfig,
    controller: &Arc<Controller>,
    clock: &Arc<dyn Clock>,
) -> Result<(Arc<LogManager>, HashMap<String, Arc<kora_meta::TopicImage>>), StartError> {
    // Partitions beyond the open-file limit keep their segment files closed until used
    // (resolved from the process's limit at start when not set).
    assert!(config.log_max_open_files > 0, "the descriptor budget is resolved before the logs open");
    kora_log::files::set_max_open_files(config.log_max_open_files);
    let logs = Arc::new(LogManager::open(&config.data_dir.join("logs"), clock.clone())?);
    {
        // Commits block on the quorum: off the async workers.
        let (c, parts, seg) =
            (controller.clone(), config.groups.offsets_topic_partitions, config.offsets_topic_segment_bytes);
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

    Ok((logs, known))
}

/// What the loops over every log share.
#[derive(Clone)]
struct LogLoops {
    logs: Arc<LogManager>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// The broker is stopping: long passes end early.
    stopping: Arc<AtomicBool>,
}

/// Follows the metadata image: logs first, then (in a cell) replication roles, then which
/// offsets partitions' groups this broker coordinates.
async fn metadata_sync(
    controller: Arc<Controller>,
    log_sync: Arc<crate::log_sync::LogSync>,
    replication: Option<Arc<crate::replication::Replication>>,
    group_edge: Arc<crate::groups::GroupsEdge>,
    stopping: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rx = controller.subscribe();
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let image = rx.borrow_and_update().clone();
                let (sync, applied) = (log_sync.clone(), image.clone());
                match tokio::task::spawn_blocking(move || sync.apply(&applied)).await {
                    Ok(Ok(())) => {
                        if let Some(r) = replication.as_ref().filter(|_| !stopping.load(Ordering::Acquire)) {
                            let led = r.sync(&image);
                            crate::groups::sync_ownership(&group_edge, led);
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

async fn retention_loop(l: LogLoops, period: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = l.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let logs = l.logs.clone();
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
async fn cleaner_loop(l: LogLoops, period: Duration, max_keys: usize, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = l.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let l2 = l.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for (topic, partition, log) in l2.logs.all() {
                if l2.stopping.load(Ordering::Acquire) {
                    return;
                }
                match log.compact(max_keys) {
                    Ok(Some(s)) if s.records_removed > 0 => {
                        l2.metrics
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
async fn flush_loop(l: LogLoops, period: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = l.clock.sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let now = l.clock.now_ms();
        let due: Vec<_> = l.logs.all().into_iter().filter(|(_, _, log)| log.flush_due(now)).collect();
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

//! The broker as its request handlers see it: the handles of every component a request may
//! touch (config, the metadata view and controller, logs, groups, replication, tiering, fetch
//! sessions, metrics), plus the few broker-wide services handlers call (producer ids,
//! `__consumer_offsets` on demand). Built and torn down by the composition root (`root`);
//! nothing in this module starts a task of its own, and no component below takes it whole.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kora_common::Clock;
use kora_log::LogManager;
use kora_meta::{Controller, MetaError};
use parking_lot::Mutex;

use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::metrics::Metrics;
use crate::view::View;

/// Producer ids reserved from the controller at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

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

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub controller: Arc<Controller>,
    /// The metadata quorum: a single in-process voter, or this broker's learner of its cell's
    /// quorum.
    pub quorum: Arc<kora_quorum::Quorum>,
    /// This run of the broker (new at every start), as registered with the cell.
    pub incarnation: uuid::Uuid,
    /// Leadership questions and controller calls (shared with tiering and the admin API).
    pub view: View,
    pub logs: Arc<LogManager>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Authorizers of the namespaces' ACLs.
    pub(crate) authz: crate::handlers::authz::Authz,
    /// Users of SASL listeners' JAAS entries (`user_<name>`), derived at start-up.
    pub(crate) listener_users: crate::inter_broker::ListenerUsers,
    /// Tenants' quota accounting on this broker.
    pub quotas: Arc<crate::quotas::Quotas>,
    /// The quota coordinator's figures: this broker's and its peers' (quota_sync).
    pub usage: Arc<crate::quota_sync::UsageBoard>,
    /// Randomness for SASL nonces, salts and secrets.
    pub entropy: Arc<dyn kora_common::Entropy>,
    /// The group coordinator (every group: a single-node cell coordinates them all).
    pub groups: Arc<kora_group::Coordinator>,
    /// The coordinator's internal log and background work on this broker.
    pub group_edge: Arc<crate::groups::GroupsEdge>,
    /// The object-store tier, when `object_store.url` is set.
    pub tiering: Option<Arc<crate::tiering::Tiering>>,
    pub(crate) sessions: Mutex<FetchSessionCache>,
    /// Leader and follower roles of this broker's partitions in a cell, and the fetchers.
    pub replication: Arc<crate::replication::Replication>,
    /// Injected faults (tests of whole cells; inert unless fault.injection.enable).
    pub faults: Arc<crate::faults::Faults>,
    /// Keeps the logs in line with the image.
    pub(crate) log_sync: Arc<crate::log_sync::LogSync>,
    pub(crate) producer_ids: ProducerIds,
    pub(crate) shutting_down: Arc<AtomicBool>,
    /// A controlled shutdown began: no more heartbeats (they would bring this run back).
    pub(crate) leaving_cell: Arc<AtomicBool>,
    pub(crate) offsets_topic: OffsetsTopic,
    pub(crate) _dir_lock: File,
}

impl Broker {
    /// The tenant API over this broker (`/v1/tenants`; also `kora dev --auth`'s own tenant).
    pub fn tenant_admin(&self) -> crate::tenants::TenantAdmin {
        crate::tenants::TenantAdmin {
            view: self.view.clone(),
            entropy: self.entropy.clone(),
            clock: self.clock.clone(),
            listeners: self.config.listeners.clone(),
            usage: self.usage.clone(),
            quotas: self.quotas.clone(),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// Producer ids, handed out one at a time from blocks reserved from the controller.
#[derive(Debug, Default)]
pub(crate) struct ProducerIds {
    /// [next, end) of the block in hand.
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub(crate) async fn next(&self, view: &View) -> Result<i64, MetaError> {
        let mut ids = self.block.lock().await;
        if ids.0 >= ids.1 {
            let start = view.call(|c| c.allocate_producer_ids(PRODUCER_ID_BLOCK)).await?;
            *ids = (start, start + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        assert!(id < ids.1, "producer id {id} outside its block");
        ids.0 += 1;
        Ok(id)
    }
}

/// Creates `__consumer_offsets` on demand in a cell (once brokers are registered): the first
/// FindCoordinator for a group starts it, and at most one creation runs at a time.
#[derive(Debug)]
pub(crate) struct OffsetsTopic {
    controller: Arc<Controller>,
    partitions: i32,
    segment_bytes: u32,
    replication_factor: i16,
    creating: Arc<AtomicBool>,
}

impl OffsetsTopic {
    pub(crate) fn new(controller: Arc<Controller>, config: &BrokerConfig) -> Self {
        Self {
            controller,
            partitions: config.groups.offsets_topic_partitions,
            segment_bytes: config.offsets_topic_segment_bytes,
            replication_factor: config.offsets_topic_replication_factor,
            creating: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts the creation without waiting for it.
    pub(crate) fn create_in_background(&self) {
        if self.creating.swap(true, Ordering::AcqRel) {
            return;
        }
        let (c, parts, seg, rf) =
            (self.controller.clone(), self.partitions, self.segment_bytes, self.replication_factor);
        let flag = self.creating.clone();
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
}

//! One voter of a cell's metadata quorum: openraft over the heed log store and the metadata
//! state machine, with the HTTP transport.
//!
//! Bootstrapping: every voter of a new cell is started with the same voter list; each calls
//! `initialize` with it when its log is empty (openraft accepts the same membership from
//! several voters; the first election decides). A voter added later starts with no list and
//! waits to be added (`add_voter`: as a learner until it has caught up, then a voter).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kora_meta::{MetaError, MetadataImage, MetadataRecord, RecordLog};
use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::{Raft, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use crate::log_store::LogStore;
use crate::network::HttpNetwork;
use crate::state_machine::{Applied, StateMachine};
use crate::{Node, NodeId, QuorumError, TypeConfig};

/// Bytes per snapshot chunk sent to a follower or learner.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

/// Settings of one voter (validated by `validate`).
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// host:port where the other voters reach this one (HTTP).
    pub advertised_addr: String,
    /// The Raft log's LMDB directory.
    pub log_dir: PathBuf,
    /// The state machine's LMDB directory (kora-meta's store).
    pub state_dir: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot is built after this many entries since the last one; the log before it is
    /// then purged (keeping `max_in_snapshot_log_to_keep` for lagging followers).
    pub snapshot_after_entries: u64,
    pub max_in_snapshot_log_to_keep: u64,
    /// The cell's token: presented on every Raft RPC and relayed call, and required of them.
    pub token: Option<Arc<kora_api::Token>>,
    /// Time for this crate's own waits and timers (openraft keeps its own).
    pub clock: Arc<dyn kora_common::Clock>,
}

impl QuorumConfig {
    /// A voter keeping `raft-log/` and `state/` under `data_dir`.
    pub fn new(node_id: NodeId, advertised_addr: String, data_dir: PathBuf) -> Self {
        Self {
            node_id,
            advertised_addr,
            log_dir: data_dir.join("raft-log"),
            state_dir: data_dir.join("state"),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_after_entries: 10_000,
            max_in_snapshot_log_to_keep: 1_000,
            token: None,
            clock: Arc::new(kora_common::SystemClock),
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, QuorumError> {
        let c = openraft::Config {
            cluster_name: "kora".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            // Snapshots travel in chunks well under the RPC body limit.
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            // openraft's defaults (200 ms per chunk) are too short for a chunk of a large image
            // on a busy machine; a chunk that times out is sent again from the start.
            install_snapshot_timeout: 10_000,
            // Entries per AppendEntries: with large entries (a topic of many partitions) a batch
            // stays far below the RPC body limit.
            max_payload_entries: 64,
            ..Default::default()
        };
        c.validate().map_err(|e| QuorumError::Config(e.to_string()))
    }
}

/// What `kora meta status` shows (the API crate's type).
pub use kora_api::QuorumStatus;

pub struct Quorum {
    pub raft: Raft<TypeConfig>,
    sm: StateMachine,
    config: QuorumConfig,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Quorum {
    /// Opens the voter's stores and starts its Raft node.
    pub async fn open(config: QuorumConfig, http: reqwest::Client) -> Result<Arc<Self>, QuorumError> {
        let raft_config = Arc::new(config.raft_config()?);
        let log = LogStore::open(&config.log_dir)?;
        let sm = StateMachine::open(&config.state_dir)?;
        let raft = Raft::new(
            config.node_id,
            raft_config,
            HttpNetwork::new(http, config.token.clone()),
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        Ok(Arc::new(Self { raft, sm, config }))
    }

    /// A quorum of one voter in this process (`kora dev`): no peers, so it leads as soon as it
    /// starts. Returns once it leads.
    pub async fn open_single(
        node_id: NodeId,
        log_dir: &std::path::Path,
        state_dir: &std::path::Path,
    ) -> Result<Arc<Self>, QuorumError> {
        let mut config = QuorumConfig::new(node_id, "in-process".into(), PathBuf::new());
        config.log_dir = log_dir.to_path_buf();
        config.state_dir = state_dir.to_path_buf();
        // Never contacted: a quorum of one sends no RPCs.
        let http = reqwest::Client::builder().build().map_err(|e| QuorumError::Config(e.to_string()))?;
        let q = Self::open(config, http).await?;
        let me = BTreeMap::from([(node_id, Node { addr: "in-process".into() })]);
        q.bootstrap(me).await?;
        // A restarted single voter would otherwise wait out an election timeout first.
        if !q.is_leader() {
            q.raft.trigger().elect().await.map_err(|e| QuorumError::Raft(e.to_string()))?;
        }
        q.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(q)
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// Makes `voters` the first membership if this voter has never been part of one.
    pub async fn bootstrap(&self, voters: BTreeMap<NodeId, Node>) -> Result<(), QuorumError> {
        if self.raft.is_initialized().await.map_err(|e| QuorumError::Raft(e.to_string()))? {
            return Ok(());
        }
        if !voters.contains_key(&self.config.node_id) {
            return Err(QuorumError::Config(format!(
                "voter {} is not in the voter list {:?}",
                self.config.node_id,
                voters.keys().collect::<Vec<_>>()
            )));
        }
        match self.raft.initialize(voters).await {
            Ok(()) => Ok(()),
            // Another voter got there first and this one already has its log.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.sm.subscribe()
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.sm.image()
    }

    /// The current leader and its address, as this voter knows them.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Waits until some voter leads (this one or another), at most `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(NodeId, String), QuorumError> {
        let clock = self.config.clock.clone();
        let deadline = clock.now() + timeout;
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if kora_common::timeout_at(&*clock, deadline, rx.changed()).await.is_err() {
                return Err(QuorumError::NoLeader);
            }
        }
    }

    fn not_leader(&self, f: Option<ForwardToLeader<NodeId, Node>>) -> QuorumError {
        let leader = f.and_then(|f| Some((f.leader_id?, f.leader_node?.addr)));
        QuorumError::NotLeader { leader: leader.or_else(|| self.leader()) }
    }

    /// Commits a record through the quorum; on the leader only. Returns once it is applied here.
    pub async fn propose(&self, record: MetadataRecord) -> Result<Applied, QuorumError> {
        match self.raft.client_write(record).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(self.not_leader(Some(f))),
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// Adds a voter: first as a learner (blocking until it has caught up), then as a voter.
    pub async fn add_voter(&self, id: NodeId, addr: String) -> Result<(), QuorumError> {
        let map = |e: RaftError<NodeId, ClientWriteError<NodeId, Node>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => self.not_leader(Some(f)),
            e => QuorumError::Raft(e.to_string()),
        };
        self.raft.add_learner(id, Node { addr }, true).await.map_err(map)?;
        let mut voters: BTreeSet<NodeId> =
            self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        voters.insert(id);
        self.raft.change_membership(voters, false).await.map_err(map)?;
        Ok(())
    }

    /// Adds (or re-addresses) a learner: a broker that follows the log without voting. Returns
    /// at once; the leader replicates to it in the background.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), QuorumError> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.voter_ids().any(|v| v == id) {
            return Err(QuorumError::Config(format!("node id {id} is a voter; brokers need their own ids")));
        }
        if membership.get_node(&id).is_some_and(|n| n.addr == addr) {
            return Ok(());
        }
        match self.raft.add_learner(id, Node { addr }, false).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(self.not_leader(Some(f))),
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// Removes a voter (it stops receiving the log; its process can then be stopped).
    pub async fn remove_voter(&self, id: NodeId) -> Result<(), QuorumError> {
        let mut voters: BTreeSet<NodeId> =
            self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        if !voters.remove(&id) {
            return Err(QuorumError::Config(format!("{id} is not a voter")));
        }
        if voters.is_empty() {
            return Err(QuorumError::Config("the last voter cannot be removed".into()));
        }
        match self.raft.change_membership(voters, false).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(self.not_leader(Some(f))),
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    pub fn status(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut voters = BTreeMap::new();
        let mut learners = BTreeMap::new();
        for (id, node) in membership.nodes() {
            if voter_ids.contains(id) {
                voters.insert(*id, node.addr.clone());
            } else {
                learners.insert(*id, node.addr.clone());
            }
        }
        let image = self.image();
        QuorumStatus {
            node_id: self.config.node_id,
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            leader_address: m.current_leader.and_then(|l| voters.get(&l).or(learners.get(&l)).cloned()),
            voters,
            learners,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            record_index: image.applied_index,
            cluster_id: image.cluster_id.clone(),
            topics: image.topics.len(),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// The quorum as the controller's record log: `commit` proposes and waits (blocking) for the
/// record to be applied here. Used on the leader (and by `kora dev`, a single voter).
#[derive(Debug)]
pub struct RaftLog {
    quorum: Arc<Quorum>,
    runtime: tokio::runtime::Handle,
}

impl RaftLog {
    pub fn new(quorum: Arc<Quorum>, runtime: tokio::runtime::Handle) -> Self {
        Self { quorum, runtime }
    }
}

impl RecordLog for RaftLog {
    fn commit(&self, record: MetadataRecord) -> Result<Arc<MetadataImage>, MetaError> {
        let applied = self.runtime.block_on(self.quorum.propose(record)).map_err(|e| match e {
            QuorumError::NotLeader { leader } => MetaError::NotController(leader.map(|(_, a)| a)),
            e => MetaError::Store(e.to_string()),
        })?;
        let image = self.quorum.image();
        // The state machine publishes before the write returns on the voter that proposed.
        assert!(
            image.applied_index >= applied.record_index,
            "applied record {} not in the image ({})",
            applied.record_index,
            image.applied_index
        );
        Ok(image)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.quorum.subscribe()
    }
}

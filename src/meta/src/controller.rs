//! The controller: validates metadata requests against the current image and commits records
//! through a [`RecordLog`].
//!
//! The log is the cell's Raft quorum (kora-quorum: `kora dev` runs a single voter in process)
//! or, for tools and tests, [`LocalLog`], which commits by applying a record and persisting it
//! in one LMDB transaction. Validation and commit happen under one lock, so two requests never
//! both pass validation against the same image. Brokers read the image and watch it for
//! changes; they never write metadata except through these calls.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kora_common::TopicConfig;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::image::{MetadataImage, TopicImage};
use crate::record::MetadataRecord;
use crate::store::MetaStore;
use crate::MetaError;

/// Kafka's longest legal topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Static settings of the controller, from the broker config.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// num.partitions: partitions of a topic created without a count.
    pub default_partitions: i32,
    /// default.replication.factor
    pub default_replication_factor: i16,
    /// Brokers that can hold replicas (1 in `kora dev`); 0: the cell's registered, unfenced
    /// brokers.
    pub broker_count: usize,
    /// Topic config defaults set at broker level, by topic config name.
    pub topic_defaults: BTreeMap<String, String>,
    /// Upper bound on partitions per topic.
    pub max_partitions_per_topic: i32,
}

/// A CreateTopics entry. -1 means "broker default" for partitions and replication factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// Where committed records go: applied, in order and durably, to the image readers see.
pub trait RecordLog: Send + Sync + std::fmt::Debug {
    /// Commits `record`; returns once it is durable and applied here, with the image after it.
    /// Blocking: call it from a blocking thread.
    fn commit(&self, record: MetadataRecord) -> Result<Arc<MetadataImage>, MetaError>;
    /// The applied image, as it changes.
    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>>;
}

/// A single writer without Raft: applies a record to a copy of the image and persists it in
/// one LMDB transaction.
#[derive(Debug)]
pub struct LocalLog {
    store: Mutex<MetaStore>,
    image_tx: watch::Sender<Arc<MetadataImage>>,
}

impl LocalLog {
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        let (store, image) = MetaStore::open(dir)?;
        let (image_tx, _) = watch::channel(Arc::new(image));
        Ok(Self { store: Mutex::new(store), image_tx })
    }
}

impl RecordLog for LocalLog {
    fn commit(&self, record: MetadataRecord) -> Result<Arc<MetadataImage>, MetaError> {
        let store = self.store.lock();
        let mut next = (*self.image_tx.borrow().clone()).clone();
        let index = next.applied_index + 1;
        next.apply(index, &record);
        store.commit(&record, &next)?;
        let next = Arc::new(next);
        self.image_tx.send_replace(next.clone());
        Ok(next)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_tx.subscribe()
    }
}

/// A request to the active controller; brokers that are not it forward these (JSON over HTTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum ControllerRequest {
    CreateTopic {
        request: TopicRequest,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        validate_only: bool,
    },
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    AddRemoteSegment {
        topic_id: Uuid,
        partition: i32,
        segment: crate::record::RemoteSegment,
    },
    RemoveRemoteSegments {
        topic_id: Uuid,
        partition: i32,
        bases: Vec<i64>,
    },
    AllocateProducerIds {
        count: i64,
    },
    RegisterBroker {
        registration: crate::record::BrokerRegistration,
    },
    BrokerHeartbeat {
        broker_id: i32,
        incarnation: Uuid,
    },
    /// Controlled shutdown: the broker is about to stop; fence it now rather than when its
    /// lease lapses, so leadership moves (or its partitions show offline) at once.
    BrokerShutdown {
        broker_id: i32,
        incarnation: Uuid,
    },
    /// Moves a partition to `target` replicas, or (None) cancels an ongoing move.
    ReassignPartition {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// An operator's leader elections (Kafka's ElectLeaders): one request for every
    /// partition it names, so electing across a whole cluster is one round trip.
    ElectLeaders {
        partitions: Vec<(String, i32)>,
        election: Election,
    },
    /// A leader changes a partition's ISR (Kafka's AlterPartition).
    AlterPartition {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// Creates a tenant. Retrying with the same id and name returns the tenant created first.
    CreateTenant {
        tenant: crate::security::TenantImage,
    },
    /// Deletes a tenant's topics, then the tenant and its credentials.
    DeleteTenant {
        id: String,
    },
    /// Sets (Some) and removes (None) a tenant's limits and quotas in one step; all or none
    /// (`validate_only`: checked, not committed). The answer is the tenant as it is after.
    AlterTenantLimits {
        id: String,
        changes: Vec<(String, Option<f64>)>,
        validate_only: bool,
    },
    /// Creates (`create_only`: refused if the login exists) or replaces a credential.
    PutCredential {
        credential: crate::security::Credential,
        create_only: bool,
    },
    /// Deletes a credential of `tenant` (None: of the default namespace).
    DeleteCredential {
        login: String,
        tenant: Option<String>,
    },
    /// CreateAcls: bindings (validated by the caller) join a namespace's ACLs.
    CreateAcls {
        tenant: Option<String>,
        bindings: Vec<kora_auth::AclBinding>,
    },
    /// DeleteAcls: every ACL of the namespace matching any filter goes; the answer lists,
    /// per filter, the ACLs it matched.
    DeleteAcls {
        tenant: Option<String>,
        filters: Vec<kora_auth::AclFilter>,
    },
    /// KIP-554 for one SCRAM user: sets and removes mechanisms' secrets in one step (a user
    /// left with none is deleted). Refused for API keys.
    AlterScram {
        login: String,
        tenant: Option<String>,
        upsert: Vec<(String, crate::security::ScramSecret)>,
        delete: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControllerResponse {
    Topic(TopicImage),
    TopicId(Uuid),
    ProducerIdStart(i64),
    /// A heartbeat's answer: whether the broker is fenced (it must register again if its
    /// incarnation is unknown).
    Heartbeat {
        fenced: bool,
        known: bool,
    },
    Partition(crate::image::PartitionState),
    Elections(Vec<ElectionOutcome>),
    Tenant(crate::security::TenantImage),
    AclsDeleted(Vec<Vec<kora_auth::AclBinding>>),
    Done,
}

/// Which leader an operator's election asks for (ElectLeaders' election_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Election {
    /// The partition's first replica, where it is alive and in sync (election_type 0).
    Preferred,
    /// Any live replica when the partition has no leader (election_type 1). Kora elects only
    /// in-sync replicas even then: a replica outside the ISR may lack acknowledged records.
    Unclean,
}

/// What an election did, per partition (each maps to one Kafka error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionOutcome {
    /// `leader` leads now.
    Elected { leader: i32 },
    /// The partition already has the leader asked for (ELECTION_NOT_NEEDED).
    NotNeeded,
    /// The preferred replica is fenced or out of sync (PREFERRED_LEADER_NOT_AVAILABLE).
    PreferredNotAvailable,
    /// No live in-sync replica can lead (ELIGIBLE_LEADERS_NOT_AVAILABLE).
    NoEligibleLeader,
    /// No such topic or partition (UNKNOWN_TOPIC_OR_PARTITION).
    UnknownPartition,
}

/// An error as it crosses the wire: the variant's name and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub kind: String,
    pub message: String,
}

impl From<&MetaError> for WireError {
    fn from(e: &MetaError) -> Self {
        let (kind, message) = match e {
            MetaError::TopicExists(m) => ("topic_exists", m.clone()),
            MetaError::UnknownTopic(m) => ("unknown_topic", m.clone()),
            MetaError::InvalidTopicName(m) => ("invalid_topic_name", m.clone()),
            MetaError::InvalidPartitions(m) => ("invalid_partitions", m.clone()),
            MetaError::InvalidReplicationFactor(m) => ("invalid_replication_factor", m.clone()),
            MetaError::InvalidConfig(c) => ("invalid_config", c.to_string()),
            MetaError::Config(m) => ("invalid_config", m.clone()),
            MetaError::InvalidRequest(m) => ("invalid_request", m.clone()),
            MetaError::NotController(m) => ("not_controller", m.clone().unwrap_or_default()),
            MetaError::StaleLeader(m) => ("stale_leader", m.clone()),
            MetaError::NoReassignmentInProgress(m) => ("no_reassignment", m.clone()),
            MetaError::TenantExists(m) => ("tenant_exists", m.clone()),
            MetaError::UnknownTenant(m) => ("unknown_tenant", m.clone()),
            MetaError::CredentialExists(m) => ("credential_exists", m.clone()),
            MetaError::UnknownCredential(m) => ("unknown_credential", m.clone()),
            MetaError::TenantLimit(m) => ("tenant_limit", m.clone()),
            e => ("store", e.to_string()),
        };
        WireError { kind: kind.into(), message }
    }
}

impl From<WireError> for MetaError {
    fn from(w: WireError) -> Self {
        match w.kind.as_str() {
            "topic_exists" => MetaError::TopicExists(w.message),
            "unknown_topic" => MetaError::UnknownTopic(w.message),
            "invalid_topic_name" => MetaError::InvalidTopicName(w.message),
            "invalid_partitions" => MetaError::InvalidPartitions(w.message),
            "invalid_replication_factor" => MetaError::InvalidReplicationFactor(w.message),
            "invalid_config" => MetaError::Config(w.message),
            "invalid_request" => MetaError::InvalidRequest(w.message),
            "not_controller" => MetaError::NotController((!w.message.is_empty()).then_some(w.message)),
            "stale_leader" => MetaError::StaleLeader(w.message),
            "no_reassignment" => MetaError::NoReassignmentInProgress(w.message),
            "tenant_exists" => MetaError::TenantExists(w.message),
            "unknown_tenant" => MetaError::UnknownTenant(w.message),
            "credential_exists" => MetaError::CredentialExists(w.message),
            "unknown_credential" => MetaError::UnknownCredential(w.message),
            "tenant_limit" => MetaError::TenantLimit(w.message),
            _ => MetaError::Store(w.message),
        }
    }
}

/// The active controller's answer to a forwarded request: the result, and the record index
/// the asker's image must reach before it answers its own client (read your writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardedReply {
    pub result: Result<ControllerResponse, WireError>,
    pub record_index: u64,
}

/// Carries requests to the active controller (kora-quorum: HTTP to the Raft leader).
pub trait Forwarder: Send + Sync + std::fmt::Debug {
    /// Blocking.
    fn forward(&self, request: &ControllerRequest) -> Result<ForwardedReply, MetaError>;
}

#[derive(Debug)]
enum Mode {
    /// This process is (or holds) the active controller: validate and commit here.
    Active(Arc<dyn RecordLog>),
    /// Requests go to the active controller elsewhere; the image follows the quorum locally.
    Forward(Arc<dyn Forwarder>),
}

/// Longest a forwarded write waits for this process's image to show it.
const READ_YOUR_WRITES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Controller {
    mode: Mode,
    /// Broker leases, on the active controller only (not replicated): broker id ->
    /// (incarnation, last heartbeat in clock ms).
    leases: Mutex<std::collections::HashMap<i32, (Uuid, u64)>>,
    /// Runs of brokers that did a controlled shutdown: their heartbeats do not unfence them
    /// (in memory, like leases: a run is gone within seconds of asking).
    stopping: Mutex<std::collections::HashSet<(i32, Uuid)>>,
    clock: Arc<dyn kora_common::Clock>,
    image_rx: watch::Receiver<Arc<MetadataImage>>,
    /// Held from validation to commit.
    write_lock: Mutex<()>,
    config: ControllerConfig,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("mode", &self.mode)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Kafka's topic name rules: 1..=249 of `[a-zA-Z0-9._-]`, not "." or "..". A tenant's
/// internal name (`lkc-x~name`) is checked on the client's part, and messages name only that
/// part; the whole stays within 249 bytes.
pub fn validate_topic_name(internal: &str) -> Result<(), MetaError> {
    let name = match kora_common::namespace::owner(internal) {
        Some(t) => {
            let plain = &internal[t.as_str().len() + 1..];
            let max = MAX_TOPIC_NAME_LEN - (internal.len() - plain.len());
            if plain.len() > max {
                return Err(MetaError::InvalidTopicName(format!(
                    "topic name is {} characters, the limit is {max}",
                    plain.len()
                )));
            }
            plain
        }
        None => internal,
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(MetaError::InvalidTopicName(format!("'{name}' is not a legal topic name")));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(MetaError::InvalidTopicName(format!(
            "topic name is {} characters, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(MetaError::InvalidTopicName(format!(
            "'{name}' contains '{c}'; legal characters are ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Longest tenant name.
pub const MAX_TENANT_NAME_LEN: usize = 64;

/// A tenant's name: 1 to 64 of `[a-zA-Z0-9._-]` (it appears in URLs and commands).
pub fn validate_tenant_name(name: &str) -> Result<(), MetaError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TENANT_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(MetaError::InvalidRequest(format!(
            "'{name}' is not a tenant name: 1 to {MAX_TENANT_NAME_LEN} ASCII letters, digits, '.', '_' or '-'"
        )))
    }
}

impl Controller {
    /// A controller over a [`LocalLog`] in `dir`, with a cluster id.
    pub fn open(dir: &Path, config: ControllerConfig) -> Result<Self, MetaError> {
        let c = Self::with_log(Arc::new(LocalLog::open(dir)?), config);
        c.ensure_cluster_id()?;
        Ok(c)
    }

    pub fn with_log(log: Arc<dyn RecordLog>, config: ControllerConfig) -> Self {
        let image_rx = log.subscribe();
        Controller {
            mode: Mode::Active(log),
            leases: Mutex::default(),
            stopping: Mutex::default(),
            clock: Arc::new(kora_common::SystemClock),
            image_rx,
            write_lock: Mutex::new(()),
            config,
        }
    }

    /// A controller that forwards every write to the active controller, reading the image
    /// from `image_rx` (this process's copy of the quorum's state).
    pub fn forwarding(
        forwarder: Arc<dyn Forwarder>,
        image_rx: watch::Receiver<Arc<MetadataImage>>,
        config: ControllerConfig,
    ) -> Self {
        Controller {
            mode: Mode::Forward(forwarder),
            leases: Mutex::default(),
            stopping: Mutex::default(),
            clock: Arc::new(kora_common::SystemClock),
            image_rx,
            write_lock: Mutex::new(()),
            config,
        }
    }

    /// Replaces the clock broker leases and the wait for a forwarded write are measured with
    /// (tests drive a manual clock; the broker passes its own).
    pub fn with_clock(mut self, clock: Arc<dyn kora_common::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs a request: here when this is the active controller, else at the active controller,
    /// returning once this process's image shows its effect.
    pub fn execute(&self, request: ControllerRequest) -> Result<ControllerResponse, MetaError> {
        match &self.mode {
            Mode::Active(_) => self.handle(request),
            Mode::Forward(f) => {
                let reply = f.forward(&request)?;
                let deadline = self.clock.now() + READ_YOUR_WRITES_TIMEOUT;
                while self.image().applied_index < reply.record_index {
                    if self.clock.now() >= deadline {
                        return Err(MetaError::Store(format!(
                            "record {} committed but not yet in this broker's metadata",
                            reply.record_index
                        )));
                    }
                    // A poll interval of this synchronous wait, not a reading of the time.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                reply.result.map_err(MetaError::from)
            }
        }
    }

    /// Runs a request forwarded by another process (on the active controller).
    pub fn execute_forwarded(&self, request: ControllerRequest) -> ForwardedReply {
        let result = self.execute(request).map_err(|e| WireError::from(&e));
        ForwardedReply { result, record_index: self.image().applied_index }
    }

    fn handle(&self, request: ControllerRequest) -> Result<ControllerResponse, MetaError> {
        use ControllerRequest as R;
        use ControllerResponse as A;
        match request {
            R::CreateTopic { request, validate_only } => {
                self.do_create_topic(&request, validate_only).map(A::Topic)
            }
            R::DeleteTopic { name } => self.do_delete_topic(&name).map(A::TopicId),
            R::CreatePartitions { name, count, validate_only } => {
                self.do_create_partitions(&name, count, validate_only).map(|()| A::Done)
            }
            R::SetTopicConfigs { name, configs, validate_only } => {
                self.do_set_topic_configs(&name, configs, validate_only).map(|()| A::Done)
            }
            R::AddRemoteSegment { topic_id, partition, segment } => {
                self.do_add_remote_segment(topic_id, partition, segment).map(|()| A::Done)
            }
            R::RemoveRemoteSegments { topic_id, partition, bases } => {
                self.do_remove_remote_segments(topic_id, partition, bases).map(|()| A::Done)
            }
            R::AllocateProducerIds { count } => self.do_allocate_producer_ids(count).map(A::ProducerIdStart),
            R::RegisterBroker { registration } => self.do_register_broker(registration).map(|()| A::Done),
            R::BrokerHeartbeat { broker_id, incarnation } => self.do_heartbeat(broker_id, incarnation),
            R::BrokerShutdown { broker_id, incarnation } => {
                self.do_broker_shutdown(broker_id, incarnation).map(|()| A::Done)
            }
            R::ReassignPartition { topic, partition, target } => {
                self.do_reassign(&topic, partition, target).map(A::Partition)
            }
            R::ElectLeaders { partitions, election } => {
                let _w = self.write_lock.lock();
                partitions
                    .iter()
                    .map(|(topic, partition)| self.do_elect_leader(topic, *partition, election))
                    .collect::<Result<Vec<_>, _>>()
                    .map(A::Elections)
            }
            R::AlterPartition { topic, partition, leader, leader_epoch, partition_epoch, isr } => self
                .do_alter_partition(&topic, partition, leader, leader_epoch, partition_epoch, isr)
                .map(A::Partition),
            R::CreateTenant { tenant } => self.do_create_tenant(tenant).map(A::Tenant),
            R::DeleteTenant { id } => self.do_delete_tenant(&id).map(|()| A::Done),
            R::AlterTenantLimits { id, changes, validate_only } => {
                self.do_alter_tenant_limits(&id, &changes, validate_only).map(A::Tenant)
            }
            R::PutCredential { credential, create_only } => {
                self.do_put_credential(credential, create_only).map(|()| A::Done)
            }
            R::DeleteCredential { login, tenant } => {
                self.do_delete_credential(&login, tenant.as_deref()).map(|()| A::Done)
            }
            R::CreateAcls { tenant, bindings } => self.do_create_acls(tenant, bindings).map(|()| A::Done),
            R::DeleteAcls { tenant, filters } => self.do_delete_acls(tenant, filters).map(A::AclsDeleted),
            R::AlterScram { login, tenant, upsert, delete } => {
                self.do_alter_scram(login, tenant, upsert, delete).map(|()| A::Done)
            }
        }
    }

    fn unexpected(r: ControllerResponse) -> MetaError {
        MetaError::Store(format!("unexpected controller response {r:?}"))
    }

    pub fn create_topic(&self, req: &TopicRequest, validate_only: bool) -> Result<TopicImage, MetaError> {
        // Defaults are the asking broker's (num.partitions, default.replication.factor), also
        // when the active controller runs elsewhere.
        let mut request = req.clone();
        if request.partitions == -1 {
            request.partitions = self.config.default_partitions;
        }
        if request.replication_factor == -1 {
            request.replication_factor = self.config.default_replication_factor;
        }
        match self.execute(ControllerRequest::CreateTopic { request, validate_only })? {
            ControllerResponse::Topic(t) => Ok(t),
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn delete_topic(&self, name: &str) -> Result<Uuid, MetaError> {
        match self.execute(ControllerRequest::DeleteTopic { name: name.to_string() })? {
            ControllerResponse::TopicId(id) => Ok(id),
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), MetaError> {
        self.execute(ControllerRequest::CreatePartitions { name: name.to_string(), count, validate_only })
            .map(|_| ())
    }

    /// Replaces a topic's overrides (AlterConfigs) after validating the resulting config.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), MetaError> {
        self.execute(ControllerRequest::SetTopicConfigs { name: name.to_string(), configs, validate_only })
            .map(|_| ())
    }

    /// Adds an uploaded segment to a partition's remote manifest.
    pub fn add_remote_segment(
        &self,
        topic_id: Uuid,
        partition: i32,
        segment: crate::record::RemoteSegment,
    ) -> Result<(), MetaError> {
        self.execute(ControllerRequest::AddRemoteSegment { topic_id, partition, segment }).map(|_| ())
    }

    /// Removes remote segments (by base offset) from a partition's manifest.
    pub fn remove_remote_segments(
        &self,
        topic_id: Uuid,
        partition: i32,
        bases: Vec<i64>,
    ) -> Result<(), MetaError> {
        if bases.is_empty() {
            return Ok(());
        }
        self.execute(ControllerRequest::RemoveRemoteSegments { topic_id, partition, bases }).map(|_| ())
    }

    /// A broker joins the cell (at every start, with a new incarnation).
    pub fn register_broker(&self, registration: crate::record::BrokerRegistration) -> Result<(), MetaError> {
        self.execute(ControllerRequest::RegisterBroker { registration }).map(|_| ())
    }

    /// A broker's heartbeat; `(fenced, known)`. An unknown incarnation must register again.
    pub fn broker_heartbeat(&self, broker_id: i32, incarnation: Uuid) -> Result<(bool, bool), MetaError> {
        match self.execute(ControllerRequest::BrokerHeartbeat { broker_id, incarnation })? {
            ControllerResponse::Heartbeat { fenced, known } => Ok((fenced, known)),
            r => Err(Self::unexpected(r)),
        }
    }

    /// Controlled shutdown of this run of a broker (see `ControllerRequest::BrokerShutdown`).
    pub fn broker_shutdown(&self, broker_id: i32, incarnation: Uuid) -> Result<(), MetaError> {
        self.execute(ControllerRequest::BrokerShutdown { broker_id, incarnation }).map(|_| ())
    }

    /// On the active controller: fences every unfenced broker whose last heartbeat is older
    /// than `session_timeout_ms`. A broker never heard from since this controller became
    /// active gets a full session from now (leases are not replicated). Returns those fenced.
    pub fn fence_expired(&self, session_timeout_ms: u64) -> Result<Vec<i32>, MetaError> {
        let now = self.clock.now_ms().max(0) as u64;
        let image = self.image();
        let mut doomed = Vec::new();
        {
            let mut leases = self.leases.lock();
            for (id, b) in &image.brokers {
                let inc = b.registration.incarnation;
                let entry = leases.entry(*id).or_insert((inc, now));
                if entry.0 != inc {
                    *entry = (inc, now);
                }
                if !b.fenced && now.saturating_sub(entry.1) > session_timeout_ms {
                    doomed.push((*id, inc));
                }
            }
        }
        let mut fenced = Vec::new();
        for (broker_id, incarnation) in doomed {
            let _w = self.write_lock.lock();
            self.commit(MetadataRecord::FenceBroker { broker_id, incarnation })?;
            tracing::warn!(broker_id, "broker fenced: no heartbeat within the session timeout");
            fenced.push(broker_id);
        }
        Ok(fenced)
    }

    /// A leader's ISR change; returns the partition as committed. Refused (StaleLeader) when
    /// the leader no longer leads at that epoch or the partition changed since it looked.
    pub fn alter_partition(
        &self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<crate::image::PartitionState, MetaError> {
        let req = ControllerRequest::AlterPartition {
            topic: topic.to_string(),
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        };
        match self.execute(req)? {
            ControllerResponse::Partition(p) => Ok(p),
            r => Err(Self::unexpected(r)),
        }
    }

    fn do_alter_partition(
        &self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<crate::image::PartitionState, MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        let t = image.topic(topic).ok_or_else(|| MetaError::UnknownTopic(topic.to_string()))?;
        let s = t
            .partition(partition)
            .ok_or_else(|| MetaError::InvalidRequest(format!("{topic}-{partition} has no placement")))?;
        if s.leader != leader || s.leader_epoch != leader_epoch {
            return Err(MetaError::StaleLeader(format!(
                "{topic}-{partition} is led by {} at epoch {}, not {leader} at {leader_epoch}",
                s.leader, s.leader_epoch
            )));
        }
        if s.partition_epoch != partition_epoch {
            return Err(MetaError::StaleLeader(format!(
                "{topic}-{partition} is at partition epoch {}, not {partition_epoch}",
                s.partition_epoch
            )));
        }
        let mut members = isr.clone();
        members.sort_unstable();
        members.dedup();
        let joins_fenced =
            isr.iter().any(|r| !s.isr.contains(r) && image.brokers.get(r).is_none_or(|b| b.fenced));
        if members.len() != isr.len()
            || !isr.contains(&leader)
            || isr.iter().any(|r| !s.replicas.contains(r))
            || joins_fenced
        {
            return Err(MetaError::InvalidRequest(format!(
                "ISR {isr:?} of {topic}-{partition} must be distinct live replicas of {:?} including the leader",
                s.replicas
            )));
        }
        let image = self.commit(MetadataRecord::AlterPartition {
            topic: topic.to_string(),
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        })?;
        // The last added replica of a move is in sync: the move completes.
        self.complete_move_if_in_sync(image, topic, partition)
    }

    /// Commits `CompleteReassignment` when every replica a move adds is in sync (the caller
    /// holds `write_lock`); returns the partition as it now stands.
    fn complete_move_if_in_sync(
        &self,
        mut image: Arc<MetadataImage>,
        topic: &str,
        partition: i32,
    ) -> Result<crate::image::PartitionState, MetaError> {
        let done = image
            .topic(topic)
            .and_then(|t| t.partition(partition))
            .is_some_and(|s| s.reassigning() && s.adding.iter().all(|r| s.isr.contains(r)));
        if done {
            image =
                self.commit(MetadataRecord::CompleteReassignment { topic: topic.to_string(), partition })?;
            tracing::info!(topic, partition, "reassignment completed");
        }
        let now = image.topic(topic).and_then(|t| t.partition(partition).cloned());
        now.ok_or_else(|| MetaError::UnknownTopic(topic.to_string()))
    }

    /// Starts moving a partition to `target` replicas (None: cancels the ongoing move).
    /// Returns the partition as committed (the move itself completes later, once every added
    /// replica is in sync).
    pub fn reassign_partition(
        &self,
        topic: &str,
        partition: i32,
        target: Option<Vec<i32>>,
    ) -> Result<crate::image::PartitionState, MetaError> {
        let req = ControllerRequest::ReassignPartition { topic: topic.to_string(), partition, target };
        match self.execute(req)? {
            ControllerResponse::Partition(p) => Ok(p),
            r => Err(Self::unexpected(r)),
        }
    }

    fn do_reassign(
        &self,
        topic: &str,
        partition: i32,
        target: Option<Vec<i32>>,
    ) -> Result<crate::image::PartitionState, MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        let t = image.topic(topic).ok_or_else(|| MetaError::UnknownTopic(topic.to_string()))?;
        let s = t.partition(partition).ok_or_else(|| {
            MetaError::InvalidPartitions(format!("{topic} has no placed partition {partition}"))
        })?;
        if let Some(target) = &target {
            let mut distinct = target.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if target.is_empty() || distinct.len() != target.len() {
                return Err(MetaError::InvalidReplicationFactor(format!(
                    "replicas {target:?} must be a non-empty list of distinct brokers"
                )));
            }
            if let Some(unknown) = target.iter().find(|r| !image.brokers.contains_key(r)) {
                return Err(MetaError::InvalidRequest(format!("broker {unknown} is not registered")));
            }
        } else if !s.reassigning() {
            return Err(MetaError::NoReassignmentInProgress(format!("{topic}-{partition}")));
        }
        let image = self.commit(MetadataRecord::ReassignPartition {
            topic: topic.to_string(),
            partition,
            target: target.clone(),
        })?;
        tracing::info!(topic, partition, ?target, "reassignment started");
        // Nothing to wait for when it only removes, or every added replica is in sync already.
        self.complete_move_if_in_sync(image, topic, partition)
    }

    /// Elects leaders as an operator asked (Kafka's ElectLeaders): one outcome per partition,
    /// in the order given.
    pub fn elect_leaders(
        &self,
        partitions: Vec<(String, i32)>,
        election: Election,
    ) -> Result<Vec<ElectionOutcome>, MetaError> {
        let n = partitions.len();
        match self.execute(ControllerRequest::ElectLeaders { partitions, election })? {
            ControllerResponse::Elections(o) if o.len() == n => Ok(o),
            r => Err(Self::unexpected(r)),
        }
    }

    /// [`Self::elect_leaders`] for one partition; an unknown one is an error.
    pub fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        election: Election,
    ) -> Result<ElectionOutcome, MetaError> {
        match self.elect_leaders(vec![(topic.to_string(), partition)], election)?.pop() {
            Some(ElectionOutcome::UnknownPartition) => {
                Err(MetaError::UnknownTopic(format!("{topic}-{partition}")))
            }
            Some(o) => Ok(o),
            None => Err(MetaError::Store("no election outcome".into())),
        }
    }

    /// One partition's election; the caller holds the write lock.
    fn do_elect_leader(
        &self,
        topic: &str,
        partition: i32,
        election: Election,
    ) -> Result<ElectionOutcome, MetaError> {
        let image = self.image();
        let Some(t) = image.topic(topic).filter(|t| (0..t.partitions).contains(&partition)) else {
            return Ok(ElectionOutcome::UnknownPartition);
        };
        // A single node places no replicas: it leads every partition already.
        let Some(s) = t.partition(partition) else { return Ok(ElectionOutcome::NotNeeded) };
        let alive = |id: i32| image.brokers.get(&id).is_some_and(|b| !b.fenced);
        let eligible = |id: i32| alive(id) && s.isr.contains(&id);
        let leader = match election {
            Election::Preferred => {
                let pref = s.preferred();
                if s.leader == pref {
                    return Ok(ElectionOutcome::NotNeeded);
                }
                if pref < 0 || !eligible(pref) {
                    return Ok(ElectionOutcome::PreferredNotAvailable);
                }
                pref
            }
            Election::Unclean => {
                if s.leader >= 0 && alive(s.leader) {
                    return Ok(ElectionOutcome::NotNeeded);
                }
                match s.replicas.iter().copied().find(|&r| eligible(r)) {
                    Some(r) => r,
                    None => return Ok(ElectionOutcome::NoEligibleLeader),
                }
            }
        };
        let image =
            self.commit(MetadataRecord::ElectLeader { topic: topic.to_string(), partition, leader })?;
        let now = image.topic(topic).and_then(|t| t.partition(partition)).map(|s| s.leader);
        debug_assert_eq!(now, Some(leader), "an eligible replica was elected");
        tracing::info!(topic, partition, leader, ?election, "leader elected by request");
        Ok(ElectionOutcome::Elected { leader })
    }

    /// On the active controller: moves leadership back to each partition's preferred replica
    /// (its first) where that replica is unfenced, in sync and not leading (Kafka's
    /// auto.leader.rebalance.enable). Returns how many partitions moved.
    pub fn elect_preferred_leaders(&self) -> Result<usize, MetaError> {
        let image = self.image();
        let alive = |id: i32| image.brokers.get(&id).is_some_and(|b| !b.fenced);
        let mut moves = Vec::new();
        for (name, t) in &image.topics {
            for (p, s) in t.assignments.iter().enumerate() {
                let pref = s.preferred();
                if pref >= 0 && s.leader != pref && alive(pref) && s.isr.contains(&pref) {
                    moves.push((name.clone(), p as i32, pref));
                }
            }
        }
        let n = moves.len();
        for (topic, partition, leader) in moves {
            let _w = self.write_lock.lock();
            self.commit(MetadataRecord::ElectLeader { topic, partition, leader })?;
        }
        if n > 0 {
            tracing::info!(partitions = n, "preferred leaders restored");
        }
        Ok(n)
    }

    fn now(&self) -> u64 {
        self.clock.now_ms().max(0) as u64
    }

    fn do_register_broker(&self, registration: crate::record::BrokerRegistration) -> Result<(), MetaError> {
        if registration.broker_id < 0 {
            return Err(MetaError::InvalidRequest(format!(
                "broker id {} is negative",
                registration.broker_id
            )));
        }
        let _w = self.write_lock.lock();
        self.leases.lock().insert(registration.broker_id, (registration.incarnation, self.now()));
        tracing::info!(broker_id = registration.broker_id, rack = ?registration.rack, "broker registered");
        self.commit(MetadataRecord::RegisterBroker { broker: registration })?;
        Ok(())
    }

    fn do_broker_shutdown(&self, broker_id: i32, incarnation: Uuid) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        let known = image.brokers.get(&broker_id).is_some_and(|b| b.registration.incarnation == incarnation);
        if known && !image.brokers[&broker_id].fenced {
            self.commit(MetadataRecord::FenceBroker { broker_id, incarnation })?;
            tracing::info!(broker_id, "broker fenced: controlled shutdown");
        }
        self.leases.lock().remove(&broker_id);
        let mut stopping = self.stopping.lock();
        stopping.retain(|(id, _)| *id != broker_id);
        stopping.insert((broker_id, incarnation));
        Ok(())
    }

    fn do_heartbeat(&self, broker_id: i32, incarnation: Uuid) -> Result<ControllerResponse, MetaError> {
        let image = self.image();
        let Some(b) = image.brokers.get(&broker_id).filter(|b| b.registration.incarnation == incarnation)
        else {
            return Ok(ControllerResponse::Heartbeat { fenced: true, known: false });
        };
        self.leases.lock().insert(broker_id, (incarnation, self.now()));
        if self.stopping.lock().contains(&(broker_id, incarnation)) {
            // A run that is shutting down stays out of the cell.
            return Ok(ControllerResponse::Heartbeat { fenced: true, known: true });
        }
        if b.fenced {
            let _w = self.write_lock.lock();
            self.commit(MetadataRecord::UnfenceBroker { broker_id, incarnation })?;
            tracing::info!(broker_id, "broker unfenced");
        }
        Ok(ControllerResponse::Heartbeat { fenced: false, known: true })
    }

    /// Reserves `count` producer ids and returns the first.
    pub fn allocate_producer_ids(&self, count: i64) -> Result<i64, MetaError> {
        match self.execute(ControllerRequest::AllocateProducerIds { count })? {
            ControllerResponse::ProducerIdStart(s) => Ok(s),
            r => Err(Self::unexpected(r)),
        }
    }

    /// Commits the cell's cluster id if it has none yet (the first record of a cell).
    pub fn ensure_cluster_id(&self) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        if self.image().cluster_id.is_empty() {
            let cluster_id = Uuid::new_v4().simple().to_string();
            self.commit(MetadataRecord::InitCluster { cluster_id })?;
        }
        Ok(())
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image_rx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_rx.clone()
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Commits through the log; the caller holds `write_lock`.
    fn commit(&self, record: MetadataRecord) -> Result<Arc<MetadataImage>, MetaError> {
        tracing::debug!(?record, "committing metadata record");
        match &self.mode {
            Mode::Active(log) => log.commit(record),
            Mode::Forward(_) => Err(MetaError::NotController(None)),
        }
    }

    /// Replica lists for partitions `first..first + count` (empty on a single node).
    ///
    /// Kafka's rack-aware round robin: unfenced brokers are interleaved by rack (one from each
    /// rack in turn), partition `p` starts at position `p + shift` of that list and takes the
    /// next `rf` brokers, so the replicas of a partition land in different racks whenever
    /// there are enough racks, and leaders (the first replica) spread evenly. `shift` comes
    /// from the topic id so topics do not all start on the same broker.
    fn place(
        &self,
        image: &MetadataImage,
        topic_id: &Uuid,
        first: i32,
        count: i32,
        rf: i16,
    ) -> Vec<Vec<i32>> {
        if self.config.broker_count > 0 {
            return Vec::new();
        }
        let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (id, b) in image.brokers.iter().filter(|(_, b)| !b.fenced) {
            by_rack.entry(b.registration.rack.clone().unwrap_or_default()).or_default().push(*id);
        }
        let mut order = Vec::new();
        let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
        for i in 0..deepest {
            for ids in by_rack.values() {
                if let Some(id) = ids.get(i) {
                    order.push(*id);
                }
            }
        }
        let n = order.len();
        assert!(n >= rf.max(1) as usize, "replication factor checked against available brokers");
        let shift = topic_id.as_bytes()[0] as usize;
        (first..first + count)
            .map(|p| {
                let start = (p as usize + shift) % n;
                (0..rf.max(1) as usize).map(|i| order[(start + i) % n]).collect()
            })
            .collect()
    }

    /// Brokers replicas can go to: the configured count, or (0 configured: a cell) the
    /// registered, unfenced brokers.
    fn available_brokers(&self) -> usize {
        if self.config.broker_count > 0 {
            return self.config.broker_count;
        }
        self.image().brokers.values().filter(|b| !b.fenced).count()
    }

    /// Resolves the effective config for a topic's overrides.
    pub fn topic_config(&self, overrides: &BTreeMap<String, String>) -> Result<TopicConfig, MetaError> {
        Ok(TopicConfig::resolve(&self.config.topic_defaults, overrides)?)
    }

    fn check_name_free(image: &MetadataImage, name: &str) -> Result<(), MetaError> {
        if image.topics.contains_key(name) {
            return Err(MetaError::TopicExists(name.to_string()));
        }
        // '.' and '_' collide in metric names; Kafka refuses such pairs.
        let norm = name.replace('.', "_");
        if let Some(other) = image.topics.keys().find(|t| t.replace('.', "_") == norm) {
            return Err(MetaError::InvalidTopicName(format!(
                "'{name}' collides with existing topic '{other}' ('.' and '_' are equivalent in metric names)"
            )));
        }
        Ok(())
    }

    /// CreateTopics for one topic. With `validate_only` nothing is committed; the would-be
    /// topic is returned either way.
    fn do_create_topic(&self, req: &TopicRequest, validate_only: bool) -> Result<TopicImage, MetaError> {
        validate_topic_name(&req.name)?;
        let partitions = if req.partitions == -1 { self.config.default_partitions } else { req.partitions };
        if partitions < 1 || partitions > self.config.max_partitions_per_topic {
            return Err(MetaError::InvalidPartitions(format!(
                "{partitions} partitions; must be between 1 and {}",
                self.config.max_partitions_per_topic
            )));
        }
        let rf = if req.replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            req.replication_factor
        };
        let available = self.available_brokers();
        if rf < 1 || rf as usize > available {
            return Err(MetaError::InvalidReplicationFactor(format!(
                "replication factor {rf} with {available} available broker(s)"
            )));
        }
        self.topic_config(&req.configs)?;
        let _w = self.write_lock.lock();
        Self::check_name_free(&self.image(), &req.name)?;
        Self::check_tenant_room(&self.image(), &req.name, 1, partitions)?;
        let topic_id = Uuid::new_v4();
        let assignments = self.place(&self.image(), &topic_id, 0, partitions, rf);
        let mut topic = TopicImage {
            name: req.name.clone(),
            topic_id,
            partitions,
            replication_factor: rf,
            configs: req.configs.clone(),
            assignments: Vec::new(),
        };
        if !validate_only {
            let image = self.commit(MetadataRecord::CreateTopic {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
                partitions,
                replication_factor: rf,
                configs: topic.configs.clone(),
                assignments,
            })?;
            if let Some(t) = image.topic(&topic.name) {
                topic.assignments = t.assignments.clone();
            }
        }
        Ok(topic)
    }

    /// A tenant's topic needs its tenant, and room within its limits for `topics` more topics
    /// and `partitions` more partitions. Names of the default namespace pass.
    fn check_tenant_room(
        image: &MetadataImage,
        name: &str,
        topics: u32,
        partitions: i32,
    ) -> Result<(), MetaError> {
        let Some(owner) = kora_common::namespace::owner(name) else { return Ok(()) };
        let t =
            image.tenants.get(owner.as_str()).ok_or_else(|| MetaError::UnknownTenant(owner.to_string()))?;
        let (mut have_topics, mut have_partitions) = (0u32, 0u64);
        for topic in image.tenant_topics(&t.id) {
            have_topics += 1;
            have_partitions += topic.partitions.max(0) as u64;
        }
        if let Some(max) = t.limits.max_topics {
            if topics > 0 && have_topics + topics > max {
                return Err(MetaError::TenantLimit(format!(
                    "the tenant has {have_topics} topics; its limit is {max}"
                )));
            }
        }
        if let Some(max) = t.limits.max_partitions {
            if have_partitions + partitions.max(0) as u64 > u64::from(max) {
                return Err(MetaError::TenantLimit(format!(
                    "the tenant has {have_partitions} partitions and asks for {partitions} more; its limit is {max}"
                )));
            }
        }
        Ok(())
    }

    fn do_create_tenant(
        &self,
        tenant: crate::security::TenantImage,
    ) -> Result<crate::security::TenantImage, MetaError> {
        kora_common::TenantId::parse(&tenant.id).map_err(|e| MetaError::InvalidRequest(e.to_string()))?;
        validate_tenant_name(&tenant.name)?;
        let _w = self.write_lock.lock();
        let image = self.image();
        if let Some(t) = image.tenants.get(&tenant.id) {
            return if t.name == tenant.name {
                Ok((**t).clone())
            } else {
                Err(MetaError::TenantExists(format!("tenant id {} is taken by '{}'", tenant.id, t.name)))
            };
        }
        if let Some(t) = image.tenant_by_name(&tenant.name) {
            return Err(MetaError::TenantExists(format!("a tenant named '{}' exists ({})", t.name, t.id)));
        }
        self.commit(MetadataRecord::CreateTenant { tenant: tenant.clone() })?;
        Ok(tenant)
    }

    fn do_alter_tenant_limits(
        &self,
        id: &str,
        changes: &[(String, Option<f64>)],
        validate_only: bool,
    ) -> Result<crate::security::TenantImage, MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        let t = image.tenants.get(id).ok_or_else(|| MetaError::UnknownTenant(id.to_string()))?;
        let mut limits = t.limits.clone();
        for (name, value) in changes {
            let key = crate::security::QuotaKey::parse(name)
                .ok_or_else(|| MetaError::InvalidRequest(format!("{name} is not a quota Kora knows")))?;
            limits.set(key, *value).map_err(MetaError::InvalidRequest)?;
        }
        let mut after = (**t).clone();
        after.limits = limits.clone();
        if !validate_only && limits != t.limits {
            self.commit(MetadataRecord::SetTenantLimits { id: id.to_string(), limits })?;
        }
        Ok(after)
    }

    fn do_delete_tenant(&self, id: &str) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        if !image.tenants.contains_key(id) {
            return Err(MetaError::UnknownTenant(id.to_string()));
        }
        // Topics first: if this stops half-way, the tenant is still there and a retry finishes.
        let topics: Vec<String> = image.tenant_topics(id).map(|t| t.name.clone()).collect();
        for name in topics {
            self.commit(MetadataRecord::DeleteTopic { name })?;
        }
        self.commit(MetadataRecord::DeleteTenant { id: id.to_string() })?;
        Ok(())
    }

    fn do_put_credential(
        &self,
        credential: crate::security::Credential,
        create_only: bool,
    ) -> Result<(), MetaError> {
        if credential.login.is_empty() || credential.scram.is_empty() {
            return Err(MetaError::InvalidRequest("a credential needs a login name and a secret".into()));
        }
        let _w = self.write_lock.lock();
        let image = self.image();
        if let Some(t) = &credential.tenant {
            if !image.tenants.contains_key(t) {
                return Err(MetaError::UnknownTenant(t.clone()));
            }
        }
        if let Some(existing) = image.credentials.get(&credential.login) {
            if create_only
                || existing.tenant != credential.tenant
                || existing.is_api_key() != credential.is_api_key()
            {
                return Err(MetaError::CredentialExists(credential.principal_name().to_string()));
            }
        }
        self.commit(MetadataRecord::PutCredential { credential })?;
        Ok(())
    }

    fn do_delete_credential(&self, login: &str, tenant: Option<&str>) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        match self.image().credentials.get(login) {
            Some(c) if c.tenant.as_deref() == tenant => {}
            // Another tenant's credential reads as no credential.
            _ => return Err(MetaError::UnknownCredential(login.to_string())),
        }
        self.commit(MetadataRecord::DeleteCredential { login: login.to_string() })?;
        Ok(())
    }

    fn do_create_acls(
        &self,
        tenant: Option<String>,
        bindings: Vec<kora_auth::AclBinding>,
    ) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        if let Some(t) = &tenant {
            if !self.image().tenants.contains_key(t) {
                return Err(MetaError::UnknownTenant(t.clone()));
            }
        }
        if !bindings.is_empty() {
            self.commit(MetadataRecord::CreateAcls { tenant, bindings })?;
        }
        Ok(())
    }

    fn do_delete_acls(
        &self,
        tenant: Option<String>,
        filters: Vec<kora_auth::AclFilter>,
    ) -> Result<Vec<Vec<kora_auth::AclBinding>>, MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        let set = image.acls.get(&crate::image::acl_key(tenant.as_deref())).cloned().unwrap_or_default();
        let matched: Vec<Vec<kora_auth::AclBinding>> =
            filters.iter().map(|f| set.iter().filter(|b| f.matches(b)).cloned().collect()).collect();
        let mut all: Vec<kora_auth::AclBinding> = matched.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        if !all.is_empty() {
            self.commit(MetadataRecord::DeleteAcls { tenant, bindings: all })?;
        }
        Ok(matched)
    }

    pub fn create_acls(
        &self,
        tenant: Option<&str>,
        bindings: Vec<kora_auth::AclBinding>,
    ) -> Result<(), MetaError> {
        self.execute(ControllerRequest::CreateAcls { tenant: tenant.map(String::from), bindings }).map(|_| ())
    }

    pub fn delete_acls(
        &self,
        tenant: Option<&str>,
        filters: Vec<kora_auth::AclFilter>,
    ) -> Result<Vec<Vec<kora_auth::AclBinding>>, MetaError> {
        match self.execute(ControllerRequest::DeleteAcls { tenant: tenant.map(String::from), filters })? {
            ControllerResponse::AclsDeleted(m) => Ok(m),
            r => Err(Self::unexpected(r)),
        }
    }

    fn do_alter_scram(
        &self,
        login: String,
        tenant: Option<String>,
        upsert: Vec<(String, crate::security::ScramSecret)>,
        delete: Vec<String>,
    ) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        if let Some(t) = &tenant {
            if !image.tenants.contains_key(t) {
                return Err(MetaError::UnknownTenant(t.clone()));
            }
        }
        let mut credential = match image.credentials.get(&login) {
            Some(c) if c.tenant != tenant => return Err(MetaError::UnknownCredential(login)),
            Some(c) if c.is_api_key() => {
                return Err(MetaError::CredentialExists(c.principal_name().to_string()))
            }
            Some(c) => (**c).clone(),
            None => crate::security::Credential {
                login: login.clone(),
                tenant,
                identity: crate::security::Identity::ScramUser,
                scram: BTreeMap::new(),
            },
        };
        for m in &delete {
            if credential.scram.remove(m).is_none() {
                return Err(MetaError::UnknownCredential(format!(
                    "{} has no {m} credential",
                    credential.principal_name()
                )));
            }
        }
        credential.scram.extend(upsert);
        let record = if credential.scram.is_empty() {
            MetadataRecord::DeleteCredential { login }
        } else {
            MetadataRecord::PutCredential { credential }
        };
        self.commit(record)?;
        Ok(())
    }

    /// KIP-554's change to one user (see `ControllerRequest::AlterScram`).
    pub fn alter_scram(
        &self,
        login: &str,
        tenant: Option<&str>,
        upsert: Vec<(String, crate::security::ScramSecret)>,
        delete: Vec<String>,
    ) -> Result<(), MetaError> {
        let req = ControllerRequest::AlterScram {
            login: login.to_string(),
            tenant: tenant.map(String::from),
            upsert,
            delete,
        };
        self.execute(req).map(|_| ())
    }

    pub fn create_tenant(
        &self,
        tenant: crate::security::TenantImage,
    ) -> Result<crate::security::TenantImage, MetaError> {
        match self.execute(ControllerRequest::CreateTenant { tenant })? {
            ControllerResponse::Tenant(t) => Ok(t),
            r => Err(Self::unexpected(r)),
        }
    }

    /// Sets and removes a tenant's limits and quotas by name (`QuotaKey`); all or none.
    pub fn alter_tenant_limits(
        &self,
        id: &str,
        changes: Vec<(String, Option<f64>)>,
        validate_only: bool,
    ) -> Result<crate::security::TenantImage, MetaError> {
        let req = ControllerRequest::AlterTenantLimits { id: id.to_string(), changes, validate_only };
        match self.execute(req)? {
            ControllerResponse::Tenant(t) => Ok(t),
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn delete_tenant(&self, id: &str) -> Result<(), MetaError> {
        self.execute(ControllerRequest::DeleteTenant { id: id.to_string() }).map(|_| ())
    }

    pub fn put_credential(
        &self,
        credential: crate::security::Credential,
        create_only: bool,
    ) -> Result<(), MetaError> {
        self.execute(ControllerRequest::PutCredential { credential, create_only }).map(|_| ())
    }

    pub fn delete_credential(&self, login: &str, tenant: Option<&str>) -> Result<(), MetaError> {
        let req = ControllerRequest::DeleteCredential {
            login: login.to_string(),
            tenant: tenant.map(String::from),
        };
        self.execute(req).map(|_| ())
    }

    fn do_delete_topic(&self, name: &str) -> Result<Uuid, MetaError> {
        let _w = self.write_lock.lock();
        let id = self
            .image()
            .topic(name)
            .map(|t| t.topic_id)
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        self.commit(MetadataRecord::DeleteTopic { name: name.to_string() })?;
        Ok(id)
    }

    fn do_create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        let image = self.image();
        let t = image.topic(name).ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        if count <= t.partitions {
            return Err(MetaError::InvalidPartitions(format!(
                "topic '{name}' has {} partitions; the new count {count} must be larger",
                t.partitions
            )));
        }
        if count > self.config.max_partitions_per_topic {
            return Err(MetaError::InvalidPartitions(format!(
                "{count} partitions exceeds the limit of {}",
                self.config.max_partitions_per_topic
            )));
        }
        Self::check_tenant_room(&image, name, 0, count - t.partitions)?;
        if !validate_only {
            let assignments =
                self.place(&image, &t.topic_id, t.partitions, count - t.partitions, t.replication_factor);
            self.commit(MetadataRecord::CreatePartitions { name: name.to_string(), count, assignments })?;
        }
        Ok(())
    }

    fn do_set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), MetaError> {
        self.topic_config(&configs)?;
        let _w = self.write_lock.lock();
        if self.image().topic(name).is_none() {
            return Err(MetaError::UnknownTopic(name.to_string()));
        }
        if !validate_only {
            self.commit(MetadataRecord::SetTopicConfigs { name: name.to_string(), configs })?;
        }
        Ok(())
    }

    fn do_add_remote_segment(
        &self,
        topic_id: uuid::Uuid,
        partition: i32,
        segment: crate::record::RemoteSegment,
    ) -> Result<(), MetaError> {
        let _w = self.write_lock.lock();
        if self.image().topic_by_id(&topic_id).is_none() {
            return Err(MetaError::UnknownTopic(topic_id.to_string()));
        }
        self.commit(MetadataRecord::AddRemoteSegment { topic_id, partition, segment }).map(|_| ())
    }

    fn do_remove_remote_segments(
        &self,
        topic_id: uuid::Uuid,
        partition: i32,
        bases: Vec<i64>,
    ) -> Result<(), MetaError> {
        if bases.is_empty() {
            return Ok(());
        }
        let _w = self.write_lock.lock();
        self.commit(MetadataRecord::RemoveRemoteSegments { topic_id, partition, bases }).map(|_| ())
    }

    fn do_allocate_producer_ids(&self, count: i64) -> Result<i64, MetaError> {
        if count < 1 {
            return Err(MetaError::InvalidRequest(format!("cannot allocate {count} producer ids")));
        }
        let _w = self.write_lock.lock();
        let start = self.image().next_producer_id;
        self.commit(MetadataRecord::AllocateProducerIds { start, count })?;
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{QuotaKey, TenantLimits};

    fn cfg() -> ControllerConfig {
        ControllerConfig {
            default_partitions: 1,
            default_replication_factor: 1,
            broker_count: 1,
            topic_defaults: BTreeMap::new(),
            max_partitions_per_topic: 1000,
        }
    }

    fn req(name: &str, partitions: i32) -> TopicRequest {
        TopicRequest { name: name.into(), partitions, replication_factor: -1, configs: BTreeMap::new() }
    }

    fn tenant(id: &str, name: &str, max_partitions: Option<u32>) -> crate::security::TenantImage {
        crate::security::TenantImage {
            id: id.into(),
            name: name.into(),
            created_ms: 1,
            limits: crate::security::TenantLimits { max_partitions, ..Default::default() },
            managed_by: None,
        }
    }

    fn key(login: &str, tenant: Option<&str>) -> crate::security::Credential {
        let secret = crate::security::ScramSecret {
            salt: vec![1],
            stored_key: vec![2],
            server_key: vec![3],
            iterations: 4096,
        };
        crate::security::Credential {
            login: login.into(),
            tenant: tenant.map(String::from),
            identity: crate::security::Identity::ApiKey {
                admin: true,
                description: String::new(),
                created_ms: 1,
            },
            scram: [("SCRAM-SHA-256".to_string(), secret)].into(),
        }
    }

    #[test]
    fn tenants_keys_and_limits_survive_reopen_and_delete_cascades() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let c = Controller::open(dir.path(), cfg()).expect("open");
            assert_eq!(c.create_tenant(tenant("lkc-a", "alpha", Some(4))).expect("create").id, "lkc-a");
            // Retrying the same request is a no-op; the same name with another id is refused.
            c.create_tenant(tenant("lkc-a", "alpha", Some(4))).expect("idempotent");
            assert!(matches!(
                c.create_tenant(tenant("lkc-b", "alpha", None)),
                Err(MetaError::TenantExists(_))
            ));
            assert!(matches!(
                c.create_tenant(tenant("lkc-B", "beta", None)),
                Err(MetaError::InvalidRequest(_))
            ));
            assert!(matches!(
                c.create_tenant(tenant("lkc-b", "no spaces", None)),
                Err(MetaError::InvalidRequest(_))
            ));
            c.create_tenant(tenant("lkc-b", "beta", None)).expect("beta");
            c.put_credential(key("KEYA", Some("lkc-a")), true).expect("key");
            assert!(matches!(
                c.put_credential(key("KEYA", Some("lkc-a")), true),
                Err(MetaError::CredentialExists(_))
            ));
            // Another tenant cannot take over or delete a login.
            assert!(matches!(
                c.put_credential(key("KEYA", Some("lkc-b")), false),
                Err(MetaError::CredentialExists(_))
            ));
            assert!(matches!(
                c.delete_credential("KEYA", Some("lkc-b")),
                Err(MetaError::UnknownCredential(_))
            ));
            assert!(matches!(
                c.put_credential(key("KEYZ", Some("lkc-z")), true),
                Err(MetaError::UnknownTenant(_))
            ));
            c.put_credential(key("KEYB", Some("lkc-b")), true).expect("key b");
            c.create_topic(&req("lkc-a~orders", 3), false).expect("tenant topic");
            // Limit: 4 partitions over all of alpha's topics.
            assert!(matches!(c.create_topic(&req("lkc-a~big", 2), false), Err(MetaError::TenantLimit(_))));
            assert!(matches!(c.create_partitions("lkc-a~orders", 5, false), Err(MetaError::TenantLimit(_))));
            c.create_partitions("lkc-a~orders", 4, false).expect("within the limit");
            assert!(matches!(
                c.create_topic(&req("lkc-z~orders", 1), false),
                Err(MetaError::UnknownTenant(_))
            ));
            c.create_topic(&req("lkc-b~orders", 1), false).expect("beta's orders");
        }
        let c = Controller::open(dir.path(), cfg()).expect("reopen");
        let img = c.image();
        assert_eq!(img.tenants.len(), 2);
        assert_eq!(img.credentials.len(), 2);
        assert_eq!(img.topic("lkc-a~orders").map(|t| t.partitions), Some(4));
        c.delete_tenant("lkc-a").expect("delete");
        assert!(matches!(c.delete_tenant("lkc-a"), Err(MetaError::UnknownTenant(_))));
        drop(c);
        let c = Controller::open(dir.path(), cfg()).expect("reopen");
        let img = c.image();
        assert!(img.topic("lkc-a~orders").is_none() && img.topic("lkc-b~orders").is_some());
        assert_eq!(img.tenants.keys().collect::<Vec<_>>(), ["lkc-b"]);
        assert_eq!(img.credentials.keys().collect::<Vec<_>>(), ["KEYB"]);
        // The snapshot form carries them too.
        let back = MetadataImage::from_snapshot(img.to_snapshot());
        assert_eq!(back.tenants, img.tenants);
        assert_eq!(back.credentials, img.credentials);
    }

    #[test]
    fn tenant_quotas_are_altered_all_or_none_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let set = |k: &str, v: Option<f64>| (k.to_string(), v);
        {
            let c = Controller::open(dir.path(), cfg()).expect("open");
            c.create_tenant(tenant("lkc-a", "alpha", None)).expect("create");
            let t = c
                .alter_tenant_limits("lkc-a", vec![set("producer_byte_rate", Some(1048576.0))], false)
                .expect("set");
            assert_eq!(t.limits.producer_byte_rate, Some(1048576.0));
            // One bad change refuses the whole request: nothing of it is applied.
            for bad in [
                vec![set("consumer_byte_rate", Some(10.0)), set("nonsense", Some(1.0))],
                vec![set("consumer_byte_rate", Some(0.0))],
                vec![set("consumer_byte_rate", Some(-5.0))],
                vec![set("max_connections", Some(2.5))],
                vec![set("consumer_byte_rate", Some(f64::NAN))],
            ] {
                assert!(
                    matches!(
                        c.alter_tenant_limits("lkc-a", bad.clone(), false),
                        Err(MetaError::InvalidRequest(_))
                    ),
                    "{bad:?}"
                );
            }
            assert_eq!(c.image().tenants["lkc-a"].limits.consumer_byte_rate, None);
            // validate_only answers as if applied, and commits nothing.
            let t =
                c.alter_tenant_limits("lkc-a", vec![set("max_connections", Some(10.0))], true).expect("dry");
            assert_eq!(t.limits.max_connections, Some(10));
            assert_eq!(c.image().tenants["lkc-a"].limits.max_connections, None);
            c.alter_tenant_limits(
                "lkc-a",
                vec![
                    set("consumer_byte_rate", Some(2e6)),
                    set("storage_bytes", Some(1e9)),
                    set("max_partitions", Some(8.0)),
                ],
                false,
            )
            .expect("set more");
            assert!(matches!(
                c.alter_tenant_limits("lkc-zz", vec![set("max_topics", Some(1.0))], false),
                Err(MetaError::UnknownTenant(_))
            ));
        }
        let c = Controller::open(dir.path(), cfg()).expect("reopen");
        let limits = c.image().tenants["lkc-a"].limits.clone();
        assert_eq!(
            limits.entries(),
            vec![
                (QuotaKey::ProducerByteRate, 1048576.0),
                (QuotaKey::ConsumerByteRate, 2e6),
                (QuotaKey::MaxPartitions, 8.0),
                (QuotaKey::StorageBytes, 1e9),
            ]
        );
        let t = c.alter_tenant_limits("lkc-a", vec![set("producer_byte_rate", None)], false).expect("remove");
        assert_eq!(t.limits.producer_byte_rate, None);
        // The limit on partitions is the one creation checks.
        assert!(matches!(c.create_topic(&req("lkc-a~big", 9), false), Err(MetaError::TenantLimit(_))));
        c.delete_tenant("lkc-a").expect("delete");
        c.create_tenant(tenant("lkc-a", "alpha", None)).expect("again");
        assert_eq!(
            c.image().tenants["lkc-a"].limits,
            TenantLimits::default(),
            "a deleted tenant's quotas go with it"
        );
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let (cluster, id) = {
            let c = Controller::open(dir.path(), cfg()).expect("open");
            let t = c.create_topic(&req("orders", 8), false).expect("create");
            c.create_partitions("orders", 12, false).expect("grow");
            let mut over = BTreeMap::new();
            over.insert("retention.ms".to_string(), "1000".to_string());
            c.set_topic_configs("orders", over, false).expect("alter");
            assert_eq!(c.allocate_producer_ids(1000).expect("pids"), 0);
            c.create_topic(&req("gone", 1), false).expect("create");
            c.delete_topic("gone").expect("delete");
            (c.image().cluster_id.clone(), t.topic_id)
        };
        let c = Controller::open(dir.path(), cfg()).expect("reopen");
        let img = c.image();
        assert_eq!(img.cluster_id, cluster);
        let t = img.topic("orders").expect("orders");
        assert_eq!((t.partitions, t.topic_id), (12, id));
        assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("1000"));
        assert!(img.topic("gone").is_none());
        assert_eq!(c.allocate_producer_ids(1000).expect("pids"), 1000);
        // A single node leads every partition: no election is needed, none is unknown.
        assert_eq!(
            c.elect_leader("orders", 11, Election::Preferred).expect("elect"),
            ElectionOutcome::NotNeeded
        );
        assert!(matches!(c.elect_leader("orders", 12, Election::Preferred), Err(MetaError::UnknownTopic(_))));
    }

    #[test]
    fn validation_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Controller::open(dir.path(), cfg()).expect("open");
        assert!(matches!(c.create_topic(&req("bad name", 1), false), Err(MetaError::InvalidTopicName(_))));
        assert!(matches!(
            c.create_topic(&req(&"x".repeat(250), 1), false),
            Err(MetaError::InvalidTopicName(_))
        ));
        assert!(matches!(c.create_topic(&req("t", 0), false), Err(MetaError::InvalidPartitions(_))));
        let mut r = req("t", 1);
        r.replication_factor = 3;
        assert!(matches!(c.create_topic(&r, false), Err(MetaError::InvalidReplicationFactor(_))));
        let mut r = req("t", 1);
        r.configs.insert("segment.bytes".into(), "x".into());
        assert!(matches!(c.create_topic(&r, false), Err(MetaError::InvalidConfig(_))));
        c.create_topic(&req("a.b", 1), false).expect("create");
        assert!(matches!(c.create_topic(&req("a.b", 1), false), Err(MetaError::TopicExists(_))));
        assert!(matches!(c.create_topic(&req("a_b", 1), false), Err(MetaError::InvalidTopicName(_))));
        assert!(c.create_topic(&req("v", 1), true).is_ok());
        assert!(c.image().topic("v").is_none(), "validate_only commits nothing");
        assert!(matches!(c.create_partitions("a.b", 1, false), Err(MetaError::InvalidPartitions(_))));
        assert!(matches!(c.delete_topic("nope"), Err(MetaError::UnknownTopic(_))));
    }

    #[test]
    fn brokers_register_heartbeat_and_are_fenced_when_their_lease_lapses() {
        let dir = tempfile::tempdir().expect("tmp");
        let clock = Arc::new(kora_common::ManualClock::new(1_000_000));
        let mut config = cfg();
        config.broker_count = 0;
        let c = Controller::open(dir.path(), config).expect("open").with_clock(clock.clone());
        // No broker yet: no replica can be placed.
        assert!(matches!(c.create_topic(&req("t", 1), false), Err(MetaError::InvalidReplicationFactor(_))));
        let reg = |id: i32| crate::record::BrokerRegistration {
            listeners: Vec::new(),
            broker_id: id,
            incarnation: Uuid::from_u128(id as u128),
            rack: Some(format!("zone-{id}")),
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
            admin: String::new(),
        };
        c.register_broker(reg(1)).expect("register 1");
        c.register_broker(reg(2)).expect("register 2");
        let t =
            c.create_topic(&TopicRequest { replication_factor: 2, ..req("t", 4) }, false).expect("rf 2 fits");
        // Every partition on both brokers (two racks); leaders spread over both.
        assert_eq!(t.assignments.len(), 4);
        for s in &t.assignments {
            let mut r = s.replicas.clone();
            r.sort();
            assert_eq!(r, vec![1, 2]);
            // Every live replica of an empty log is in sync.
            assert_eq!((s.leader, s.leader_epoch, s.isr.clone()), (s.replicas[0], 0, s.replicas.clone()));
        }
        let leaders: std::collections::BTreeSet<i32> = t.assignments.iter().map(|s| s.leader).collect();
        assert_eq!(leaders.len(), 2, "leaders spread: {:?}", t.assignments);
        clock.advance_ms(5_000);
        assert_eq!(c.broker_heartbeat(1, Uuid::from_u128(1)).expect("hb"), (false, true));
        clock.advance_ms(5_000);
        // Broker 2 has been silent for 10 s: fenced; broker 1 heartbeat 5 s ago: not.
        assert_eq!(c.fence_expired(6_000).expect("fence"), vec![2]);
        assert!(c.image().brokers[&2].fenced && !c.image().brokers[&1].fenced);
        // What broker 2 led moved to broker 1 (in sync) at a new epoch; 2 left every ISR.
        let img = c.image();
        let t = img.topic("t").expect("t");
        for s in &t.assignments {
            assert_eq!(s.leader, 1);
            assert_eq!(s.isr, vec![1]);
            assert_eq!(s.leader_epoch, if s.replicas[0] == 2 { 1 } else { 0 });
        }
        assert!(matches!(
            c.create_topic(&TopicRequest { replication_factor: 2, ..req("u", 1) }, false),
            Err(MetaError::InvalidReplicationFactor(_))
        ));
        // It comes back: unfenced, but out of sync until its leader says otherwise.
        assert_eq!(c.broker_heartbeat(2, Uuid::from_u128(2)).expect("hb"), (false, true));
        assert!(!c.image().brokers[&2].fenced);
        let img = c.image();
        let s0 = img.topic("t").expect("t").assignments[0].clone();
        assert_eq!(s0.isr, vec![1]);
        // The leader's ISR change: stale epochs are refused, a current one commits.
        let stale = c.alter_partition("t", 0, 1, s0.leader_epoch, s0.partition_epoch + 1, vec![1, 2]);
        assert!(matches!(stale, Err(MetaError::StaleLeader(_))), "{stale:?}");
        let not_leader = c.alter_partition("t", 0, 2, s0.leader_epoch, s0.partition_epoch, vec![1, 2]);
        assert!(matches!(not_leader, Err(MetaError::StaleLeader(_))));
        let bad = c.alter_partition("t", 0, 1, s0.leader_epoch, s0.partition_epoch, vec![2]);
        assert!(matches!(bad, Err(MetaError::InvalidRequest(_))), "the ISR keeps its leader");
        let now =
            c.alter_partition("t", 0, 1, s0.leader_epoch, s0.partition_epoch, vec![1, 2]).expect("expand");
        assert_eq!((now.isr.clone(), now.partition_epoch), (vec![1, 2], s0.partition_epoch + 1));
        // Preferred leaders return where the preferred replica is in sync again.
        for p in 1..4 {
            let s = c.image().topic("t").expect("t").assignments[p].clone();
            c.alter_partition("t", p as i32, 1, s.leader_epoch, s.partition_epoch, vec![1, 2])
                .expect("expand");
        }
        let moved = c.elect_preferred_leaders().expect("elect");
        assert_eq!(moved, 2, "the two partitions broker 2 prefers");
        for s in &c.image().topic("t").expect("t").assignments {
            assert_eq!(s.leader, s.replicas[0]);
        }
        assert_eq!(c.elect_preferred_leaders().expect("elect"), 0);
        assert_eq!(c.broker_heartbeat(2, Uuid::from_u128(99)).expect("hb"), (true, false));
        assert_eq!(c.fence_expired(6_000).expect("fence"), Vec::<i32>::new());
        // A run in controlled shutdown stays fenced whatever it still sends.
        c.broker_shutdown(2, Uuid::from_u128(2)).expect("shutdown");
        assert!(c.image().brokers[&2].fenced);
        assert_eq!(c.broker_heartbeat(2, Uuid::from_u128(2)).expect("hb"), (true, true));
        assert!(c.image().brokers[&2].fenced, "a late heartbeat does not bring it back");
    }

    #[test]
    fn operators_elect_leaders_only_among_live_in_sync_replicas() {
        let dir = tempfile::tempdir().expect("tmp");
        let clock = Arc::new(kora_common::ManualClock::new(1_000_000));
        let mut config = cfg();
        config.broker_count = 0;
        let c = Controller::open(dir.path(), config).expect("open").with_clock(clock.clone());
        for id in [1, 2] {
            c.register_broker(crate::record::BrokerRegistration {
                listeners: Vec::new(),
                broker_id: id,
                incarnation: Uuid::from_u128(id as u128),
                rack: None,
                host: "127.0.0.1".into(),
                port: 9000 + id as u16,
                admin: String::new(),
            })
            .expect("register");
        }
        c.create_topic(&TopicRequest { replication_factor: 2, ..req("t", 2) }, false).expect("create");
        let p = c
            .image()
            .topic("t")
            .expect("t")
            .assignments
            .iter()
            .position(|s| s.replicas[0] == 2)
            .expect("one") as i32;
        let state = |c: &Controller| c.image().topic("t").expect("t").assignments[p as usize].clone();
        assert_eq!(c.elect_leader("t", p, Election::Preferred).expect("elect"), ElectionOutcome::NotNeeded);
        // Broker 2 is fenced: its partition moves to 1, and 2 cannot be elected back.
        clock.advance_ms(10_000);
        c.broker_heartbeat(1, Uuid::from_u128(1)).expect("hb");
        assert_eq!(c.fence_expired(6_000).expect("fence"), vec![2]);
        assert_eq!(state(&c).leader, 1);
        let outcome = c.elect_leader("t", p, Election::Preferred).expect("elect");
        assert_eq!(outcome, ElectionOutcome::PreferredNotAvailable);
        // A live leader needs no unclean election.
        assert_eq!(c.elect_leader("t", p, Election::Unclean).expect("elect"), ElectionOutcome::NotNeeded);
        // Back, but out of sync: still not electable; once in sync, elected at a new epoch.
        c.broker_heartbeat(2, Uuid::from_u128(2)).expect("hb");
        let outcome = c.elect_leader("t", p, Election::Preferred).expect("elect");
        assert_eq!(outcome, ElectionOutcome::PreferredNotAvailable, "out of sync");
        let s = state(&c);
        c.alter_partition("t", p, 1, s.leader_epoch, s.partition_epoch, vec![1, 2]).expect("expand");
        let outcome = c.elect_leader("t", p, Election::Preferred).expect("elect");
        assert_eq!(outcome, ElectionOutcome::Elected { leader: 2 });
        assert_eq!((state(&c).leader, state(&c).leader_epoch), (2, s.leader_epoch + 1));
        assert!(matches!(c.elect_leader("nope", 0, Election::Preferred), Err(MetaError::UnknownTopic(_))));
        let batch = c
            .elect_leaders(vec![("t".into(), p), ("t".into(), 7), ("nope".into(), 0)], Election::Preferred)
            .expect("batch");
        assert_eq!(
            batch,
            vec![
                ElectionOutcome::NotNeeded,
                ElectionOutcome::UnknownPartition,
                ElectionOutcome::UnknownPartition
            ]
        );
        assert!(matches!(c.elect_leader("t", 9, Election::Preferred), Err(MetaError::UnknownTopic(_))));
    }
}

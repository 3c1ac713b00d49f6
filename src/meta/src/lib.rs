//! Cell metadata: an ordered log of records applied to a state machine, persisted in LMDB.
//!
//! Owns: the record types ([`record::MetadataRecord`]), the pure state machine and the image
//! brokers read ([`image`]), the LMDB (heed) persistence of the applied state ([`store`]), and
//! the controller that validates requests and proposes records ([`controller`]).
//!
//! Invariants:
//! - state changes only by applying records in log order; `apply` is deterministic and never
//!   fails on a committed record (a record that no longer applies is a no-op), so every voter
//!   that applies the same log holds the same image;
//! - the controller validates against the current image before proposing, under one lock, so
//!   two concurrent requests cannot both pass validation and conflict;
//! - readers get an immutable `Arc<MetadataImage>`; they never block the writer.
//!
//! Deliberately not here: Raft and networking. The controller commits through a
//! [`RecordLog`]; kora-quorum implements it over openraft (a cell's voters, or the single
//! in-process voter of `kora dev`) with this crate's image and store as the state machine.

pub mod controller;
pub mod image;
pub mod record;
pub mod security;
pub mod store;

pub use controller::{
    Controller, ControllerRequest, ControllerResponse, Election, ElectionOutcome, ForwardedReply, Forwarder,
    LocalLog, RecordLog, TopicRequest, WireError,
};
pub use image::{BrokerImage, ImageSnapshot, MetadataImage, TopicImage};
pub use record::{BrokerRegistration, ListenerEndpoint, MetadataRecord, RemoteSegment};
pub use security::{Credential, Identity, QuotaKey, ScramSecret, TenantImage, TenantLimits};

/// Errors of metadata operations, each with a Kafka error code in the broker's mapping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("invalid topic name: {0}")]
    InvalidTopicName(String),
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error(transparent)]
    InvalidConfig(#[from] kora_common::ConfigError),
    /// An invalid config reported by another process (the active controller).
    #[error("{0}")]
    Config(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("metadata store error: {0}")]
    Store(String),
    /// This voter is not the active controller (the Raft leader); the leader's address when
    /// known.
    #[error("not the active controller (leader: {})", .0.as_deref().unwrap_or("unknown"))]
    NotController(Option<String>),
    /// A leader's request about a partition it no longer leads, or that changed since it
    /// looked (Kafka: FENCED_LEADER_EPOCH / INVALID_UPDATE_VERSION).
    #[error("stale partition state: {0}")]
    StaleLeader(String),
    #[error("tenant '{0}' already exists")]
    TenantExists(String),
    #[error("unknown tenant '{0}'")]
    UnknownTenant(String),
    #[error("credential '{0}' already exists")]
    CredentialExists(String),
    #[error("unknown credential '{0}'")]
    UnknownCredential(String),
    /// A tenant's limit on topics or partitions.
    #[error("{0}")]
    TenantLimit(String),
    /// A cancellation of a reassignment that is not under way.
    #[error("no reassignment in progress: {0}")]
    NoReassignmentInProgress(String),
}

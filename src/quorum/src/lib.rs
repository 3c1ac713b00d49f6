//! A cell's metadata quorum: openraft driving kora-meta's state machine, with the Raft log in
//! LMDB (heed) and JSON-over-HTTP between voters.
//!
//! Owns: the Raft type configuration, the log store ([`log_store`]), the state machine adapter
//! ([`state_machine`]), the transport ([`network`]), a voter ([`node::Quorum`]) and its HTTP
//! API ([`api`]: Raft RPCs, status, voter changes, metadata writes forwarded to the leader),
//! and a whole running voter with the active controller's duties ([`voter::Voter`]).
//!
//! Invariants:
//! - an entry is acknowledged to Raft only once it is durable in LMDB;
//! - the state machine publishes an image only after persisting it, so readers never see a
//!   state that a crash could take back;
//! - only the leader commits; other voters answer "not leader" with the leader's address.
//!
//! Deliberately not here: validation of metadata requests (kora-meta's controller), brokers
//! and their registration (kora-broker).

// openraft's storage and network traits return its (large) error types by value.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod forward;
pub mod learner;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod voter;

pub use forward::{join_as_learner, HttpForwarder};
pub use learner::{Learner, LearnerOptions};
pub use node::{Quorum, QuorumConfig, QuorumStatus, RaftLog};
pub use voter::{Duties, Voter, VoterOptions};

pub type NodeId = u64;
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// Raft types of the metadata quorum: entries carry metadata records.
    pub TypeConfig:
        D = kora_meta::MetadataRecord,
        R = state_machine::Applied,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// Errors of the quorum.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    #[error("raft store: {0}")]
    Store(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("quorum config: {0}")]
    Config(String),
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("no leader elected in time")]
    NoLeader,
}

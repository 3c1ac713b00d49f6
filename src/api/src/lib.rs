//! Kora's control-plane API: the serde request and response types of every HTTP surface Kora
//! serves, one reqwest [`Client`] for all of them, and the bearer-token check their servers put
//! in front of every call that changes state.
//!
//! Surfaces (paths in [`paths`]):
//!
//! | surface | served by | calls |
//! | --- | --- | --- |
//! | broker admin | every broker (`admin.listeners`) | health, metrics, a topic's partitions and tiers, tenants and API keys, fault injection |
//! | metadata voter | `kora meta` | quorum status, voter and learner changes, topics, controller requests, Raft RPCs |
//! | broker learner | a broker in a cell (`metadata.listener`) | Raft RPCs from the quorum's leader |
//!
//! The fleet controller joins this table when it exists; the CLI, `kora top` and the services
//! share these types, so a field renamed on one side fails to compile on the other.
//!
//! Authentication (see [`auth`]): a request whose method is not GET or HEAD must carry
//! `Authorization: Bearer <token>`, the token being the contents of the server's token file
//! (`admin.token.file` for brokers, `--token-file` for voters). A server without a token file
//! refuses every such request (403). `/metrics`, `/health` and the other reads stay open, except
//! under [`auth::PRIVATE_PATHS`] (tenants and their keys), where every method needs the token.
//!
//! Owns: wire types, the client, token files and the server-side check.
//! Does not: know what the calls do (the broker, the quorum and kora-meta do), or depend on any
//! other Kora crate: a tool built on it talks to any Kora process.

pub mod auth;
pub mod client;
pub mod types;

pub use auth::Token;
pub use client::{ApiError, Client};
pub use types::*;

/// Paths of the HTTP surfaces.
pub mod paths {
    /// Broker and voter liveness (GET; open).
    pub const HEALTH: &str = "/health";
    /// Prometheus text (GET; open).
    pub const METRICS: &str = "/metrics";
    /// A topic's partitions, offsets and tiers on one broker: `/v1/topics/{name}` (GET).
    pub const BROKER_TOPIC: &str = "/v1/topics";
    /// Tenants of the cell (GET lists, POST [`crate::CreateTenant`]); `/{tenant}` (id or name)
    /// with GET or DELETE; `/{tenant}/api-keys` with GET or POST [`crate::CreateApiKey`];
    /// `/{tenant}/api-keys/{key}` with DELETE; `/{tenant}/acls` with GET or POST
    /// [`crate::AclEntry`]s, `/{tenant}/acls/delete` with POST [`crate::AclEntryFilter`].
    /// `/{tenant}/quotas` with GET or POST [`crate::AlterTenantQuotas`]; `/{tenant}/usage`
    /// with GET ([`crate::TenantUsage`]). Every method needs the token: key listings
    /// are not public.
    pub const TENANTS: &str = "/v1/tenants";
    /// One broker's per-tenant quota figures (GET [`crate::BrokerUsage`]; needs the token):
    /// what a cell's brokers exchange to split tenants' quotas.
    pub const QUOTA_USAGE: &str = "/v1/quota-usage";
    /// The cell's report to the fleet controller (GET [`crate::CellReport`]; needs the token).
    pub const CELL_REPORT: &str = "/v1/cell/report";
    /// Fault injection: POST cuts a broker off from its cell, DELETE heals it.
    pub const FAULTS_ISOLATE: &str = "/v1/faults/isolate";
    /// PUT [`crate::SlowDevice`] slows the disk's produce appends, DELETE restores it.
    pub const FAULTS_DISK: &str = "/v1/faults/disk";
    /// PUT [`crate::SlowDevice`] slows every response sent, DELETE restores the network.
    pub const FAULTS_NETWORK: &str = "/v1/faults/network";
    /// PUT [`crate::CpuBurn`] burns CPU in every tenant request, DELETE stops it.
    pub const FAULTS_CPU: &str = "/v1/faults/cpu";
    /// A voter's view of the quorum (GET).
    pub const QUORUM: &str = "/v1/quorum";
    /// Add a voter (POST [`crate::AddVoter`]); `/{id}` with DELETE removes one.
    pub const QUORUM_VOTERS: &str = "/v1/quorum/voters";
    /// Add a learner: a broker following the metadata log (POST [`crate::AddVoter`]).
    pub const QUORUM_LEARNERS: &str = "/v1/quorum/learners";
    /// Topics in the voter's applied image (GET), or create one (POST [`crate::CreateTopic`]).
    pub const TOPICS: &str = "/v1/topics";
    /// A controller request (kora-meta's `ControllerRequest`) run by the active controller.
    pub const CONTROLLER: &str = "/v1/controller";
    /// Raft RPCs between members of a quorum (POST, openraft's types as JSON).
    pub const RAFT_APPEND: &str = "/raft/append";
    pub const RAFT_VOTE: &str = "/raft/vote";
    pub const RAFT_SNAPSHOT: &str = "/raft/snapshot";
    /// Set by a voter relaying a request to the leader, so the leader does not relay it again.
    pub const FORWARDED_HEADER: &str = "x-kora-forwarded";
}

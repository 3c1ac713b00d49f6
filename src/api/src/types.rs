//! Request and response bodies of the HTTP surfaces, as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

// ---- broker admin ----

/// `GET /health` on a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHealth {
    pub status: String,
    pub node_id: i32,
    pub cluster_id: String,
    pub topics: usize,
    pub partitions: usize,
}

/// `GET /v1/topics/{name}` on a broker: the topic as this broker holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    pub topic: String,
    pub topic_id: String,
    pub internal: bool,
    pub remote_storage_enable: bool,
    pub cleanup_policy: String,
    /// The object store's URL, when the broker tiers.
    pub object_store: Option<String>,
    pub partitions: Vec<PartitionDescription>,
}

/// One partition in a [`TopicDescription`]. Local fields are null (and `local_start_offset`
/// is -1) on a broker that holds no replica of the partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: i32,
    pub log_start_offset: Option<i64>,
    pub local_start_offset: i64,
    pub high_watermark: Option<i64>,
    pub local_bytes: Option<u64>,
    pub local_segments: Option<usize>,
    pub remote_bytes: u64,
    pub remote_segments: Vec<RemoteSegmentDescription>,
}

/// A segment in the object store, as the partition's manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegmentDescription {
    pub base_offset: i64,
    /// One past the segment's last offset.
    pub end_offset: i64,
    pub size_bytes: u64,
    pub max_timestamp: i64,
    pub leader_epoch: i32,
    /// The segment's object keys.
    pub keys: Vec<String>,
}

/// The answer to `POST`/`DELETE /v1/faults/isolate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    pub isolated: bool,
}

/// `PUT /v1/faults/disk` and `/v1/faults/network`: the simulated device's bandwidth (the
/// answer to `DELETE` has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowDevice {
    pub bytes_per_second: Option<u64>,
}

/// `PUT /v1/faults/cpu`: CPU burned per tenant request (the answer to `DELETE` has 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuBurn {
    pub burn_ms_per_request: u64,
}

// ---- metadata voters ----

/// A voter's view of its quorum (`GET /v1/quorum`, and the answer to membership changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub node_id: u64,
    /// Raft role: Leader, Follower, Candidate, Learner.
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub leader_address: Option<String>,
    pub voters: BTreeMap<u64, String>,
    pub learners: BTreeMap<u64, String>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Records applied to the metadata image.
    pub record_index: u64,
    pub cluster_id: String,
    pub topics: usize,
}

/// A member joining a quorum: `POST /v1/quorum/voters` or `/v1/quorum/learners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddVoter {
    pub id: u64,
    /// Its Raft listener (host:port).
    pub address: String,
}

/// `POST /v1/topics` on a voter. -1 takes the cell's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopic {
    pub name: String,
    #[serde(default = "minus_one")]
    pub partitions: i32,
    #[serde(default = "minus_one_i16")]
    pub replication_factor: i16,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

fn minus_one() -> i32 {
    -1
}

fn minus_one_i16() -> i16 {
    -1
}

/// A topic in a voter's image (`GET /v1/topics`, and the answer to a creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: String,
    pub partitions: i32,
    pub replication_factor: i16,
}

/// `POST /v1/tenants` on a broker: a tenant of its cell, with a first API key unless
/// `api_key` is false. Retrying with the same `id` and name returns the same tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTenant {
    pub name: String,
    /// `lkc-...`; chosen by the cell when absent (the fleet controller passes its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_topics: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partitions: Option<u32>,
    #[serde(default = "yes")]
    pub api_key: bool,
    /// Who provisions it (the fleet controller: `fleet:<its id>`); shown in [`TenantInfo`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

fn yes() -> bool {
    true
}

/// A tenant as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub id: String,
    pub name: String,
    pub created_ms: u64,
    pub topics: usize,
    pub partitions: u64,
    pub api_keys: usize,
    pub scram_users: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_topics: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partitions: Option<u32>,
    /// Kafka addresses for the tenant's clients (`bootstrap.servers`), with the listeners'
    /// security protocols.
    pub bootstrap: Vec<Bootstrap>,
    /// Who provisioned it, when not an operator on the cell (`fleet:<controller id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub address: String,
    /// PLAINTEXT, SASL_PLAINTEXT, ...
    pub security_protocol: String,
}

/// A tenant's limits and quotas by name (`producer_byte_rate`, `max_connections`, ...: the
/// names AlterClientQuotas uses); only those set appear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantQuotas {
    pub tenant: String,
    pub name: String,
    pub quotas: std::collections::BTreeMap<String, f64>,
}

/// Sets and removes quotas of a tenant in one step, all or none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlterTenantQuotas {
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, f64>,
    #[serde(default)]
    pub remove: Vec<String>,
    /// Checked, not applied.
    #[serde(default)]
    pub validate_only: bool,
}

/// What one broker measured of one tenant over the current quota windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageFigures {
    pub produce_bytes_per_second: f64,
    pub fetch_bytes_per_second: f64,
    /// Request handling time, percent of one thread.
    pub request_percent: f64,
    pub connections: u64,
    /// New connections per second (the connection_creation_rate meter).
    #[serde(default)]
    pub connections_per_second: f64,
    /// Bytes of the partitions the broker leads (one copy: local beyond the object store,
    /// plus the object store).
    pub storage_bytes: u64,
    /// Whether the broker throttled the tenant in the last window, per meter.
    #[serde(default)]
    pub produce_throttled: bool,
    #[serde(default)]
    pub fetch_throttled: bool,
    #[serde(default)]
    pub request_throttled: bool,
    /// Since the broker started.
    pub bytes_in_total: u64,
    pub bytes_out_total: u64,
    pub throttle_ms_total: u64,
    pub throttled_requests_total: u64,
}

impl UsageFigures {
    /// Adds another broker's figures (rates and totals add; throttled if either was).
    pub fn add(&mut self, o: &UsageFigures) {
        self.produce_bytes_per_second += o.produce_bytes_per_second;
        self.fetch_bytes_per_second += o.fetch_bytes_per_second;
        self.request_percent += o.request_percent;
        self.connections += o.connections;
        self.connections_per_second += o.connections_per_second;
        self.storage_bytes += o.storage_bytes;
        self.produce_throttled |= o.produce_throttled;
        self.fetch_throttled |= o.fetch_throttled;
        self.request_throttled |= o.request_throttled;
        self.bytes_in_total += o.bytes_in_total;
        self.bytes_out_total += o.bytes_out_total;
        self.throttle_ms_total += o.throttle_ms_total;
        self.throttled_requests_total += o.throttled_requests_total;
    }
}

/// One broker's figures for every tenant it serves (the quota exchange between a cell's
/// brokers, `GET /v1/quota-usage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerUsage {
    pub broker_id: i32,
    pub tenants: std::collections::BTreeMap<String, UsageFigures>,
    /// The bounds the broker enforces per tenant, by quota name.
    #[serde(default)]
    pub bounds: std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>>,
    /// The broker's load, 0.0 (idle) upwards, 1.0 at its safe limits: the largest of its
    /// tenants' request time against its cores and their bytes against its ingress and egress
    /// limits (configured or learned).
    #[serde(default)]
    pub load: f64,
}

/// What a cell reports to the fleet controller (`GET /v1/cell/report`): its health and load,
/// what its tenants use, and each tenant's figures (with the fleet's mark, so the controller
/// knows which are its own to reconcile, and its totals for metering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    pub cluster_id: String,
    /// Registered brokers that are not fenced (1 for a single node).
    pub brokers: usize,
    /// Of them, those whose figures the answering broker holds (itself included).
    pub brokers_reporting: usize,
    /// No registered broker fenced, every one reporting.
    pub healthy: bool,
    /// The busiest broker's load ([`BrokerUsage::load`]).
    pub broker_load: f64,
    /// Summed over the cell's tenants.
    pub ingress_bytes_per_second: f64,
    pub egress_bytes_per_second: f64,
    pub partitions: u64,
    pub storage_bytes: u64,
    pub tenants: Vec<CellTenantReport>,
}

/// One tenant in a [`CellReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellTenantReport {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    pub partitions: u64,
    /// Over the cell.
    pub usage: UsageFigures,
}

/// A tenant's use over the cell and per broker, with its quotas and the bounds each broker
/// enforces now (`kora tenant usage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantUsage {
    pub tenant: String,
    pub name: String,
    pub quotas: std::collections::BTreeMap<String, f64>,
    pub cell: UsageFigures,
    pub brokers: Vec<BrokerTenantUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerTenantUsage {
    pub broker_id: i32,
    pub usage: UsageFigures,
    /// The bounds this broker enforces (its share of the quota), by quota name.
    #[serde(default)]
    pub bounds: std::collections::BTreeMap<String, f64>,
}

/// The answer to a tenant's creation: the tenant and, once, its first key's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreated {
    pub tenant: TenantInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyCreated>,
}

/// `POST /v1/tenants/{tenant}/api-keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateApiKey {
    #[serde(default)]
    pub description: String,
    /// An admin key may do anything in its tenant; others only what its ACLs allow.
    #[serde(default = "yes")]
    pub admin: bool,
}

/// An API key without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub key: String,
    pub tenant: String,
    pub admin: bool,
    pub description: String,
    pub created_ms: u64,
}

/// A new API key: the secret is shown this once and stored only as SCRAM hashes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub key: String,
    pub secret: String,
    pub tenant: String,
    pub admin: bool,
}

impl std::fmt::Debug for ApiKeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCreated")
            .field("key", &self.key)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// An ACL as operators write it: Kafka's names (`TOPIC`, `PREFIXED`, `READ`, `ALLOW`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub resource_type: String,
    pub resource_name: String,
    #[serde(default = "literal")]
    pub pattern_type: String,
    pub principal: String,
    #[serde(default = "any_host")]
    pub host: String,
    pub operation: String,
    #[serde(default = "allow")]
    pub permission: String,
}

fn literal() -> String {
    "LITERAL".into()
}

fn any_host() -> String {
    "*".into()
}

fn allow() -> String {
    "ALLOW".into()
}

/// Which ACLs to delete: absent fields match any (Kafka's filter; `MATCH` as pattern type
/// takes every ACL that applies to the named resource).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntryFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_topic_defaults_to_the_cells_settings() {
        let t: CreateTopic = serde_json::from_str(r#"{"name":"a"}"#).expect("decode");
        assert_eq!((t.partitions, t.replication_factor), (-1, -1));
        assert!(t.configs.is_empty());
    }

    #[test]
    fn partition_without_a_local_replica_round_trips_with_nulls() {
        let p = PartitionDescription {
            partition: 3,
            log_start_offset: None,
            local_start_offset: -1,
            high_watermark: None,
            local_bytes: None,
            local_segments: None,
            remote_bytes: 0,
            remote_segments: vec![],
        };
        let text = serde_json::to_string(&p).expect("encode");
        assert!(text.contains(r#""high_watermark":null"#), "{text}");
        assert_eq!(serde_json::from_str::<PartitionDescription>(&text).expect("decode"), p);
    }
}

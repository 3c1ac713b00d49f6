//! The fleet's inventory and tenants' intent: plain data, serialised as the controller's API
//! and its replicated records carry them.

use serde::{Deserialize, Serialize};

/// A cell's id, unique in the fleet (for example `us-east-1-c1`).
pub type CellId = String;
/// A tenant's id, unique in the fleet (`lkc-` and six characters).
pub type TenantId = String;

/// Characters after `lkc-` in the ids the fleet hands out (the cells' own length).
pub const TENANT_ID_CHARS: usize = 6;

/// A new tenant id drawn from `entropy`: `lkc-` and six lowercase letters or digits.
pub fn new_tenant_id(entropy: &dyn kora_common::Entropy) -> TenantId {
    format!("lkc-{}", entropy.string(b"abcdefghijklmnopqrstuvwxyz0123456789", TENANT_ID_CHARS))
}

/// A region of one cloud, with its availability zones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// The cloud it belongs to (`aws`, `gcp`, `azure`, `local`).
    pub cloud: String,
    /// Unique in the fleet (`us-east-1`).
    pub name: String,
    pub zones: Vec<String>,
}

/// Amounts of what a cell offers and a tenant takes: bytes/s in and out, partitions (replicas
/// counted once: the partitions a tenant may create), and stored bytes (one copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capacity {
    pub ingress_bytes_per_second: u64,
    pub egress_bytes_per_second: u64,
    pub partitions: u64,
    pub storage_bytes: u64,
}

impl Capacity {
    pub fn plus(&self, o: &Capacity) -> Capacity {
        Capacity {
            ingress_bytes_per_second: self
                .ingress_bytes_per_second
                .saturating_add(o.ingress_bytes_per_second),
            egress_bytes_per_second: self.egress_bytes_per_second.saturating_add(o.egress_bytes_per_second),
            partitions: self.partitions.saturating_add(o.partitions),
            storage_bytes: self.storage_bytes.saturating_add(o.storage_bytes),
        }
    }

    /// The larger of each amount.
    pub fn max(&self, o: &Capacity) -> Capacity {
        Capacity {
            ingress_bytes_per_second: self.ingress_bytes_per_second.max(o.ingress_bytes_per_second),
            egress_bytes_per_second: self.egress_bytes_per_second.max(o.egress_bytes_per_second),
            partitions: self.partitions.max(o.partitions),
            storage_bytes: self.storage_bytes.max(o.storage_bytes),
        }
    }

    /// Whether every amount is within `limit`'s.
    pub fn within(&self, limit: &Capacity) -> bool {
        self.ingress_bytes_per_second <= limit.ingress_bytes_per_second
            && self.egress_bytes_per_second <= limit.egress_bytes_per_second
            && self.partitions <= limit.partitions
            && self.storage_bytes <= limit.storage_bytes
    }
}

/// What a tenant is sized for: its quotas on the cell, and what placement reserves for it.
pub type TenantSize = Capacity;

/// The size of a tenant created without one: 10 MB/s in, 30 MB/s out, 100 partitions, 100 GB.
pub const DEFAULT_TENANT_SIZE: TenantSize = Capacity {
    ingress_bytes_per_second: 10_000_000,
    egress_bytes_per_second: 30_000_000,
    partitions: 100,
    storage_bytes: 100_000_000_000,
};

/// A cell as registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSpec {
    pub id: CellId,
    pub region: String,
    /// The zones its brokers are spread over (each one of the region's).
    pub zones: Vec<String>,
    /// The Kora version its brokers run.
    pub version: String,
    pub capacity: Capacity,
    /// Its brokers' admin endpoint (`http://…`), where the controller provisions tenants.
    pub admin: String,
    /// The Kafka bootstrap address its tenants' clients use.
    pub bootstrap: String,
    /// A cordoned cell keeps its tenants but gets no new one.
    pub cordoned: bool,
}

/// What a cell last reported: its health and load, not replicated (the next report replaces
/// it; a controller that restarts waits for the next one).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CellObservation {
    /// When it came, ms on the controller's clock.
    pub at_ms: u64,
    pub healthy: bool,
    /// The busiest broker's load, 0.0 (idle) to 1.0 (at its safe limits): request time, or
    /// bytes against its learned or configured ingress and egress limits.
    pub broker_load: f64,
    /// What its tenants use now (rates over the last window, partitions, stored bytes).
    pub used: Capacity,
}

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantPhase {
    /// Placed on a cell that does not hold it yet.
    Provisioning,
    /// Its cell holds it; clients can connect.
    Ready,
    /// Deleted by an operator: gone once its cell no longer holds it.
    Deleting,
}

/// A tenant as the fleet means it to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantIntent {
    pub id: TenantId,
    /// Unique in the fleet among tenants not being deleted.
    pub name: String,
    pub region: String,
    pub size: TenantSize,
    /// The cell placement chose; the tenant lives only there.
    pub cell: CellId,
    pub phase: TenantPhase,
    /// The create request's id: the same request again names this tenant, not a new one.
    pub request_id: String,
    pub created_ms: u64,
}

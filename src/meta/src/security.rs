//! Tenants and the identities that authenticate as them, as the cell's metadata holds them.
//!
//! A tenant (`lkc-` id plus a name) is a logical cluster inside the cell; its topics are the
//! metadata's topics whose internal names carry its prefix (`kora_common::namespace`).
//! A credential is a login name with SCRAM secrets (salt, StoredKey, ServerKey, iterations:
//! never a password) and whose principal it is:
//! - an API key: the login name is the key id, the principal `User:<key id>` of its tenant;
//!   its secret verifies as PLAIN or as either SCRAM mechanism;
//! - a SCRAM user (KIP-554): the login name is the user's internal name (`lkc-x~alice` for a
//!   tenant's `alice`, `alice` in the default namespace), so a login name alone says whose it
//!   is, with no lookup across tenants.
//!
//! The secret of an API key is generated where the request enters the cell and never reaches
//! the quorum: records hold only what `kora_auth::ScramCredential` derives from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A tenant's limits and quotas, set by operators (a tenant cannot raise its own); None: the
/// cell's own limits only. Rates are cell-wide, per second (each broker enforces a share).
/// AlterClientQuotas and `kora tenant quota` name them by [`QuotaKey`]: Kafka's quota names
/// where Kafka has one, Kora's otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_topics: Option<u32>,
    /// Partitions over all its topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partitions: Option<u32>,
    /// Produce bytes/s (Kafka's `producer_byte_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_byte_rate: Option<f64>,
    /// Fetch bytes/s to consumers (Kafka's `consumer_byte_rate`; followers are not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_byte_rate: Option<f64>,
    /// Request handling time, in percent of one thread (Kafka's `request_percentage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_percentage: Option<f64>,
    /// Partitions created or deleted per second (KIP-599's `controller_mutation_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_mutation_rate: Option<f64>,
    /// Open connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// New connections per second (Kafka's `connection_creation_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_creation_rate: Option<f64>,
    /// Bytes stored over all its partitions (one copy, local and tiered); over it, produce
    /// is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
}

/// The name of one limit or quota (wire and CLI name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKey {
    MaxTopics,
    MaxPartitions,
    ProducerByteRate,
    ConsumerByteRate,
    RequestPercentage,
    ControllerMutationRate,
    MaxConnections,
    ConnectionCreationRate,
    StorageBytes,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 9] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
        QuotaKey::ControllerMutationRate,
        QuotaKey::MaxConnections,
        QuotaKey::ConnectionCreationRate,
        QuotaKey::MaxPartitions,
        QuotaKey::MaxTopics,
        QuotaKey::StorageBytes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::MaxTopics => "max_topics",
            QuotaKey::MaxPartitions => "max_partitions",
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
            QuotaKey::ControllerMutationRate => "controller_mutation_rate",
            QuotaKey::MaxConnections => "max_connections",
            QuotaKey::ConnectionCreationRate => "connection_creation_rate",
            QuotaKey::StorageBytes => "storage_bytes",
        }
    }

    pub fn parse(name: &str) -> Option<QuotaKey> {
        QuotaKey::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether values are whole numbers (counts and bytes) rather than rates.
    pub fn integral(self) -> bool {
        matches!(
            self,
            QuotaKey::MaxTopics | QuotaKey::MaxPartitions | QuotaKey::MaxConnections | QuotaKey::StorageBytes
        )
    }
}

impl std::fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TenantLimits {
    pub fn get(&self, key: QuotaKey) -> Option<f64> {
        match key {
            QuotaKey::MaxTopics => self.max_topics.map(f64::from),
            QuotaKey::MaxPartitions => self.max_partitions.map(f64::from),
            QuotaKey::ProducerByteRate => self.producer_byte_rate,
            QuotaKey::ConsumerByteRate => self.consumer_byte_rate,
            QuotaKey::RequestPercentage => self.request_percentage,
            QuotaKey::ControllerMutationRate => self.controller_mutation_rate,
            QuotaKey::MaxConnections => self.max_connections.map(f64::from),
            QuotaKey::ConnectionCreationRate => self.connection_creation_rate,
            QuotaKey::StorageBytes => self.storage_bytes.map(|v| v as f64),
        }
    }

    /// Sets (Some) or removes (None) one limit. Values must be finite and positive; counts
    /// and bytes whole numbers in range.
    pub fn set(&mut self, key: QuotaKey, value: Option<f64>) -> Result<(), String> {
        if let Some(v) = value {
            if !v.is_finite() || v <= 0.0 {
                return Err(format!("{key} must be a positive number, not {v}"));
            }
            if key.integral() && v.fract() != 0.0 {
                return Err(format!("{key} must be a whole number, not {v}"));
            }
            let max = match key {
                QuotaKey::StorageBytes => (1u64 << 53) as f64,
                k if k.integral() => f64::from(u32::MAX),
                _ => f64::MAX,
            };
            if v > max {
                return Err(format!("{key} must be at most {max}, not {v}"));
            }
        }
        let u32v = value.map(|v| v as u32);
        match key {
            QuotaKey::MaxTopics => self.max_topics = u32v,
            QuotaKey::MaxPartitions => self.max_partitions = u32v,
            QuotaKey::ProducerByteRate => self.producer_byte_rate = value,
            QuotaKey::ConsumerByteRate => self.consumer_byte_rate = value,
            QuotaKey::RequestPercentage => self.request_percentage = value,
            QuotaKey::ControllerMutationRate => self.controller_mutation_rate = value,
            QuotaKey::MaxConnections => self.max_connections = u32v,
            QuotaKey::ConnectionCreationRate => self.connection_creation_rate = value,
            QuotaKey::StorageBytes => self.storage_bytes = value.map(|v| v as u64),
        }
        Ok(())
    }

    /// Every limit that is set, in [`QuotaKey::ALL`]'s order.
    pub fn entries(&self) -> Vec<(QuotaKey, f64)> {
        QuotaKey::ALL.into_iter().filter_map(|k| self.get(k).map(|v| (k, v))).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantImage {
    /// `lkc-...`: the prefix of its internal names.
    pub id: String,
    /// The operator's name for it; unique in the cell.
    pub name: String,
    pub created_ms: u64,
    #[serde(default)]
    pub limits: TenantLimits,
    /// Who provisioned it, when not an operator on the cell (`fleet:<controller id>`): the
    /// fleet controller reconciles only the tenants it manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// One mechanism's SCRAM secrets (RFC 5802's StoredKey and ServerKey).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramSecret {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramSecret").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl From<kora_auth::scram::ScramCredential> for ScramSecret {
    fn from(c: kora_auth::scram::ScramCredential) -> Self {
        ScramSecret {
            salt: c.salt,
            stored_key: c.stored_key,
            server_key: c.server_key,
            iterations: c.iterations,
        }
    }
}

impl ScramSecret {
    /// The secret as `mechanism`'s credential, for the SASL exchange.
    pub fn credential(&self, mechanism: kora_auth::scram::Mechanism) -> kora_auth::scram::ScramCredential {
        kora_auth::scram::ScramCredential {
            mechanism,
            salt: self.salt.clone(),
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
            iterations: self.iterations,
        }
    }
}

/// What a credential authenticates as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identity {
    /// An API key. `admin` keys may do anything within their tenant; others only what its
    /// ACLs allow.
    ApiKey {
        admin: bool,
        #[serde(default)]
        description: String,
        created_ms: u64,
    },
    /// A SCRAM user created with AlterUserScramCredentials.
    ScramUser,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The SASL login name (see the module doc).
    pub login: String,
    /// The owning tenant's id; None for the default namespace (operators, `kora dev`).
    pub tenant: Option<String>,
    pub identity: Identity,
    /// By mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub scram: BTreeMap<String, ScramSecret>,
}

impl Credential {
    /// The principal's name as its tenant sees it: the key id, or the user's plain name.
    pub fn principal_name(&self) -> &str {
        match &self.tenant {
            Some(t) => self
                .login
                .strip_prefix(t.as_str())
                .and_then(|rest| rest.strip_prefix(kora_common::namespace::SEPARATOR))
                .unwrap_or(&self.login),
            None => &self.login,
        }
    }

    pub fn is_api_key(&self) -> bool {
        matches!(self.identity, Identity::ApiKey { .. })
    }
}

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

/// Per-tenant limits on what it may create (None: the cell's own limits only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_topics: Option<u32>,
    /// Partitions over all its topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partitions: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantImage {
    /// `lkc-...`: the prefix of its internal names.
    pub id: String,
    /// The operator's name for it; unique in the cell.
    pub name: String,
    pub created_ms: u64,
    #[serde(default)]
    pub limits: TenantLimits,
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

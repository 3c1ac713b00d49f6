//! Who may do what: the connection's [`Gate`], from the namespace's ACLs (kora-auth's
//! `Authorizer`), checked at the request edge on the names the client uses.
//!
//! - A tenant's admin API key may do anything within its tenant; its other keys and its SCRAM
//!   users only what the tenant's ACLs allow (nothing when none matches: Kafka's default).
//! - The default namespace is checked only when `authorizer.class.name` is set, with
//!   `super.users` and `allow.everyone.if.no.acl.found` as in Kafka.
//!
//! Authorizers are built once per change of a namespace's ACLs and shared by every request
//! (a lookup costs what kora-auth's index costs: tens of nanoseconds with 10,000 ACLs).

use std::collections::HashMap;
use std::sync::Arc;

use kora_auth::acl::host_string;
use kora_auth::{AclBinding, AclOperation, Authorizer, AuthorizerConfig, Decision, ResourceType};
use kora_common::Namespace;
use kora_meta::{Identity, MetadataImage};
use parking_lot::Mutex;

use crate::edge::ConnectionContext;

pub(crate) use crate::listeners::AuthorizerSettings;

/// What a request may do.
#[derive(Debug, Clone)]
pub(crate) enum Gate {
    /// Everything (a tenant's admin key, or no authorizer).
    Open,
    Acls {
        authorizer: Arc<Authorizer>,
        principal: String,
        host: String,
    },
}

impl Gate {
    pub(crate) fn allows(&self, op: AclOperation, rt: ResourceType, name: &str) -> bool {
        match self {
            Gate::Open => true,
            Gate::Acls { authorizer, principal, host } => {
                authorizer.authorize(principal, host, op, rt, name) == Decision::Allowed
            }
        }
    }

    pub(crate) fn allows_cluster(&self, op: AclOperation) -> bool {
        self.allows(op, ResourceType::Cluster, kora_auth::acl::CLUSTER_NAME)
    }

    /// KIP-679: some resource of the type may be the subject of `op`.
    pub(crate) fn allows_some(&self, op: AclOperation, rt: ResourceType) -> bool {
        match self {
            Gate::Open => true,
            Gate::Acls { authorizer, principal, host } => {
                authorizer.authorize_by_resource_type(principal, host, op, rt) == Decision::Allowed
            }
        }
    }
}

/// A namespace's ACLs and the authorizer built from them.
type Built = (Arc<Vec<AclBinding>>, Arc<Authorizer>);

/// Authorizers per namespace, rebuilt when its ACLs change.
#[derive(Debug)]
pub(crate) struct Authz {
    settings: AuthorizerSettings,
    /// The default namespace's: super.users, allow.everyone.if.no.acl.found.
    default_config: AuthorizerConfig,
    cache: Mutex<HashMap<String, Built>>,
}

impl Authz {
    pub(crate) fn new(settings: AuthorizerSettings, super_users: &[String]) -> Self {
        let default_config = AuthorizerConfig {
            super_users: super_users.iter().cloned().collect(),
            allow_everyone_if_no_acl_found: settings.allow_everyone_if_no_acl_found,
        };
        Self { settings, default_config, cache: Mutex::default() }
    }

    fn authorizer(&self, image: &MetadataImage, key: &str, config: &AuthorizerConfig) -> Arc<Authorizer> {
        let set = image.acls.get(key).cloned().unwrap_or_default();
        let mut cache = self.cache.lock();
        if let Some((seen, a)) = cache.get(key) {
            if Arc::ptr_eq(seen, &set) || (seen.is_empty() && set.is_empty()) {
                return a.clone();
            }
        }
        let a = Arc::new(Authorizer::new(config.clone(), set.iter().cloned()));
        // Namespaces that lost their ACLs (deleted tenants) leave the cache.
        cache.retain(|k, _| image.acls.contains_key(k) || k.is_empty());
        cache.insert(key.to_string(), (set, a.clone()));
        a
    }

    /// The gate of a request on `ctx`.
    pub(crate) fn gate(&self, image: &MetadataImage, ctx: &ConnectionContext) -> Gate {
        // Built only for the gates that check (an open one costs no allocation).
        let who = || (ctx.principal.to_string(), host_string(ctx.peer.ip()));
        match &ctx.namespace {
            Namespace::Tenant(t) => {
                let admin = ctx
                    .credential
                    .as_ref()
                    .is_some_and(|c| matches!(c.identity, Identity::ApiKey { admin: true, .. }));
                if admin {
                    return Gate::Open;
                }
                let authorizer = self.authorizer(image, t.as_str(), &AuthorizerConfig::default());
                let (principal, host) = who();
                Gate::Acls { authorizer, principal, host }
            }
            Namespace::Default if !self.settings.enabled => Gate::Open,
            Namespace::Default => {
                let authorizer = self.authorizer(image, "", &self.default_config);
                let (principal, host) = who();
                Gate::Acls { authorizer, principal, host }
            }
        }
    }
}

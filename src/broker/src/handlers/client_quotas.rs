//! DescribeClientQuotas and AlterClientQuotas (KIP-546) over tenants' quotas.
//!
//! Kora's quotas belong to tenants, so its entity type is `tenant` (entity name: the tenant's
//! `lkc-` id, or its name in a request). The quota keys are kora-meta's `QuotaKey` names:
//! Kafka's (`producer_byte_rate`, `consumer_byte_rate`, `request_percentage`,
//! `controller_mutation_rate`, `connection_creation_rate`) and Kora's (`max_connections`,
//! `max_partitions`, `max_topics`, `storage_bytes`).
//!
//! - Only the cell's operators alter quotas (the default namespace, ALTER_CONFIGS on the
//!   cluster); a tenant's connection gets CLUSTER_AUTHORIZATION_FAILED on every entry, so no
//!   tenant raises its own quota.
//! - Operators describe every tenant; a tenant's connection sees its own tenant's entry only
//!   (DESCRIBE_CONFIGS on its cluster).
//! - Kafka's own entity types (`user`, `client-id`, `ip`) hold no quotas in Kora: describing
//!   them finds nothing (so `kafka-configs --describe --entity-type users` works), altering
//!   them is INVALID_REQUEST naming the `tenant` type. Other types are refused as Kafka does:
//!   UNSUPPORTED_VERSION for Describe, INVALID_REQUEST for Alter.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kora_auth::AclOperation;
use kora_common::Namespace;
use kora_meta::{MetaError, MetadataImage, TenantImage};

use super::authz::Gate;
use super::families::Security;
use super::sb;
use crate::edge::ConnectionContext;

/// Kora's quota entity type.
pub(crate) const TENANT: &str = "tenant";
/// Kafka's entity types: known, but holding no Kora quota.
const KAFKA_TYPES: [&str; 3] = ["user", "client-id", "ip"];

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

fn find<'a>(image: &'a MetadataImage, key: &str) -> Option<&'a Arc<TenantImage>> {
    image.tenants.get(key).or_else(|| image.tenant_by_name(key))
}

fn describe_error(code: ResponseError, message: &str) -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default()
        .with_error_code(code.code())
        .with_error_message(Some(sb(message)))
        .with_entries(None)
}

pub(super) fn describe(
    sec: &Security<'_>,
    ctx: &ConnectionContext,
    gate: &Gate,
    r: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    if !gate.allows_cluster(AclOperation::DescribeConfigs) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_entries(None);
    }
    // Which tenants the filter names: None for "any".
    let mut wanted: Option<String> = None;
    let mut other_types = false;
    let mut seen = std::collections::HashSet::new();
    for c in &r.components {
        let t = c.entity_type.as_str();
        if t.is_empty() || !seen.insert(t.to_string()) {
            return describe_error(
                ResponseError::InvalidRequest,
                "each entity type may appear once, and not empty",
            );
        }
        match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(_)) | (MATCH_DEFAULT | MATCH_ANY, None) => {}
            (MATCH_EXACT | MATCH_DEFAULT | MATCH_ANY, _) => {
                return describe_error(
                    ResponseError::InvalidRequest,
                    &format!("the match of entity type {t} does not fit its match type"),
                )
            }
            (m, _) => {
                return describe_error(ResponseError::InvalidRequest, &format!("unknown match type {m}"))
            }
        }
        if t == TENANT {
            match c.match_type {
                MATCH_EXACT => wanted = c._match.as_ref().map(|m| m.to_string()),
                // Tenants have no default entity.
                MATCH_DEFAULT => other_types = true,
                _ => {}
            }
        } else if KAFKA_TYPES.contains(&t) {
            other_types = true;
        } else {
            return describe_error(
                ResponseError::UnsupportedVersion,
                &format!("custom entity type {t} not supported"),
            );
        }
    }
    let image = sec.view.image();
    // A tenant's entity has one component: a strict filter with others matches nothing, as
    // does any filter on Kafka's types.
    let strict_miss = r.strict && r.components.len() != 1;
    let empty_strict = r.strict && r.components.is_empty();
    let mut entries = Vec::new();
    if !(other_types || strict_miss || empty_strict) {
        let tenants: Vec<&Arc<TenantImage>> = match &ctx.namespace {
            Namespace::Tenant(own) => image.tenants.get(own.as_str()).into_iter().collect(),
            Namespace::Default => image.tenants.values().collect(),
        };
        for t in tenants {
            if let Some(w) = &wanted {
                if find(&image, w).map(|x| x.id.as_str()) != Some(t.id.as_str()) {
                    continue;
                }
            }
            let values: Vec<_> = t
                .limits
                .entries()
                .into_iter()
                .map(|(k, v)| {
                    describe_client_quotas_response::ValueData::default().with_key(sb(k.name())).with_value(v)
                })
                .collect();
            if values.is_empty() {
                continue;
            }
            entries.push(
                describe_client_quotas_response::EntryData::default()
                    .with_entity(vec![describe_client_quotas_response::EntityData::default()
                        .with_entity_type(sb(TENANT))
                        .with_entity_name(Some(sb(&t.id)))])
                    .with_values(values),
            );
        }
    }
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

pub(super) async fn alter(
    sec: &Security<'_>,
    ctx: &ConnectionContext,
    gate: &Gate,
    r: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let operator = ctx.namespace == Namespace::Default && gate.allows_cluster(AclOperation::AlterConfigs);
    let mut out = Vec::with_capacity(r.entries.len());
    for e in r.entries {
        let entity: Vec<_> = e
            .entity
            .iter()
            .map(|x| {
                alter_client_quotas_response::EntityData::default()
                    .with_entity_type(x.entity_type.clone())
                    .with_entity_name(x.entity_name.clone())
            })
            .collect();
        let result = alter_client_quotas_response::EntryData::default().with_entity(entity);
        let fail = |code: ResponseError, message: String| {
            result.clone().with_error_code(code.code()).with_error_message(Some(sb(&message)))
        };
        if !operator {
            out.push(
                result
                    .clone()
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_error_message(Some(sb("Cluster authorization failed."))),
            );
            continue;
        }
        let tenant = match e.entity.as_slice() {
            [one] if one.entity_type.as_str() == TENANT => match &one.entity_name {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => {
                    out.push(fail(ResponseError::InvalidRequest, "a tenant quota names its tenant".into()));
                    continue;
                }
            },
            [] => {
                out.push(fail(ResponseError::InvalidRequest, "Invalid empty client quota entity".into()));
                continue;
            }
            parts => {
                let types: Vec<&str> = parts.iter().map(|p| p.entity_type.as_str()).collect();
                let message = if types.iter().all(|t| KAFKA_TYPES.contains(t) || *t == TENANT) {
                    format!(
                        "Kora's quotas are per tenant: use the entity type '{TENANT}' alone, not {types:?}"
                    )
                } else {
                    format!("Unhandled client quota entity type: {}", types.join(","))
                };
                out.push(fail(ResponseError::InvalidRequest, message));
                continue;
            }
        };
        let image = sec.view.image();
        let Some(id) = find(&image, &tenant).map(|t| t.id.clone()) else {
            out.push(fail(ResponseError::InvalidRequest, format!("no tenant {tenant} in this cell")));
            continue;
        };
        let mut changes = Vec::with_capacity(e.ops.len());
        let mut keys = std::collections::HashSet::new();
        let mut duplicate = None;
        for op in &e.ops {
            if !keys.insert(op.key.to_string()) {
                duplicate = Some(op.key.to_string());
            }
            changes.push((op.key.to_string(), (!op.remove).then_some(op.value)));
        }
        if let Some(k) = duplicate {
            out.push(fail(ResponseError::InvalidRequest, format!("quota {k} appears twice in one entry")));
            continue;
        }
        // Removing a quota Kora does not know is a no-op, as in Kafka.
        changes.retain(|(k, v)| v.is_some() || kora_meta::QuotaKey::parse(k).is_some());
        if let Some((k, _)) = changes.iter().find(|(k, _)| kora_meta::QuotaKey::parse(k).is_none()) {
            out.push(fail(ResponseError::InvalidRequest, format!("Invalid configuration key {k}")));
            continue;
        }
        let validate_only = r.validate_only;
        match sec.view.call(move |c| c.alter_tenant_limits(&id, changes, validate_only)).await {
            Ok(t) => {
                tracing::info!(tenant = %t.id, validate_only, "tenant quotas altered");
                out.push(result);
            }
            Err(MetaError::InvalidRequest(m)) | Err(MetaError::UnknownTenant(m)) => {
                out.push(fail(ResponseError::InvalidRequest, m))
            }
            Err(e) => out.push(
                result
                    .clone()
                    .with_error_code(crate::errors::meta_error_code(&e))
                    .with_error_message(Some(sb(&e.to_string()))),
            ),
        }
    }
    AlterClientQuotasResponse::default().with_entries(out)
}

//! The cell's tenant API on the admin endpoint (`/v1/tenants`): tenants and their API keys,
//! for `kora tenant` and `kora apikey` (and the fleet controller, which calls the same API).
//!
//! An API key's secret is generated here, from the entropy seam, shown once in the answer and
//! turned into SCRAM-SHA-256 and -512 credentials before anything is committed: the quorum
//! never sees it. Every route needs the operator token, reads included (kora-api's
//! `PRIVATE_PATHS`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use kora_api::{
    AclEntry, AclEntryFilter, AlterTenantQuotas, ApiKeyCreated, ApiKeyInfo, Bootstrap, CreateApiKey,
    CreateTenant, ErrorBody, TenantCreated, TenantInfo, TenantQuotas,
};
use kora_auth::scram::{Mechanism, ScramCredential};
use kora_common::entropy::ALPHANUMERIC;
use kora_common::{Clock, Entropy};
use kora_meta::{Credential, Identity, MetaError, MetadataImage, ScramSecret, TenantImage, TenantLimits};

use crate::listeners::ListenerConfig;
use crate::view::View;

/// Characters of an API key id (upper-case letters and digits, as Confluent's).
const KEY_ID_CHARS: usize = 16;
/// Characters of an API key secret (letters and digits: ~380 bits).
const SECRET_CHARS: usize = 64;
/// Random characters after `lkc-` in a tenant id.
const TENANT_ID_CHARS: usize = 6;
const SALT_BYTES: usize = 32;
/// PBKDF2 iterations of stored secrets: Kafka's minimum for SCRAM (each PLAIN login pays it).
pub const ITERATIONS: u32 = kora_auth::scram::MIN_ITERATIONS;

/// What the tenant routes use.
#[derive(Debug)]
pub struct TenantAdmin {
    pub view: View,
    pub entropy: Arc<dyn Entropy>,
    pub clock: Arc<dyn Clock>,
    /// The Kafka listeners (their advertised addresses are a tenant's bootstrap servers).
    pub listeners: Vec<ListenerConfig>,
    /// The quota coordinator's figures (this broker's and its peers').
    pub usage: Arc<crate::quota_sync::UsageBoard>,
    /// The tenants' meters, read when a peer asks for this broker's figures.
    pub quotas: Arc<crate::quotas::Quotas>,
}

/// SCRAM secrets of both mechanisms for a password, with fresh salts.
pub fn scram_secrets(
    entropy: &dyn Entropy,
    password: &str,
) -> Result<std::collections::BTreeMap<String, ScramSecret>, kora_auth::scram::CredentialError> {
    let mut out = std::collections::BTreeMap::new();
    for m in Mechanism::ALL {
        let mut salt = [0u8; SALT_BYTES];
        entropy.fill(&mut salt);
        let c = ScramCredential::from_password(m, password, &salt, ITERATIONS)?;
        out.insert(m.name().to_string(), ScramSecret::from(c));
    }
    Ok(out)
}

fn error(status: StatusCode, e: impl ToString) -> Response {
    (status, Json(ErrorBody { error: e.to_string() })).into_response()
}

fn meta_error(e: MetaError) -> Response {
    let status = match &e {
        MetaError::UnknownTenant(_) | MetaError::UnknownCredential(_) => StatusCode::NOT_FOUND,
        MetaError::TenantExists(_) | MetaError::CredentialExists(_) => StatusCode::CONFLICT,
        MetaError::InvalidRequest(_) | MetaError::TenantLimit(_) => StatusCode::BAD_REQUEST,
        MetaError::NotController(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

impl TenantAdmin {
    /// A tenant by id or name.
    fn find(&self, image: &MetadataImage, key: &str) -> Option<Arc<TenantImage>> {
        image.tenants.get(key).or_else(|| image.tenant_by_name(key)).cloned()
    }

    fn info(&self, image: &MetadataImage, t: &TenantImage) -> TenantInfo {
        let (mut topics, mut partitions) = (0, 0u64);
        for topic in image.tenant_topics(&t.id) {
            topics += 1;
            partitions += topic.partitions.max(0) as u64;
        }
        let creds = image.credentials.values().filter(|c| c.tenant.as_deref() == Some(t.id.as_str()));
        let (keys, users) =
            creds.fold((0, 0), |(k, u), c| if c.is_api_key() { (k + 1, u) } else { (k, u + 1) });
        TenantInfo {
            id: t.id.clone(),
            name: t.name.clone(),
            created_ms: t.created_ms,
            topics,
            partitions,
            api_keys: keys,
            scram_users: users,
            max_topics: t.limits.max_topics,
            max_partitions: t.limits.max_partitions,
            bootstrap: self.bootstrap(image),
            managed_by: t.managed_by.clone(),
        }
    }

    /// Every broker's address on every listener (the cell's, or this broker's alone).
    fn bootstrap(&self, image: &MetadataImage) -> Vec<Bootstrap> {
        let mut out = Vec::new();
        for l in &self.listeners {
            let addresses: Vec<String> = if image.brokers.is_empty() {
                vec![format!("{}:{}", l.advertised.host, l.advertised.port)]
            } else {
                image
                    .brokers
                    .values()
                    .filter(|b| !b.fenced)
                    .map(|b| {
                        let (h, p) = b.registration.endpoint(&l.name);
                        format!("{h}:{p}")
                    })
                    .collect()
            };
            out.push(Bootstrap { address: addresses.join(","), security_protocol: l.protocol.name().into() });
        }
        out
    }

    fn key_info(c: &Credential) -> Option<ApiKeyInfo> {
        match &c.identity {
            Identity::ApiKey { admin, description, created_ms } => Some(ApiKeyInfo {
                key: c.login.clone(),
                tenant: c.tenant.clone().unwrap_or_default(),
                admin: *admin,
                description: description.clone(),
                created_ms: *created_ms,
            }),
            Identity::ScramUser => None,
        }
    }

    /// A new API key of `tenant`; the answer holds its secret, which nothing else keeps.
    pub async fn create_key(&self, tenant: &str, req: &CreateApiKey) -> Result<ApiKeyCreated, Response> {
        let key = self.entropy.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", KEY_ID_CHARS);
        let secret = self.entropy.string(ALPHANUMERIC, SECRET_CHARS);
        let entropy = self.entropy.clone();
        let password = secret.clone();
        // PBKDF2 twice: off the async workers.
        let scram = tokio::task::spawn_blocking(move || scram_secrets(&*entropy, &password))
            .await
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        let credential = Credential {
            login: key.clone(),
            tenant: Some(tenant.to_string()),
            identity: Identity::ApiKey {
                admin: req.admin,
                description: req.description.clone(),
                created_ms: self.clock.now_ms().max(0) as u64,
            },
            scram,
        };
        self.view.call(move |c| c.put_credential(credential, true)).await.map_err(meta_error)?;
        Ok(ApiKeyCreated { key, secret, tenant: tenant.to_string(), admin: req.admin })
    }
}

async fn list(State(a): State<Arc<TenantAdmin>>) -> Response {
    let image = a.view.image();
    let out: Vec<TenantInfo> = image.tenants.values().map(|t| a.info(&image, t)).collect();
    Json(out).into_response()
}

impl TenantAdmin {
    /// Creates a tenant (and its first key unless `req.api_key` is false); true when it
    /// already existed, in which case no key is made.
    pub async fn create_tenant(&self, req: &CreateTenant) -> Result<(bool, TenantCreated), Response> {
        let id = match &req.id {
            Some(id) => id.clone(),
            None => match self.view.image().tenant_by_name(&req.name) {
                // The same request again: the tenant it made (and no second key).
                Some(t) => t.id.clone(),
                None => format!(
                    "lkc-{}",
                    self.entropy.string(b"abcdefghijklmnopqrstuvwxyz0123456789", TENANT_ID_CHARS)
                ),
            },
        };
        let existed = self.view.image().tenants.contains_key(&id);
        let tenant = TenantImage {
            id: id.clone(),
            name: req.name.clone(),
            created_ms: self.clock.now_ms().max(0) as u64,
            limits: TenantLimits {
                max_topics: req.max_topics,
                max_partitions: req.max_partitions,
                ..Default::default()
            },
            managed_by: req.managed_by.clone(),
        };
        self.view.call(move |c| c.create_tenant(tenant)).await.map_err(meta_error)?;
        let api_key = if req.api_key && !existed {
            Some(self.create_key(&id, &CreateApiKey { description: "first key".into(), admin: true }).await?)
        } else {
            None
        };
        let image = self.view.image();
        let Some(t) = image.tenants.get(&id) else {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("tenant {id} committed but not in this broker's image"),
            ));
        };
        Ok((existed, TenantCreated { tenant: self.info(&image, t), api_key }))
    }
}

async fn create(State(a): State<Arc<TenantAdmin>>, Json(req): Json<CreateTenant>) -> Response {
    match a.create_tenant(&req).await {
        Ok((existed, created)) => {
            let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
            (status, Json(created)).into_response()
        }
        Err(r) => r,
    }
}

async fn describe(State(a): State<Arc<TenantAdmin>>, Path(tenant): Path<String>) -> Response {
    let image = a.view.image();
    match a.find(&image, &tenant) {
        Some(t) => Json(a.info(&image, &t)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'")),
    }
}

async fn remove(State(a): State<Arc<TenantAdmin>>, Path(tenant): Path<String>) -> Response {
    let image = a.view.image();
    let Some(t) = a.find(&image, &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    let info = a.info(&image, &t);
    let id = t.id.clone();
    match a.view.call(move |c| c.delete_tenant(&id)).await {
        Ok(()) => Json(info).into_response(),
        Err(e) => meta_error(e),
    }
}

async fn keys(State(a): State<Arc<TenantAdmin>>, Path(tenant): Path<String>) -> Response {
    let image = a.view.image();
    let Some(t) = a.find(&image, &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    let out: Vec<ApiKeyInfo> = image
        .credentials
        .values()
        .filter(|c| c.tenant.as_deref() == Some(t.id.as_str()))
        .filter_map(|c| TenantAdmin::key_info(c))
        .collect();
    Json(out).into_response()
}

async fn create_key(
    State(a): State<Arc<TenantAdmin>>,
    Path(tenant): Path<String>,
    Json(req): Json<CreateApiKey>,
) -> Response {
    let Some(t) = a.find(&a.view.image(), &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    match a.create_key(&t.id, &req).await {
        Ok(k) => (StatusCode::CREATED, Json(k)).into_response(),
        Err(r) => r,
    }
}

async fn delete_key(
    State(a): State<Arc<TenantAdmin>>,
    Path((tenant, key)): Path<(String, String)>,
) -> Response {
    let image = a.view.image();
    let Some(t) = a.find(&image, &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    let info = image
        .credentials
        .get(&key)
        .filter(|c| c.tenant.as_deref() == Some(t.id.as_str()))
        .and_then(|c| TenantAdmin::key_info(c));
    let Some(info) = info else {
        return error(StatusCode::NOT_FOUND, format!("tenant {} has no API key '{key}'", t.id));
    };
    let id = t.id.clone();
    match a.view.call(move |c| c.delete_credential(&key, Some(&id))).await {
        Ok(()) => Json(info).into_response(),
        Err(e) => meta_error(e),
    }
}

fn parse_enum<T: Copy + 'static>(
    values: &[T],
    name: impl Fn(T) -> &'static str,
    what: &str,
    s: &str,
) -> Result<T, String> {
    let upper = s.trim().to_ascii_uppercase().replace('-', "_");
    values.iter().copied().find(|v| name(*v) == upper).ok_or_else(|| format!("'{s}' is not a {what}"))
}

fn binding(e: &AclEntry) -> Result<kora_auth::AclBinding, String> {
    use kora_auth::{AclOperation, AclPermission, PatternType, ResourceType};
    Ok(kora_auth::AclBinding {
        resource_type: parse_enum(
            ResourceType::VALUES,
            ResourceType::name,
            "resource type",
            &e.resource_type,
        )?,
        resource_name: e.resource_name.clone(),
        pattern_type: parse_enum(PatternType::VALUES, PatternType::name, "pattern type", &e.pattern_type)?,
        principal: e.principal.clone(),
        host: e.host.clone(),
        operation: parse_enum(AclOperation::VALUES, AclOperation::name, "operation", &e.operation)?,
        permission: parse_enum(AclPermission::VALUES, AclPermission::name, "permission", &e.permission)?,
    })
}

fn entry(b: &kora_auth::AclBinding) -> AclEntry {
    AclEntry {
        resource_type: b.resource_type.name().into(),
        resource_name: b.resource_name.clone(),
        pattern_type: b.pattern_type.name().into(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.name().into(),
        permission: b.permission.name().into(),
    }
}

async fn acls(State(a): State<Arc<TenantAdmin>>, Path(tenant): Path<String>) -> Response {
    let image = a.view.image();
    let Some(t) = a.find(&image, &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    let list: Vec<AclEntry> = image.acls.get(&t.id).iter().flat_map(|v| v.iter()).map(entry).collect();
    Json(list).into_response()
}

async fn create_acls(
    State(a): State<Arc<TenantAdmin>>,
    Path(tenant): Path<String>,
    Json(req): Json<Vec<AclEntry>>,
) -> Response {
    let Some(t) = a.find(&a.view.image(), &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    let mut bindings = Vec::with_capacity(req.len());
    for e in &req {
        match binding(e) {
            Ok(b) => bindings.push(b),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    match kora_auth::acl::validate_creations(&bindings) {
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
        Ok(checks) => {
            if let Some(Err(e)) = checks.into_iter().find(|c| c.is_err()) {
                return error(StatusCode::BAD_REQUEST, e);
            }
        }
    }
    let id = t.id.clone();
    let created: Vec<AclEntry> = bindings.iter().map(entry).collect();
    match a.view.call(move |c| c.create_acls(Some(&id), bindings)).await {
        Ok(()) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(e) => meta_error(e),
    }
}

async fn delete_acls(
    State(a): State<Arc<TenantAdmin>>,
    Path(tenant): Path<String>,
    Json(f): Json<AclEntryFilter>,
) -> Response {
    use kora_auth::{AclOperation, AclPermission, PatternType, ResourceType};
    let Some(t) = a.find(&a.view.image(), &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    let or_any = |v: &Option<String>| v.clone().unwrap_or_else(|| "ANY".into());
    let filter = (|| -> Result<kora_auth::AclFilter, String> {
        Ok(kora_auth::AclFilter {
            resource_type: parse_enum(
                ResourceType::VALUES,
                ResourceType::name,
                "resource type",
                &or_any(&f.resource_type),
            )?,
            resource_name: f.resource_name.clone(),
            pattern_type: parse_enum(
                PatternType::VALUES,
                PatternType::name,
                "pattern type",
                &or_any(&f.pattern_type),
            )?,
            principal: f.principal.clone(),
            host: f.host.clone(),
            operation: parse_enum(
                AclOperation::VALUES,
                AclOperation::name,
                "operation",
                &or_any(&f.operation),
            )?,
            permission: parse_enum(
                AclPermission::VALUES,
                AclPermission::name,
                "permission",
                &or_any(&f.permission),
            )?,
        })
    })();
    let filter = match filter {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let id = t.id.clone();
    match a.view.call(move |c| c.delete_acls(Some(&id), vec![filter])).await {
        Ok(m) => Json(m.iter().flatten().map(entry).collect::<Vec<_>>()).into_response(),
        Err(e) => meta_error(e),
    }
}

fn quotas_of(t: &TenantImage) -> TenantQuotas {
    TenantQuotas {
        tenant: t.id.clone(),
        name: t.name.clone(),
        quotas: t.limits.entries().into_iter().map(|(k, v)| (k.name().to_string(), v)).collect(),
    }
}

async fn quotas(State(a): State<Arc<TenantAdmin>>, Path(tenant): Path<String>) -> Response {
    match a.find(&a.view.image(), &tenant) {
        Some(t) => Json(quotas_of(&t)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'")),
    }
}

/// Sets and removes quotas (the operator's path; AlterClientQuotas is the Kafka one).
async fn alter_quotas(
    State(a): State<Arc<TenantAdmin>>,
    Path(tenant): Path<String>,
    Json(req): Json<AlterTenantQuotas>,
) -> Response {
    let Some(t) = a.find(&a.view.image(), &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    let mut changes: Vec<(String, Option<f64>)> = req.set.into_iter().map(|(k, v)| (k, Some(v))).collect();
    if let Some(k) = req.remove.iter().find(|k| changes.iter().any(|(c, _)| c == *k)) {
        return error(StatusCode::BAD_REQUEST, format!("{k} is both set and removed"));
    }
    changes.extend(req.remove.into_iter().map(|k| (k, None)));
    let (id, validate_only) = (t.id.clone(), req.validate_only);
    match a.view.call(move |c| c.alter_tenant_limits(&id, changes, validate_only)).await {
        Ok(t) => {
            tracing::info!(tenant = %t.id, validate_only, "tenant quotas altered");
            Json(quotas_of(&t)).into_response()
        }
        Err(e) => meta_error(e),
    }
}

/// A tenant's use over the cell: the figures of the last quota window, per broker.
async fn usage(State(a): State<Arc<TenantAdmin>>, Path(tenant): Path<String>) -> Response {
    let Some(t) = a.find(&a.view.image(), &tenant) else {
        return error(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"));
    };
    let mut cell = kora_api::UsageFigures::default();
    let mut brokers = Vec::new();
    for b in a.usage.all() {
        let figures = b.tenants.get(&t.id).cloned().unwrap_or_default();
        cell.add(&figures);
        brokers.push(kora_api::BrokerTenantUsage {
            broker_id: b.broker_id,
            usage: figures,
            bounds: b.bounds.get(&t.id).cloned().unwrap_or_default(),
        });
    }
    brokers.sort_by_key(|b| b.broker_id);
    // Each broker throttles against the tenant's rate over the cell, so its part of a quota
    // is its part of the traffic (an even part while the tenant is idle), computed here from
    // one view of every broker's figures so the parts add up (a broker's own report is from
    // its last window, and brokers report at different times).
    let n = brokers.len().max(1) as f64;
    for (key, rate) in [
        (
            "producer_byte_rate",
            (|f: &kora_api::UsageFigures| f.produce_bytes_per_second) as fn(&kora_api::UsageFigures) -> f64,
        ),
        ("consumer_byte_rate", |f| f.fetch_bytes_per_second),
        ("request_percentage", |f| f.request_percent),
    ] {
        let Some(quota) = kora_meta::QuotaKey::parse(key).and_then(|k| t.limits.get(k)) else { continue };
        let total: f64 = brokers.iter().map(|b| rate(&b.usage)).sum();
        for b in &mut brokers {
            let part = if total > 0.0 { quota * rate(&b.usage) / total } else { quota / n };
            b.bounds.insert(key.to_string(), part);
        }
    }
    let q = quotas_of(&t);
    Json(kora_api::TenantUsage { tenant: q.tenant, name: q.name, quotas: q.quotas, cell, brokers })
        .into_response()
}

/// This broker's figures for every tenant, for a peer's coordinator, with every rate read now: the asking
/// broker sets them against its own rates of the same moment, so what it gained since is
/// not counted twice or missed (the last round's figures lag it by up to a window, and in a
/// burst that window is most of the burst).
async fn broker_usage(State(a): State<Arc<TenantAdmin>>) -> Response {
    Json(a.usage.local_now(&a.quotas)).into_response()
}

/// What the cell reports to the fleet controller: health, the busiest broker's load, what
/// its tenants use over the cell, and each tenant's figures, from the quota exchange's last
/// round (at most a window old).
async fn cell_report(State(a): State<Arc<TenantAdmin>>) -> Response {
    let image = a.view.image();
    let all = a.usage.all();
    // A single node has no registered brokers: it is the cell.
    let (brokers, fenced) = if image.brokers.is_empty() {
        (1, 0)
    } else {
        let fenced = image.brokers.values().filter(|b| b.fenced).count();
        (image.brokers.len() - fenced, fenced)
    };
    let reporting = all.len().min(brokers);
    let mut report = kora_api::CellReport {
        cluster_id: image.cluster_id.clone(),
        brokers,
        brokers_reporting: reporting,
        healthy: fenced == 0 && reporting == brokers,
        broker_load: all.iter().map(|b| b.load).fold(0.0, f64::max),
        ingress_bytes_per_second: 0.0,
        egress_bytes_per_second: 0.0,
        partitions: 0,
        storage_bytes: 0,
        tenants: Vec::new(),
    };
    for t in image.tenants.values() {
        let mut usage = kora_api::UsageFigures::default();
        for b in &all {
            if let Some(f) = b.tenants.get(&t.id) {
                usage.add(f);
            }
        }
        let partitions: u64 = image.tenant_topics(&t.id).map(|topic| topic.partitions.max(0) as u64).sum();
        report.ingress_bytes_per_second += usage.produce_bytes_per_second;
        report.egress_bytes_per_second += usage.fetch_bytes_per_second;
        report.partitions += partitions;
        report.storage_bytes += usage.storage_bytes;
        report.tenants.push(kora_api::CellTenantReport {
            id: t.id.clone(),
            name: t.name.clone(),
            managed_by: t.managed_by.clone(),
            partitions,
            usage,
        });
    }
    Json(report).into_response()
}

/// The routes, to merge into the admin router (behind its token check).
pub fn routes(a: Arc<TenantAdmin>) -> Router {
    let p = kora_api::paths::TENANTS;
    Router::new()
        .route(p, get(list).post(create))
        .route(&format!("{p}/{{tenant}}"), get(describe).delete(remove))
        .route(&format!("{p}/{{tenant}}/api-keys"), get(keys).post(create_key))
        .route(&format!("{p}/{{tenant}}/api-keys/{{key}}"), delete(delete_key))
        .route(&format!("{p}/{{tenant}}/acls"), get(acls).post(create_acls))
        .route(&format!("{p}/{{tenant}}/quotas"), get(quotas).post(alter_quotas))
        .route(&format!("{p}/{{tenant}}/usage"), get(usage))
        .route(kora_api::paths::QUOTA_USAGE, get(broker_usage))
        .route(kora_api::paths::CELL_REPORT, get(cell_report))
        .route(&format!("{p}/{{tenant}}/acls/delete"), axum::routing::post(delete_acls))
        .with_state(a)
}

//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/health`, `/v1/topics/{name}` (for
//! `kora topics describe`), tenants and API keys (`crate::tenants`) and fault injection, with kora-api's types. Calls that change state
//! need the operator token (`admin.token.file`); reads are open.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use kora_api::{
    BrokerHealth, CpuBurn, ErrorBody, Isolation, PartitionDescription, RemoteSegmentDescription, SlowDevice,
    TopicDescription,
};

use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::tiering::TierManager;
use crate::view::View;

/// What the admin endpoint reads and touches.
#[derive(Debug)]
pub struct AdminState {
    pub view: View,
    pub logs: Arc<kora_log::LogManager>,
    pub metrics: Arc<Metrics>,
    pub groups: Arc<kora_group::Coordinator>,
    pub tier_manager: Option<Arc<TierManager>>,
    pub faults: Arc<Faults>,
    /// The broker is stopping: /health answers 503.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
}

async fn metrics(State(b): State<Arc<AdminState>>) -> impl IntoResponse {
    if let Some(m) = &b.tier_manager {
        let st = m.tiering.reader.cache().stats();
        b.metrics.remote_cache_hits.set(st.hits as i64);
        b.metrics.remote_cache_misses.set(st.misses as i64);
        b.metrics.remote_cache_bytes.set(st.cached_bytes as i64);
        b.metrics.remote_cache_disk_hits.set(st.disk_hits as i64);
        b.metrics.remote_cache_disk_bytes.set(st.disk_bytes as i64);
        crate::tiering::refresh_lag(m);
    }
    replication_gauges(&b);
    let body = b.metrics.render(&b.logs, &b.groups);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// Leadership and ISR health of the partitions this broker leads, from the metadata image.
fn replication_gauges(b: &AdminState) {
    let image = b.view.controller.image();
    let me = b.view.node_id;
    let (mut leading, mut under, mut under_min) = (0i64, 0i64, 0i64);
    for t in image.topics.values() {
        let min_isr = b.view.topic_config(&t.configs).min_insync_replicas as usize;
        for s in t.assignments.iter().filter(|s| s.leader == me) {
            leading += 1;
            under += i64::from(s.isr.len() < s.target_replicas().len());
            under_min += i64::from(s.isr.len() < min_isr);
        }
    }
    b.metrics.leader_partitions.set(leading);
    b.metrics.under_replicated_partitions.set(under);
    b.metrics.under_min_isr_partitions.set(under_min);
}

/// `/v1/topics/{name}`: a topic's partitions with their offsets and local and remote sizes
/// (what `kora topics describe` prints).
async fn topic(
    State(b): State<Arc<AdminState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> axum::response::Response {
    let image = b.view.controller.image();
    let Some(t) = image.topic(&name) else {
        return not_found(format!("unknown topic '{name}'"));
    };
    let cfg = b.view.topic_config(&t.configs);
    let partitions = (0..t.partitions)
        .map(|p| {
            let remote = image.remote_segments(&t.topic_id, p);
            let (o, local_start) = match b.logs.get(&name, p) {
                Some(l) => (Some(l.offsets()), l.local_start_offset()),
                None => (None, -1),
            };
            PartitionDescription {
                partition: p,
                log_start_offset: o.as_ref().map(|o| o.log_start_offset),
                local_start_offset: local_start,
                high_watermark: o.as_ref().map(|o| o.high_watermark),
                local_bytes: o.as_ref().map(|o| o.size_bytes),
                local_segments: o.as_ref().map(|o| o.segments),
                remote_bytes: remote.iter().map(|s| s.size_bytes).sum::<u64>(),
                remote_segments: remote
                    .iter()
                    .map(|s| RemoteSegmentDescription {
                        base_offset: s.base_offset,
                        end_offset: s.end_offset,
                        size_bytes: s.size_bytes,
                        max_timestamp: s.max_timestamp,
                        leader_epoch: s.leader_epoch,
                        keys: s.keys().into_iter().map(str::to_string).collect(),
                    })
                    .collect(),
            }
        })
        .collect();
    Json(TopicDescription {
        topic: t.name.clone(),
        topic_id: t.topic_id.to_string(),
        internal: crate::groups::is_internal(&t.name),
        remote_storage_enable: cfg.remote_storage_enable,
        cleanup_policy: format!("{:?}", cfg.cleanup_policy),
        object_store: b.tier_manager.as_ref().map(|m| m.tiering.store.url.clone()),
        partitions,
    })
    .into_response()
}

fn not_found(error: String) -> axum::response::Response {
    (StatusCode::NOT_FOUND, Json(ErrorBody { error })).into_response()
}

/// Fault injection (fault.injection.enable): cut this broker off from its cell.
async fn isolate(State(b): State<Arc<AdminState>>) -> axum::response::Response {
    set_isolation(&b, true)
}

async fn heal(State(b): State<Arc<AdminState>>) -> axum::response::Response {
    set_isolation(&b, false)
}

fn set_isolation(b: &AdminState, on: bool) -> axum::response::Response {
    if b.faults.set_isolated(on) {
        Json(Isolation { isolated: on }).into_response()
    } else {
        not_found("fault injection is off (fault.injection.enable)".into())
    }
}

/// Fault injection: a disk that writes `bytes_per_second` (produce appends queue behind it).
async fn slow_disk(State(b): State<Arc<AdminState>>, Json(d): Json<SlowDevice>) -> axum::response::Response {
    slowed(b.faults.set_slow(crate::faults::Device::Disk, d.bytes_per_second), d)
}

async fn fast_disk(State(b): State<Arc<AdminState>>) -> axum::response::Response {
    slowed(b.faults.set_slow(crate::faults::Device::Disk, None), SlowDevice { bytes_per_second: None })
}

/// Fault injection: a network that sends `bytes_per_second` (responses queue behind it).
async fn slow_network(
    State(b): State<Arc<AdminState>>,
    Json(d): Json<SlowDevice>,
) -> axum::response::Response {
    slowed(b.faults.set_slow(crate::faults::Device::Link, d.bytes_per_second), d)
}

async fn fast_network(State(b): State<Arc<AdminState>>) -> axum::response::Response {
    slowed(b.faults.set_slow(crate::faults::Device::Link, None), SlowDevice { bytes_per_second: None })
}

/// The answer to a slow-device fault: what was set, or that injection is off.
fn slowed(set: bool, d: SlowDevice) -> axum::response::Response {
    if set {
        Json(d).into_response()
    } else {
        not_found("fault injection is off (fault.injection.enable)".into())
    }
}

/// Fault injection: CPU burned on every tenant request.
async fn cpu_burn(State(b): State<Arc<AdminState>>, Json(c): Json<CpuBurn>) -> axum::response::Response {
    set_cpu_burn(&b, c)
}

async fn cpu_calm(State(b): State<Arc<AdminState>>) -> axum::response::Response {
    set_cpu_burn(&b, CpuBurn { burn_ms_per_request: 0 })
}

fn set_cpu_burn(b: &AdminState, c: CpuBurn) -> axum::response::Response {
    if b.faults.set_cpu_burn(c.burn_ms_per_request) {
        Json(c).into_response()
    } else {
        not_found("fault injection is off (fault.injection.enable)".into())
    }
}

async fn health(State(b): State<Arc<AdminState>>) -> axum::response::Response {
    if b.stopping.load(std::sync::atomic::Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(ErrorBody { error: "shutting down".into() }))
            .into_response();
    }
    let img = b.view.controller.image();
    Json(BrokerHealth {
        status: "ok".into(),
        node_id: b.view.node_id,
        cluster_id: img.cluster_id.clone(),
        topics: img.topics.len(),
        partitions: img.partition_count(),
    })
    .into_response()
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    tenants: Arc<crate::tenants::TenantAdmin>,
    token: Option<Arc<kora_api::Token>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/v1/topics/{name}", get(topic))
        .route(kora_api::paths::FAULTS_ISOLATE, axum::routing::post(isolate).delete(heal))
        .route(kora_api::paths::FAULTS_DISK, axum::routing::put(slow_disk).delete(fast_disk))
        .route(kora_api::paths::FAULTS_NETWORK, axum::routing::put(slow_network).delete(fast_network))
        .route(kora_api::paths::FAULTS_CPU, axum::routing::put(cpu_burn).delete(cpu_calm))
        .with_state(state)
        .merge(crate::tenants::routes(tenants));
    let app = kora_api::auth::protect(app, token, "admin.token.file");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

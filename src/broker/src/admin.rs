//! The admin HTTP endpoint: `/metrics` (Prometheus text) and `/health`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::broker::Broker;

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    if let Some(t) = &b.tiering {
        let st = t.reader.cache().stats();
        b.metrics.remote_cache_hits.set(st.hits as i64);
        b.metrics.remote_cache_misses.set(st.misses as i64);
        b.metrics.remote_cache_bytes.set(st.cached_bytes as i64);
    }
    let body = b.metrics.render(&b.logs, &b.groups);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn health(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    if b.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".to_string());
    }
    let img = b.controller.image();
    (
        StatusCode::OK,
        format!(
            "{{\"status\":\"ok\",\"node_id\":{},\"cluster_id\":\"{}\",\"topics\":{},\"partitions\":{}}}\n",
            b.config.node_id,
            img.cluster_id,
            img.topics.len(),
            img.partition_count()
        ),
    )
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(metrics)).route("/health", get(health)).with_state(broker);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

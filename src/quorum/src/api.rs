//! A voter's HTTP listener: the Raft RPCs between voters, and the admin API that `kora meta`
//! commands (and later brokers) use.
//!
//! Admin writes (voter changes, topic creation) need the leader. A voter that is not the leader
//! forwards the request to the leader's listener and relays its answer, so callers can talk
//! to any voter; with no leader known it answers 503, and the caller retries.
//!
//! | method and path | what |
//! | --- | --- |
//! | `POST /raft/append`, `/raft/vote`, `/raft/snapshot` | Raft RPCs (JSON) |
//! | `GET /v1/quorum` | this voter's view: state, term, leader, voters, log indexes |
//! | `POST /v1/quorum/voters` `{"id":4,"address":"host:port"}` | add a voter |
//! | `POST /v1/quorum/learners` `{"id":101,"address":"host:port"}` | add a learner (a broker following the log) |
//! | `POST /v1/controller` (a `ControllerRequest`) | run a controller request on the leader (brokers) |
//! | `DELETE /v1/quorum/voters/{id}` | remove a voter |
//! | `GET /v1/topics` | topics in the applied image |
//! | `POST /v1/topics` `{"name":..,"partitions":..,"replication_factor":..,"configs":{..}}` | create a topic |
//!
//! The bodies are kora-api's types. Every call but GET needs `Authorization: Bearer` with the
//! cell's token (`kora_api::auth::protect`); a voter relaying to its leader presents its own.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kora_api::paths::FORWARDED_HEADER;
pub use kora_api::{AddVoter, CreateTopic, ErrorBody as ApiError, TopicInfo};
use kora_meta::{Controller, ControllerRequest, ForwardedReply, MetaError, TopicRequest, WireError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::network::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::{NodeId, Quorum, QuorumError, TypeConfig};

/// Where brokers (and voters that are not the leader) send controller requests.
pub const CONTROLLER_PATH: &str = kora_api::paths::CONTROLLER;

/// Largest Raft RPC body accepted (axum's default is 2 MiB): a batch of entries or a snapshot
/// chunk (`SNAPSHOT_CHUNK_BYTES`) with room to spare.
pub const RAFT_BODY_LIMIT_BYTES: usize = 64 << 20;

/// Longest a forwarded admin request may take at the leader.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ApiState {
    pub quorum: Arc<Quorum>,
    pub controller: Arc<Controller>,
    pub http: reqwest::Client,
    /// The cell's token: required of every call that changes state, presented when relaying.
    pub token: Option<Arc<kora_api::Token>>,
}

/// The setting that gives a voter its token, named in refusals.
pub const VOTER_TOKEN_SETTING: &str = "token file (kora meta --token-file)";

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

/// The Raft RPC routes alone: what a broker (a learner of the quorum) serves on its admin
/// listener so the leader can replicate the metadata log to it. Unprotected: callers put
/// `kora_api::auth::protect` in front (`router` does; so does a broker's learner listener).
pub fn raft_routes(quorum: Arc<Quorum>) -> Router {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(RAFT_BODY_LIMIT_BYTES))
        .with_state(quorum)
}

/// A voter's routes: Raft RPCs and the admin API, every call that changes state behind the
/// cell's token.
pub fn router(state: ApiState) -> Router {
    let token = state.token.clone();
    let routes = Router::new()
        .route("/v1/quorum", get(status))
        .route("/v1/quorum/learners", post(add_learner))
        .route("/v1/quorum/voters", post(add_voter))
        .route("/v1/quorum/voters/{id}", delete(remove_voter))
        .route("/v1/topics", get(list_topics).post(create_topic))
        .route(CONTROLLER_PATH, post(controller_request))
        .with_state(state.clone())
        .merge(raft_routes(state.quorum));
    kora_api::auth::protect(routes, token, VOTER_TOKEN_SETTING)
}

async fn append(State(q): State<Arc<Quorum>>, Json(req): Json<AppendEntriesRequest<TypeConfig>>) -> Response {
    Json(q.raft.append_entries(req).await).into_response()
}

async fn vote(State(q): State<Arc<Quorum>>, Json(req): Json<VoteRequest<NodeId>>) -> Response {
    Json(q.raft.vote(req).await).into_response()
}

async fn snapshot(
    State(q): State<Arc<Quorum>>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    Json(q.raft.install_snapshot(req).await).into_response()
}

/// A broker asks to follow the metadata log: it becomes a learner (never votes).
async fn add_learner(State(s): State<ApiState>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let req: AddVoter = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let result = s.quorum.add_learner(req.id, req.address).await;
    membership_reply(&s, &headers, result, Method::POST, "/v1/quorum/learners", body).await
}

/// The answer to a membership change: the new status, or the request relayed to the leader.
async fn membership_reply(
    s: &ApiState,
    headers: &axum::http::HeaderMap,
    result: Result<(), QuorumError>,
    method: Method,
    path: &str,
    body: Bytes,
) -> Response {
    match result {
        Ok(()) => Json(s.quorum.status()).into_response(),
        Err(QuorumError::NotLeader { leader }) if !headers.contains_key(FORWARDED_HEADER) => {
            forward(s, leader.map(|l| l.1), method, path, body).await
        }
        Err(QuorumError::NotLeader { .. }) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "leadership moved; retry")
        }
        Err(e) => quorum_error(e),
    }
}

async fn status(State(s): State<ApiState>) -> Response {
    Json(s.quorum.status()).into_response()
}

/// Relays a request to the leader's listener, or says there is none.
async fn forward(s: &ApiState, leader: Option<String>, method: Method, path: &str, body: Bytes) -> Response {
    let Some(addr) = leader else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no leader elected yet; retry");
    };
    let leader = kora_api::Client::with_http(s.http.clone(), &addr, s.token.clone());
    match leader.send_raw(method, path, body.to_vec(), &[(FORWARDED_HEADER, "1")], FORWARD_TIMEOUT).await {
        Ok((status, b)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, [("content-type", "application/json")], b.to_vec()).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("leader {addr}: {e}")),
    }
}

fn quorum_error(e: QuorumError) -> Response {
    match e {
        QuorumError::Config(m) => error(StatusCode::BAD_REQUEST, m),
        QuorumError::NoLeader => error(StatusCode::SERVICE_UNAVAILABLE, "no leader elected yet; retry"),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn add_voter(State(s): State<ApiState>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let req: AddVoter = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let result = s.quorum.add_voter(req.id, req.address).await;
    membership_reply(&s, &headers, result, Method::POST, "/v1/quorum/voters", body).await
}

async fn remove_voter(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<NodeId>,
) -> Response {
    let result = s.quorum.remove_voter(id).await;
    membership_reply(&s, &headers, result, Method::DELETE, &format!("/v1/quorum/voters/{id}"), Bytes::new())
        .await
}

async fn list_topics(State(s): State<ApiState>) -> Response {
    let image = s.quorum.image();
    let topics: Vec<TopicInfo> = image
        .topics
        .values()
        .map(|t| TopicInfo {
            name: t.name.clone(),
            topic_id: t.topic_id.to_string(),
            partitions: t.partitions,
            replication_factor: t.replication_factor,
        })
        .collect();
    Json(topics).into_response()
}

async fn create_topic(State(s): State<ApiState>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let req: CreateTopic = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    if !s.quorum.is_leader() {
        if headers.contains_key(FORWARDED_HEADER) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "leadership moved; retry");
        }
        return forward(&s, s.quorum.leader().map(|l| l.1), Method::POST, "/v1/topics", body).await;
    }
    let controller = s.controller.clone();
    let topic_req = TopicRequest {
        name: req.name,
        partitions: req.partitions,
        replication_factor: req.replication_factor,
        configs: req.configs,
    };
    let result = tokio::task::spawn_blocking(move || controller.create_topic(&topic_req, false)).await;
    match result {
        Ok(Ok(t)) => (
            StatusCode::CREATED,
            Json(TopicInfo {
                name: t.name,
                topic_id: t.topic_id.to_string(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
            }),
        )
            .into_response(),
        Ok(Err(MetaError::TopicExists(n))) => {
            error(StatusCode::CONFLICT, format!("topic '{n}' already exists"))
        }
        Ok(Err(MetaError::NotController(_))) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "leadership moved; retry")
        }
        Ok(Err(
            e @ (MetaError::InvalidTopicName(_)
            | MetaError::InvalidPartitions(_)
            | MetaError::InvalidReplicationFactor(_)
            | MetaError::InvalidConfig(_)
            | MetaError::InvalidRequest(_)),
        )) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("task: {e}")),
    }
}

/// A controller request from a broker: run by the leader's controller once the leader's image
/// is linearizable (everything committed before is applied), so validation never sees a
/// stale image after a leadership change.
async fn controller_request(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let req: ControllerRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    if !s.quorum.is_leader() || s.quorum.raft.ensure_linearizable().await.is_err() {
        if headers.contains_key(FORWARDED_HEADER) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "leadership moved; retry");
        }
        return forward(&s, s.quorum.leader().map(|l| l.1), Method::POST, CONTROLLER_PATH, body).await;
    }
    let controller = s.controller.clone();
    match tokio::task::spawn_blocking(move || controller.execute_forwarded(req)).await {
        Ok(reply) => Json(reply).into_response(),
        Err(e) => Json(ForwardedReply {
            result: Err(WireError { kind: "store".into(), message: format!("controller task: {e}") }),
            record_index: 0,
        })
        .into_response(),
    }
}

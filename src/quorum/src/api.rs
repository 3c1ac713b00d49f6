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

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kora_meta::{Controller, ControllerRequest, ForwardedReply, MetaError, TopicRequest, WireError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};

use crate::network::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::{NodeId, Quorum, QuorumError, TypeConfig};

/// Where brokers (and voters that are not the leader) send controller requests.
pub const CONTROLLER_PATH: &str = "/v1/controller";

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
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AddVoter {
    pub id: NodeId,
    pub address: String,
}

#[derive(Debug, Serialize, Deserialize)]
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

#[derive(Debug, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: String,
    pub partitions: i32,
    pub replication_factor: i16,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

/// The Raft RPC routes alone: what a broker (a learner of the quorum) serves on its admin
/// listener so the leader can replicate the metadata log to it.
pub fn raft_routes(quorum: Arc<Quorum>) -> Router {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(RAFT_BODY_LIMIT_BYTES))
        .with_state(quorum)
}

/// A voter's routes: Raft RPCs and the admin API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/quorum", get(status))
        .route("/v1/quorum/learners", post(add_learner))
        .route("/v1/quorum/voters", post(add_voter))
        .route("/v1/quorum/voters/{id}", delete(remove_voter))
        .route("/v1/topics", get(list_topics).post(create_topic))
        .route(CONTROLLER_PATH, post(controller_request))
        .with_state(state.clone())
        .merge(raft_routes(state.quorum))
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
        Err(QuorumError::NotLeader { leader }) if !headers.contains_key("x-kora-forwarded") => {
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
    let url = format!("http://{addr}{path}");
    let req = s
        .http
        .request(method, &url)
        .timeout(FORWARD_TIMEOUT)
        .header("content-type", "application/json")
        .header("x-kora-forwarded", "1")
        .body(body.to_vec());
    match req.send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match r.bytes().await {
                Ok(b) => (status, [("content-type", "application/json")], b.to_vec()).into_response(),
                Err(e) => error(StatusCode::BAD_GATEWAY, format!("leader {addr}: {e}")),
            }
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
        if headers.contains_key("x-kora-forwarded") {
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
        if headers.contains_key("x-kora-forwarded") {
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

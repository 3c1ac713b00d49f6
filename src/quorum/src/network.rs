//! Raft RPCs between voters: JSON over HTTP (reqwest client, axum server, see `node`).
//!
//! The server answers every RPC with the JSON of `Result<Response, RaftError>`, so a remote
//! Raft error reaches the caller as `RPCError::RemoteError`; a connection failure or timeout is
//! `Unreachable` (openraft backs off and retries).

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use std::sync::Arc;

use kora_api::{ApiError, Client, Token};

use crate::{Node, NodeId, TypeConfig};

/// Paths of the Raft RPCs on a voter's HTTP listener.
pub use kora_api::paths::{
    RAFT_APPEND as APPEND_PATH, RAFT_SNAPSHOT as SNAPSHOT_PATH, RAFT_VOTE as VOTE_PATH,
};

/// The HTTP client members of a quorum share for talking to each other (Raft RPCs, relayed
/// calls, joining): quick to give up on a dead peer, pooled connections to live ones.
pub fn peer_http_client() -> Result<reqwest::Client, crate::QuorumError> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| crate::QuorumError::Config(format!("http client: {e}")))
}

/// Creates one connection per target voter; they share one HTTP client (connection pool) and
/// present the cell's token.
#[derive(Debug, Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    token: Option<Arc<Token>>,
}

impl HttpNetwork {
    pub fn new(client: reqwest::Client, token: Option<Arc<Token>>) -> Self {
        Self { client, token }
    }
}

#[derive(Debug)]
pub struct HttpConnection {
    client: Client,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        HttpConnection {
            client: Client::with_http(self.client.clone(), &node.addr, self.token.clone()),
            target,
        }
    }
}

impl HttpConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<Resp, RaftError<NodeId, E>> =
            self.client.post(path, req, Some(option.hard_ttl())).await.map_err(|e| match e {
                e @ ApiError::Transport { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                e => RPCError::Network(NetworkError::new(&e)),
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(APPEND_PATH, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(SNAPSHOT_PATH, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(VOTE_PATH, &rpc, &option).await
    }
}

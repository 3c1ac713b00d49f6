//! A broker's side of a cell's quorum: joining it as a learner (the leader then replicates the
//! metadata log to the broker's own store), and sending controller requests to the leader.
//!
//! Any voter can be asked: one that is not the leader relays to the leader. While there is no
//! leader (an election), voters answer 503 and the request is retried with backoff until
//! `FORWARD_DEADLINE`.

use std::time::Duration;

use std::sync::Arc;

use kora_api::{AddVoter, ApiError, Client, Token};
use kora_common::Clock;
use kora_meta::{ControllerRequest, ForwardedReply, Forwarder, MetaError};
use parking_lot::Mutex;

use crate::api::CONTROLLER_PATH;
use crate::{NodeId, QuorumError};

/// Longest a controller request is retried across elections before it fails.
const FORWARD_DEADLINE: Duration = Duration::from_secs(30);

/// Sends controller requests to a cell's voters.
#[derive(Debug)]
pub struct HttpForwarder {
    voters: Vec<Client>,
    clock: Arc<dyn Clock>,
    runtime: tokio::runtime::Handle,
    /// The voter that answered last (tried first next time).
    last_good: Mutex<usize>,
}

impl HttpForwarder {
    pub fn new(
        voters: Vec<String>,
        http: reqwest::Client,
        token: Option<Arc<Token>>,
        clock: Arc<dyn Clock>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        assert!(!voters.is_empty(), "a cell has voters");
        let voters = voters.iter().map(|v| Client::with_http(http.clone(), v, token.clone())).collect();
        Self { voters, clock, runtime, last_good: Mutex::new(0) }
    }

    async fn send(&self, request: &ControllerRequest) -> Result<ForwardedReply, MetaError> {
        let deadline = self.clock.now() + FORWARD_DEADLINE;
        let mut backoff = Duration::from_millis(50);
        let mut last_error = String::new();
        loop {
            let first = *self.last_good.lock();
            for i in 0..self.voters.len() {
                let at = (first + i) % self.voters.len();
                let voter = &self.voters[at];
                match voter
                    .post::<_, ForwardedReply>(CONTROLLER_PATH, request, Some(Duration::from_secs(15)))
                    .await
                {
                    Ok(reply) => {
                        *self.last_good.lock() = at;
                        return Ok(reply);
                    }
                    // A wrong token will not become right: say so at once.
                    Err(e) if e.is_auth() => {
                        return Err(MetaError::Store(format!("the quorum refused this broker: {e}")))
                    }
                    Err(e) => last_error = e.to_string(),
                }
            }
            if self.clock.now() + backoff > deadline {
                return Err(MetaError::Store(format!("no active controller answered: {last_error}")));
            }
            self.clock.sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

impl Forwarder for HttpForwarder {
    fn forward(&self, request: &ControllerRequest) -> Result<ForwardedReply, MetaError> {
        self.runtime.block_on(self.send(request))
    }
}

/// Asks the quorum (any of `voters`) to make `id` at `address` a learner, retrying until a
/// leader takes it or `within` passes.
pub async fn join_as_learner(
    clock: &dyn Clock,
    http: &reqwest::Client,
    token: Option<Arc<Token>>,
    voters: &[String],
    id: NodeId,
    address: &str,
    within: Duration,
) -> Result<(), QuorumError> {
    let deadline = clock.now() + within;
    let body = AddVoter { id, address: address.to_string() };
    let mut last = String::new();
    loop {
        for v in voters {
            let voter = Client::with_http(http.clone(), v, token.clone());
            match voter
                .post::<_, kora_api::QuorumStatus>(
                    kora_api::paths::QUORUM_LEARNERS,
                    &body,
                    Some(Duration::from_secs(10)),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(
                    e @ (ApiError::Status { status: 400, .. }
                    | ApiError::Unauthorized { .. }
                    | ApiError::Forbidden { .. }),
                ) => {
                    return Err(QuorumError::Config(format!("the quorum refused node {id}: {e}")));
                }
                Err(e) => last = e.to_string(),
            }
        }
        if clock.now() >= deadline {
            return Err(QuorumError::Raft(format!("could not join the quorum as a learner: {last}")));
        }
        clock.sleep(Duration::from_millis(200)).await;
    }
}

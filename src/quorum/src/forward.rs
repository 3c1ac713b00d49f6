//! A broker's side of a cell's quorum: joining it as a learner (the leader then replicates the
//! metadata log to the broker's own store), and sending controller requests to the leader.
//!
//! Any voter can be asked: one that is not the leader relays to the leader. While there is no
//! leader (an election), voters answer 503 and the request is retried with backoff until
//! `FORWARD_DEADLINE`.

use std::time::Duration;

use kora_meta::{ControllerRequest, ForwardedReply, Forwarder, MetaError};
use parking_lot::Mutex;

use crate::api::{AddVoter, CONTROLLER_PATH};
use crate::{NodeId, QuorumError};

/// Longest a controller request is retried across elections before it fails.
const FORWARD_DEADLINE: Duration = Duration::from_secs(30);

/// Sends controller requests to a cell's voters.
#[derive(Debug)]
pub struct HttpForwarder {
    voters: Vec<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// The voter that answered last (tried first next time).
    last_good: Mutex<usize>,
}

impl HttpForwarder {
    pub fn new(voters: Vec<String>, http: reqwest::Client, runtime: tokio::runtime::Handle) -> Self {
        assert!(!voters.is_empty(), "a cell has voters");
        Self { voters, http, runtime, last_good: Mutex::new(0) }
    }

    async fn send(&self, request: &ControllerRequest) -> Result<ForwardedReply, MetaError> {
        let deadline = tokio::time::Instant::now() + FORWARD_DEADLINE;
        let mut backoff = Duration::from_millis(50);
        let mut last_error = String::new();
        loop {
            let first = *self.last_good.lock();
            for i in 0..self.voters.len() {
                let at = (first + i) % self.voters.len();
                let url = format!("http://{}{CONTROLLER_PATH}", self.voters[at]);
                match self.http.post(&url).timeout(Duration::from_secs(15)).json(request).send().await {
                    Ok(r) if r.status().is_success() => match r.json::<ForwardedReply>().await {
                        Ok(reply) => {
                            *self.last_good.lock() = at;
                            return Ok(reply);
                        }
                        Err(e) => last_error = format!("{url}: {e}"),
                    },
                    Ok(r) => last_error = format!("{url}: HTTP {}", r.status()),
                    Err(e) => last_error = format!("{url}: {e}"),
                }
            }
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(MetaError::Store(format!("no active controller answered: {last_error}")));
            }
            tokio::time::sleep(backoff).await;
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
    http: &reqwest::Client,
    voters: &[String],
    id: NodeId,
    address: &str,
    within: Duration,
) -> Result<(), QuorumError> {
    let deadline = tokio::time::Instant::now() + within;
    let body = AddVoter { id, address: address.to_string() };
    let mut last = String::new();
    loop {
        for v in voters {
            let url = format!("http://{v}/v1/quorum/learners");
            match http.post(&url).timeout(Duration::from_secs(10)).json(&body).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status() == reqwest::StatusCode::BAD_REQUEST => {
                    let text = r.text().await.unwrap_or_default();
                    return Err(QuorumError::Config(format!("the quorum refused node {id}: {text}")));
                }
                Ok(r) => last = format!("{url}: HTTP {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(QuorumError::Raft(format!("could not join the quorum as a learner: {last}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

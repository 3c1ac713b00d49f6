//! What a broker needs from its cell's quorum, in one call: [`Learner::join`] opens the
//! broker's copy of the metadata log and image (a Raft learner: it never votes), serves the Raft
//! RPCs the leader replicates with behind the cell's token, joins the quorum, waits until the
//! cell's metadata has arrived, and hands back a controller that forwards requests to the
//! active controller and reads its answers from the local image.
//!
//! `cut_off` is a switch for fault-injection tests: while it reads true the learner refuses
//! the leader's RPCs (503) and controller requests fail at once, as if the network between the
//! broker and the quorum were cut.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kora_meta::controller::{ControllerConfig, ControllerRequest, ForwardedReply, Forwarder};
use kora_meta::{Controller, MetaError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{HttpForwarder, NodeId, Quorum, QuorumConfig, QuorumError};

/// A switch that cuts the learner off from its quorum while it reads true.
pub type CutOff = Arc<dyn Fn() -> bool + Send + Sync>;

/// What a broker passes to join its cell's quorum.
pub struct LearnerOptions {
    pub node_id: NodeId,
    /// Bound by the caller (`metadata.listener`); the leader replicates to its address.
    pub listener: tokio::net::TcpListener,
    /// The Raft log's and the image's LMDB directories.
    pub log_dir: PathBuf,
    pub state_dir: PathBuf,
    /// The voters' HTTP listeners.
    pub voters: Vec<String>,
    /// The cell's token, presented to the voters and required of the leader's RPCs.
    pub token: Option<Arc<kora_api::Token>>,
    pub controller: ControllerConfig,
    /// Longest wait to join and receive the cell's metadata.
    pub join_timeout: Duration,
    pub cut_off: Option<CutOff>,
    /// The learner's listener stops when this changes.
    pub shutdown: watch::Receiver<bool>,
    pub clock: Arc<dyn kora_common::Clock>,
}

/// A broker's learner of its cell's quorum.
pub struct Learner {
    pub quorum: Arc<Quorum>,
    /// Forwards to the active controller; reads the local image.
    pub controller: Arc<Controller>,
    /// The Raft RPC listener's task.
    pub server: JoinHandle<()>,
}

impl Learner {
    pub async fn join(o: LearnerOptions) -> Result<Learner, QuorumError> {
        let addr =
            o.listener.local_addr().map_err(|e| QuorumError::Config(format!("metadata listener: {e}")))?;
        let mut qc = QuorumConfig::new(o.node_id, addr.to_string(), PathBuf::new());
        qc.log_dir = o.log_dir;
        qc.state_dir = o.state_dir;
        qc.token = o.token.clone();
        qc.clock = o.clock.clone();
        let http = crate::network::peer_http_client()?;
        let quorum = Quorum::open(qc, http.clone()).await?;
        let routes = kora_api::auth::protect(
            crate::api::raft_routes(quorum.clone()),
            o.token.clone(),
            "admin.token.file",
        );
        let gate = o.cut_off.clone();
        let app = routes.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let cut = gate.as_ref().is_some_and(|g| g());
                async move {
                    if cut {
                        return axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "cut off from the quorum by fault injection",
                        ));
                    }
                    next.run(req).await
                }
            },
        ));
        let listener = o.listener;
        let mut shutdown = o.shutdown;
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown.changed().await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                tracing::error!(error = %e, "metadata listener failed");
            }
        });
        crate::join_as_learner(
            &*o.clock,
            &http,
            o.token.clone(),
            &o.voters,
            o.node_id,
            &addr.to_string(),
            o.join_timeout,
        )
        .await?;
        // The image is usable once the log (or a snapshot) with the cell's first records arrived.
        let mut rx = quorum.subscribe();
        let arrived = kora_common::timeout(&*o.clock, o.join_timeout, async {
            while rx.borrow_and_update().cluster_id.is_empty() {
                if rx.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        if !matches!(arrived, Ok(true)) {
            return Err(QuorumError::Raft("joined the quorum but received no metadata in time".into()));
        }
        let forwarder = Arc::new(Switchable {
            inner: HttpForwarder::new(o.voters, http, o.token, o.clock, tokio::runtime::Handle::current()),
            cut_off: o.cut_off,
        });
        let controller = Arc::new(Controller::forwarding(forwarder, quorum.subscribe(), o.controller));
        Ok(Learner { quorum, controller, server })
    }
}

/// Controller requests fail at once while the learner is cut off.
struct Switchable {
    inner: HttpForwarder,
    cut_off: Option<CutOff>,
}

impl std::fmt::Debug for Switchable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switchable").field("inner", &self.inner).finish()
    }
}

impl Forwarder for Switchable {
    fn forward(&self, request: &ControllerRequest) -> Result<ForwardedReply, MetaError> {
        if self.cut_off.as_ref().is_some_and(|c| c()) {
            return Err(MetaError::Store("cannot reach the quorum: cut off by fault injection".into()));
        }
        self.inner.forward(request)
    }
}

//! A running metadata voter (`kora meta`), in one call: the Raft node, the controller that
//! commits through it, the HTTP listener (Raft RPCs and the admin API behind the cell's token)
//! and the active controller's duties, which only the Raft leader performs:
//!
//! - the cluster id, committed once by the first leader of a new cell;
//! - broker fencing: every 250 ms, brokers whose heartbeats stopped for
//!   `broker_session_timeout_ms` are fenced (their leases live in the leader's memory, so a new
//!   leader gives every broker a full session);
//! - preferred leaders restored every `leader_imbalance_check_interval` (Kafka's
//!   `auto.leader.rebalance.enable`; zero turns it off).
//!
//! Controller calls block on Raft commits, so the duties run them on the blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kora_meta::controller::ControllerConfig;
use kora_meta::{Controller, MetaError};
use tokio::task::JoinHandle;

use crate::api::ApiState;
use crate::node::RaftLog;
use crate::{Node, NodeId, Quorum, QuorumConfig, QuorumError};

/// How often the leader looks for lapsed broker leases.
const FENCE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Timers of the active controller.
#[derive(Debug, Clone)]
pub struct Duties {
    /// broker.session.timeout.ms
    pub broker_session_timeout_ms: u64,
    /// leader.imbalance.check.interval.seconds (zero: never).
    pub leader_imbalance_check_interval: Duration,
}

/// What a voter needs to start.
#[derive(Debug)]
pub struct VoterOptions {
    pub quorum: QuorumConfig,
    /// Bound by the caller, so a port in use fails before anything is opened.
    pub listener: tokio::net::TcpListener,
    /// The first voters of a new cell (this one included); None for a voter that waits to be
    /// added to a running quorum.
    pub bootstrap: Option<BTreeMap<NodeId, Node>>,
    pub controller: ControllerConfig,
    pub duties: Duties,
}

/// A voter and its tasks.
#[derive(Debug)]
pub struct Voter {
    pub quorum: Arc<Quorum>,
    pub controller: Arc<Controller>,
    /// The HTTP listener; ends only if serving fails.
    pub server: JoinHandle<std::io::Result<()>>,
    duties: Vec<JoinHandle<()>>,
}

impl Voter {
    /// Opens the stores, starts Raft, serves the listener, bootstraps a new cell and starts the
    /// active controller's duties.
    pub async fn start(o: VoterOptions) -> Result<Voter, QuorumError> {
        let http = crate::network::peer_http_client()?;
        let token = o.quorum.token.clone();
        let clock = o.quorum.clock.clone();
        let quorum = Quorum::open(o.quorum, http.clone()).await?;
        let controller = Arc::new(Controller::with_log(
            Arc::new(RaftLog::new(quorum.clone(), tokio::runtime::Handle::current())),
            o.controller,
        ));
        let app = crate::api::router(ApiState {
            quorum: quorum.clone(),
            controller: controller.clone(),
            http,
            token,
        });
        let listener = o.listener;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        if let Some(voters) = o.bootstrap {
            quorum.bootstrap(voters).await?;
        }
        let duties = spawn_duties(quorum.clone(), controller.clone(), o.duties, clock);
        Ok(Voter { quorum, controller, server, duties })
    }

    /// Stops the duties and the Raft node.
    pub async fn shutdown(self) {
        for d in &self.duties {
            d.abort();
        }
        self.server.abort();
        self.quorum.shutdown().await;
    }
}

/// Runs a controller call off the async workers; logs what fails.
async fn run_blocking(
    c: &Arc<Controller>,
    what: &'static str,
    f: impl FnOnce(&Controller) -> Result<(), MetaError> + Send + 'static,
) {
    let c = c.clone();
    match tokio::task::spawn_blocking(move || f(&c)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed"),
        Err(e) => tracing::warn!(error = %e, "{what}: task failed"),
    }
}

/// Starts the active controller's duties; each does nothing while this voter does not lead.
pub fn spawn_duties(
    quorum: Arc<Quorum>,
    controller: Arc<Controller>,
    duties: Duties,
    clock: Arc<dyn kora_common::Clock>,
) -> Vec<JoinHandle<()>> {
    let cluster_id = {
        let (q, c) = (quorum.clone(), controller.clone());
        tokio::spawn(async move {
            let mut rx = q.raft.metrics();
            loop {
                if q.is_leader() && q.image().cluster_id.is_empty() {
                    run_blocking(&c, "committing the cluster id", |c| c.ensure_cluster_id()).await;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    };
    let leases = tokio::spawn(async move {
        let mut tick = kora_common::Ticker::new(clock.clone(), FENCE_CHECK_INTERVAL);
        let every = duties.leader_imbalance_check_interval;
        let mut last_rebalance = clock.now();
        loop {
            tick.tick().await;
            if !quorum.is_leader() {
                continue;
            }
            let rebalance = !every.is_zero() && clock.elapsed(last_rebalance) >= every;
            if rebalance {
                last_rebalance = clock.now();
            }
            let timeout_ms = duties.broker_session_timeout_ms;
            run_blocking(&controller, "fencing brokers or restoring preferred leaders", move |c| {
                c.fence_expired(timeout_ms)?;
                if rebalance {
                    c.elect_preferred_leaders()?;
                }
                Ok(())
            })
            .await;
        }
    });
    vec![cluster_id, leases]
}

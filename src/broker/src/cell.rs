//! A broker in a cell: it follows the cell's metadata quorum as a Raft learner (its own copy of
//! the log and image, replicated by the leader to its `metadata.listener`), sends controller
//! requests to the active controller, registers at start with a new incarnation and
//! heartbeats every `broker.heartbeat.interval.ms`. The active controller fences a broker whose
//! heartbeats stop for the session timeout; a fenced broker that heartbeats again is unfenced,
//! and one whose incarnation the controller no longer knows registers again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kora_meta::controller::ControllerConfig;
use kora_meta::{BrokerRegistration, Controller, MetaError};
use kora_quorum::{HttpForwarder, Quorum, QuorumConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{Broker, StartError};
use crate::config::{BrokerConfig, CellConfig};
use crate::faults::Faults;

/// Longest a starting broker waits to join the quorum and receive its metadata.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

fn http_client() -> Result<reqwest::Client, StartError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| StartError::Meta(MetaError::Store(format!("http client: {e}"))))
}

/// Opens this broker's learner, serves the Raft RPCs on `metadata.listener`, joins the quorum
/// and waits until the metadata has arrived. Returns the learner, a controller that forwards
/// to the active controller, and the listener's task.
pub async fn join(
    config: &BrokerConfig,
    cell: &CellConfig,
    controller_config: ControllerConfig,
    faults: Arc<Faults>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(Arc<Quorum>, Arc<Controller>, JoinHandle<()>), StartError> {
    let listener = tokio::net::TcpListener::bind(cell.metadata_listener)
        .await
        .map_err(|source| StartError::Bind { addr: cell.metadata_listener, source })?;
    let addr =
        listener.local_addr().map_err(|source| StartError::Bind { addr: cell.metadata_listener, source })?;
    let node_id = config.node_id.max(0) as u64;
    let mut qc = QuorumConfig::new(node_id, addr.to_string(), config.data_dir.clone());
    qc.log_dir = config.data_dir.join("meta-raft");
    qc.state_dir = config.data_dir.join("meta");
    qc.token = config.admin_token.clone();
    let http = http_client()?;
    let quorum = Quorum::open(qc, http.clone()).await?;
    // Fault injection: an isolated broker receives no metadata.
    let gate = faults.clone();
    let raft = kora_api::auth::protect(
        kora_quorum::api::raft_routes(quorum.clone()),
        config.admin_token.clone(),
        "admin.token.file",
    );
    let app = raft.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let isolated = gate.isolated();
            async move {
                if isolated {
                    return axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "isolated by fault injection",
                    ));
                }
                next.run(req).await
            }
        },
    ));
    let server = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "metadata listener failed");
        }
    });
    let voters: Vec<String> = cell.voters.iter().map(|(_, a)| a.clone()).collect();
    kora_quorum::join_as_learner(
        &http,
        config.admin_token.clone(),
        &voters,
        node_id,
        &addr.to_string(),
        JOIN_TIMEOUT,
    )
    .await?;
    // The image is usable once the log (or a snapshot) with the cell's first records arrived.
    let mut rx = quorum.subscribe();
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    while rx.borrow_and_update().cluster_id.is_empty() {
        if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
            return Err(StartError::Meta(MetaError::Store(
                "joined the quorum but received no metadata in time".into(),
            )));
        }
    }
    tracing::info!(cell = %cell.name, metadata_listener = %addr, "following the cell's metadata quorum");
    let forwarder = Arc::new(Isolating {
        inner: HttpForwarder::new(
            voters,
            http,
            config.admin_token.clone(),
            tokio::runtime::Handle::current(),
        ),
        faults,
    });
    let controller = Arc::new(Controller::forwarding(forwarder, quorum.subscribe(), controller_config));
    Ok((quorum, controller, server))
}

/// Controller requests fail while the broker is isolated by fault injection.
struct Isolating {
    inner: HttpForwarder,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for Isolating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolating").field("faults", &self.faults).finish()
    }
}

impl kora_meta::controller::Forwarder for Isolating {
    fn forward(
        &self,
        request: &kora_meta::controller::ControllerRequest,
    ) -> Result<kora_meta::controller::ForwardedReply, MetaError> {
        if self.faults.isolated() {
            return Err(MetaError::Store("cannot reach the quorum: isolated by fault injection".into()));
        }
        self.inner.forward(request)
    }
}

fn registration(
    b: &Broker,
    cell: &CellConfig,
    admin: SocketAddr,
    incarnation: uuid::Uuid,
) -> BrokerRegistration {
    BrokerRegistration {
        broker_id: b.config.node_id,
        incarnation,
        rack: cell.rack.clone(),
        host: b.config.advertised.host.clone(),
        port: b.config.advertised.port,
        admin: admin.to_string(),
    }
}

/// Registers this run of the broker (a new incarnation).
pub async fn register(b: &Arc<Broker>, cell: &CellConfig, admin: SocketAddr) -> Result<(), StartError> {
    let reg = registration(b, cell, admin, b.incarnation);
    b.meta(move |c| c.register_broker(reg)).await?;
    Ok(())
}

/// Heartbeats until shutdown; registers again if the controller no longer knows this run.
pub async fn heartbeat_loop(
    b: Arc<Broker>,
    cell: CellConfig,
    admin: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(cell.heartbeat_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if b.leaving_cell.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let (id, inc) = (b.config.node_id, b.incarnation);
        match b.meta(move |c| c.broker_heartbeat(id, inc)).await {
            Ok((_, true)) => {}
            Ok((_, false)) => {
                tracing::warn!("the active controller does not know this broker's run; registering again");
                let reg = registration(&b, &cell, admin, inc);
                if let Err(e) = b.meta(move |c| c.register_broker(reg)).await {
                    tracing::warn!(error = %e, "registration failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

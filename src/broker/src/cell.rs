//! A broker's membership of its cell: it registers at start with a new incarnation and
//! heartbeats every `broker.heartbeat.interval.ms` (following the metadata log as a Raft learner
//! is `kora_quorum::Learner`, wired by the composition root). The active controller fences a broker whose
//! heartbeats stop for the session timeout; a fenced broker that heartbeats again is unfenced,
//! and one whose incarnation the controller no longer knows registers again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kora_common::Clock;
use kora_meta::BrokerRegistration;
use tokio::sync::watch;

use crate::broker::StartError;
use crate::config::{BrokerConfig, CellConfig};
use crate::view::View;

/// What this run of the broker tells the controller about itself.
pub(crate) fn registration(
    config: &BrokerConfig,
    cell: &CellConfig,
    admin: SocketAddr,
    incarnation: uuid::Uuid,
) -> BrokerRegistration {
    BrokerRegistration {
        broker_id: config.node_id,
        incarnation,
        rack: cell.rack.clone(),
        host: config.advertised.host.clone(),
        port: config.advertised.port,
        admin: admin.to_string(),
        listeners: config
            .listeners
            .iter()
            .map(|l| kora_meta::ListenerEndpoint {
                name: l.name.clone(),
                host: l.advertised.host.clone(),
                port: l.advertised.port,
            })
            .collect(),
    }
}

/// Registration and heartbeats, with the handles they use.
#[derive(Debug)]
pub(crate) struct Membership {
    view: View,
    clock: Arc<dyn Clock>,
    registration: BrokerRegistration,
    every: Duration,
    /// A controlled shutdown began: heartbeats stop (they would bring this run back).
    leaving: Arc<AtomicBool>,
}

impl Membership {
    pub(crate) fn new(
        view: View,
        clock: Arc<dyn Clock>,
        registration: BrokerRegistration,
        every: Duration,
        leaving: Arc<AtomicBool>,
    ) -> Self {
        Self { view, clock, registration, every, leaving }
    }

    /// Registers this run of the broker (a new incarnation).
    pub(crate) async fn register(&self) -> Result<(), StartError> {
        let reg = self.registration.clone();
        self.view.call(move |c| c.register_broker(reg)).await?;
        Ok(())
    }

    /// Heartbeats until shutdown; registers again if the controller no longer knows this run.
    pub(crate) async fn heartbeat_loop(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.clock.sleep(self.every) => {}
                _ = shutdown.changed() => return,
            }
            if self.leaving.load(Ordering::Acquire) {
                continue;
            }
            let (id, inc) = (self.registration.broker_id, self.registration.incarnation);
            match self.view.call(move |c| c.broker_heartbeat(id, inc)).await {
                Ok((_, true)) => {}
                Ok((_, false)) => {
                    tracing::warn!(
                        "the active controller does not know this broker's run; registering again"
                    );
                    if let Err(e) = self.register().await {
                        tracing::warn!(error = %e, "registration failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }
}

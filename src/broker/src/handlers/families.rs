//! What each family of request handlers may touch.
//!
//! A handler never sees the whole [`Broker`]: the dispatcher hands it one of these views, a
//! struct of borrowed handles built per request (no allocation, no reference counting), so the
//! compiler keeps a produce handler out of the group coordinator and a group handler out of the
//! fetch sessions. Adding a handle to a family is a visible change to this file.
//!
//! | family | requests | handles |
//! |---|---|---|
//! | [`Writes`] | Produce, InitProducerId | view, logs, replication, metrics, clock, producer ids |
//! | [`Reads`] | consumer Fetch, ListOffsets, DeleteRecords, OffsetForLeaderEpoch | view, logs, tiering, fetch sessions, metrics, clock |
//! | [`Followers`] | follower Fetch | view, logs, replication, clock |
//! | [`Coordination`] | FindCoordinator, groups and offsets, KIP-848 | coordinator, view, logs, clock, `__consumer_offsets` creator |
//! | [`Catalog`] | Metadata, DescribeCluster, topics, partitions, configs, reassignments, elections | config, view, log sync |
//! | [`Storage`] | DescribeLogDirs | logs |
//! | [`Security`] | SaslHandshake, SaslAuthenticate, ACLs, SCRAM users, client quotas | view (credentials), SASL config, clock, entropy, quotas (connection slots) |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kora_common::Clock;
use kora_log::LogManager;
use parking_lot::Mutex;

use crate::broker::{Broker, OffsetsTopic, ProducerIds};
use crate::config::{Advertised, BrokerConfig};
use crate::fetch_session::FetchSessionCache;
use crate::log_sync::LogSync;
use crate::metrics::Metrics;
use crate::replication::Replication;
use crate::tiering::Tiering;
use crate::view::View;

/// SASL authentication: credentials from the listener's JAAS users, then the image; nonces
/// from the entropy seam.
pub(crate) struct Security<'a> {
    pub(crate) view: &'a View,
    pub(crate) sasl: &'a crate::listeners::SaslConfig,
    pub(crate) listener_users: &'a crate::inter_broker::ListenerUsers,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) entropy: &'a dyn kora_common::Entropy,
    /// Tenants' connection slots and creation rates, taken when a tenant's key authenticates.
    pub(crate) quotas: &'a crate::quotas::Quotas,
}

/// Produce and InitProducerId: appends to the logs this broker leads.
pub(crate) struct Writes<'a> {
    pub(crate) view: &'a View,
    pub(crate) logs: &'a LogManager,
    pub(crate) replication: &'a Replication,
    pub(crate) metrics: &'a Metrics,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) producer_ids: &'a ProducerIds,
    /// Part of a cell (appends wait for the in-sync replicas); false for a single node.
    pub(crate) in_cell: bool,
    /// A simulated slow disk (fault injection), and where append times are counted for the
    /// quota coordinator (a disk falling behind lowers the broker's ingress limit).
    pub(crate) faults: &'a crate::faults::Faults,
    pub(crate) usage: &'a crate::quota_sync::UsageBoard,
}

/// Consumer reads: Fetch, ListOffsets, DeleteRecords, OffsetForLeaderEpoch.
pub(crate) struct Reads<'a> {
    pub(crate) view: &'a View,
    pub(crate) logs: &'a LogManager,
    /// Shared with the remote reads a fetch spawns.
    pub(crate) tiering: Option<&'a Arc<Tiering>>,
    pub(crate) sessions: &'a Mutex<FetchSessionCache>,
    pub(crate) metrics: &'a Metrics,
    pub(crate) clock: &'a dyn Clock,
    /// fetch.max.bytes
    pub(crate) fetch_max_bytes: usize,
    shutting_down: &'a AtomicBool,
}

/// Fetches from the followers of this broker's partitions.
pub(crate) struct Followers<'a> {
    pub(crate) view: &'a View,
    pub(crate) logs: &'a LogManager,
    pub(crate) replication: &'a Replication,
    pub(crate) clock: &'a dyn Clock,
    /// fetch.max.bytes
    pub(crate) fetch_max_bytes: usize,
    shutting_down: &'a AtomicBool,
}

/// Group coordination and committed offsets.
pub(crate) struct Coordination<'a> {
    pub(crate) groups: &'a kora_group::Coordinator,
    pub(crate) view: &'a View,
    pub(crate) logs: &'a LogManager,
    pub(crate) clock: &'a dyn Clock,
    /// This broker's address on the listener the request came in on.
    pub(crate) advertised: &'a Advertised,
    /// That listener's name (for other brokers' addresses in a cell).
    pub(crate) listener: &'a str,
    pub(crate) in_cell: bool,
    pub(crate) offsets_topic: &'a OffsetsTopic,
}

/// This broker's storage as operators see it.
pub(crate) struct Storage<'a> {
    pub(crate) logs: &'a LogManager,
}

/// The cluster's catalogue: metadata, topics, partitions, configs, reassignments.
pub(crate) struct Catalog<'a> {
    /// Read-only: the broker's settings as validated at start-up.
    pub(crate) config: &'a BrokerConfig,
    pub(crate) view: &'a View,
    log_sync: &'a LogSync,
    /// The listener the request came in on: Metadata advertises its endpoints.
    pub(crate) listener: &'a str,
}

impl Reads<'_> {
    /// A long poll ends early when the broker stops.
    pub(crate) fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

impl Followers<'_> {
    pub(crate) fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

impl Catalog<'_> {
    /// Brings the logs in line with metadata after a change this handler committed (so a
    /// created topic is writable at once). It creates directories and fsyncs, so it runs with
    /// the worker handed over to the blocking pool (the runtime is always multi-threaded).
    pub(crate) fn sync_logs(&self) {
        let image = self.view.controller.image();
        if let Err(e) = tokio::task::block_in_place(|| self.log_sync.apply(&image)) {
            tracing::error!(error = %e, "bringing logs in line with metadata failed");
        }
    }
}

impl Broker {
    pub(crate) fn writes(&self) -> Writes<'_> {
        Writes {
            view: &self.view,
            logs: &self.logs,
            replication: &self.replication,
            metrics: &self.metrics,
            clock: &*self.clock,
            producer_ids: &self.producer_ids,
            in_cell: self.config.cell.is_some(),
            faults: &self.faults,
            usage: &self.usage,
        }
    }

    pub(crate) fn reads(&self) -> Reads<'_> {
        Reads {
            view: &self.view,
            logs: &self.logs,
            tiering: self.tiering.as_ref(),
            sessions: &self.sessions,
            metrics: &self.metrics,
            clock: &*self.clock,
            fetch_max_bytes: self.config.fetch_max_bytes,
            shutting_down: &self.shutting_down,
        }
    }

    pub(crate) fn followers(&self) -> Followers<'_> {
        Followers {
            view: &self.view,
            logs: &self.logs,
            replication: &self.replication,
            clock: &*self.clock,
            fetch_max_bytes: self.config.fetch_max_bytes,
            shutting_down: &self.shutting_down,
        }
    }

    pub(crate) fn coordination<'a>(&'a self, listener: &'a str) -> Coordination<'a> {
        Coordination {
            groups: &self.groups,
            view: &self.view,
            logs: &self.logs,
            clock: &*self.clock,
            advertised: self.config.advertised_for(listener),
            listener,
            in_cell: self.config.cell.is_some(),
            offsets_topic: &self.offsets_topic,
        }
    }

    pub(crate) fn storage(&self) -> Storage<'_> {
        Storage { logs: &self.logs }
    }

    pub(crate) fn security(&self) -> Security<'_> {
        Security {
            view: &self.view,
            sasl: &self.config.sasl,
            listener_users: &self.listener_users,
            clock: &*self.clock,
            entropy: &*self.entropy,
            quotas: &self.quotas,
        }
    }

    pub(crate) fn catalog<'a>(&'a self, listener: &'a str) -> Catalog<'a> {
        Catalog { config: &self.config, view: &self.view, log_sync: &self.log_sync, listener }
    }
}

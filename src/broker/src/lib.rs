//! The Kafka broker: the wire protocol, request handlers, fetch sessions, metrics and the admin
//! endpoint, over the log ([`kora_log`]), metadata ([`kora_meta`]) and group coordinator
//! ([`kora_group`]) crates.
//!
//! Invariants:
//! - every request frame is size-checked before allocation and decoded by kafka-protocol; a
//!   frame we cannot understand closes its connection, never the broker;
//! - responses on a connection go out in request order;
//! - a Produce is acknowledged only after the batch is in the log (and fsynced when the topic's
//!   flush policy says so);
//! - handlers read metadata only from the controller's image.
//!
//! Not here: CLI and process concerns (cmd/kora), storage formats (kora-log), metadata state
//! (kora-meta).

pub mod admin;
pub mod broker;
pub mod cell;
pub mod config;
mod config_types;
pub mod edge;
pub mod errors;
pub mod faults;
pub mod fetch_session;
pub mod groups;
pub(crate) mod handlers;
pub mod inter_broker;
pub mod listeners;
pub mod log_sync;
pub mod metrics;
pub mod quota_sync;
pub mod quotas;
pub mod replication;
mod root;
pub mod server;
pub mod sink;
pub mod tenants;
pub mod tiering;
pub mod view;
pub mod zero_copy;

pub use broker::{Broker, StartError};
pub use config::{BrokerConfig, ConfigFileError};
pub use root::BrokerHandle;

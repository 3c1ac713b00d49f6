//! Types shared by every Kora crate: the clock and entropy seams and typed Kafka topic configuration.
//!
//! This crate does no I/O (it uses tokio only for the clock's timers and wake-ups). It owns the
//! one table of topic-level configs (names, types, defaults, broker-level synonyms,
//! documentation) so that the metadata state machine, the log and the admin APIs agree on what
//! a config means.

pub mod clock;
pub mod entropy;
pub mod namespace;
pub mod topic_config;

pub use clock::{timeout, timeout_at, Clock, Elapsed, ManualClock, Sleep, SystemClock, Ticker};
pub use entropy::{Entropy, OsEntropy, SeededEntropy};
pub use namespace::{Namespace, NamespaceError, TenantId};
pub use topic_config::{
    topic_config_def, topic_config_def_by_synonym, validate_topic_config, CleanupPolicy, ConfigError,
    ConfigType, TimestampType, TopicConfig, TopicConfigDef, TOPIC_CONFIGS,
};

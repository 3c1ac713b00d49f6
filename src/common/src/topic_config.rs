//! Topic-level configuration with Kafka's names, types, defaults and broker-level synonyms.
//!
//! A topic's effective config is resolved from three layers, highest first: the topic's own
//! overrides (stored in metadata), the broker's defaults (`log.segment.bytes`, ... in the broker
//! config), and Kafka's built-in defaults. Every value is parsed and validated here, once; the
//! log only ever sees a validated [`TopicConfig`].

use std::collections::BTreeMap;

/// A config value that cannot be accepted, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config '{0}'")]
    Unknown(String),
    #[error("invalid value '{value}' for config '{name}': {reason}")]
    Invalid { name: String, value: String, reason: String },
}

/// Kafka's config value types as DescribeConfigs reports them (`config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic config: its Kafka name, the broker config that sets its default, type, built-in
/// default and documentation.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub broker_synonym: &'static str,
    pub config_type: ConfigType,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every topic config Kora understands. Kafka names; Kafka defaults (Kafka 4.x).
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_synonym: "log.cleanup.policy",
        config_type: ConfigType::List,
        default: "delete",
        doc: "'delete' removes old segments by time and size; 'compact' keeps the latest record per key; 'compact,delete' does both.",
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_synonym: "log.cleaner.delete.retention.ms",
        config_type: ConfigType::Long,
        default: "86400000",
        doc: "How long a tombstone (a null value) stays readable in a compacted topic.",
    },
    TopicConfigDef {
        name: "compression.type",
        broker_synonym: "compression.type",
        config_type: ConfigType::String,
        default: "producer",
        doc: "Batches are stored as the producer compressed them ('producer').",
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_synonym: "log.flush.interval.messages",
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        doc: "fsync the log after this many messages are appended (1 = every append).",
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_synonym: "log.flush.interval.ms",
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        doc: "fsync the log when data older than this many milliseconds is not yet synced.",
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_synonym: "log.index.interval.bytes",
        config_type: ConfigType::Int,
        default: "4096",
        doc: "Bytes of log between two entries of the sparse offset and time indexes.",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_synonym: "message.max.bytes",
        config_type: ConfigType::Int,
        default: "1048588",
        doc: "Largest record batch (after compression) the topic accepts.",
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_synonym: "log.message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        default: "3600000",
        doc: "Largest allowed amount a CreateTime timestamp may be ahead of the broker clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        broker_synonym: "log.message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        doc: "Largest allowed amount a CreateTime timestamp may be behind the broker clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_synonym: "log.message.timestamp.type",
        config_type: ConfigType::String,
        default: "CreateTime",
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches on append.",
    },
    TopicConfigDef {
        name: "local.retention.bytes",
        broker_synonym: "log.local.retention.bytes",
        config_type: ConfigType::Long,
        default: "-2",
        doc: "With remote storage: bytes of uploaded data kept on local disk (-2: retention.bytes).",
    },
    TopicConfigDef {
        name: "local.retention.ms",
        broker_synonym: "log.local.retention.ms",
        config_type: ConfigType::Long,
        default: "-2",
        doc: "With remote storage: age of uploaded data kept on local disk (-2: retention.ms).",
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        broker_synonym: "log.cleaner.max.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        doc: "Longest a record may stay uncompacted: older dirty data is cleaned whatever the dirty ratio.",
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_synonym: "log.cleaner.min.cleanable.ratio",
        config_type: ConfigType::Double,
        default: "0.5",
        doc: "Share of the log that must be uncompacted before the cleaner rewrites it.",
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        broker_synonym: "log.cleaner.min.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: "0",
        doc: "Shortest time a record stays uncompacted.",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_synonym: "min.insync.replicas",
        config_type: ConfigType::Int,
        default: "1",
        doc: "Replicas that must acknowledge an acks=all produce.",
    },
    TopicConfigDef {
        name: "remote.storage.enable",
        broker_synonym: "log.remote.storage.enable",
        config_type: ConfigType::Boolean,
        default: "false",
        doc: "Upload closed segments to the object store and serve old data from there.",
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_synonym: "log.retention.bytes",
        config_type: ConfigType::Long,
        default: "-1",
        doc: "Largest size of a partition's log before old segments are deleted (-1: no limit).",
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_synonym: "log.retention.ms",
        config_type: ConfigType::Long,
        default: "604800000",
        doc: "Age after which a segment whose records are all older is deleted (-1: forever).",
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_synonym: "log.segment.bytes",
        config_type: ConfigType::Int,
        default: "1073741824",
        doc: "Size at which the active segment is rolled.",
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_synonym: "log.roll.ms",
        config_type: ConfigType::Long,
        default: "604800000",
        doc: "Age at which a non-empty active segment is rolled.",
    },
];

/// Looks a topic config up by its Kafka name.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Looks a topic config up by its broker-level synonym (`log.segment.bytes`).
pub fn topic_config_def_by_synonym(broker_name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == broker_name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    /// The log cleaner keeps the latest record per key.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
    /// Retention by time and size deletes old segments.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// A topic's effective, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    pub delete_retention_ms: i64,
    pub max_compaction_lag_ms: i64,
    /// In thousandths (0.5 → 500), so the config stays `Eq`.
    pub min_cleanable_dirty_ratio_milli: u32,
    pub min_compaction_lag_ms: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub index_interval_bytes: u32,
    pub max_message_bytes: u32,
    pub message_timestamp_after_max_ms: i64,
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_type: TimestampType,
    pub min_insync_replicas: u32,
    pub remote_storage_enable: bool,
    /// Local bytes kept once uploaded; -1 no limit (resolved from -2 = retention.bytes).
    pub local_retention_bytes: i64,
    /// Local age kept once uploaded; -1 forever (resolved from -2 = retention.ms).
    pub local_retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    /// -1: keep forever.
    pub retention_ms: i64,
    pub segment_bytes: u32,
    pub segment_ms: i64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        let empty = BTreeMap::new();
        // The built-in defaults are constants of this file; resolving them cannot fail.
        Self::resolve(&empty, &empty).unwrap_or_else(|e| panic!("built-in topic defaults: {e}"))
    }
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name: name.to_string(), value: value.to_string(), reason: reason.into() }
}

fn parse_long(name: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let v: i64 = value.trim().parse().map_err(|_| invalid(name, value, "not a number"))?;
    if v < min {
        return Err(invalid(name, value, format!("must be at least {min}")));
    }
    Ok(v)
}

fn parse_int(name: &str, value: &str, min: i64) -> Result<u32, ConfigError> {
    let v = parse_long(name, value, min)?;
    u32::try_from(v)
        .ok()
        .filter(|v| *v <= i32::MAX as u32)
        .ok_or_else(|| invalid(name, value, "out of range for an int"))
}

/// Validates one topic config value by its Kafka name.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let mut one = BTreeMap::new();
    one.insert(name.to_string(), value.to_string());
    TopicConfig::resolve(&BTreeMap::new(), &one).map(|_| ())
}

impl TopicConfig {
    /// Resolves overrides over broker defaults over built-in defaults. Both maps are keyed by
    /// topic config name (`segment.bytes`). Unknown names and bad values are errors.
    pub fn resolve(
        broker_defaults: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        for name in broker_defaults.keys().chain(overrides.keys()) {
            if topic_config_def(name).is_none() {
                return Err(ConfigError::Unknown(name.clone()));
            }
        }
        let get = |name: &str| -> String {
            overrides
                .get(name)
                .or_else(|| broker_defaults.get(name))
                .cloned()
                .or_else(|| topic_config_def(name).map(|d| d.default.to_string()))
                .unwrap_or_default()
        };
        let v = get("cleanup.policy");
        let parts: std::collections::BTreeSet<&str> =
            v.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        let cleanup_policy = match (parts.contains("compact"), parts.contains("delete")) {
            _ if parts.iter().any(|p| !matches!(*p, "compact" | "delete")) => {
                return Err(invalid("cleanup.policy", &v, "expected 'delete', 'compact' or 'compact,delete'"))
            }
            (true, true) => CleanupPolicy::CompactDelete,
            (true, false) => CleanupPolicy::Compact,
            (false, true) => CleanupPolicy::Delete,
            (false, false) => return Err(invalid("cleanup.policy", &v, "at least one policy is required")),
        };
        let v = get("min.cleanable.dirty.ratio");
        let ratio: f64 =
            v.trim().parse().map_err(|_| invalid("min.cleanable.dirty.ratio", &v, "not a number"))?;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(invalid("min.cleanable.dirty.ratio", &v, "must be between 0 and 1"));
        }
        let v = get("compression.type");
        if v.trim() != "producer" {
            return Err(invalid(
                "compression.type",
                &v,
                "batches are stored as produced; only 'producer' is supported",
            ));
        }
        let v = get("message.timestamp.type");
        let message_timestamp_type = match v.trim() {
            "CreateTime" => TimestampType::CreateTime,
            "LogAppendTime" => TimestampType::LogAppendTime,
            _ => return Err(invalid("message.timestamp.type", &v, "expected CreateTime or LogAppendTime")),
        };
        let v = get("remote.storage.enable");
        let remote_storage_enable = match v.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(invalid("remote.storage.enable", &v, "expected true or false")),
        };
        if remote_storage_enable && cleanup_policy.compacts() {
            return Err(invalid(
                "remote.storage.enable",
                &v,
                "compacted topics cannot use remote storage (as in Kafka)",
            ));
        }
        let retention_bytes = parse_long("retention.bytes", &get("retention.bytes"), -1)?;
        let retention_ms = parse_long("retention.ms", &get("retention.ms"), -1)?;
        let local_bytes = parse_long("local.retention.bytes", &get("local.retention.bytes"), -2)?;
        let local_ms = parse_long("local.retention.ms", &get("local.retention.ms"), -2)?;
        let cfg = TopicConfig {
            remote_storage_enable,
            local_retention_bytes: if local_bytes == -2 { retention_bytes } else { local_bytes },
            local_retention_ms: if local_ms == -2 { retention_ms } else { local_ms },
            cleanup_policy,
            delete_retention_ms: parse_long("delete.retention.ms", &get("delete.retention.ms"), 0)?,
            max_compaction_lag_ms: parse_long("max.compaction.lag.ms", &get("max.compaction.lag.ms"), 1)?,
            min_cleanable_dirty_ratio_milli: (ratio * 1000.0).round() as u32,
            min_compaction_lag_ms: parse_long("min.compaction.lag.ms", &get("min.compaction.lag.ms"), 0)?,
            flush_messages: parse_long("flush.messages", &get("flush.messages"), 1)?,
            flush_ms: parse_long("flush.ms", &get("flush.ms"), 0)?,
            index_interval_bytes: parse_int("index.interval.bytes", &get("index.interval.bytes"), 0)?,
            max_message_bytes: parse_int("max.message.bytes", &get("max.message.bytes"), 0)?,
            message_timestamp_after_max_ms: parse_long(
                "message.timestamp.after.max.ms",
                &get("message.timestamp.after.max.ms"),
                0,
            )?,
            message_timestamp_before_max_ms: parse_long(
                "message.timestamp.before.max.ms",
                &get("message.timestamp.before.max.ms"),
                0,
            )?,
            message_timestamp_type,
            min_insync_replicas: parse_int("min.insync.replicas", &get("min.insync.replicas"), 1)?,
            retention_bytes,
            retention_ms,
            // Kafka's floor: one record batch header.
            segment_bytes: parse_int("segment.bytes", &get("segment.bytes"), 14)?,
            segment_ms: parse_long("segment.ms", &get("segment.ms"), 1)?,
        };
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = TopicConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.retention_ms, 7 * 24 * 3600 * 1000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.max_message_bytes, 1048588);
        assert_eq!(c.message_timestamp_type, TimestampType::CreateTime);
    }

    #[test]
    fn overrides_beat_broker_defaults() {
        let c = TopicConfig::resolve(
            &map(&[("segment.bytes", "1000"), ("retention.ms", "5")]),
            &map(&[("segment.bytes", "2000")]),
        )
        .expect("valid");
        assert_eq!(c.segment_bytes, 2000);
        assert_eq!(c.retention_ms, 5);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e =
            TopicConfig::resolve(&BTreeMap::new(), &map(&[("retention.ms", "soon")])).expect_err("invalid");
        assert!(e.to_string().contains("retention.ms"), "{e}");
        let e =
            TopicConfig::resolve(&BTreeMap::new(), &map(&[("segment.bytes", "3")])).expect_err("too small");
        assert!(e.to_string().contains("at least 14"), "{e}");
        let e = TopicConfig::resolve(&BTreeMap::new(), &map(&[("no.such", "1")])).expect_err("unknown");
        assert_eq!(e, ConfigError::Unknown("no.such".into()));
        assert!(validate_topic_config("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_topic_config("cleanup.policy", "compact").is_ok());
        assert!(validate_topic_config("cleanup.policy", "delete,compact").is_ok());
        assert!(validate_topic_config("cleanup.policy", "archive").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
    }

    #[test]
    fn synonyms_are_unique() {
        for d in TOPIC_CONFIGS {
            assert_eq!(topic_config_def_by_synonym(d.broker_synonym).map(|x| x.name), Some(d.name));
        }
    }
}

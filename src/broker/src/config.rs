//! Broker configuration: parsed once at start-up, validated, then passed explicitly.
//!
//! The file is TOML whose keys are Kafka's config names. Dotted names may be written bare
//! (`log.segment.bytes = 1048576`, which TOML reads as nested tables) or quoted; both flatten to
//! the same name. Every key must be known: a typo is an error that names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kora_common::topic_config::topic_config_def_by_synonym;
use kora_common::TopicConfig;

pub use crate::config_types::{Advertised, ConfigFileError};

fn invalid(key: &str, reason: impl Into<String>) -> ConfigFileError {
    ConfigFileError::Invalid { key: key.to_string(), reason: reason.into() }
}

/// Every broker setting, typed. Kafka names in the docs of each field.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// node.id
    pub node_id: i32,
    /// data.dir: logs under `logs/`, metadata under `meta/`.
    pub data_dir: PathBuf,
    /// The inter-broker listener's address (`listeners[0].bind`).
    pub listener: SocketAddr,
    /// What the inter-broker listener advertises (`listeners[0].advertised`): the address a
    /// broker registers with its cell.
    pub advertised: Advertised,
    /// listeners, advertised.listeners, listener.security.protocol.map,
    /// inter.broker.listener.name: every Kafka listener, the inter-broker one first.
    pub listeners: Vec<crate::listeners::ListenerConfig>,
    /// sasl.enabled.mechanisms, connections.max.reauth.ms, super.users,
    /// sasl.mechanism.inter.broker.protocol.
    pub sasl: crate::listeners::SaslConfig,
    /// How this broker dials the inter-broker listener of its cell's other brokers (its own
    /// listener's protocol, keystore, truststore and JAAS login); PLAINTEXT outside a cell.
    pub inter_broker: crate::inter_broker::InterBrokerClient,
    /// authorizer.class.name, allow.everyone.if.no.acl.found: ACLs of the default namespace
    /// (tenants' ACLs always apply to their keys that are not admin).
    pub authorizer: crate::listeners::AuthorizerSettings,
    /// admin.listeners: HTTP for /metrics and /health.
    pub admin_listener: SocketAddr,
    /// admin.token.file (Kora): the operator token, read once at start. Required of every
    /// admin call that changes state, and in a cell the token its members present to each
    /// other. None: such calls are refused (403); a broker in a cell must have one.
    pub admin_token: Option<std::sync::Arc<kora_api::Token>>,
    /// Where `admin_token` was read from (printed for operators).
    pub admin_token_file: Option<PathBuf>,
    /// auto.create.topics.enable
    pub auto_create_topics_enable: bool,
    /// num.partitions
    pub num_partitions: i32,
    /// default.replication.factor
    pub default_replication_factor: i16,
    /// socket.request.max.bytes: larger frames are refused before any allocation.
    pub socket_request_max_bytes: usize,
    /// max.connections; 0 (the default): what the open-file limit leaves after segment files
    /// and a reserve, at most 10,000 ([`BrokerConfig::resolve_file_budget`]).
    pub max_connections: usize,
    /// fetch.max.bytes: cap on one fetch response.
    pub fetch_max_bytes: usize,
    /// log.retention.check.interval.ms
    pub log_retention_check_interval_ms: u64,
    /// log.flush.scheduler.interval.ms: how often flush.ms is checked.
    pub log_flush_scheduler_interval_ms: u64,
    /// max.incremental.fetch.session.cache.slots
    pub fetch_session_cache_slots: usize,
    /// Topic config defaults set here, by topic config name (from `log.segment.bytes` etc.).
    pub topic_defaults: BTreeMap<String, String>,
    /// max.partitions.per.topic (Kora): upper bound for CreateTopics/CreatePartitions.
    pub max_partitions_per_topic: i32,
    /// group.* and offsets.* settings of the group coordinator.
    pub groups: kora_group::GroupConfig,
    /// offsets.retention.check.interval.ms
    pub offsets_retention_check_interval_ms: u64,
    /// offsets.topic.segment.bytes
    pub offsets_topic_segment_bytes: u32,
    /// offsets.topic.replication.factor: in a cell, at most the brokers registered when the
    /// topic is created (a single node: 1).
    pub offsets_topic_replication_factor: i16,
    /// log.cleaner.enable
    pub log_cleaner_enable: bool,
    /// log.cleaner.backoff.ms: pause between cleaner passes over the compacted partitions.
    pub log_cleaner_backoff_ms: u64,
    /// log.cleaner.dedupe.buffer.size: bytes of key map per pass (24 bytes per key).
    pub log_cleaner_dedupe_buffer_size: u64,
    /// object_store.url and the remote.log.* settings; None: no object store, no tiering.
    pub tiering: Option<crate::tiering::TieringConfig>,
    /// controller.quorum.voters and the broker's place in a cell; None: a single node with its
    /// own in-process voter (`kora dev`).
    pub cell: Option<CellConfig>,
    /// replica.* settings: how followers fetch and when they leave the ISR (cells only).
    pub replication: ReplicationConfig,
    /// fault.injection.enable (Kora, tests only): the admin endpoint's /v1/faults.
    pub fault_injection_enable: bool,
    /// log.max.open.files (Kora): segment files kept open at once; others are opened on use.
    /// 0: half the process's open-file limit.
    pub log_max_open_files: usize,
    /// quota.window.num, quota.window.size.seconds, quota.broker.*: how tenants' quotas are
    /// measured and this broker's safe limits.
    pub quotas: crate::quotas::QuotaConfig,
}

/// Replication between the brokers of a cell (Kafka's replica.* settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// replica.lag.time.max.ms: a follower not caught up for this long leaves the ISR.
    pub lag_time_max_ms: u64,
    /// replica.fetch.wait.max.ms: how long a follower's fetch waits at the leader for data.
    pub fetch_wait_max_ms: u64,
    /// replica.fetch.max.bytes: per partition in one follower fetch.
    pub fetch_max_bytes: usize,
    /// replica.fetch.response.max.bytes: one follower fetch response.
    pub fetch_response_max_bytes: usize,
    /// replica.fetch.backoff.ms: pause after a failed follower fetch.
    pub fetch_backoff_ms: u64,
    /// replica.high.watermark.checkpoint.interval.ms
    pub high_watermark_checkpoint_interval_ms: u64,
    /// replica.straggler.factor (Kora): an in-sync follower whose lag stays above this many
    /// times the median lag of its peers (and above replica.straggler.min.lag.ms) leaves the
    /// ISR while it keeps replicating, so one slow zone does not slow acks=all. 0: off.
    pub straggler_factor: u32,
    /// replica.straggler.min.lag.ms (Kora): lags below this never make a straggler.
    pub straggler_min_lag_ms: u64,
    /// leader.replication.throttled.rate: bytes/s this broker serves, as leader, to replicas
    /// being added by a reassignment (0: unlimited).
    pub leader_throttled_rate: u64,
    /// follower.replication.throttled.rate: bytes/s this broker fetches for partitions it is
    /// being added to (0: unlimited).
    pub follower_throttled_rate: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            lag_time_max_ms: 30_000,
            fetch_wait_max_ms: 500,
            fetch_max_bytes: 1 << 20,
            fetch_response_max_bytes: 10 << 20,
            fetch_backoff_ms: 1_000,
            high_watermark_checkpoint_interval_ms: 5_000,
            straggler_factor: 10,
            straggler_min_lag_ms: 2_000,
            leader_throttled_rate: 0,
            follower_throttled_rate: 0,
        }
    }
}

/// A broker in a cell: the cell's voters, and how this broker follows and reports to them.
#[derive(Debug, Clone)]
pub struct CellConfig {
    /// cell.name (Kora)
    pub name: String,
    /// controller.quorum.voters: `id@host:port` of each voter's HTTP listener.
    pub voters: Vec<(u64, String)>,
    /// broker.rack: the zone; replicas of a partition spread over racks.
    pub rack: Option<String>,
    /// metadata.listener (Kora): where the quorum's leader replicates the metadata log to
    /// this broker (HTTP). Port 0 picks one.
    pub metadata_listener: SocketAddr,
    /// broker.heartbeat.interval.ms
    pub heartbeat_interval_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let listener: SocketAddr = ([127, 0, 0, 1], 9092).into();
        BrokerConfig {
            node_id: 1,
            data_dir: PathBuf::from("./kora-data"),
            listener,
            advertised: Advertised::for_listener(listener),
            listeners: vec![crate::listeners::ListenerConfig {
                name: "PLAINTEXT".into(),
                protocol: crate::listeners::SecurityProtocol::Plaintext,
                bind: listener,
                advertised: Advertised::for_listener(listener),
                tls: None,
                jaas: Vec::new(),
            }],
            sasl: crate::listeners::SaslConfig::default(),
            inter_broker: crate::inter_broker::InterBrokerClient::default(),
            authorizer: crate::listeners::AuthorizerSettings::default(),
            admin_listener: ([127, 0, 0, 1], 9644).into(),
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            socket_request_max_bytes: 104_857_600,
            max_connections: 0,
            fetch_max_bytes: 57_671_680,
            log_retention_check_interval_ms: 300_000,
            log_flush_scheduler_interval_ms: 10,
            fetch_session_cache_slots: 1000,
            topic_defaults: BTreeMap::new(),
            max_partitions_per_topic: 10_000,
            groups: kora_group::GroupConfig::default(),
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_topic_replication_factor: 3,
            log_cleaner_enable: true,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_size: 134_217_728,
            tiering: None,
            cell: None,
            replication: ReplicationConfig::default(),
            fault_injection_enable: false,
            log_max_open_files: 0,
            quotas: crate::quotas::QuotaConfig::default(),
            admin_token: None,
            admin_token_file: None,
        }
    }
}

/// The broker-level keys other than topic-config synonyms, with a one-line description each
/// (docs/configuration.md is the long form).
pub const BROKER_KEYS: &[(&str, &str)] = &[
    ("node.id", "This broker's id."),
    ("data.dir", "Directory for logs and metadata."),
    ("listeners", "Kafka listeners, NAME://host:port, comma-separated (a bare host:port is PLAINTEXT)."),
    ("advertised.listeners", "Addresses given to clients in Metadata, NAME://host:port per listener."),
    ("listener.security.protocol.map", "NAME:PROTOCOL per listener (PLAINTEXT, SASL_PLAINTEXT)."),
    (
        "inter.broker.listener.name",
        "The listener brokers of a cell reach each other on (default: the first).",
    ),
    ("sasl.enabled.mechanisms", "SASL mechanisms served: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512."),
    ("connections.max.reauth.ms", "Longest SASL session before the client must re-authenticate (0: none)."),
    ("super.users", "Principals allowed everything, User:name separated by ';'."),
    (
        "sasl.mechanism.inter.broker.protocol",
        "SASL mechanism brokers of a cell log in to each other with (default PLAIN).",
    ),
    ("ssl.keystore.type", "Keystore type of TLS listeners: PEM (the only one)."),
    ("ssl.keystore.location", "PEM file with a TLS listener's private key and certificate chain."),
    ("ssl.keystore.certificate.chain", "A TLS listener's certificate chain, inline PEM."),
    ("ssl.keystore.key", "A TLS listener's private key, inline PEM (unencrypted)."),
    ("ssl.key.password", "Refused: encrypted private keys are not supported."),
    ("ssl.truststore.type", "Truststore type: PEM (the only one)."),
    ("ssl.truststore.location", "PEM file of the CAs trusted for client certificates."),
    ("ssl.truststore.certificates", "CAs trusted for client certificates, inline PEM."),
    ("ssl.client.auth", "Client certificates on TLS listeners: required, requested or none."),
    ("ssl.enabled.protocols", "TLS versions served: TLSv1.2, TLSv1.3."),
    ("ssl.endpoint.identification.algorithm", "https (check host names) or empty; for TLS clients."),
    ("ssl.principal.mapping.rules", "Rules turning a client certificate's subject into a principal."),
    ("ssl.reload.interval.ms", "How often TLS listeners re-read their certificate files (0: never)."),
    ("admin.listeners", "HTTP address for /metrics and /health."),
    ("admin.token.file", "File holding the operator token that admin calls changing state need."),
    ("auto.create.topics.enable", "Create unknown topics on Metadata requests."),
    ("num.partitions", "Partitions of auto-created topics and CreateTopics without a count."),
    ("default.replication.factor", "Replication factor when none is given."),
    ("socket.request.max.bytes", "Largest request frame accepted."),
    ("max.connections", "Most client connections at once."),
    ("fetch.max.bytes", "Largest fetch response."),
    ("quota.window.num", "Windows a quota's rate is measured over."),
    ("quota.window.size.seconds", "Length of one quota window."),
    (
        "quota.broker.ingress.bytes.per.second",
        "Produce bytes/s this broker takes from all tenants before it scales every tenant's bound down (Kora).",
    ),
    (
        "quota.broker.request.queue.ms",
        "Wait for a thread (p90 over a window) past which a busy broker cuts tenants' request time (Kora; 0: off).",
    ),
    (
        "quota.broker.append.ms",
        "Produce append time (p90 over a window) past which the disk counts as behind and the broker learns a lower ingress limit (Kora; 0: off).",
    ),
    (
        "quota.broker.egress.bytes.per.second",
        "Fetched bytes/s this broker serves all tenants before it scales every tenant's bound down (Kora).",
    ),
    (
        "quota.broker.send.ms",
        "Time for a response to leave once ready (p90 over a window) past which, when slow responses are widespread, the network counts as behind and the broker learns a lower egress limit (Kora; 0: off).",
    ),
    ("log.retention.check.interval.ms", "How often retention runs."),
    ("log.retention.hours", "retention.ms default, in hours."),
    ("log.retention.minutes", "retention.ms default, in minutes."),
    ("log.flush.scheduler.interval.ms", "How often flush.ms deadlines are checked."),
    ("max.incremental.fetch.session.cache.slots", "Most fetch sessions kept."),
    ("max.partitions.per.topic", "Upper bound on a topic's partition count."),
    ("group.min.session.timeout.ms", "Smallest session timeout a classic group member may ask for."),
    ("group.max.session.timeout.ms", "Largest session timeout a classic group member may ask for."),
    (
        "group.initial.rebalance.delay.ms",
        "Wait for more members before the first rebalance of an empty group.",
    ),
    ("group.max.size", "Most members in a classic group."),
    ("group.consumer.session.timeout.ms", "Session timeout of KIP-848 consumer group members."),
    ("group.consumer.heartbeat.interval.ms", "Heartbeat interval given to KIP-848 members."),
    ("group.consumer.max.size", "Most members in a KIP-848 consumer group."),
    ("group.consumer.assignors", "Server-side assignors (uniform, range); the first is the default."),
    ("offset.metadata.max.bytes", "Largest metadata string of a committed offset."),
    ("offsets.retention.minutes", "How long offsets of an empty group are kept."),
    ("offsets.retention.check.interval.ms", "How often expired offsets are removed."),
    ("offsets.topic.num.partitions", "Partitions of __consumer_offsets (fixed once created)."),
    ("offsets.topic.segment.bytes", "Segment size of __consumer_offsets (compacted)."),
    ("offsets.topic.replication.factor", "Replicas of each __consumer_offsets partition in a cell."),
    ("log.cleaner.enable", "Run the log cleaner for compacted topics."),
    ("log.cleaner.backoff.ms", "Pause between cleaner passes."),
    ("log.cleaner.dedupe.buffer.size", "Memory for the cleaner's key map per pass."),
    (
        "object_store.url",
        "Object store for tiered storage: file:///dir, s3://bucket/prefix, gs://..., az://...",
    ),
    ("cell.name", "Name of the cell this broker belongs to (with controller.quorum.voters)."),
    (
        "controller.quorum.voters",
        "The cell's metadata voters, id@host:port (their HTTP listeners), comma-separated.",
    ),
    ("broker.rack", "This broker's zone; replicas are spread over racks."),
    ("metadata.listener", "HTTP address where the quorum replicates the metadata log to this broker."),
    ("broker.heartbeat.interval.ms", "How often this broker heartbeats to the active controller."),
    ("replica.lag.time.max.ms", "A follower not caught up for this long leaves the ISR."),
    ("fault.injection.enable", "Tests only: lets the admin endpoint cut this broker off from its cell."),
    (
        "authorizer.class.name",
        "Set to StandardAuthorizer's class name: ACLs apply to the default namespace too.",
    ),
    ("allow.everyone.if.no.acl.found", "Allow what no ACL names (default false: deny)."),
    ("log.max.open.files", "Segment files kept open at once (0: half the open-file limit)."),
    ("replica.fetch.wait.max.ms", "How long a follower's fetch waits at the leader for data."),
    ("replica.fetch.max.bytes", "Bytes per partition in one follower fetch."),
    ("replica.fetch.response.max.bytes", "Bytes in one follower fetch response."),
    ("replica.fetch.backoff.ms", "Pause after a failed follower fetch."),
    ("replica.high.watermark.checkpoint.interval.ms", "How often high watermarks are written to disk."),
    (
        "replica.straggler.factor",
        "A follower lagging this many times its peers' median leaves the ISR (0: off).",
    ),
    ("replica.straggler.min.lag.ms", "Lags below this never make a follower a straggler."),
    ("leader.replication.throttled.rate", "Bytes/s served to replicas a reassignment adds (0: unlimited)."),
    (
        "follower.replication.throttled.rate",
        "Bytes/s fetched for replicas a reassignment adds (0: unlimited).",
    ),
    ("remote.log.manager.task.interval.ms", "How often segments are uploaded and remote retention runs."),
    ("remote.log.manager.copier.thread.pool.size", "Segment uploads in flight at once."),
    ("remote.log.manager.copy.max.bytes.per.second", "Upload bandwidth limit (0: none)."),
    ("remote.log.reader.cache.bytes", "Local disk for chunks read from the object store (0: none)."),
    ("remote.log.reader.memory.bytes", "Memory for chunks read from the object store."),
    ("remote.log.reader.chunk.bytes", "Size of the chunks read from the object store."),
    ("remote.fetch.max.wait.ms", "Longest a fetch waits for an object-store read."),
];

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ConfigFileError> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out)?,
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Integer(i) => {
                out.insert(key, i.to_string());
            }
            toml::Value::Boolean(b) => {
                out.insert(key, b.to_string());
            }
            toml::Value::Float(f) => {
                out.insert(key, f.to_string());
            }
            toml::Value::Array(a) => {
                let parts: Vec<String> = a
                    .iter()
                    .map(|x| match x {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                out.insert(key, parts.join(","));
            }
            toml::Value::Datetime(_) => return Err(invalid(&key, "dates are not a config value")),
        }
    }
    Ok(())
}

fn parse_num<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    key: &str,
    v: &str,
    min: T,
    max: T,
) -> Result<T, ConfigFileError> {
    let n: T = v.trim().parse().map_err(|_| invalid(key, format!("'{v}' is not a number")))?;
    if n < min || n > max {
        return Err(invalid(key, format!("{n} is outside [{min}, {max}]")));
    }
    Ok(n)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigFileError> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, format!("'{v}' is not true or false"))),
    }
}

/// Parses `host:port` or `PLAINTEXT://host:port` (one listener).
fn parse_listener(key: &str, v: &str) -> Result<(String, u16), ConfigFileError> {
    let v = v.trim();
    if v.contains(',') {
        return Err(invalid(key, "one listener is supported"));
    }
    let addr = match v.split_once("://") {
        Some((proto, rest)) => {
            let p = proto.to_ascii_uppercase();
            if p != "PLAINTEXT" {
                return Err(invalid(
                    key,
                    format!("listener protocol {proto} is not supported yet (PLAINTEXT only)"),
                ));
            }
            rest
        }
        None => v,
    };
    let (host, port) =
        addr.rsplit_once(':').ok_or_else(|| invalid(key, format!("'{v}' is not host:port")))?;
    let port: u16 = port.parse().map_err(|_| invalid(key, format!("'{port}' is not a port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((if host.is_empty() { "0.0.0.0".into() } else { host.to_string() }, port))
}

fn resolve_addr(key: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigFileError> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(key, format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| invalid(key, format!("{host} resolves to no address")))
}

impl BrokerConfig {
    /// Descriptors kept back from segment files and connections: listeners, the metadata
    /// store, peers' and the object store's sockets, stdio.
    pub const RESERVED_FILES: u64 = 128;
    /// The most connections the derived max.connections allows.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

    /// Fills in what was left to the machine, from the process's open-file limit (soft):
    /// log.max.open.files 0 becomes half of it, max.connections 0 what is left after the
    /// segment files and [`Self::RESERVED_FILES`] (between 64 and 10,000), so by default a
    /// broker turns clients away before it runs out of descriptors for its logs.
    pub fn resolve_file_budget(&mut self, nofile_soft: u64) {
        if self.log_max_open_files == 0 {
            self.log_max_open_files = (nofile_soft / 2).clamp(256, 1 << 20) as usize;
        }
        if self.max_connections == 0 {
            let left = nofile_soft.saturating_sub(self.log_max_open_files as u64 + Self::RESERVED_FILES);
            self.max_connections = (left as usize).clamp(64, Self::DEFAULT_MAX_CONNECTIONS);
        }
    }

    /// What a listener advertises (the inter-broker listener's address for an unknown name).
    pub fn advertised_for(&self, listener: &str) -> &Advertised {
        self.listeners.iter().find(|l| l.name == listener).map_or(&self.advertised, |l| &l.advertised)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigFileError::Read { path: path.display().to_string(), source })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigFileError> {
        Self::from_toml_with_overrides(text, origin, &BTreeMap::new())
    }

    /// Parses the file, then applies `overrides` (Kafka names, e.g. from `--set`) on top.
    pub fn from_toml_with_overrides(
        text: &str,
        origin: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigFileError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigFileError::Syntax {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut flat = BTreeMap::new();
        flatten("", &table, &mut flat)?;
        flat.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self::from_map(&flat)
    }

    /// Builds a config from Kafka-named keys over the defaults.
    pub fn from_map(flat: &BTreeMap<String, String>) -> Result<Self, ConfigFileError> {
        let mut c = BrokerConfig::default();
        c.listeners = crate::listeners::parse_listeners(flat)?;
        c.listener = c.listeners[0].bind;
        c.advertised = c.listeners[0].advertised.clone();
        let mut tier = crate::tiering::TieringConfig {
            url: String::new(),
            options: BTreeMap::new(),
            task_interval_ms: 5_000,
            upload_concurrency: 4,
            upload_bytes_per_second: 0,
            cache_bytes: 1 << 30,
            memory_bytes: 128 << 20,
            chunk_bytes: 4 << 20,
            fetch_max_wait_ms: 500,
        };
        let mut cell_name = String::from("local");
        let mut voters: Option<String> = None;
        let mut rack: Option<String> = None;
        let mut metadata_listener: Option<SocketAddr> = None;
        let mut heartbeat_interval_ms: u64 = 500;
        for (k, v) in flat {
            match k.as_str() {
                "node.id" => c.node_id = parse_num(k, v, 0, i32::MAX)?,
                "cell.name" => cell_name = v.trim().to_string(),
                "controller.quorum.voters" => voters = Some(v.clone()),
                "broker.rack" => rack = Some(v.trim().to_string()).filter(|r| !r.is_empty()),
                "metadata.listener" => {
                    let (h, p) = parse_listener(k, v)?;
                    metadata_listener = Some(resolve_addr(k, &h, p)?);
                }
                "broker.heartbeat.interval.ms" => heartbeat_interval_ms = parse_num(k, v, 10, 60_000)?,
                "replica.lag.time.max.ms" => c.replication.lag_time_max_ms = parse_num(k, v, 100, 3_600_000)?,
                "fault.injection.enable" => c.fault_injection_enable = parse_bool(k, v)?,
                "authorizer.class.name" => {
                    c.authorizer.enabled = match v.trim() {
                        "" => false,
                        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
                        | "kafka.security.authorizer.AclAuthorizer"
                        | "kora" => true,
                        other => {
                            return Err(invalid(
                                k,
                                format!("'{other}': Kora's authorizer is Kafka's StandardAuthorizer (org.apache.kafka.metadata.authorizer.StandardAuthorizer)"),
                            ))
                        }
                    }
                }
                "allow.everyone.if.no.acl.found" => c.authorizer.allow_everyone_if_no_acl_found = parse_bool(k, v)?,
                "admin.token.file" => {
                    let token = kora_api::Token::load(std::path::Path::new(v.trim()))
                        .map_err(|e| invalid(k, e.to_string()))?;
                    c.admin_token = Some(std::sync::Arc::new(token));
                    c.admin_token_file = Some(PathBuf::from(v.trim()));
                }
                "log.max.open.files" => c.log_max_open_files = parse_num(k, v, 0, 100_000_000)?,
                "replica.fetch.wait.max.ms" => c.replication.fetch_wait_max_ms = parse_num(k, v, 0, 30_000)?,
                "replica.fetch.max.bytes" => c.replication.fetch_max_bytes = parse_num(k, v, 1024, 1 << 30)?,
                "replica.fetch.response.max.bytes" => {
                    c.replication.fetch_response_max_bytes = parse_num(k, v, 1024, 1 << 30)?
                }
                "replica.fetch.backoff.ms" => c.replication.fetch_backoff_ms = parse_num(k, v, 0, 60_000)?,
                "replica.high.watermark.checkpoint.interval.ms" => {
                    c.replication.high_watermark_checkpoint_interval_ms = parse_num(k, v, 100, 3_600_000)?
                }
                "replica.straggler.factor" => c.replication.straggler_factor = parse_num(k, v, 0, 1_000)?,
                "leader.replication.throttled.rate" => {
                    c.replication.leader_throttled_rate = parse_num(k, v, 0, u64::MAX)?
                }
                "follower.replication.throttled.rate" => {
                    c.replication.follower_throttled_rate = parse_num(k, v, 0, u64::MAX)?
                }
                "replica.straggler.min.lag.ms" => {
                    c.replication.straggler_min_lag_ms = parse_num(k, v, 0, 3_600_000)?
                }
                "data.dir" => c.data_dir = PathBuf::from(v),
                // Read together after this loop.
                "listeners"
                | "advertised.listeners"
                | "listener.security.protocol.map"
                | "inter.broker.listener.name"
                | "sasl.enabled.mechanisms"
                | "connections.max.reauth.ms"
                | "super.users"
                | "sasl.mechanism.inter.broker.protocol"
                | "ssl.keystore.type"
                | "ssl.keystore.location"
                | "ssl.keystore.certificate.chain"
                | "ssl.keystore.key"
                | "ssl.key.password"
                | "ssl.truststore.type"
                | "ssl.truststore.location"
                | "ssl.truststore.certificates"
                | "ssl.client.auth"
                | "ssl.enabled.protocols"
                | "ssl.endpoint.identification.algorithm"
                | "ssl.principal.mapping.rules"
                | "ssl.reload.interval.ms" => {}
                // listener.name.<listener>.ssl.*: checked with the listeners.
                k if crate::listeners::per_listener(k) => {}
                "admin.listeners" => {
                    let (h, p) = parse_listener(k, v)?;
                    c.admin_listener = resolve_addr(k, &h, p)?;
                }
                "auto.create.topics.enable" => c.auto_create_topics_enable = parse_bool(k, v)?,
                "num.partitions" => c.num_partitions = parse_num(k, v, 1, 100_000)?,
                "default.replication.factor" => c.default_replication_factor = parse_num(k, v, 1, 32)?,
                "socket.request.max.bytes" => {
                    c.socket_request_max_bytes = parse_num(k, v, 1024, i32::MAX as usize)?
                }
                "max.connections" => c.max_connections = parse_num(k, v, 0, 1_000_000)?,
                "fetch.max.bytes" => c.fetch_max_bytes = parse_num(k, v, 1024, i32::MAX as usize)?,
                "quota.window.num" => c.quotas.window.samples = parse_num(k, v, 2, 1000)?,
                "quota.window.size.seconds" => {
                    c.quotas.window.window_ms = parse_num::<u64>(k, v, 1, 3600)? * 1000
                }
                "quota.broker.ingress.bytes.per.second" => {
                    let n: u64 = parse_num(k, v, 0, u64::MAX / 2)?;
                    c.quotas.ingress_safe_bytes_per_second = (n > 0).then_some(n as f64);
                }
                "quota.broker.request.queue.ms" => {
                    let n: u64 = parse_num(k, v, 0, 60_000)?;
                    c.quotas.request_queue_ms = (n > 0).then_some(n);
                }
                "quota.broker.append.ms" => {
                    let n: u64 = parse_num(k, v, 0, 600_000)?;
                    c.quotas.append_ms = (n > 0).then_some(n);
                }
                "quota.broker.egress.bytes.per.second" => {
                    let n: u64 = parse_num(k, v, 0, u64::MAX / 2)?;
                    c.quotas.egress_safe_bytes_per_second = (n > 0).then_some(n as f64);
                }
                "quota.broker.send.ms" => {
                    let n: u64 = parse_num(k, v, 0, 600_000)?;
                    c.quotas.send_ms = (n > 0).then_some(n);
                }
                "log.retention.check.interval.ms" => {
                    c.log_retention_check_interval_ms = parse_num(k, v, 1, u64::MAX / 2)?
                }
                "log.retention.hours" | "log.retention.minutes" => {
                    let n: i64 = parse_num(k, v, -1, i64::MAX / 3_600_000)?;
                    let ms = if n < 0 {
                        -1
                    } else if k.ends_with("hours") {
                        n * 3_600_000
                    } else {
                        n * 60_000
                    };
                    // log.retention.ms wins when both are given, as in Kafka.
                    c.topic_defaults.entry("retention.ms".into()).or_insert(ms.to_string());
                }
                "log.flush.scheduler.interval.ms" => {
                    c.log_flush_scheduler_interval_ms = parse_num(k, v, 1, 3_600_000)?
                }
                "max.incremental.fetch.session.cache.slots" => {
                    c.fetch_session_cache_slots = parse_num(k, v, 0, 1_000_000)?
                }
                "max.partitions.per.topic" => c.max_partitions_per_topic = parse_num(k, v, 1, 1_000_000)?,
                "group.min.session.timeout.ms" => {
                    c.groups.min_session_timeout_ms = parse_num(k, v, 1, i32::MAX)?
                }
                "group.max.session.timeout.ms" => {
                    c.groups.max_session_timeout_ms = parse_num(k, v, 1, i32::MAX)?
                }
                "group.initial.rebalance.delay.ms" => {
                    c.groups.initial_rebalance_delay_ms = parse_num(k, v, 0, i32::MAX)?
                }
                "group.max.size" => c.groups.max_size = parse_num(k, v, 1, i32::MAX as usize)?,
                "group.consumer.session.timeout.ms" => {
                    c.groups.consumer_session_timeout_ms = parse_num(k, v, 1000, i32::MAX)?
                }
                "group.consumer.heartbeat.interval.ms" => {
                    c.groups.consumer_heartbeat_interval_ms = parse_num(k, v, 100, i32::MAX)?
                }
                "group.consumer.max.size" => {
                    c.groups.consumer_max_size = parse_num(k, v, 1, i32::MAX as usize)?
                }
                "group.consumer.assignors" => {
                    let names: Vec<String> =
                        v.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
                    // Kafka's class names end with the assignor's name; accept both spellings.
                    let names: Vec<String> = names
                        .into_iter()
                        .map(|n| {
                            let short = n.rsplit('.').next().unwrap_or(&n).to_ascii_lowercase();
                            short.trim_end_matches("assignor").to_string()
                        })
                        .collect();
                    if names.is_empty() {
                        return Err(invalid(k, "at least one assignor is required"));
                    }
                    if let Some(bad) =
                        names.iter().find(|n| !kora_group::assignor::ASSIGNORS.contains(&n.as_str()))
                    {
                        return Err(invalid(k, format!("unknown assignor '{bad}' (uniform, range)")));
                    }
                    c.groups.consumer_assignors = names;
                }
                "offset.metadata.max.bytes" => {
                    c.groups.offset_metadata_max_bytes = parse_num(k, v, 0, i32::MAX as usize)?
                }
                "offsets.retention.minutes" => {
                    let m: i64 = parse_num(k, v, 1, i64::MAX / 60_000)?;
                    c.groups.offsets_retention_ms = m * 60_000;
                }
                "offsets.retention.check.interval.ms" => {
                    c.offsets_retention_check_interval_ms = parse_num(k, v, 1, u64::MAX / 2)?
                }
                "log.cleaner.enable" => c.log_cleaner_enable = parse_bool(k, v)?,
                "log.cleaner.backoff.ms" => c.log_cleaner_backoff_ms = parse_num(k, v, 1, u64::MAX / 2)?,
                "log.cleaner.dedupe.buffer.size" => {
                    c.log_cleaner_dedupe_buffer_size = parse_num(k, v, 1 << 20, 1 << 40)?
                }
                "object_store.url" => tier.url = v.trim().to_string(),
                "remote.log.manager.task.interval.ms" => {
                    tier.task_interval_ms = parse_num(k, v, 10, 3_600_000)?
                }
                "remote.log.manager.copier.thread.pool.size" => {
                    tier.upload_concurrency = parse_num(k, v, 1, 1024)?
                }
                "remote.log.manager.copy.max.bytes.per.second" => {
                    tier.upload_bytes_per_second = parse_num(k, v, 0, u64::MAX)?
                }
                "remote.log.reader.cache.bytes" => tier.cache_bytes = parse_num(k, v, 0, 1 << 44)?,
                "remote.log.reader.memory.bytes" => tier.memory_bytes = parse_num(k, v, 1 << 20, 1 << 40)?,
                "remote.fetch.max.wait.ms" => tier.fetch_max_wait_ms = parse_num(k, v, 1, 60_000)?,
                "remote.log.reader.chunk.bytes" => tier.chunk_bytes = parse_num(k, v, 64 << 10, 256 << 20)?,
                "offsets.topic.replication.factor" => {
                    c.offsets_topic_replication_factor = parse_num(k, v, 1, i16::MAX)?
                }
                "offsets.topic.segment.bytes" => {
                    c.offsets_topic_segment_bytes = parse_num(k, v, 1024, i32::MAX as u32)?
                }
                "offsets.topic.num.partitions" => {
                    c.groups.offsets_topic_partitions = parse_num(k, v, 1, 1000)?
                }
                other => match topic_config_def_by_synonym(other) {
                    Some(def) => {
                        c.topic_defaults.insert(def.name.to_string(), v.clone());
                    }
                    None => match kora_common::topic_config_def(other) {
                        Some(def) => {
                            return Err(ConfigFileError::TopicKey {
                                topic_key: other.to_string(),
                                broker_key: def.broker_synonym.to_string(),
                            })
                        }
                        None => return Err(ConfigFileError::UnknownKey(other.to_string())),
                    },
                },
            }
        }
        if let Some(ms) = flat.get("log.retention.ms") {
            c.topic_defaults.insert("retention.ms".into(), ms.clone());
        }
        // Validate the topic defaults now, naming the broker key on error.
        TopicConfig::resolve(&c.topic_defaults, &BTreeMap::new()).map_err(|e| {
            let key = match &e {
                kora_common::ConfigError::Invalid { name, .. } | kora_common::ConfigError::Unknown(name) => {
                    kora_common::topic_config_def(name)
                        .map(|d| d.broker_synonym.to_string())
                        .unwrap_or(name.clone())
                }
            };
            invalid(&key, e.to_string())
        })?;
        if !tier.url.is_empty() {
            if !tier.url.contains("://") {
                return Err(invalid(
                    "object_store.url",
                    "expected file:///dir, s3://bucket/prefix, gs://... or az://...",
                ));
            }
            c.tiering = Some(tier);
        }
        if let Some(v) = voters {
            let mut list = Vec::new();
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let parsed = part.split_once('@').and_then(|(id, addr)| {
                    let id: u64 = id.parse().ok()?;
                    addr.contains(':').then(|| (id, addr.to_string()))
                });
                match parsed {
                    Some((id, _)) if id == c.node_id as u64 => {
                        return Err(invalid(
                            "controller.quorum.voters",
                            format!(
                            "voter id {id} is this broker's node.id; brokers and voters need distinct ids"
                        ),
                        ))
                    }
                    Some(x) => list.push(x),
                    None => {
                        return Err(invalid(
                            "controller.quorum.voters",
                            format!("'{part}': expected id@host:port"),
                        ))
                    }
                }
            }
            if list.is_empty() {
                return Err(invalid("controller.quorum.voters", "names no voter"));
            }
            if c.admin_token.is_none() {
                return Err(invalid(
                    "admin.token.file",
                    "a broker in a cell needs the cell's token (the voters' --token-file)",
                ));
            }
            c.cell = Some(CellConfig {
                name: cell_name,
                voters: list,
                rack,
                metadata_listener: metadata_listener.unwrap_or_else(|| SocketAddr::new(c.listener.ip(), 0)),
                heartbeat_interval_ms,
            });
        }
        if c.replication.fetch_wait_max_ms >= c.replication.lag_time_max_ms {
            // Kafka's rule: a follower waiting at the leader must not look lagging meanwhile.
            return Err(invalid("replica.fetch.wait.max.ms", "must be below replica.lag.time.max.ms"));
        }
        if c.groups.min_session_timeout_ms > c.groups.max_session_timeout_ms {
            return Err(invalid(
                "group.min.session.timeout.ms",
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        c.sasl = crate::listeners::parse_sasl(flat)?;
        if c.cell.is_some() {
            // Reads the inter-broker listener's certificate files.
            c.inter_broker = crate::inter_broker::client(&c.listeners, &c.sasl)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_names_bare_or_quoted() {
        let c = BrokerConfig::from_toml_str(
            r#"
node.id = 3
listeners = "PLAINTEXT://127.0.0.1:19092"
log.segment.bytes = 1048576
"log.retention.ms" = 60000
auto.create.topics.enable = false
"#,
            "test",
        )
        .expect("valid");
        assert_eq!(c.node_id, 3);
        assert_eq!(c.listener.port(), 19092);
        assert_eq!(c.advertised, Advertised { host: "127.0.0.1".into(), port: 19092 });
        assert_eq!(c.topic_defaults.get("segment.bytes").map(String::as_str), Some("1048576"));
        assert_eq!(c.topic_defaults.get("retention.ms").map(String::as_str), Some("60000"));
        assert!(!c.auto_create_topics_enable);
    }

    #[test]
    fn errors_name_the_key() {
        let e = BrokerConfig::from_toml_str("log.segmnet.bytes = 5", "t").expect_err("unknown");
        assert!(e.to_string().contains("log.segmnet.bytes"), "{e}");
        let e = BrokerConfig::from_toml_str("log.segment.bytes = 5", "t").expect_err("too small");
        assert!(e.to_string().contains("log.segment.bytes"), "{e}");
        let e = BrokerConfig::from_toml_str("num.partitions = 0", "t").expect_err("range");
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = BrokerConfig::from_toml_str("listeners = \"SSL://x:1\"", "t").expect_err("proto");
        assert!(e.to_string().contains("listeners"), "{e}");
        let e = BrokerConfig::from_toml_str("node.id = [", "t").expect_err("syntax");
        assert!(matches!(e, ConfigFileError::Syntax { .. }));
        let c = BrokerConfig::from_toml_str("log.retention.hours = 2", "t").expect("hours");
        assert_eq!(c.topic_defaults.get("retention.ms").map(String::as_str), Some("7200000"));
    }

    #[test]
    fn a_topic_key_is_refused_with_its_broker_name() {
        let flat = BTreeMap::from([("flush.messages".to_string(), "1".to_string())]);
        let e = BrokerConfig::from_map(&flat).expect_err("a topic key is not a broker key");
        let text = e.to_string();
        assert!(text.contains("'flush.messages' is a topic config"), "{text}");
        assert!(text.contains("'log.flush.interval.messages'"), "{text}");
        let flat = BTreeMap::from([("log.flush.interval.messages".to_string(), "1".to_string())]);
        let c = BrokerConfig::from_map(&flat).expect("the broker name is accepted");
        assert_eq!(c.topic_defaults.get("flush.messages").map(String::as_str), Some("1"));
        let flat = BTreeMap::from([("no.such.key".to_string(), "1".to_string())]);
        assert!(matches!(BrokerConfig::from_map(&flat), Err(ConfigFileError::UnknownKey(_))));
    }

    #[test]
    fn descriptors_left_to_the_machine_are_split_between_segment_files_and_connections() {
        let mut c = BrokerConfig::default();
        c.resolve_file_budget(1024);
        assert_eq!((c.log_max_open_files, c.max_connections), (512, 1024 - 512 - 128));
        let mut big = BrokerConfig::default();
        big.resolve_file_budget(1 << 20);
        assert_eq!(big.max_connections, BrokerConfig::DEFAULT_MAX_CONNECTIONS);
        let flat: BTreeMap<String, String> = [("max.connections", "7"), ("log.max.open.files", "300")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let mut set = BrokerConfig::from_map(&flat).expect("valid");
        set.resolve_file_budget(1024);
        assert_eq!((set.log_max_open_files, set.max_connections), (300, 7), "set values are kept");
    }
}

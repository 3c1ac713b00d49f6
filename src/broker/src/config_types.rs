//! The types broker settings are read into and fail with, apart from the parsing (`config`,
//! `listeners`), so the modules that parse them share these without importing each other
//! both ways.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("unknown config key '{0}' (see docs/configuration.md)")]
    UnknownKey(String),
    /// A topic-level name where a broker key belongs (Kafka's broker defaults of topic
    /// configs have their own names).
    #[error("'{topic_key}' is a topic config; its broker-wide default is '{broker_key}' (see docs/configuration.md)")]
    TopicKey { topic_key: String, broker_key: String },
    #[error("invalid value for '{key}': {reason}")]
    Invalid { key: String, reason: String },
}

/// A host and port clients are told to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub host: String,
    pub port: u16,
}

impl Advertised {
    /// What to advertise for a listener: its own address, or 127.0.0.1 for a wildcard bind.
    pub fn for_listener(addr: SocketAddr) -> Self {
        let ip = addr.ip();
        let host = if ip.is_unspecified() { "127.0.0.1".to_string() } else { ip.to_string() };
        Advertised { host, port: addr.port() }
    }
}

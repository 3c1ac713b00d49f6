//! Kafka's listener settings: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`, `inter.broker.listener.name`, the TLS settings of the SSL
//! and SASL_SSL listeners (`ssl.*`, and `listener.name.<name>.ssl.*` for one listener), and the
//! SASL settings of the listeners that authenticate. Parsed and validated once, with Kafka's
//! names.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kora_tls::{keys, ServerTls, TlsError, TlsSettings};

use crate::config_types::{Advertised, ConfigFileError};

/// Kafka's security protocols (`listener.security.protocol.map` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// The SASL mechanisms Kora serves (`sasl.enabled.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] =
        [SaslMechanism::Plain, SaslMechanism::ScramSha256, SaslMechanism::ScramSha512];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s.trim())
    }

    /// The JAAS login module Kafka configures for it (`sasl.jaas.config`).
    pub fn login_module(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "org.apache.kafka.common.security.plain.PlainLoginModule",
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                "org.apache.kafka.common.security.scram.ScramLoginModule"
            }
        }
    }

    /// The client-side mechanism of kora-client.
    pub fn client(self) -> kora_client::SaslMechanism {
        match self {
            SaslMechanism::Plain => kora_client::SaslMechanism::Plain,
            SaslMechanism::ScramSha256 => {
                kora_client::SaslMechanism::Scram(kora_auth::scram::Mechanism::Sha256)
            }
            SaslMechanism::ScramSha512 => {
                kora_client::SaslMechanism::Scram(kora_auth::scram::Mechanism::Sha512)
            }
        }
    }
}

/// One Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Its name (`PLAINTEXT`, or a name mapped by `listener.security.protocol.map`).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    /// What Metadata tells clients that connect here.
    pub advertised: Advertised,
    /// The TLS side of an SSL or SASL_SSL listener; None on the others.
    pub tls: Option<ListenerTls>,
    /// A SASL listener's `listener.name.<name>.<mechanism>.sasl.jaas.config`, by mechanism: the
    /// inter-broker login (`username`, `password`) and listener-local users (`user_<name>`).
    pub jaas: Vec<(SaslMechanism, kora_auth::jaas::JaasConfig)>,
}

/// Kora's own setting: how often a TLS listener re-reads its certificate files (0: never).
pub const SSL_RELOAD_INTERVAL_MS: &str = "ssl.reload.interval.ms";
/// Its default: a renewed certificate is served within half a minute.
const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The `ssl.*` names a TLS listener reads, globally or as `listener.name.<name>.ssl.*`.
pub const SSL_KEYS: [&str; 13] = [
    keys::KEYSTORE_TYPE,
    keys::KEYSTORE_LOCATION,
    keys::KEYSTORE_CERTIFICATE_CHAIN,
    keys::KEYSTORE_KEY,
    keys::KEY_PASSWORD,
    keys::TRUSTSTORE_TYPE,
    keys::TRUSTSTORE_LOCATION,
    keys::TRUSTSTORE_CERTIFICATES,
    keys::CLIENT_AUTH,
    keys::ENABLED_PROTOCOLS,
    keys::ENDPOINT_IDENTIFICATION_ALGORITHM,
    keys::PRINCIPAL_MAPPING_RULES,
    SSL_RELOAD_INTERVAL_MS,
];

/// Where the settings of one listener start: Kafka's `listener.name.` and the listener's name
/// in lower case.
const PER_LISTENER: &str = "listener.name.";

/// Whether `key` is a per-listener setting (`listener.name.<name>.<setting>`); those are
/// checked, and refused when unknown, by [`parse_listeners`].
pub(crate) fn per_listener(key: &str) -> bool {
    key.starts_with(PER_LISTENER)
}

fn listener_prefix(name: &str) -> String {
    format!("{PER_LISTENER}{}.", name.to_ascii_lowercase())
}

/// The TLS side of an SSL or SASL_SSL listener: its acceptor, built from its files at start-up
/// and rebuilt when they change.
#[derive(Clone)]
pub struct ListenerTls {
    pub server: Arc<ServerTls>,
    /// ssl.reload.interval.ms (Kora): how often the certificate files are re-read; None: never.
    pub reload_interval: Option<Duration>,
}

impl fmt::Debug for ListenerTls {
    /// The settings' Debug shows file paths and the lengths of inline PEM, never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTls")
            .field("settings", self.server.settings())
            .field("reload_interval", &self.reload_interval)
            .finish()
    }
}

impl PartialEq for ListenerTls {
    /// The same acceptor (settings are compared by where they were built, not by content).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.server, &other.server) && self.reload_interval == other.reload_interval
    }
}

impl Eq for ListenerTls {}

/// How clients authenticate on the SASL listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    /// sasl.enabled.mechanisms (default: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    pub mechanisms: Vec<SaslMechanism>,
    /// connections.max.reauth.ms (KIP-368): a session lasts at most this long before the
    /// client must re-authenticate (0: sessions do not expire).
    pub connections_max_reauth_ms: u64,
    /// super.users: principals (`User:admin`) of the default namespace allowed everything.
    pub super_users: Vec<String>,
    /// sasl.mechanism.inter.broker.protocol: how brokers of a cell log in to each other on a
    /// SASL inter-broker listener (PLAIN by default).
    pub inter_broker_mechanism: SaslMechanism,
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig {
            mechanisms: SaslMechanism::ALL.to_vec(),
            connections_max_reauth_ms: 0,
            super_users: Vec::new(),
            inter_broker_mechanism: SaslMechanism::Plain,
        }
    }
}

/// The broker's authorizer settings for the default namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// authorizer.class.name set: the default namespace is checked against its ACLs.
    pub enabled: bool,
    /// allow.everyone.if.no.acl.found
    pub allow_everyone_if_no_acl_found: bool,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigFileError {
    ConfigFileError::Invalid { key: key.to_string(), reason: reason.into() }
}

/// Splits `NAME://host:port` (or a bare `host:port`, named PLAINTEXT).
fn split_endpoint<'a>(key: &str, v: &'a str) -> Result<(String, &'a str), ConfigFileError> {
    match v.split_once("://") {
        Some((name, rest)) => {
            let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(invalid(key, format!("'{name}' is not a listener name")));
            }
            Ok((name.to_ascii_uppercase(), rest))
        }
        None => Ok(("PLAINTEXT".to_string(), v)),
    }
}

/// `host:port` (host may be empty for every interface, or a bracketed IPv6 address).
pub(crate) fn host_port(key: &str, v: &str) -> Result<(String, u16), ConfigFileError> {
    let (host, port) = v.rsplit_once(':').ok_or_else(|| invalid(key, format!("'{v}' is not host:port")))?;
    let port: u16 = port.parse().map_err(|_| invalid(key, format!("'{port}' is not a port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((if host.is_empty() { "0.0.0.0".into() } else { host.to_string() }, port))
}

/// A comma-separated list of endpoints, by listener name (each name once).
fn endpoints(key: &str, v: &str) -> Result<Vec<(String, String, u16)>, ConfigFileError> {
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, addr) = split_endpoint(key, part)?;
        let (host, port) = host_port(key, addr)?;
        if out.iter().any(|(n, _, _)| *n == name) {
            return Err(invalid(key, format!("listener {name} is named twice")));
        }
        out.push((name, host, port));
    }
    if out.is_empty() {
        return Err(invalid(key, "names no listener"));
    }
    Ok(out)
}

/// `listener.security.protocol.map`: `NAME:PROTOCOL,...`; Kafka's default maps each protocol's
/// name to itself.
fn protocol_map(v: Option<&String>) -> Result<BTreeMap<String, SecurityProtocol>, ConfigFileError> {
    const KEY: &str = "listener.security.protocol.map";
    let mut map: BTreeMap<String, SecurityProtocol> = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ]
    .into_iter()
    .map(|p| (p.name().to_string(), p))
    .collect();
    if let Some(v) = v {
        map.clear();
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, proto) =
                part.split_once(':').ok_or_else(|| invalid(KEY, format!("'{part}' is not NAME:PROTOCOL")))?;
            let p = SecurityProtocol::parse(proto).ok_or_else(|| {
                invalid(KEY, format!("'{proto}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))
            })?;
            map.insert(name.trim().to_ascii_uppercase(), p);
        }
    }
    Ok(map)
}

fn resolve(key: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigFileError> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(key, format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| invalid(key, format!("{host} resolves to no address")))
}

/// The listeners from Kafka's settings, the inter-broker one first.
pub(crate) fn parse_listeners(
    flat: &BTreeMap<String, String>,
) -> Result<Vec<ListenerConfig>, ConfigFileError> {
    let map = protocol_map(flat.get("listener.security.protocol.map"))?;
    let listeners = match flat.get("listeners") {
        Some(v) => endpoints("listeners", v)?,
        None => vec![("PLAINTEXT".into(), "127.0.0.1".into(), 9092)],
    };
    let advertised = match flat.get("advertised.listeners") {
        Some(v) => endpoints("advertised.listeners", v)?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for (name, host, port) in &listeners {
        let protocol = *map.get(name).ok_or_else(|| {
            invalid("listeners", format!("listener {name} has no protocol in listener.security.protocol.map"))
        })?;
        let bind = resolve("listeners", host, *port)?;
        let advertised = match advertised.iter().find(|(n, _, _)| n == name) {
            Some((_, h, p)) => Advertised { host: h.clone(), port: *p },
            None => Advertised::for_listener(bind),
        };
        out.push(ListenerConfig {
            name: name.clone(),
            protocol,
            bind,
            advertised,
            tls: None,
            jaas: Vec::new(),
        });
    }
    if let Some((n, _, _)) = advertised.iter().find(|(n, _, _)| !out.iter().any(|l| l.name == *n)) {
        return Err(invalid("advertised.listeners", format!("{n} is not in listeners")));
    }
    if let Some(name) = flat.get("inter.broker.listener.name") {
        let name = name.trim().to_ascii_uppercase();
        let i = out
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| invalid("inter.broker.listener.name", format!("{name} is not in listeners")))?;
        out.swap(0, i);
    }
    let mut binds: Vec<SocketAddr> = out.iter().map(|l| l.bind).filter(|a| a.port() != 0).collect();
    binds.sort();
    if binds.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("listeners", "two listeners bind the same address"));
    }
    check_per_listener_keys(flat, &out)?;
    for l in out.iter_mut().filter(|l| l.protocol.sasl()) {
        l.jaas = listener_jaas(flat, &l.name)?;
    }
    // Last: this reads the certificate files.
    for l in out.iter_mut().filter(|l| l.protocol.tls()) {
        l.tls = Some(listener_tls(flat, &l.name, l.protocol)?);
    }
    Ok(out)
}

/// Every `listener.name.<name>.<setting>` names a TLS listener of `listeners` (in lower case,
/// as Kafka writes it) and one of [`SSL_KEYS`]: anything else would be silently unused.
fn check_per_listener_keys(
    flat: &BTreeMap<String, String>,
    listeners: &[ListenerConfig],
) -> Result<(), ConfigFileError> {
    for key in flat.keys().filter(|k| per_listener(k)) {
        let rest = &key[PER_LISTENER.len()..];
        let Some((name, setting)) = rest.split_once('.') else {
            return Err(invalid(key, "expected listener.name.<listener name>.<setting>"));
        };
        let Some(l) = listeners.iter().find(|l| l.name.eq_ignore_ascii_case(name)) else {
            return Err(invalid(key, format!("{name} is not a listener in listeners")));
        };
        if name != name.to_ascii_lowercase() {
            return Err(invalid(
                key,
                format!(
                    "listener names are lower case here, as in Kafka: {}{setting}",
                    listener_prefix(name)
                ),
            ));
        }
        if let Some(mechanism) = setting.strip_suffix(JAAS_SUFFIX) {
            if !SaslMechanism::ALL.iter().any(|m| m.name().eq_ignore_ascii_case(mechanism)) {
                return Err(invalid(
                    key,
                    format!("'{mechanism}' is not a SASL mechanism Kora serves (plain, scram-sha-256, scram-sha-512)"),
                ));
            }
            if !l.protocol.sasl() {
                return Err(invalid(
                    key,
                    format!("listener {} is {}: it has no SASL settings", l.name, l.protocol.name()),
                ));
            }
            continue;
        }
        if !SSL_KEYS.contains(&setting) {
            return Err(invalid(
                key,
                format!(
                    "'{setting}' cannot be set per listener (Kora reads ssl.* and <mechanism>.sasl.jaas.config settings per listener)"
                ),
            ));
        }
        if !l.protocol.tls() {
            return Err(invalid(
                key,
                format!("listener {} is {}: it has no TLS settings", l.name, l.protocol.name()),
            ));
        }
    }
    Ok(())
}

/// `.sasl.jaas.config` after a mechanism's lower-case name, in a per-listener key.
const JAAS_SUFFIX: &str = ".sasl.jaas.config";

/// A SASL listener's JAAS settings, one per mechanism, each naming that mechanism's login module.
fn listener_jaas(
    flat: &BTreeMap<String, String>,
    name: &str,
) -> Result<Vec<(SaslMechanism, kora_auth::jaas::JaasConfig)>, ConfigFileError> {
    let mut out = Vec::new();
    for m in SaslMechanism::ALL {
        let key = format!("{}{}{JAAS_SUFFIX}", listener_prefix(name), m.name().to_ascii_lowercase());
        let Some(v) = flat.get(&key) else { continue };
        let jaas = kora_auth::jaas::parse(v).map_err(|e| invalid(&key, e.to_string()))?;
        if jaas.login_module != m.login_module() {
            return Err(invalid(
                &key,
                format!("{} is not {}'s login module ({})", jaas.login_module, m.name(), m.login_module()),
            ));
        }
        if let Some((user, _)) = jaas.users().find(|(_, pw)| pw.is_empty()) {
            return Err(invalid(&key, format!("user_{user} has an empty password")));
        }
        out.push((m, jaas));
    }
    Ok(out)
}

/// A TLS listener's settings, Kafka's rule: each `listener.name.<name>.ssl.*` setting wins over
/// the `ssl.*` one of the same name. The certificate files are read here, at start-up, so a
/// broken file stops the broker with the key that names it.
fn listener_tls(
    flat: &BTreeMap<String, String>,
    name: &str,
    protocol: SecurityProtocol,
) -> Result<ListenerTls, ConfigFileError> {
    let prefix = listener_prefix(name);
    let get = |key: &str| flat.get(&format!("{prefix}{key}")).or_else(|| flat.get(key)).map(String::as_str);
    // The key an operator set, for errors: the listener's own when it has one.
    let key_of = |key: &str| {
        let own = format!("{prefix}{key}");
        if flat.contains_key(&own) {
            own
        } else {
            key.to_string()
        }
    };
    let tls_error = |e: TlsError| {
        let setting = match &e {
            TlsError::Setting { setting, .. }
            | TlsError::Read { setting, .. }
            | TlsError::Pem { setting, .. }
            | TlsError::Rustls { setting, .. } => Some(*setting),
            TlsError::Certificate(_) | TlsError::NoMatchingRule { .. } => None,
        };
        let text = e.to_string();
        match setting {
            Some(s) => {
                let reason = text.strip_prefix(&format!("{s}: ")).unwrap_or(&text);
                invalid(&key_of(s), format!("listener {name}: {reason}"))
            }
            None => invalid("listeners", format!("listener {name}: {text}")),
        }
    };
    let settings = TlsSettings::from_lookup(get).map_err(tls_error)?;
    if settings.keystore.is_none() {
        return Err(invalid(
            keys::KEYSTORE_LOCATION,
            format!(
                "listener {name} in listeners is {} and needs its certificate and key: set {} (a PEM file with the key and the chain), or {} and {} (inline PEM); for this listener alone, {prefix}{}",
                protocol.name(),
                keys::KEYSTORE_LOCATION,
                keys::KEYSTORE_CERTIFICATE_CHAIN,
                keys::KEYSTORE_KEY,
                keys::KEYSTORE_LOCATION,
            ),
        ));
    }
    let reload_interval = match get(SSL_RELOAD_INTERVAL_MS) {
        None => Some(DEFAULT_RELOAD_INTERVAL),
        Some(v) => {
            let key = key_of(SSL_RELOAD_INTERVAL_MS);
            let ms: u64 = v.trim().parse().map_err(|_| invalid(&key, format!("'{v}' is not a number")))?;
            if ms > 86_400_000 {
                return Err(invalid(&key, format!("{ms} is outside [0, 86400000]")));
            }
            (ms > 0).then(|| Duration::from_millis(ms))
        }
    };
    let server = ServerTls::new(settings).map_err(tls_error)?;
    Ok(ListenerTls { server: Arc::new(server), reload_interval })
}

/// Kafka's setting naming the mechanism brokers log in to each other with.
pub const INTER_BROKER_MECHANISM: &str = "sasl.mechanism.inter.broker.protocol";

/// `sasl.mechanism.inter.broker.protocol`: PLAIN by default (Kafka's default, GSSAPI, is not
/// served).
pub(crate) fn parse_inter_broker_mechanism(
    flat: &BTreeMap<String, String>,
) -> Result<SaslMechanism, ConfigFileError> {
    match flat.get(INTER_BROKER_MECHANISM) {
        None => Ok(SaslMechanism::Plain),
        Some(v) => SaslMechanism::parse(v).ok_or_else(|| {
            invalid(
                INTER_BROKER_MECHANISM,
                format!("'{v}' is not served (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"),
            )
        }),
    }
}

/// The SASL settings.
pub(crate) fn parse_sasl(flat: &BTreeMap<String, String>) -> Result<SaslConfig, ConfigFileError> {
    let mut c =
        SaslConfig { inter_broker_mechanism: parse_inter_broker_mechanism(flat)?, ..SaslConfig::default() };
    if let Some(v) = flat.get("sasl.enabled.mechanisms") {
        const KEY: &str = "sasl.enabled.mechanisms";
        c.mechanisms = Vec::new();
        for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let m = SaslMechanism::parse(m).ok_or_else(|| {
                invalid(KEY, format!("'{m}' is not served (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"))
            })?;
            if !c.mechanisms.contains(&m) {
                c.mechanisms.push(m);
            }
        }
        if c.mechanisms.is_empty() {
            return Err(invalid(KEY, "names no mechanism"));
        }
    }
    if let Some(v) = flat.get("connections.max.reauth.ms") {
        c.connections_max_reauth_ms = v
            .trim()
            .parse()
            .map_err(|_| invalid("connections.max.reauth.ms", format!("'{v}' is not a number")))?;
    }
    if let Some(v) = flat.get("super.users") {
        for p in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if !p.split_once(':').is_some_and(|(t, n)| !t.is_empty() && !n.is_empty()) {
                return Err(invalid("super.users", format!("'{p}' is not a principal (User:name)")));
            }
            c.super_users.push(p.to_string());
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn listeners_with_kafkas_names() {
        let l = parse_listeners(&flat(&[
            ("listeners", "CLIENT://127.0.0.1:9093,BROKER://127.0.0.1:9092"),
            ("listener.security.protocol.map", "CLIENT:SASL_PLAINTEXT,BROKER:PLAINTEXT"),
            ("advertised.listeners", "CLIENT://kora.example:19093"),
            ("inter.broker.listener.name", "BROKER"),
        ]))
        .expect("parse");
        assert_eq!(l[0].name, "BROKER");
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(l[0].advertised, Advertised { host: "127.0.0.1".into(), port: 9092 });
        assert_eq!(l[1].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(l[1].advertised, Advertised { host: "kora.example".into(), port: 19093 });
        // The default map names protocols after themselves; a bare address is PLAINTEXT.
        let l = parse_listeners(&flat(&[("listeners", "127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:2")]))
            .expect("parse");
        assert_eq!(
            l.iter().map(|l| (l.name.as_str(), l.protocol)).collect::<Vec<_>>(),
            [("PLAINTEXT", SecurityProtocol::Plaintext), ("SASL_PLAINTEXT", SecurityProtocol::SaslPlaintext)]
        );
    }

    #[test]
    fn bad_listener_settings_name_the_key() {
        for (pairs, key) in [
            (vec![("listeners", "FOO://127.0.0.1:1")], "listeners"),
            (vec![("listeners", "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2")], "listeners"),
            (vec![("listeners", "PLAINTEXT://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:1")], "listeners"),
            (vec![("listener.security.protocol.map", "A:TLS")], "listener.security.protocol.map"),
            (vec![("advertised.listeners", "OTHER://h:1")], "advertised.listeners"),
            (vec![("inter.broker.listener.name", "OTHER")], "inter.broker.listener.name"),
        ] {
            let pairs: Vec<(&str, &str)> = pairs;
            let e = parse_listeners(&flat(&pairs)).expect_err("refused");
            assert!(e.to_string().contains(key), "{e}");
        }
        assert!(parse_sasl(&flat(&[("sasl.enabled.mechanisms", "GSSAPI")]))
            .expect_err("gssapi")
            .to_string()
            .contains("GSSAPI"));
        assert!(parse_sasl(&flat(&[("super.users", "admin")])).is_err());
        let s = parse_sasl(&flat(&[
            ("super.users", "User:admin;User:ops"),
            ("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
        ]))
        .expect("sasl");
        assert_eq!(s.super_users, ["User:admin", "User:ops"]);
        assert_eq!(s.mechanisms, [SaslMechanism::ScramSha512]);
    }

    /// A self-signed certificate for 127.0.0.1 with its key, written as a PEM keystore file
    /// (key and chain in one file, as Kafka's); returns its path and the certificate.
    fn keystore(dir: &std::path::Path, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let path = dir.join(name);
        std::fs::write(&path, format!("{}{}", key.serialize_pem(), cert.pem())).expect("write");
        (path.display().to_string(), cert.pem())
    }

    #[test]
    fn tls_listeners_take_ssl_settings_and_their_own_overrides() {
        use kora_tls::{ClientAuth, KeyStore};
        let dir = tempfile::tempdir().expect("dir");
        let (global, _) = keystore(dir.path(), "global.pem");
        let (own, own_cert) = keystore(dir.path(), "own.pem");
        let trust = dir.path().join("trust.pem");
        std::fs::write(&trust, &own_cert).expect("write");
        let trust = trust.display().to_string();
        let l = parse_listeners(&flat(&[
            ("listeners", "SSL://127.0.0.1:1,CLIENT://127.0.0.1:2,BROKER://127.0.0.1:3"),
            ("listener.security.protocol.map", "SSL:SSL,CLIENT:SASL_SSL,BROKER:PLAINTEXT"),
            ("ssl.keystore.location", &global),
            ("ssl.reload.interval.ms", "250"),
            ("listener.name.client.ssl.keystore.location", &own),
            ("listener.name.client.ssl.truststore.location", &trust),
            ("listener.name.client.ssl.client.auth", "required"),
            ("listener.name.client.ssl.reload.interval.ms", "0"),
        ]))
        .expect("parse");
        let ssl = l[0].tls.as_ref().expect("SSL has TLS");
        assert_eq!(ssl.server.settings().keystore, Some(KeyStore::File(global.into())));
        assert_eq!(ssl.server.settings().client_auth, ClientAuth::None);
        assert_eq!(ssl.reload_interval, Some(Duration::from_millis(250)));
        let client = l[1].tls.as_ref().expect("SASL_SSL has TLS");
        assert_eq!(client.server.settings().keystore, Some(KeyStore::File(own.into())));
        assert_eq!(client.server.settings().client_auth, ClientAuth::Required);
        assert_eq!(client.reload_interval, None);
        assert!(l[2].tls.is_none());
    }

    #[test]
    fn the_config_debug_never_shows_key_material() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, _) = keystore(dir.path(), "k.pem");
        let pem = std::fs::read_to_string(&path).expect("read");
        let (key, cert) = pem.split_at(pem.find("-----BEGIN CERTIFICATE").expect("cert"));
        let c = crate::config::BrokerConfig::from_map(&flat(&[
            ("listeners", "SSL://127.0.0.1:0"),
            ("ssl.keystore.certificate.chain", cert),
            ("ssl.keystore.key", key),
            ("listener.name.ssl.ssl.enabled.protocols", "TLSv1.3"),
        ]))
        .expect("inline PEM");
        let text = format!("{c:?}");
        let tls = c.listeners[0].tls.as_ref().expect("tls");
        assert_eq!(tls.server.settings().enabled_protocols, [kora_tls::TlsVersion::Tls13]);
        assert!(text.contains("ListenerTls"), "{text}");
        assert!(!text.contains("BEGIN") && !text.contains("PRIVATE"), "{text}");
    }

    #[test]
    fn bad_tls_settings_name_the_key() {
        let missing = "/nonexistent/kora-test/keystore.pem";
        let ssl = ("listeners", "SSL://127.0.0.1:1");
        let store = ("ssl.keystore.location", missing);
        for (pairs, key, text) in [
            (vec![ssl], "ssl.keystore.location", "needs its certificate and key"),
            (vec![ssl, store], "ssl.keystore.location", missing),
            (
                vec![
                    ssl,
                    ("ssl.keystore.location", "/elsewhere"),
                    ("listener.name.ssl.ssl.keystore.location", missing),
                ],
                "listener.name.ssl.ssl.keystore.location",
                missing,
            ),
            (
                vec![ssl, store, ("listener.name.ssl.ssl.client.auth", "always")],
                "listener.name.ssl.ssl.client.auth",
                "always",
            ),
            (vec![ssl, store, ("ssl.client.auth", "required")], "ssl.client.auth", "ssl.truststore.location"),
            (vec![ssl, store, ("ssl.keystore.type", "JKS")], "ssl.keystore.type", "PEM"),
            (vec![ssl, store, ("ssl.key.password", "secret")], "ssl.key.password", "encrypted"),
            (vec![ssl, store, ("ssl.enabled.protocols", "TLSv1.1")], "ssl.enabled.protocols", "TLSv1.1"),
            (vec![ssl, store, ("ssl.reload.interval.ms", "-1")], "ssl.reload.interval.ms", "-1"),
            (
                vec![ssl, ("listener.name.other.ssl.client.auth", "none")],
                "listener.name.other.ssl.client.auth",
                "not a listener",
            ),
            (
                vec![ssl, ("listener.name.SSL.ssl.client.auth", "none")],
                "listener.name.SSL.ssl.client.auth",
                "lower case",
            ),
            (
                vec![ssl, ("listener.name.ssl.sasl.enabled.mechanisms", "PLAIN")],
                "listener.name.ssl.sasl.enabled.mechanisms",
                "cannot be set per listener",
            ),
            (
                vec![("listener.name.plaintext.ssl.client.auth", "none")],
                "listener.name.plaintext.ssl.client.auth",
                "PLAINTEXT",
            ),
            (vec![ssl, ("listener.name.ssl", "x")], "listener.name.ssl", "expected"),
            (
                vec![("listener.name.plaintext.plain.sasl.jaas.config", "x required;")],
                "listener.name.plaintext.plain.sasl.jaas.config",
                "no SASL settings",
            ),
            (
                vec![
                    ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
                    ("listener.name.sasl_plaintext.gssapi.sasl.jaas.config", "x required;"),
                ],
                "listener.name.sasl_plaintext.gssapi.sasl.jaas.config",
                "not a SASL mechanism",
            ),
            (
                vec![
                    ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
                    (
                        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config",
                        "org.apache.kafka.common.security.plain.PlainLoginModule required;",
                    ),
                ],
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config",
                "ScramLoginModule",
            ),
            (
                vec![
                    ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
                    ("listener.name.sasl_plaintext.plain.sasl.jaas.config", "x required username=\"a"),
                ],
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                "not closed",
            ),
        ] {
            let e = parse_listeners(&flat(&pairs)).expect_err("refused");
            let e = e.to_string();
            assert!(e.contains(&format!("'{key}'")) && e.contains(text), "{pairs:?}: {e}");
        }
    }
}

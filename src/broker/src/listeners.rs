//! Kafka's listener settings: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`, `inter.broker.listener.name`, and the SASL settings of
//! the listeners that authenticate. Parsed and validated once, with Kafka's names.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::config::{Advertised, ConfigFileError};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

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
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig {
            mechanisms: SaslMechanism::ALL.to_vec(),
            connections_max_reauth_ms: 0,
            super_users: Vec::new(),
        }
    }
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
        out.push(ListenerConfig { name: name.clone(), protocol, bind, advertised });
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
    for l in &out {
        if l.protocol.tls() {
            return Err(invalid(
                "listeners",
                format!("listener {} is {}: TLS listeners are not available yet", l.name, l.protocol.name()),
            ));
        }
    }
    let mut binds: Vec<SocketAddr> = out.iter().map(|l| l.bind).filter(|a| a.port() != 0).collect();
    binds.sort();
    if binds.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("listeners", "two listeners bind the same address"));
    }
    Ok(out)
}

/// The SASL settings.
pub(crate) fn parse_sasl(flat: &BTreeMap<String, String>) -> Result<SaslConfig, ConfigFileError> {
    let mut c = SaslConfig::default();
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
}

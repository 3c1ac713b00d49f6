//! The `ssl.*` settings, read and checked once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::{PrincipalMapper, TlsError};

/// Kafka's names for the settings read here; what each means is told on [`TlsSettings`].
pub mod keys {
    pub const KEYSTORE_TYPE: &str = "ssl.keystore.type";
    pub const KEYSTORE_LOCATION: &str = "ssl.keystore.location";
    pub const KEYSTORE_CERTIFICATE_CHAIN: &str = "ssl.keystore.certificate.chain";
    pub const KEYSTORE_KEY: &str = "ssl.keystore.key";
    pub const KEY_PASSWORD: &str = "ssl.key.password";
    pub const TRUSTSTORE_TYPE: &str = "ssl.truststore.type";
    pub const TRUSTSTORE_LOCATION: &str = "ssl.truststore.location";
    pub const TRUSTSTORE_CERTIFICATES: &str = "ssl.truststore.certificates";
    pub const CLIENT_AUTH: &str = "ssl.client.auth";
    pub const ENABLED_PROTOCOLS: &str = "ssl.enabled.protocols";
    pub const ENDPOINT_IDENTIFICATION_ALGORITHM: &str = "ssl.endpoint.identification.algorithm";
    pub const PRINCIPAL_MAPPING_RULES: &str = "ssl.principal.mapping.rules";
}
use keys::*;

/// PEM text given inline in a setting or in a file the setting names.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// The PEM text itself. Never changes, so never reloaded.
    Inline(String),
    /// A file, read when the configuration is built and on every reload.
    File(PathBuf),
}

impl fmt::Debug for PemSource {
    /// Inline PEM may be a private key: only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(pem) => write!(f, "Inline(<{} bytes>)", pem.len()),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Where a listener's (or client's) own certificate chain and private key come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyStore {
    /// The chain and the key apart: `ssl.keystore.certificate.chain` and `ssl.keystore.key`
    /// (both inline), or, for a caller that builds the settings itself, two files (as a
    /// `tls.crt` / `tls.key` pair).
    Separate {
        /// The chain, end-entity certificate first.
        certificate_chain: PemSource,
        /// The private key.
        key: PemSource,
    },
    /// `ssl.keystore.location`: one PEM file holding the key and the chain, as Kafka's PEM
    /// keystore file.
    File(PathBuf),
}

/// Whether a server asks for a client certificate (`ssl.client.auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client must present a certificate signed by the truststore.
    Required,
    /// A certificate is asked for and checked if sent; clients without one are let in.
    Requested,
    /// No certificate is asked for.
    #[default]
    None,
}

/// A TLS version allowed by `ssl.enabled.protocols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSv1.2`
    Tls12,
    /// `TLSv1.3`
    Tls13,
}

impl TlsVersion {
    pub(crate) fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            Self::Tls12 => &rustls::version::TLS12,
            Self::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// Kafka's TLS settings for one listener or client, checked for consistency.
///
/// Read from a configuration with [`TlsSettings::from_map`] / [`TlsSettings::from_lookup`], or
/// built by the caller (fields are public; [`TlsSettings::default`] is Kafka's defaults
/// without a keystore or truststore). Files are not read here: a missing or broken file is
/// reported by [`crate::ServerTls::new`] / [`crate::ClientTls::new`], naming the setting.
///
/// Differences from Kafka, all refused with an error naming the setting rather than guessed
/// at: only PEM stores (`ssl.keystore.type`, `ssl.truststore.type`: JKS and PKCS12 can be
/// converted with `keytool`/`openssl`); no encrypted private keys (`ssl.key.password`); no
/// TLS below 1.2. A store type left out is taken as PEM, the only one there is. Other
/// `ssl.*` names (cipher suites, `ssl.protocol`, passwords of PEM stores) are not read.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// Own certificate and key: required by a server, optional for a client (mTLS).
    /// `ssl.keystore.location` (one PEM file with the key and the chain) or
    /// `ssl.keystore.certificate.chain` with `ssl.keystore.key` (inline PEM).
    pub keystore: Option<KeyStore>,
    /// Trusted CAs: required by a client, and by a server that checks client certificates.
    /// `ssl.truststore.location` (a PEM file) or `ssl.truststore.certificates` (inline PEM).
    pub truststore: Option<PemSource>,
    /// `ssl.client.auth`, used by a server.
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`, never empty.
    pub enabled_protocols: Vec<TlsVersion>,
    /// `ssl.endpoint.identification.algorithm=https`, used by a client: check that the
    /// server's certificate names the host dialled. The chain is checked either way.
    pub verify_hostname: bool,
    /// `ssl.principal.mapping.rules`, used by a server.
    pub principal_mapper: PrincipalMapper,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            keystore: None,
            truststore: None,
            client_auth: ClientAuth::None,
            enabled_protocols: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            verify_hostname: true,
            principal_mapper: PrincipalMapper::default(),
        }
    }
}

impl TlsSettings {
    /// Reads the `ssl.*` names from a map of (already listener-prefix-stripped) settings.
    /// Names not listed in [`keys`] are ignored.
    pub fn from_map<V: AsRef<str>>(map: &BTreeMap<String, V>) -> Result<Self, TlsError> {
        Self::from_lookup(|key| map.get(key).map(AsRef::as_ref))
    }

    /// Reads the `ssl.*` names through `get`, for sources other than a `BTreeMap`.
    pub fn from_lookup<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, TlsError> {
        // An empty value means "not set", as for most of Kafka's string settings; the one
        // exception, the endpoint identification algorithm, is read raw below.
        let set = |key: &str| get(key).map(str::trim).filter(|v| !v.is_empty());
        for key in [KEYSTORE_TYPE, TRUSTSTORE_TYPE] {
            if let Some(kind) = set(key) {
                if !kind.eq_ignore_ascii_case("PEM") {
                    return Err(setting(
                        key,
                        format!("{kind:?} is not supported: Kora reads PEM stores only (convert with keytool/openssl and set {key}=PEM)"),
                    ));
                }
            }
        }
        if set(KEY_PASSWORD).is_some() {
            return Err(setting(
                KEY_PASSWORD,
                "encrypted private keys are not supported: store the key unencrypted (PKCS#8) and protect the file's permissions instead".into(),
            ));
        }

        let keystore = match (set(KEYSTORE_LOCATION), set(KEYSTORE_CERTIFICATE_CHAIN), set(KEYSTORE_KEY)) {
            (None, None, None) => None,
            (Some(path), None, None) => Some(KeyStore::File(PathBuf::from(path))),
            (Some(_), _, _) => {
                return Err(setting(
                    KEYSTORE_LOCATION,
                    format!("set either it or {KEYSTORE_CERTIFICATE_CHAIN} and {KEYSTORE_KEY}, not both"),
                ))
            }
            (None, Some(chain), Some(key)) => Some(KeyStore::Separate {
                certificate_chain: PemSource::Inline(chain.to_owned()),
                key: PemSource::Inline(key.to_owned()),
            }),
            (None, Some(_), None) => {
                return Err(setting(
                    KEYSTORE_KEY,
                    format!("missing: {KEYSTORE_CERTIFICATE_CHAIN} is set, so the private key must be too"),
                ))
            }
            (None, None, Some(_)) => {
                return Err(setting(
                    KEYSTORE_CERTIFICATE_CHAIN,
                    format!("missing: {KEYSTORE_KEY} is set, so its certificate chain must be too"),
                ))
            }
        };

        let truststore = match (set(TRUSTSTORE_LOCATION), set(TRUSTSTORE_CERTIFICATES)) {
            (None, None) => None,
            (Some(path), None) => Some(PemSource::File(PathBuf::from(path))),
            (None, Some(pem)) => Some(PemSource::Inline(pem.to_owned())),
            (Some(_), Some(_)) => {
                return Err(setting(
                    TRUSTSTORE_LOCATION,
                    format!("set either it or {TRUSTSTORE_CERTIFICATES}, not both"),
                ))
            }
        };

        let client_auth = match set(CLIENT_AUTH).map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => ClientAuth::None,
            Some("required") => ClientAuth::Required,
            Some("requested") => ClientAuth::Requested,
            Some(other) => {
                return Err(setting(
                    CLIENT_AUTH,
                    format!("{other:?} is not one of required, requested, none"),
                ))
            }
        };

        let enabled_protocols = match set(ENABLED_PROTOCOLS) {
            None => TlsSettings::default().enabled_protocols,
            Some(list) => parse_protocols(list)?,
        };

        // Kafka: `https` (any case) verifies the host name, an empty value turns that off.
        let verify_hostname = match get(ENDPOINT_IDENTIFICATION_ALGORITHM).map(str::trim) {
            None => true,
            Some("") => false,
            Some(v) if v.eq_ignore_ascii_case("https") => true,
            Some(other) => {
                return Err(setting(
                    ENDPOINT_IDENTIFICATION_ALGORITHM,
                    format!(
                    "{other:?} is not supported: use https, or an empty value to skip the host name check"
                ),
                ))
            }
        };

        let principal_mapper = match get(PRINCIPAL_MAPPING_RULES) {
            None => PrincipalMapper::default(),
            Some(rules) => PrincipalMapper::parse(rules)?,
        };

        let settings =
            Self { keystore, truststore, client_auth, enabled_protocols, verify_hostname, principal_mapper };
        if settings.client_auth != ClientAuth::None && settings.truststore.is_none() {
            return Err(setting(
                CLIENT_AUTH,
                format!("checking client certificates needs trusted CAs: set {TRUSTSTORE_LOCATION} or {TRUSTSTORE_CERTIFICATES}"),
            ));
        }
        Ok(settings)
    }

    /// The rustls protocol versions, checked non-empty.
    pub(crate) fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
        if self.enabled_protocols.is_empty() {
            return Err(setting(ENABLED_PROTOCOLS, "empty: enable TLSv1.2, TLSv1.3 or both".into()));
        }
        let mut versions = self.enabled_protocols.clone();
        versions.sort();
        versions.dedup();
        // Newest first, as rustls lists them.
        Ok(versions.into_iter().rev().map(TlsVersion::rustls).collect())
    }
}

fn parse_protocols(list: &str) -> Result<Vec<TlsVersion>, TlsError> {
    let mut versions = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        versions.push(match name {
            "TLSv1.2" => TlsVersion::Tls12,
            "TLSv1.3" => TlsVersion::Tls13,
            other => {
                return Err(setting(
                    ENABLED_PROTOCOLS,
                    format!("{other:?} is not supported: only TLSv1.2 and TLSv1.3"),
                ))
            }
        });
    }
    if versions.is_empty() {
        return Err(setting(ENABLED_PROTOCOLS, "empty: enable TLSv1.2, TLSv1.3 or both".into()));
    }
    Ok(versions)
}

pub(crate) fn setting(setting: &'static str, reason: String) -> TlsError {
    TlsError::Setting { setting, reason }
}

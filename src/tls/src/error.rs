use std::io;
use std::path::PathBuf;

/// Why TLS settings, files or a client certificate were refused.
///
/// Every message names the Kafka setting at fault (`setting`) and, where there is one, the
/// file (`path`, or `origin`: the path or `inline value`), so an operator can act on the log
/// line alone. No variant carries a private key or a password.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A setting is missing, holds a value Kora does not accept, or conflicts with another.
    #[error("{setting}: {reason}")]
    Setting { setting: &'static str, reason: String },
    /// A file named by a setting could not be read.
    #[error("{setting}: cannot read {}: {source}", path.display())]
    Read { setting: &'static str, path: PathBuf, source: io::Error },
    /// PEM text (inline or read from a file) holds no usable certificate or key.
    #[error("{setting} ({origin}): {reason}")]
    Pem { setting: &'static str, origin: String, reason: String },
    /// rustls refused the certificates or key assembled from the settings (for example a key
    /// that does not belong to the certificate).
    #[error("{setting} ({origin}): {source}")]
    Rustls { setting: &'static str, origin: String, source: rustls::Error },
    /// A peer's certificate could not be read as X.509.
    #[error("client certificate: {0}")]
    Certificate(String),
    /// No rule of `ssl.principal.mapping.rules` matched a certificate's subject (in RFC 2253
    /// form); as in Kafka, the client is refused rather than given a principal nobody
    /// configured.
    #[error("ssl.principal.mapping.rules: no rule applies to {dn:?} (rules: {rules})")]
    NoMatchingRule { dn: String, rules: String },
}

//! Kafka's TLS settings (`ssl.*`) turned into rustls configurations.
//!
//! A Kafka operator describes TLS with the `ssl.*` names of the broker's configuration: a PEM
//! keystore (inline or in a file), a PEM truststore, `ssl.client.auth`,
//! `ssl.enabled.protocols` and `ssl.endpoint.identification.algorithm`. [`TlsSettings`] reads
//! and checks those names once; [`ServerTls`] builds the acceptor of an SSL or SASL_SSL
//! listener from them and [`ClientTls`] the connector of an inter-broker client. Both re-read
//! their files when asked ([`Reloadable::reload_if_changed`], [`Reloadable::watch`]), so a
//! certificate renewed on disk is served without a restart, and a broken renewal leaves the
//! previous certificates in place.
//!
//! The SSL principal of a client certificate is Kafka's: the subject in RFC 2253 form as
//! Java's `X500Principal.getName()` prints it ([`distinguished_name`]), rewritten by
//! `ssl.principal.mapping.rules` ([`PrincipalMapper`]); [`ssl_principal`] puts the two
//! together, with `ANONYMOUS` for a client that sent no certificate.
//!
//! Every configuration is built on rustls' `ring` provider, passed explicitly: nothing here
//! depends on, or installs, a process-wide default provider.

mod client;
mod error;
mod material;
mod principal;
mod reload;
mod server;
mod settings;

pub use client::{server_name, ClientTls};
pub use error::TlsError;
pub use principal::{distinguished_name, ssl_principal, PrincipalMapper, ANONYMOUS};
pub use reload::Reloadable;
pub use server::ServerTls;
pub use settings::{keys, ClientAuth, KeyStore, PemSource, TlsSettings, TlsVersion};

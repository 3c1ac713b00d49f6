//! The TLS side of an SSL or SASL_SSL listener.

use std::sync::Arc;

use rustls::crypto::ring;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, ServerConnection};
use tokio_rustls::TlsAcceptor;

use crate::material::{self, Snapshot};
use crate::reload::Reloadable;
use crate::settings::keys::*;
use crate::settings::setting;
use crate::{ssl_principal, ClientAuth, TlsError, TlsSettings};

/// A listener's TLS acceptor, rebuilt when its certificate files change
/// ([`Reloadable::reload_if_changed`], [`Reloadable::watch`]).
pub type ServerTls = Reloadable<TlsAcceptor>;

impl ServerTls {
    /// Reads the keystore (required) and truststore and builds the acceptor. Reads files,
    /// so async callers run it on a blocking thread.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        Self::build("server", settings, build)
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current()
    }

    /// Kafka's principal name for a TLS connection: the mapped subject of the client's
    /// certificate, or `ANONYMOUS` without one. See [`ssl_principal`].
    pub fn principal(&self, connection: &ServerConnection) -> Result<String, TlsError> {
        ssl_principal(connection.peer_certificates(), &self.settings().principal_mapper)
    }
}

fn build(settings: &TlsSettings, snapshot: &Snapshot) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let identity = material::identity(settings, snapshot)?.ok_or_else(|| {
        setting(
            KEYSTORE_LOCATION,
            format!("a TLS listener needs its certificate and key: set {KEYSTORE_LOCATION}, or {KEYSTORE_CERTIFICATE_CHAIN} and {KEYSTORE_KEY}"),
        )
    })?;
    let verifier: Arc<dyn ClientCertVerifier> = match settings.client_auth {
        ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
        auth => {
            let roots = material::roots(settings, snapshot)?.ok_or_else(|| {
                setting(
                    CLIENT_AUTH,
                    format!("checking client certificates needs trusted CAs: set {TRUSTSTORE_LOCATION} or {TRUSTSTORE_CERTIFICATES}"),
                )
            })?;
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder =
                if auth == ClientAuth::Requested { builder.allow_unauthenticated() } else { builder };
            builder
                .build()
                .map_err(|e| setting(CLIENT_AUTH, format!("cannot check client certificates: {e}")))?
        }
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&settings.versions()?)
        .map_err(|e| setting(ENABLED_PROTOCOLS, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(|source| TlsError::Rustls { setting: identity.setting, origin: identity.origin, source })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

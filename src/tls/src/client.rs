//! The TLS side of an inter-broker client.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::ring;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::material::{self, Snapshot};
use crate::reload::Reloadable;
use crate::settings::keys::*;
use crate::settings::setting;
use crate::{TlsError, TlsSettings};

/// A client's TLS connector (truststore, and a keystore for mTLS if set), rebuilt when its
/// files change, as [`crate::ServerTls`].
pub type ClientTls = Reloadable<TlsConnector>;

impl ClientTls {
    /// Reads the truststore (required: Kora has no default trust store to fall back on, and
    /// brokers trust their own CA) and the keystore, if any, and builds the connector.
    /// Reads files, so async callers run it on a blocking thread.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        Self::build("client", settings, build)
    }

    /// The connector for a new connection; see [`server_name`] for its name argument.
    pub fn connector(&self) -> TlsConnector {
        self.current()
    }
}

/// The name to verify a server's certificate against: a DNS name or an IP address (as a
/// broker's advertised host). Unchecked when `ssl.endpoint.identification.algorithm` is empty.
pub fn server_name(host: &str) -> Result<ServerName<'static>, InvalidDnsNameError> {
    ServerName::try_from(host.to_owned())
}

fn build(settings: &TlsSettings, snapshot: &Snapshot) -> Result<TlsConnector, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let roots = material::roots(settings, snapshot)?.ok_or_else(|| {
        setting(
            TRUSTSTORE_LOCATION,
            format!("a TLS client needs trusted CAs: set {TRUSTSTORE_LOCATION} or {TRUSTSTORE_CERTIFICATES}"),
        )
    })?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| setting(TRUSTSTORE_LOCATION, format!("cannot check server certificates: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&settings.versions()?)
        .map_err(|e| setting(ENABLED_PROTOCOLS, e.to_string()))?;
    let builder = if settings.verify_hostname {
        builder.with_webpki_verifier(verifier)
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
    };
    let config = match material::identity(settings, snapshot)? {
        None => builder.with_no_client_auth(),
        Some(identity) => builder.with_client_auth_cert(identity.chain, identity.key).map_err(|source| {
            TlsError::Rustls { setting: identity.setting, origin: identity.origin, source }
        })?,
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `ssl.endpoint.identification.algorithm=` (empty): the server's chain must still lead to a
/// trusted CA, but its names need not include the host dialled. rustls' verifier checks the
/// chain before the name, so a name mismatch is the only error forgiven here.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

//! Reading the files the settings name and parsing their PEM.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::settings::keys::*;
use crate::{KeyStore, PemSource, TlsError, TlsSettings};

/// The bytes of every file the settings name, read together so that a reload compares and
/// rebuilds from one read, never from a certificate of one moment and a key of another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot(Vec<(PathBuf, Vec<u8>)>);

/// The files `settings` names, each with the setting that names it. Empty when everything
/// is inline, which is what makes inline settings free to "reload".
pub(crate) fn files(settings: &TlsSettings) -> Vec<(&'static str, &Path)> {
    let mut files = Vec::new();
    match &settings.keystore {
        Some(KeyStore::File(path)) => files.push((KEYSTORE_LOCATION, path.as_path())),
        Some(KeyStore::Separate { certificate_chain, key }) => {
            if let PemSource::File(path) = certificate_chain {
                files.push((KEYSTORE_CERTIFICATE_CHAIN, path.as_path()));
            }
            if let PemSource::File(path) = key {
                files.push((KEYSTORE_KEY, path.as_path()));
            }
        }
        None => {}
    }
    if let Some(PemSource::File(path)) = &settings.truststore {
        files.push((TRUSTSTORE_LOCATION, path.as_path()));
    }
    files
}

/// Reads every file `settings` names. Blocking: async callers go through `spawn_blocking`.
pub(crate) fn read(settings: &TlsSettings) -> Result<Snapshot, TlsError> {
    let mut read = Vec::new();
    for (setting, path) in files(settings) {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            setting,
            path: path.to_owned(),
            source,
        })?;
        read.push((path.to_owned(), bytes));
    }
    Ok(Snapshot(read))
}

/// A certificate chain with its private key, and where they came from (for errors).
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) setting: &'static str,
    pub(crate) origin: String,
}

/// Parses the keystore, if the settings have one.
pub(crate) fn identity(settings: &TlsSettings, snapshot: &Snapshot) -> Result<Option<Identity>, TlsError> {
    let identity = match &settings.keystore {
        None => return Ok(None),
        Some(KeyStore::File(path)) => {
            let origin = path.display().to_string();
            let pem = snapshot.get(path);
            Identity {
                chain: certificates(KEYSTORE_LOCATION, &origin, pem)?,
                key: private_key(KEYSTORE_LOCATION, &origin, pem)?,
                setting: KEYSTORE_LOCATION,
                origin,
            }
        }
        Some(KeyStore::Separate { certificate_chain, key }) => {
            let (chain_pem, chain_origin) = snapshot.text(certificate_chain);
            let (key_pem, key_origin) = snapshot.text(key);
            Identity {
                chain: certificates(KEYSTORE_CERTIFICATE_CHAIN, &chain_origin, chain_pem)?,
                key: private_key(KEYSTORE_KEY, &key_origin, key_pem)?,
                setting: KEYSTORE_CERTIFICATE_CHAIN,
                origin: chain_origin,
            }
        }
    };
    Ok(Some(identity))
}

/// Parses the truststore, if the settings have one.
pub(crate) fn roots(settings: &TlsSettings, snapshot: &Snapshot) -> Result<Option<RootCertStore>, TlsError> {
    let Some(source) = &settings.truststore else {
        return Ok(None);
    };
    let setting = match source {
        PemSource::Inline(_) => TRUSTSTORE_CERTIFICATES,
        PemSource::File(_) => TRUSTSTORE_LOCATION,
    };
    let (pem, origin) = snapshot.text(source);
    let mut roots = RootCertStore::empty();
    for cert in certificates(setting, &origin, pem)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            setting,
            origin: origin.clone(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Some(roots))
}

impl Snapshot {
    /// The bytes read for `path`; empty if it was not read (cannot happen: every file of
    /// the settings is read before parsing), which then fails as "no PEM found".
    fn get(&self, path: &Path) -> &[u8] {
        self.0.iter().find(|(p, _)| p == path).map_or(&[][..], |(_, bytes)| bytes.as_slice())
    }

    fn text<'a>(&'a self, source: &'a PemSource) -> (&'a [u8], String) {
        match source {
            PemSource::Inline(pem) => (pem.as_bytes(), "inline value".to_owned()),
            PemSource::File(path) => (self.get(path), path.display().to_string()),
        }
    }
}

fn certificates(
    setting: &'static str,
    origin: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(setting, origin, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(setting, origin, "no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn private_key(setting: &'static str, origin: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    // rustls cannot decrypt keys; say so rather than "no key found".
    if pem.windows(ENCRYPTED.len()).any(|w| w == ENCRYPTED.as_bytes()) {
        return Err(pem_error(
            setting,
            origin,
            "the private key is encrypted, which Kora does not support: store it unencrypted (PKCS#8)".into(),
        ));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        let reason = match e {
            pem::Error::NoItemsFound => "no PRIVATE KEY block found".to_owned(),
            e => format!("not valid PEM: {e}"),
        };
        pem_error(setting, origin, reason)
    })
}

const ENCRYPTED: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

fn pem_error(setting: &'static str, origin: &str, reason: String) -> TlsError {
    TlsError::Pem { setting, origin: origin.to_owned(), reason }
}

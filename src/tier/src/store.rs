//! Opening an object store from a URL, and the start-up check that it works.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::TierError;

/// An opened store and the key prefix Kora writes under.
#[derive(Debug, Clone)]
pub struct Store {
    pub url: String,
    pub inner: Arc<dyn ObjectStore>,
    pub prefix: Path,
}

fn bad(url: &str, reason: impl Into<String>) -> TierError {
    TierError::BadUrl { url: url.to_string(), reason: reason.into() }
}

/// Opens `url`: `file:///dir`, `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
/// `options` are the provider's settings by their environment names (`AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...):
/// the binary reads the environment, this crate does not.
pub fn open_store(url: &str, options: &BTreeMap<String, String>) -> Result<Store, TierError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad(url, "expected scheme://..."))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = Path::from(prefix.trim_matches('/'));
    let inner: Arc<dyn ObjectStore> = match scheme {
        "file" => {
            let dir = std::path::Path::new(rest);
            if !dir.is_absolute() {
                return Err(bad(url, "file:// needs an absolute path (file:///var/lib/kora/objects)"));
            }
            std::fs::create_dir_all(dir).map_err(|e| bad(url, format!("create {}: {e}", dir.display())))?;
            let fs = LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(url, e.to_string()))?;
            // Local objects go through a temporary file and a rename: readers never see a
            // partial object.
            return Ok(Store { url: url.to_string(), inner: Arc::new(fs), prefix: Path::from("") });
        }
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
            for (k, v) in options {
                if let Ok(key) = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()) {
                    b = b.with_config(key, v);
                }
            }
            Arc::new(b.build().map_err(|e| bad(url, e.to_string()))?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
            for (k, v) in options {
                if let Ok(key) = GoogleConfigKey::from_str(&k.to_ascii_lowercase()) {
                    b = b.with_config(key, v);
                }
            }
            Arc::new(b.build().map_err(|e| bad(url, e.to_string()))?)
        }
        "az" | "azure" | "abfs" => {
            let mut b = MicrosoftAzureBuilder::new().with_container_name(bucket);
            for (k, v) in options {
                if let Ok(key) = AzureConfigKey::from_str(&k.to_ascii_lowercase()) {
                    b = b.with_config(key, v);
                }
            }
            Arc::new(b.build().map_err(|e| bad(url, e.to_string()))?)
        }
        other => return Err(bad(url, format!("unknown scheme '{other}' (file, s3, gs, az)"))),
    };
    if bucket.is_empty() {
        return Err(bad(url, "no bucket or container named"));
    }
    Ok(Store { url: url.to_string(), inner, prefix })
}

/// Whether an error comes from a full disk (ENOSPC somewhere in its sources).
fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Writes, reads back and deletes a probe object, so a broker with a store it cannot use
/// stops at start-up with the store's own error instead of failing its first upload later.
pub async fn probe(store: &Store) -> Result<(), TierError> {
    let unreachable = |reason: String| TierError::Unreachable { url: store.url.clone(), reason };
    let key = store.prefix.clone().join("_kora").join(format!("probe-{}", uuid::Uuid::new_v4()));
    let body = Bytes::from_static(b"kora object store probe");
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    if let Err(e) = store.inner.put_opts(&key, PutPayload::from_bytes(body.clone()), opts).await {
        if is_out_of_space(&e) {
            // A store on a full disk is usable for reads; uploads retry until space returns.
            // A broker must start on a full disk to serve what it has.
            tracing::warn!(url = %store.url, error = %e, "object store is out of space; starting anyway");
            return Ok(());
        }
        return Err(unreachable(format!("cannot write {key}: {e}")));
    }
    let got = store
        .inner
        .get(&key)
        .await
        .map_err(|e| unreachable(format!("cannot read back {key}: {e}")))?
        .bytes()
        .await
        .map_err(|e| unreachable(format!("cannot read back {key}: {e}")))?;
    if got != body {
        return Err(unreachable(format!("{key} read back different bytes")));
    }
    store.inner.delete(&key).await.map_err(|e| unreachable(format!("cannot delete {key}: {e}")))?;
    Ok(())
}

//! The object-store tier: opening a store from a URL (local directory, S3 and S3-compatible,
//! GCS, Azure) and checking it, uploading closed segments under keys that carry the writer's
//! epoch, reading them back through a bounded chunk cache with read-ahead, and sweeping
//! objects that no manifest references.
//!
//! Invariants:
//! - objects are never overwritten: every key carries a fresh uuid, small objects are written
//!   with `PutMode::Create`;
//! - readers only follow the manifest (in metadata), so an upload that crashed half way is
//!   invisible; its objects are orphans that the sweep deletes once they are old enough not to
//!   be an upload in flight;
//! - the cache holds at most its byte budget (plus the chunks being returned).
//!
//! Deliberately not here: which partitions to upload and when, the manifest itself (kora-meta)
//! and local retention (kora-log). The broker's tier manager drives those.

mod cache;
mod store;
mod upload;

pub use cache::{CacheStats, ChunkCache};
pub use store::{open_store, probe, Store};
pub use upload::{
    object_prefix, partition_prefix, sweep_orphans, upload_segment, RemoteReader, UploadLimits,
};

/// Errors of the object-store tier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    #[error("object store URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    #[error("object store {url} is not usable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("local file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("remote segment {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

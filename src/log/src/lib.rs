//! The partition log: durable, segmented storage of Kafka record batches.
//!
//! Owns: segment files and their sparse offset/time indexes ([`segment`]), batch validation and
//! offset assignment ([`batch`]), idempotent producer state ([`producer`]), one partition's log
//! with append/read/retention/recovery ([`log`]) and the set of partitions on a broker's disk
//! ([`manager`]).
//!
//! Invariants:
//! - a segment file holds whole, CRC-valid batches with strictly increasing offsets, except a
//!   torn tail after a crash, which recovery truncates before anything is served;
//! - batches are stored byte for byte as produced, but for the base offset, the leader epoch and
//!   (for LogAppendTime topics) the timestamp fields; records are never re-encoded;
//! - readers never see bytes past the last complete append; acknowledged (and, where the flush
//!   policy says so, fsynced) data is never truncated by recovery.
//!
//! Replication support ([`replica`]): leader epochs, a high watermark the broker moves, follower
//! appends and truncation. Which replica leads, and when the high watermark moves, is the
//! broker's.
//!
//! Deliberately not here: the Kafka wire protocol, metadata, replica fetching and the object-store
//! tier. Appends are synchronous writes into the page cache; fsync is a separate call so the
//! broker can run it off the request path and batch it (group commit).

pub mod batch;
mod cleaner;
pub mod files;
pub mod log;
pub mod manager;
pub mod producer;
mod records;
mod replica;
mod segment;

pub use cleaner::CleanStats;
pub use log::{AppendResult, ClosedSegment, LogOffsets, PartitionLog, ReadResult};
pub use manager::{LogManager, PartitionSpec};
pub use replica::end_offset_for;

/// Errors of the log, each with a Kafka error code in the broker's single mapping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("I/O error during {context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(i16),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("timestamp {timestamp} is out of the accepted range")]
    InvalidTimestamp { timestamp: i64 },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    #[error("producer epoch {got} is older than the current epoch {current}")]
    InvalidProducerEpoch { current: i16, got: i16 },
    #[error("corrupt log state: {0}")]
    Corrupt(String),
    #[error("the log is closed")]
    Closed,
    /// A replicated batch from an epoch older than the newest this log holds: its sender is
    /// not the leader any more (epochs ascend with offsets in a log).
    #[error("batch at offset {offset} has leader epoch {batch_epoch}, older than the log's epoch {latest}")]
    StaleLeaderEpoch { offset: i64, batch_epoch: i32, latest: i32 },
    /// The offset is in the log but no longer on local disk: read it from the object store.
    #[error("offset {offset} is below the local log start {local_start}")]
    NotLocal { offset: i64, local_start: i64 },
}

pub(crate) fn io_err(source: std::io::Error, context: impl Into<String>) -> LogError {
    LogError::Io { context: context.into(), source }
}

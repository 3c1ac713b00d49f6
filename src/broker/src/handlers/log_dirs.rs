//! DescribeLogDirs (KIP-113; AdminClient.describeLogDirs, kafka-log-dirs, and what
//! kafka-reassign-partitions reads): this broker's one log directory, the replicas in it with
//! their local sizes, and (v4, KIP-827) the file system's total and usable bytes.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::families::Storage;
use super::sb;

/// Total and available bytes of the file system holding `dir` (statvfs: no I/O beyond the
/// superblock the kernel holds).
fn disk_bytes(dir: &std::path::Path) -> Option<(i64, i64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    let unit = s.f_frsize.max(1);
    let total = s.f_blocks.saturating_mul(unit);
    let usable = s.f_bavail.saturating_mul(unit);
    Some((i64::try_from(total).unwrap_or(i64::MAX), i64::try_from(usable).unwrap_or(i64::MAX)))
}

pub(super) fn describe_log_dirs(st: &Storage<'_>, r: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> =
        r.topics.map(|ts| ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (topic, partition, log) in st.logs.all() {
        let asked = match &wanted {
            None => true,
            Some(w) => w.get(&topic).is_some_and(|ps| ps.contains(&partition)),
        };
        if !asked {
            continue;
        }
        let size = i64::try_from(log.offsets().size_bytes).unwrap_or(i64::MAX);
        by_topic.entry(topic).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition)
                .with_partition_size(size)
                .with_offset_lag(0)
                .with_is_future_key(false),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default().with_name(sb(&name).into()).with_partitions(partitions)
        })
        .collect();
    let root = st.logs.root();
    let dir = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let (code, total, usable) = match disk_bytes(root) {
        Some((t, u)) => (0, t, u),
        None => (ResponseError::KafkaStorageError.code(), -1, -1),
    };
    let result = DescribeLogDirsResult::default()
        .with_error_code(code)
        .with_log_dir(sb(&dir.to_string_lossy()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default().with_results(vec![result])
}

//! ListOffsets, DeleteRecords and OffsetForLeaderEpoch.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use super::families::Reads;
use crate::errors::log_error_code;

/// ListOffsets special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(super) async fn list_offsets(rd: &Reads<'_>, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let missing = rd.view.leadership_error(&name, p.partition_index);
            let Some(log) = rd.logs.get(&name, p.partition_index).filter(|_| missing.is_none()) else {
                parts.push(
                    base.with_error_code(missing.unwrap_or(ResponseError::UnknownTopicOrPartition.code()))
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            };
            if let Some(code) = rd.view.epoch_error(&name, p.partition_index, p.current_leader_epoch) {
                parts.push(base.with_error_code(code).with_offset(-1).with_timestamp(-1));
                continue;
            }
            let ts = p.timestamp;
            let found = match ts {
                LATEST => Ok(Some((log.high_watermark(), -1))),
                EARLIEST => Ok(Some((log.offsets().log_start_offset, -1))),
                // KIP-405: the first offset on local disk (differs from EARLIEST when tiered).
                EARLIEST_LOCAL => Ok(Some((log.local_start_offset(), -1))),
                t if t >= 0
                    && rd.tiering.is_some()
                    && t <= remote_max_timestamp(rd, &name, p.partition_index) =>
                {
                    remote_offset_for_timestamp(rd, &name, p.partition_index, t).await
                }
                MAX_TIMESTAMP => {
                    let l = log.clone();
                    tokio::task::spawn_blocking(move || l.max_timestamp_offset())
                        .await
                        .unwrap_or_else(|e| Err(kora_log::LogError::Corrupt(e.to_string())))
                }
                t if t >= 0 => {
                    let l = log.clone();
                    tokio::task::spawn_blocking(move || l.offset_for_timestamp(t))
                        .await
                        .unwrap_or_else(|e| Err(kora_log::LogError::Corrupt(e.to_string())))
                }
                _ => {
                    parts.push(
                        base.with_error_code(ResponseError::InvalidRequest.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    );
                    continue;
                }
            };
            parts.push(match found {
                Ok(Some((offset, timestamp))) => {
                    base.with_offset(offset).with_timestamp(timestamp).with_leader_epoch(0)
                }
                Ok(None) => base.with_offset(-1).with_timestamp(-1),
                Err(e) => base.with_error_code(log_error_code(&e)).with_offset(-1).with_timestamp(-1),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(parts));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The newest timestamp in a partition's remote segments (-1: none).
fn remote_max_timestamp(rd: &Reads<'_>, topic: &str, partition: i32) -> i64 {
    let image = rd.view.image();
    let Some(t) = image.topic(topic) else { return -1 };
    image.remote_segments(&t.topic_id, partition).iter().map(|s| s.max_timestamp).max().unwrap_or(-1)
}

/// ListOffsets by timestamp when the answer is in the object store: the first remote segment
/// whose newest record is at or after `ts`, read until the first such record.
async fn remote_offset_for_timestamp(
    rd: &Reads<'_>,
    topic: &str,
    partition: i32,
    ts: i64,
) -> Result<Option<(i64, i64)>, kora_log::LogError> {
    let storage = |e: String| kora_log::LogError::Io {
        context: "remote read".into(),
        source: std::io::Error::other(e),
    };
    let (Some(t), image) = (rd.tiering, rd.view.image()) else { return Ok(None) };
    let Some(ti) = image.topic(topic) else { return Ok(None) };
    let segments = image.remote_segments(&ti.topic_id, partition);
    let Some(seg) = segments.iter().find(|s| s.max_timestamp >= ts) else { return Ok(None) };
    let mut offset = seg.base_offset;
    while offset < seg.end_offset {
        let Some(bytes) =
            t.reader.read(segments, offset, 1 << 20).await.map_err(|e| storage(e.to_string()))?
        else {
            break;
        };
        let mut buf = bytes.clone();
        while !buf.is_empty() {
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
                .map_err(|e| kora_log::LogError::CorruptBatch(e.to_string()))?;
            for r in set.records {
                offset = offset.max(r.offset + 1);
                if r.timestamp >= ts {
                    return Ok(Some((r.offset, r.timestamp)));
                }
            }
        }
    }
    Ok(None)
}

pub(super) async fn delete_records(rd: &Reads<'_>, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            if crate::groups::is_internal(&name) {
                parts.push(
                    base.with_error_code(ResponseError::InvalidTopicException.code()).with_low_watermark(-1),
                );
                continue;
            }
            let missing = rd.view.leadership_error(&name, p.partition_index);
            let Some(log) = rd.logs.get(&name, p.partition_index).filter(|_| missing.is_none()) else {
                parts.push(
                    base.with_error_code(missing.unwrap_or(ResponseError::UnknownTopicOrPartition.code()))
                        .with_low_watermark(-1),
                );
                continue;
            };
            let offset = p.offset;
            let res = tokio::task::spawn_blocking(move || log.delete_records_before(offset))
                .await
                .unwrap_or_else(|e| Err(kora_log::LogError::Corrupt(e.to_string())));
            parts.push(match res {
                Ok(low) => base.with_low_watermark(low),
                Err(e) => base.with_error_code(log_error_code(&e)).with_low_watermark(-1),
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(parts));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Where a leader epoch ended in this replica's log (KIP-101/KIP-320): the largest epoch at or
/// below the one asked and the start of the next, or the log end for the latest.
pub(super) fn offset_for_leader_epoch(
    rd: &Reads<'_>,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = EpochEndOffset::default().with_partition(p.partition);
                    // Followers answer too (consumers of KIP-392 validate positions there).
                    let missing = rd
                        .view
                        .leadership_error(&name, p.partition)
                        .filter(|_| !rd.view.follows(&name, p.partition));
                    let Some(log) = rd.logs.get(&name, p.partition).filter(|_| missing.is_none()) else {
                        return base
                            .with_error_code(missing.unwrap_or(ResponseError::UnknownTopicOrPartition.code()))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    };
                    if let Some(code) = rd.view.epoch_error(&name, p.partition, p.current_leader_epoch) {
                        return base.with_error_code(code).with_leader_epoch(-1).with_end_offset(-1);
                    }
                    let current = rd.view.leader_epoch(&name, p.partition);
                    let (epoch, end) = log.end_offset_for_epoch(p.leader_epoch);
                    if epoch < 0 && log.latest_epoch() < 0 && (0..=current).contains(&p.leader_epoch) {
                        // Nothing written yet: every epoch so far ends at the (empty) log's end.
                        base.with_leader_epoch(p.leader_epoch).with_end_offset(log.log_end_offset())
                    } else {
                        // (-1, -1) for an epoch newer than any in the log, as Kafka answers it.
                        base.with_leader_epoch(epoch).with_end_offset(end)
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(parts)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

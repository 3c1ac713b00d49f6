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

use crate::broker::Broker;
use crate::errors::log_error_code;

/// ListOffsets special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(super) async fn list_offsets(b: &Broker, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let Some(log) = b.logs.get(&name, p.partition_index) else {
                parts.push(
                    base.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            };
            if p.current_leader_epoch > 0 {
                parts.push(
                    base.with_error_code(ResponseError::UnknownLeaderEpoch.code())
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            }
            let ts = p.timestamp;
            let found = match ts {
                LATEST => Ok(Some((log.high_watermark(), -1))),
                EARLIEST | EARLIEST_LOCAL => Ok(Some((log.offsets().log_start_offset, -1))),
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

pub(super) async fn delete_records(b: &Broker, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
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
            let Some(log) = b.logs.get(&name, p.partition_index) else {
                parts.push(
                    base.with_error_code(ResponseError::UnknownTopicOrPartition.code())
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

/// A single node has one leader epoch, 0, covering the whole log.
pub(super) fn offset_for_leader_epoch(
    b: &Broker,
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
                    let Some(log) = b.logs.get(&name, p.partition) else {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    };
                    if p.current_leader_epoch > 0 {
                        return base
                            .with_error_code(ResponseError::UnknownLeaderEpoch.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    }
                    if p.leader_epoch == 0 {
                        base.with_leader_epoch(0).with_end_offset(log.high_watermark())
                    } else {
                        // Unknown (newer) epoch, as Kafka answers it.
                        base.with_leader_epoch(-1).with_end_offset(-1)
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(parts)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

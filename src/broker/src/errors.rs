//! The one place where Kora's errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use kora_log::LogError;
use kora_meta::MetaError;

pub fn log_error_code(e: &LogError) -> i16 {
    let r = match e {
        LogError::Io { .. } | LogError::Corrupt(_) => ResponseError::KafkaStorageError,
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
        LogError::InvalidRecord(_) => ResponseError::InvalidRecord,
        LogError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        // Closed during shutdown: retriable, the client finds the partition again.
        LogError::Closed => ResponseError::NotLeaderOrFollower,
        LogError::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        _ => ResponseError::UnknownServerError,
    };
    r.code()
}

pub fn meta_error_code(e: &MetaError) -> i16 {
    let r = match e {
        MetaError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        MetaError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        MetaError::InvalidTopicName(_) => ResponseError::InvalidTopicException,
        MetaError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        MetaError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        MetaError::InvalidConfig(_) | MetaError::Config(_) => ResponseError::InvalidConfig,
        MetaError::NotController(_) => ResponseError::NotController,
        MetaError::InvalidRequest(_) => ResponseError::InvalidRequest,
        MetaError::StaleLeader(_) => ResponseError::FencedLeaderEpoch,
        MetaError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
        // A tenant's limits on topics and partitions are the cell's policy (Kafka's answer to
        // a refused CreateTopics policy).
        MetaError::TenantLimit(_) => ResponseError::PolicyViolation,
        // The connection's tenant was deleted while it made the request.
        MetaError::UnknownTenant(_) => ResponseError::TopicAuthorizationFailed,
        _ => ResponseError::UnknownServerError,
    };
    r.code()
}

//! Fetch from a follower: a request carrying a replica id.
//!
//! The follower reads up to the log end (not the high watermark). Its fetch offset is its log
//! end, which moves the high watermark and may bring it back into the ISR; that is recorded
//! once, when the request arrives. A follower whose last fetched epoch ended earlier here, or
//! that is ahead of where its epoch ended, gets the diverging epoch instead of records
//! (KIP-320) and truncates. Long polls wait on the log end.

use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{EpochEndOffset, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kora_log::LogError;
use tokio::sync::watch;
use uuid::Uuid;

use super::families::Followers;
use super::sb;
use crate::errors::log_error_code;

/// Upper bound on how long one follower fetch may wait.
const MAX_WAIT_MS_CAP: i32 = 30_000;

struct Want {
    topic: String,
    topic_id: Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
}

struct Out {
    error: i16,
    high_watermark: i64,
    log_start_offset: i64,
    diverging: Option<(i32, i64)>,
    records: Bytes,
}

impl Out {
    fn error(code: i16) -> Self {
        Out { error: code, high_watermark: -1, log_start_offset: -1, diverging: None, records: Bytes::new() }
    }
}

/// `eligible`: the replica may join the ISR (registered and not fenced), looked up once per
/// request.
fn read_for_replica(
    fl: &Followers<'_>,
    w: &Want,
    budget: usize,
    replica: i32,
    arrival: bool,
    eligible: bool,
) -> Out {
    if let Some(code) = fl.view.leadership_error(&w.topic, w.partition) {
        return Out::error(code);
    }
    let Some(log) = fl.logs.get(&w.topic, w.partition) else {
        return Out::error(ResponseError::UnknownTopicOrPartition.code());
    };
    if let Some(code) = fl.view.epoch_error(&w.topic, w.partition, w.current_leader_epoch) {
        return Out::error(code);
    }
    let o = log.offsets();
    if w.last_fetched_epoch >= 0 {
        let (epoch, end) = log.end_offset_for_epoch(w.last_fetched_epoch);
        if epoch < w.last_fetched_epoch || end < w.fetch_offset {
            return Out {
                error: 0,
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                diverging: Some((epoch, end)),
                records: Bytes::new(),
            };
        }
    }
    if arrival {
        if let Some(change) =
            fl.replication.on_follower_fetch(&w.topic, w.partition, &log, replica, w.fetch_offset, eligible)
        {
            crate::replication::submit(fl.replication, change);
        }
    }
    let mut want = budget.min(w.max_bytes).max(1);
    // A replica a reassignment is adding gets leader.replication.throttled.rate.
    let throttled = fl
        .view
        .image()
        .topic(&w.topic)
        .and_then(|t| t.partition(w.partition))
        .is_some_and(|s| s.adding.contains(&replica));
    if throttled {
        let allowance = fl.replication.leader_throttle.available();
        if allowance == 0 {
            return Out {
                error: 0,
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                diverging: None,
                records: Bytes::new(),
            };
        }
        want = want.min(allowance);
    }
    match log.read_replica(w.fetch_offset, want) {
        Ok(r) => {
            if throttled {
                fl.replication.leader_throttle.consume(r.records.len());
            }
            Out {
                error: 0,
                high_watermark: r.high_watermark,
                log_start_offset: r.log_start_offset,
                diverging: None,
                records: r.records,
            }
        }
        // Followers copy only the local log: below it they start again at the local start.
        Err(LogError::NotLocal { local_start, .. }) => Out {
            error: ResponseError::OffsetMovedToTieredStorage.code(),
            high_watermark: o.high_watermark,
            log_start_offset: local_start,
            diverging: None,
            records: Bytes::new(),
        },
        Err(e) => {
            if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                tracing::warn!(topic = %w.topic, partition = w.partition, error = %e, "follower read failed");
            }
            Out {
                error: log_error_code(&e),
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                diverging: None,
                records: Bytes::new(),
            }
        }
    }
}

/// A follower's fetch from a principal without CLUSTER_ACTION: every partition it names gets
/// TOPIC_AUTHORIZATION_FAILED, as Kafka answers.
pub(super) fn refused(r: &FetchRequest) -> FetchResponse {
    let code = ResponseError::TopicAuthorizationFailed.code();
    let responses = r
        .topics
        .iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(code)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

pub(super) async fn replica_fetch(
    fl: &Followers<'_>,
    r: FetchRequest,
    version: i16,
    replica: i32,
) -> FetchResponse {
    let image = fl.view.image();
    let mut wants = Vec::new();
    for t in &r.topics {
        let (name, id) = if version >= 13 {
            (image.topic_by_id(&t.topic_id).map(|x| x.name.clone()).unwrap_or_default(), t.topic_id)
        } else {
            let n = t.topic.0.to_string();
            let id = image.topic(&n).map(|x| x.topic_id).unwrap_or(Uuid::nil());
            (n, id)
        };
        for p in &t.partitions {
            wants.push(Want {
                topic: name.clone(),
                topic_id: id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
            });
        }
    }
    let eligible = image.brokers.get(&replica).is_some_and(|r| !r.fenced);
    drop(image);
    let max_bytes = (r.max_bytes.max(0) as usize).min(fl.fetch_max_bytes);
    let min_bytes = r.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(r.max_wait_ms.clamp(0, MAX_WAIT_MS_CAP) as u64);
    let deadline = fl.clock.now() + wait;
    let mut receivers: Vec<watch::Receiver<i64>> =
        wants.iter().filter_map(|w| fl.logs.get(&w.topic, w.partition)).map(|l| l.subscribe_end()).collect();
    let mut arrival = true;
    let outs = loop {
        for rx in receivers.iter_mut() {
            rx.borrow_and_update();
        }
        let mut budget = max_bytes;
        let mut total = 0;
        let mut urgent = false;
        let mut outs = Vec::with_capacity(wants.len());
        for w in &wants {
            let o = read_for_replica(fl, w, budget, replica, arrival, eligible);
            budget = budget.saturating_sub(o.records.len());
            total += o.records.len();
            urgent |= o.error != 0 || o.diverging.is_some();
            outs.push(o);
        }
        arrival = false;
        if total >= min_bytes.max(1)
            || urgent
            || receivers.is_empty()
            || fl.clock.now() >= deadline
            || fl.stopping()
        {
            break outs;
        }
        let closed = {
            let changed = select_all(receivers.iter_mut().map(|rx| Box::pin(rx.changed())));
            match kora_common::timeout_at(fl.clock, deadline, changed).await {
                Err(_) | Ok((Ok(()), _, _)) => None,
                Ok((Err(_), idx, _)) => Some(idx),
            }
        };
        if let Some(idx) = closed {
            receivers.swap_remove(idx);
        }
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (w, o) in wants.iter().zip(outs) {
        let mut pd = PartitionData::default()
            .with_partition_index(w.partition)
            .with_error_code(o.error)
            .with_high_watermark(o.high_watermark)
            .with_last_stable_offset(o.high_watermark)
            .with_log_start_offset(o.log_start_offset)
            .with_preferred_read_replica(BrokerId(-1))
            .with_records(Some(o.records));
        if let Some((epoch, end)) = o.diverging {
            pd = pd.with_diverging_epoch(EpochEndOffset::default().with_epoch(epoch).with_end_offset(end));
        }
        let same = topics.last().is_some_and(|t| {
            if version >= 13 {
                t.topic_id == w.topic_id
            } else {
                t.topic.0.as_str() == w.topic
            }
        });
        match topics.last_mut() {
            Some(t) if same => t.partitions.push(pd),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(sb(&w.topic)))
                    .with_topic_id(w.topic_id)
                    .with_partitions(vec![pd]),
            ),
        }
    }
    FetchResponse::default().with_session_id(0).with_responses(topics)
}

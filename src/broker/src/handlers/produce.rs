//! Produce and InitProducerId.
//!
//! The append path: split and CRC-check the batch outside any lock, append (a page-cache
//! write under the partition mutex), then, only when the topic's flush policy asks for it,
//! fsync off the async workers before acknowledging. Records are never decoded.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    BrokerId, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use kora_log::batch::split_batches;
use kora_log::{LogError, PartitionLog};

use super::families::Writes;
use super::sb;
use crate::errors::{log_error_code, meta_error_code};
use crate::metrics::TopicLabels;

fn partition_error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(|m| sb(&m)))
}

/// An acks=all write waiting for the ISR: the offset the high watermark must pass.
struct Replicating {
    log: Arc<PartitionLog>,
    leading: Arc<crate::replication::Leading>,
    topic: String,
    upto: i64,
    min_isr: usize,
}

/// Appends one partition's records; returns the response entry, and for an acks=all write to
/// a replicated partition what it waits for.
async fn append_partition(
    wr: &Writes<'_>,
    log: Arc<PartitionLog>,
    topic: &str,
    index: i32,
    records: Option<Bytes>,
    acks: i16,
) -> (PartitionProduceResponse, Option<Replicating>) {
    let leading = wr.replication.leading(topic, index);
    if leading.is_none() && wr.in_cell {
        // The image says this broker leads, but its leader epoch has not started yet (a
        // moment after the change): the client retries.
        return (partition_error(index, ResponseError::NotLeaderOrFollower.code(), None), None);
    }
    let min_isr = log.config().min_insync_replicas as usize;
    if let Some(l) = leading.as_ref().filter(|_| acks == -1) {
        let isr = l.isr_len();
        if isr < min_isr {
            wr.metrics.under_min_isr_produce.inc();
            let msg = format!("{isr} in-sync replicas, min.insync.replicas is {min_isr}");
            return (partition_error(index, ResponseError::NotEnoughReplicas.code(), Some(msg)), None);
        }
    }
    let mut upto = -1;
    let entry = append_local(wr, log.clone(), topic, index, records, &mut upto).await;
    if entry.error_code != 0 {
        return (entry, None);
    }
    wr.replication.after_append(topic, index, &log);
    let wait = match leading {
        Some(leading) if acks == -1 => (log.high_watermark() < upto).then(|| Replicating {
            log,
            leading,
            topic: topic.to_string(),
            upto,
            min_isr,
        }),
        _ => None,
    };
    (entry, wait)
}

/// Waits until the high watermark passes the write (every ISR member has it), the leader
/// loses the partition, or `timeout` passes. Returns the error code (0: replicated).
async fn wait_replicated(wr: &Writes<'_>, w: Replicating, index: i32, timeout: Duration) -> i16 {
    let deadline = wr.clock.now() + timeout;
    let mut rx = w.log.subscribe();
    loop {
        if *rx.borrow_and_update() >= w.upto {
            if w.leading.isr_len() < w.min_isr {
                wr.metrics.under_min_isr_produce.inc();
                return ResponseError::NotEnoughReplicasAfterAppend.code();
            }
            return 0;
        }
        let still_leading =
            wr.replication.leading(&w.topic, index).is_some_and(|l| l.epoch == w.leading.epoch);
        if !still_leading {
            return ResponseError::NotLeaderOrFollower.code();
        }
        let now = wr.clock.now();
        if now >= deadline {
            wr.metrics.under_min_isr_produce.inc();
            return ResponseError::RequestTimedOut.code();
        }
        let slice = (deadline - now).min(Duration::from_millis(100));
        if let Ok(Err(_)) = kora_common::timeout(wr.clock, slice, rx.changed()).await {
            return ResponseError::NotLeaderOrFollower.code();
        }
    }
}

/// Appends one partition's records to the local log; `upto` becomes one past the write's
/// last offset (also for a retry of a write already in the log).
async fn append_local(
    wr: &Writes<'_>,
    log: Arc<PartitionLog>,
    topic: &str,
    index: i32,
    records: Option<Bytes>,
    upto: &mut i64,
) -> PartitionProduceResponse {
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return partition_error(index, ResponseError::InvalidRecord.code(), Some("no records".into()));
    };
    let fail = |e: LogError| partition_error(index, log_error_code(&e), Some(e.to_string()));
    let mut batches = match split_batches(&records) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if batches.len() != 1 {
        // Produce v3+ carries exactly one batch per partition.
        return partition_error(
            index,
            ResponseError::InvalidRecord.code(),
            Some(format!("expected one record batch, got {}", batches.len())),
        );
    }
    let (header, batch) = batches.remove(0);
    // How long the append takes, the write to the log and any flush it must wait for, is
    // what says the disk is falling behind.
    let started = wr.clock.now();
    if let Some(wait) = wr.faults.delay(crate::faults::Device::Disk, batch.len(), started) {
        wr.clock.sleep(wait).await;
    }
    let res = match log.append(&header, &batch) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(topic, partition = index, error = %e, "produce rejected");
            return fail(e);
        }
    };
    *upto = res.last_offset + 1;
    if !res.duplicate {
        let l = TopicLabels { topic: topic.to_string() };
        wr.metrics.bytes_in.get_or_create(&l).inc_by(batch.len() as u64);
        wr.metrics.messages_in.get_or_create(&l).inc_by(header.records_count as u64);
    }
    if res.flush_required || res.rolled {
        let log2 = log.clone();
        let upto = res.last_offset + 1;
        let flush = tokio::task::spawn_blocking(move || log2.flush_to(upto));
        if res.flush_required {
            // The flush policy makes durability part of the acknowledgement.
            match flush.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return fail(e),
                Err(e) => return fail(LogError::Corrupt(format!("flush task: {e}"))),
            }
        }
    }
    wr.usage.append_times.record(wr.clock.elapsed(started).as_micros() as u64);
    wr.usage.appended_bytes.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
    PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(res.base_offset)
        .with_log_append_time_ms(res.log_append_time_ms)
        .with_log_start_offset(res.log_start_offset)
}

/// The same error for every partition of the request.
pub(super) fn refuse_all(r: &ProduceRequest, code: i16, message: Option<&str>) -> ProduceResponse {
    let responses = r
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| partition_error(p.index, code, message.map(String::from)))
                        .collect(),
                )
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

pub(super) async fn produce(
    wr: &Writes<'_>,
    r: ProduceRequest,
    version: i16,
) -> Result<Option<ProduceResponse>, String> {
    let acks = r.acks;
    if !matches!(acks, -1..=1) {
        return Ok(Some(refuse_all(&r, ResponseError::InvalidRequiredAcks.code(), None)));
    }
    if r.transactional_id.is_some() {
        // Transactions arrive with the transaction coordinator; refuse them clearly until then.
        let msg = Some("transactions are not supported yet");
        return Ok(Some(refuse_all(&r, ResponseError::TransactionalIdAuthorizationFailed.code(), msg)));
    }
    let image = wr.view.image();
    let timeout = Duration::from_millis(r.timeout_ms.max(0) as u64);
    let mut responses = Vec::with_capacity(r.topic_data.len());
    let mut any_error = false;
    // acks=all writes waiting for their ISR: (topic index, partition index, what to wait for).
    let mut waits: Vec<(usize, usize, Replicating)> = Vec::new();
    // KIP-951: listeners of the leaders named in NOT_LEADER_OR_FOLLOWER answers.
    let mut endpoints: std::collections::BTreeMap<i32, (String, u16, Option<String>)> = Default::default();
    for t in r.topic_data {
        // v13 addresses topics by id.
        let name = if version >= 13 {
            image.topic_by_id(&t.topic_id).map(|x| x.name.clone())
        } else {
            Some(t.name.0.to_string())
        };
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let log = name.as_deref().and_then(|n| wr.logs.get(n, p.index));
            let not_leader = name.as_deref().and_then(|n| wr.view.leadership_error(n, p.index));
            let entry = match (&name, log) {
                (Some(n), _) if crate::groups::is_internal(n) => partition_error(
                    p.index,
                    ResponseError::InvalidTopicException.code(),
                    Some("clients cannot write to internal topics".into()),
                ),
                (Some(n), _) if not_leader.is_some() => {
                    let e = partition_error(p.index, not_leader.unwrap_or_default(), None);
                    match wr.view.leader_hint(n, p.index) {
                        Some(h) => {
                            let current = e
                                .current_leader
                                .clone()
                                .with_leader_id(BrokerId(h.leader_id))
                                .with_leader_epoch(h.leader_epoch);
                            if let Some(ep) = h.endpoint {
                                endpoints.insert(h.leader_id, ep);
                            }
                            e.with_current_leader(current)
                        }
                        None => e,
                    }
                }
                (Some(n), Some(log)) => {
                    let (entry, wait) = append_partition(wr, log, n, p.index, p.records, acks).await;
                    if let Some(w) = wait {
                        waits.push((responses.len(), parts.len(), w));
                    }
                    entry
                }
                (None, _) => partition_error(p.index, ResponseError::UnknownTopicId.code(), None),
                (Some(_), None) => {
                    partition_error(p.index, ResponseError::UnknownTopicOrPartition.code(), None)
                }
            };
            any_error |= entry.error_code != 0;
            parts.push(entry);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(parts),
        );
    }
    // Every partition's replication is awaited at once: the slowest bounds the request.
    let outcomes = futures::future::join_all(waits.into_iter().map(|(t, p, w)| {
        let index = responses[t].partition_responses[p].index;
        async move { (t, p, wait_replicated(wr, w, index, timeout).await) }
    }))
    .await;
    for (t, p, code) in outcomes {
        if code != 0 {
            let e = &mut responses[t].partition_responses[p];
            *e = partition_error(e.index, code, None);
            any_error = true;
        }
    }
    if acks == 0 {
        // No response; on error close the connection so the client notices (as Kafka does).
        return if any_error { Err("acks=0 produce failed".into()) } else { Ok(None) };
    }
    let node_endpoints = endpoints
        .into_iter()
        .map(|(id, (host, port, rack))| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(sb(&host))
                .with_port(port as i32)
                .with_rack(rack.as_deref().map(sb))
        })
        .collect();
    Ok(Some(ProduceResponse::default().with_responses(responses).with_node_endpoints(node_endpoints)))
}

pub(super) async fn init_producer_id(wr: &Writes<'_>, r: InitProducerIdRequest) -> InitProducerIdResponse {
    if r.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // Idempotent producers get a fresh id at epoch 0, also when they ask to bump (KIP-360):
    // a new id fences nothing and restarts sequences cleanly.
    match wr.producer_ids.next(wr.view).await {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => InitProducerIdResponse::default()
            .with_error_code(meta_error_code(&e))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

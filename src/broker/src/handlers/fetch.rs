//! Fetch: long polling, fetch sessions (KIP-227), response size limits (KIP-74).
//!
//! One pass reads every wanted partition (pread from the page cache; partitions at their high
//! watermark cost one comparison). If the bytes gathered reach min_bytes, or anything errored,
//! or max_wait_ms passed, the response goes out; otherwise the handler sleeps until any of the
//! partitions' high watermarks moves. It subscribes before reading, so an append between the
//! read and the sleep still wakes it.

use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kora_log::LogError;
use tokio::sync::watch;
use uuid::Uuid;

use super::sb;
use crate::broker::Broker;
use crate::errors::log_error_code;
use crate::fetch_session::{SessionError, SessionPartition};
use crate::metrics::TopicLabels;

/// Upper bound on how long one fetch may wait, whatever the client asks.
const MAX_WAIT_MS_CAP: i32 = 30_000;

enum Mode {
    /// No session: a full fetch, full response.
    Sessionless,
    /// Full fetch that opens a session.
    New,
    /// Incremental fetch on an existing session.
    Incremental(crate::fetch_session::FetchSession),
}

struct Outcome {
    error: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Option<Bytes>,
}

/// Reads below the local log start from the object store (remote.storage.enable topics).
async fn read_remote(b: &Broker, p: &SessionPartition, want: usize, log: &kora_log::PartitionLog) -> Outcome {
    let o = log.offsets();
    let fail = |code: i16| Outcome {
        error: code,
        high_watermark: o.high_watermark,
        log_start_offset: o.log_start_offset,
        records: None,
    };
    let Some(t) = &b.tiering else {
        return fail(ResponseError::OffsetOutOfRange.code());
    };
    let image = b.controller.image();
    let Some(topic) = image.topic(&p.topic) else {
        return fail(ResponseError::UnknownTopicOrPartition.code());
    };
    // The manifest is shared with the image: no copy per remote read.
    let segments = image.remote_manifest(&topic.topic_id, p.partition);
    let started = std::time::Instant::now();
    // The read runs as its own task: if the object store is slow (or down, while object_store
    // retries), this partition answers empty after remote.fetch.max.wait.ms and the others in
    // the request go out with their data; the read carries on and warms the cache for the
    // client's next fetch (Kafka's delayed remote fetch does the same).
    let (reader, offset) = (t.clone(), p.fetch_offset);
    let mut task = tokio::spawn(async move { reader.reader.read(&segments, offset, want.max(1)).await });
    let wait = std::time::Duration::from_millis(t.fetch_max_wait_ms());
    let result = match tokio::time::timeout(wait, &mut task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            Err(kora_tier::TierError::Corrupt { key: p.topic.clone(), reason: format!("read task: {e}") })
        }
        Err(_) => {
            b.metrics.remote_read_timeouts.inc();
            return Outcome {
                error: 0,
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                records: Some(Bytes::new()),
            };
        }
    };
    match result {
        Ok(records) => {
            b.metrics.remote_read_seconds.observe(started.elapsed().as_secs_f64());
            Outcome {
                error: 0,
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                records: Some(records.unwrap_or_default()),
            }
        }
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "remote read failed");
            fail(ResponseError::KafkaStorageError.code())
        }
    }
}

async fn read_one(b: &Broker, p: &SessionPartition, budget: usize, version: i16) -> Outcome {
    let unknown = if version >= 13 && p.topic.is_empty() {
        ResponseError::UnknownTopicId.code()
    } else {
        ResponseError::UnknownTopicOrPartition.code()
    };
    let Some(log) = b.logs.get(&p.topic, p.partition) else {
        return Outcome { error: unknown, high_watermark: -1, log_start_offset: -1, records: None };
    };
    // Leader epoch is 0 on a single node: a newer epoch is unknown to us, an older one fenced.
    if p.current_leader_epoch > 0 {
        return Outcome {
            error: ResponseError::UnknownLeaderEpoch.code(),
            high_watermark: -1,
            log_start_offset: -1,
            records: None,
        };
    }
    if budget == 0 {
        // Past the response budget a partition reports offsets only (KIP-74): no read.
        let o = log.offsets();
        if p.fetch_offset >= o.log_start_offset && p.fetch_offset <= o.high_watermark {
            return Outcome {
                error: 0,
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                records: Some(Bytes::new()),
            };
        }
    }
    let want = budget.min(p.max_bytes.max(0) as usize);
    match log.read(p.fetch_offset, want.max(1)) {
        Ok(r) => Outcome {
            error: 0,
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            records: Some(r.records),
        },
        Err(LogError::NotLocal { .. }) => read_remote(b, p, want, &log).await,
        Err(e @ LogError::OffsetOutOfRange { .. }) => {
            let o = log.offsets();
            Outcome {
                error: log_error_code(&e),
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                records: None,
            }
        }
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "fetch read failed");
            Outcome { error: log_error_code(&e), high_watermark: -1, log_start_offset: -1, records: None }
        }
    }
}

pub(super) async fn fetch(b: &Broker, r: FetchRequest, version: i16) -> FetchResponse {
    let image = b.controller.image();
    // The partitions this request names, resolved to names (v13+ sends topic ids).
    let mut requested = Vec::new();
    for t in &r.topics {
        let (name, id) = if version >= 13 {
            (image.topic_by_id(&t.topic_id).map(|x| x.name.clone()).unwrap_or_default(), t.topic_id)
        } else {
            let n = t.topic.0.to_string();
            let id = image.topic(&n).map(|x| x.topic_id).unwrap_or(Uuid::nil());
            (n, id)
        };
        for p in &t.partitions {
            requested.push(SessionPartition {
                topic: name.clone(),
                topic_id: id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_high_watermark: -1,
                last_log_start_offset: -1,
            });
        }
    }
    let mut mode = if version < 7 {
        Mode::Sessionless
    } else {
        match (r.session_id, r.session_epoch) {
            (0, -1) => Mode::Sessionless,
            (0, 0) => Mode::New,
            (id, -1) => {
                b.sessions.lock().remove(id);
                Mode::Sessionless
            }
            (id, 0) => {
                b.sessions.lock().remove(id);
                Mode::New
            }
            (id, epoch) => match b.sessions.lock().take(id, epoch) {
                Ok(s) => Mode::Incremental(s),
                Err(e) => {
                    let code = match e {
                        SessionError::NotFound => ResponseError::FetchSessionIdNotFound,
                        SessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch,
                    };
                    return FetchResponse::default().with_error_code(code.code()).with_session_id(0);
                }
            },
        }
    };
    let mut partitions = match mode {
        Mode::Incremental(ref mut s) => {
            for p in requested {
                s.upsert(p);
            }
            for f in &r.forgotten_topics_data {
                let name = if version >= 13 {
                    image.topic_by_id(&f.topic_id).map(|x| x.name.clone()).unwrap_or_default()
                } else {
                    f.topic.0.to_string()
                };
                for &p in &f.partitions {
                    s.forget(&name, p);
                }
            }
            std::mem::take(&mut s.partitions)
        }
        _ => requested,
    };

    let max_bytes = (r.max_bytes.max(0) as usize).min(b.config.fetch_max_bytes);
    let min_bytes = r.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(r.max_wait_ms.clamp(0, MAX_WAIT_MS_CAP) as u64);
    let deadline = tokio::time::Instant::now() + wait;
    let mut receivers: Vec<watch::Receiver<i64>> =
        partitions.iter().filter_map(|p| b.logs.get(&p.topic, p.partition)).map(|l| l.subscribe()).collect();
    let outcomes = loop {
        for rx in receivers.iter_mut() {
            rx.borrow_and_update();
        }
        let mut budget = max_bytes;
        let mut total = 0usize;
        let mut errors = false;
        let mut outs = Vec::with_capacity(partitions.len());
        for p in &partitions {
            let o = read_one(b, p, budget, version).await;
            let n = o.records.as_ref().map_or(0, |r| r.len());
            budget = budget.saturating_sub(n);
            total += n;
            errors |= o.error != 0;
            outs.push(o);
        }
        if total >= min_bytes.max(1)
            || errors
            || tokio::time::Instant::now() >= deadline
            || receivers.is_empty()
        {
            break outs;
        }
        let closed = {
            let changed = select_all(receivers.iter_mut().map(|rx| Box::pin(rx.changed())));
            match tokio::time::timeout_at(deadline, changed).await {
                // Deadline: one last pass picks up whatever is there.
                Err(_) => continue,
                Ok((Ok(()), _, _)) => None,
                // The partition's log is gone (topic deleted): stop watching it.
                Ok((Err(_), idx, _)) => Some(idx),
            }
        };
        if let Some(idx) = closed {
            receivers.swap_remove(idx);
        }
        if b.is_shutting_down() {
            break outs;
        }
    };

    // Build the response; incremental sessions report only partitions with news.
    let incremental = matches!(mode, Mode::Incremental(_));
    let isolation_committed = r.isolation_level == 1;
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (p, o) in partitions.iter_mut().zip(outcomes) {
        let has_records = o.records.as_ref().is_some_and(|r| !r.is_empty());
        let news = !incremental
            || has_records
            || o.error != 0
            || o.high_watermark != p.last_high_watermark
            || o.log_start_offset != p.last_log_start_offset;
        if o.error == 0 {
            p.last_high_watermark = o.high_watermark;
            p.last_log_start_offset = o.log_start_offset;
        }
        if !news {
            continue;
        }
        if let Some(rec) = &o.records {
            if !rec.is_empty() {
                b.metrics
                    .bytes_out
                    .get_or_create(&TopicLabels { topic: p.topic.clone() })
                    .inc_by(rec.len() as u64);
            }
        }
        let pd = PartitionData::default()
            .with_partition_index(p.partition)
            .with_error_code(o.error)
            .with_high_watermark(o.high_watermark)
            // No transactions yet: the last stable offset is the high watermark.
            .with_last_stable_offset(o.high_watermark)
            .with_log_start_offset(o.log_start_offset)
            .with_aborted_transactions(if isolation_committed { Some(Vec::new()) } else { None })
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
            .with_records(o.records.or(Some(Bytes::new())));
        let same_topic = topics.last().is_some_and(|t| {
            if version >= 13 {
                t.topic_id == p.topic_id
            } else {
                t.topic.0.as_str() == p.topic
            }
        });
        if same_topic {
            if let Some(t) = topics.last_mut() {
                t.partitions.push(pd);
            }
        } else {
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(sb(&p.topic)))
                    .with_topic_id(p.topic_id)
                    .with_partitions(vec![pd]),
            );
        }
    }
    let session_id = match mode {
        Mode::Sessionless => 0,
        Mode::New => b.sessions.lock().create(partitions, b.clock.now_ms()).unwrap_or(0),
        Mode::Incremental(mut s) => {
            let id = s.id;
            s.partitions = partitions;
            b.sessions.lock().put(s, b.clock.now_ms());
            id
        }
    };
    FetchResponse::default().with_session_id(session_id).with_responses(topics)
}

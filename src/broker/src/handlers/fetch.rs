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
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kora_log::LogError;
use tokio::sync::watch;
use uuid::Uuid;

use super::families::Reads;
use super::sb;
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

/// A remote read still in flight: it runs as its own task, so it carries on (and warms the
/// chunk cache for the client's next fetch) even when the response goes out without it.
struct PendingRemote {
    task: tokio::task::JoinHandle<Result<Option<Bytes>, kora_tier::TierError>>,
    started: std::time::Instant,
    high_watermark: i64,
    log_start_offset: i64,
}

/// What reading one partition gave: an answer now, or a remote read under way.
enum Read {
    Done(Outcome),
    Remote(PendingRemote),
}

fn remote_outcome(
    rd: &Reads<'_>,
    p: &SessionPartition,
    result: Result<Option<Bytes>, kora_tier::TierError>,
    started: std::time::Instant,
    (high_watermark, log_start_offset): (i64, i64),
) -> Outcome {
    match result {
        Ok(records) => {
            rd.metrics.remote_read_seconds.observe(rd.clock.elapsed(started).as_secs_f64());
            Outcome { error: 0, high_watermark, log_start_offset, records: Some(records.unwrap_or_default()) }
        }
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "remote read failed");
            Outcome {
                error: ResponseError::KafkaStorageError.code(),
                high_watermark,
                log_start_offset,
                records: None,
            }
        }
    }
}

/// Reads below the local log start from the object store (remote.storage.enable topics).
///
/// A read the chunk cache can answer completes here, without a task. Anything else becomes a
/// task that the fetch waits for only as long as it has to (see `fetch`): hot partitions in the
/// same request never wait behind the object store.
fn read_remote(rd: &Reads<'_>, p: &SessionPartition, want: usize, log: &kora_log::PartitionLog) -> Read {
    use futures::FutureExt;
    let o = log.offsets();
    let fail = |code: i16| {
        Read::Done(Outcome {
            error: code,
            high_watermark: o.high_watermark,
            log_start_offset: o.log_start_offset,
            records: None,
        })
    };
    let Some(t) = rd.tiering else {
        return fail(ResponseError::OffsetOutOfRange.code());
    };
    let image = rd.view.image();
    let Some(topic) = image.topic(&p.topic) else {
        return fail(ResponseError::UnknownTopicOrPartition.code());
    };
    // The manifest is shared with the image: no copy per remote read.
    let segments = image.remote_manifest(&topic.topic_id, p.partition);
    let started = rd.clock.now();
    let offsets = (o.high_watermark, o.log_start_offset);
    // Everything in the cache: the read finishes on its first poll.
    if let Some(result) = t.reader.read(&segments, p.fetch_offset, want.max(1)).now_or_never() {
        return Read::Done(remote_outcome(rd, p, result, started, offsets));
    }
    let (reader, offset) = (t.clone(), p.fetch_offset);
    let task = tokio::spawn(async move { reader.reader.read(&segments, offset, want.max(1)).await });
    Read::Remote(PendingRemote {
        task,
        started,
        high_watermark: o.high_watermark,
        log_start_offset: o.log_start_offset,
    })
}

/// Waits for the remote reads of one pass, at most `wait`, and no longer than until one of
/// the request's partitions read locally takes an append: a read not done by then answers empty
/// (its task carries on and warms the cache). Reads run concurrently, so a catch-up consumer
/// of several partitions waits for the slowest, not for their sum; and a hot partition
/// fetched beside a slow store is not held up by it (Kafka's DelayedRemoteFetch is: it waits
/// out remote.fetch.max.wait.ms whatever the local partitions get).
async fn finish_remote(
    rd: &Reads<'_>,
    partitions: &[SessionPartition],
    outs: &mut [Option<Outcome>],
    pending: Vec<(usize, PendingRemote)>,
    wait: Duration,
) {
    let deadline = rd.clock.now() + wait;
    // The local partitions only: appends to a partition read from the store are past what
    // its fetch asks for, and would cut a catch-up read short on every produce.
    let mut news: Vec<watch::Receiver<i64>> = partitions
        .iter()
        .enumerate()
        .filter(|(i, _)| !pending.iter().any(|(j, _)| j == i))
        .filter_map(|(_, p)| rd.logs.get(&p.topic, p.partition))
        .map(|l| l.subscribe())
        .collect();
    let news = &mut news;
    let mut news = std::pin::pin!(async move {
        if news.is_empty() {
            std::future::pending::<()>().await;
        }
        // An append (or a log gone) on any of them.
        let _ = select_all(news.iter_mut().map(|rx| Box::pin(rx.changed()))).await;
    });
    let mut cut = false;
    for (i, mut r) in pending {
        let offsets = (r.high_watermark, r.log_start_offset);
        let done = if cut || wait.is_zero() {
            futures::FutureExt::now_or_never(&mut r.task)
        } else {
            let read = kora_common::timeout_at(rd.clock, deadline, &mut r.task);
            let read = std::pin::pin!(read);
            match futures::future::select(read, news.as_mut()).await {
                futures::future::Either::Left((done, _)) => done.ok(),
                futures::future::Either::Right(_) => {
                    cut = true;
                    None
                }
            }
        };
        let o = match done.ok_or(()) {
            Ok(Ok(result)) => remote_outcome(rd, &partitions[i], result, r.started, offsets),
            Ok(Err(e)) => {
                tracing::warn!(topic = %partitions[i].topic, error = %e, "remote read task failed");
                Outcome {
                    error: ResponseError::KafkaStorageError.code(),
                    high_watermark: r.high_watermark,
                    log_start_offset: r.log_start_offset,
                    records: None,
                }
            }
            Err(()) => {
                if wait.is_zero() || cut {
                    rd.metrics.remote_read_deferred.inc();
                } else {
                    rd.metrics.remote_read_timeouts.inc();
                }
                Outcome {
                    error: 0,
                    high_watermark: r.high_watermark,
                    log_start_offset: r.log_start_offset,
                    records: Some(Bytes::new()),
                }
            }
        };
        outs[i] = Some(o);
    }
}

fn read_one(rd: &Reads<'_>, p: &SessionPartition, budget: usize, version: i16, redirect: bool) -> Read {
    let unknown = if version >= 13 && p.topic.is_empty() {
        ResponseError::UnknownTopicId.code()
    } else {
        ResponseError::UnknownTopicOrPartition.code()
    };
    // KIP-392: consumers (v11+) may read from a follower, up to its high watermark.
    let follower_read = version >= 11 && rd.view.follows(&p.topic, p.partition);
    if let Some(code) = rd.view.leadership_error(&p.topic, p.partition).filter(|_| !follower_read) {
        let code = if code == ResponseError::UnknownTopicOrPartition.code() { unknown } else { code };
        return Read::Done(Outcome { error: code, high_watermark: -1, log_start_offset: -1, records: None });
    }
    let Some(log) = rd.logs.get(&p.topic, p.partition) else {
        return Read::Done(Outcome {
            error: unknown,
            high_watermark: -1,
            log_start_offset: -1,
            records: None,
        });
    };
    // A newer epoch than the leader's is unknown to us, an older one fenced.
    if let Some(code) = rd.view.epoch_error(&p.topic, p.partition, p.current_leader_epoch) {
        return Read::Done(Outcome { error: code, high_watermark: -1, log_start_offset: -1, records: None });
    }
    if budget == 0 || redirect {
        // Past the response budget a partition reports offsets only (KIP-74): no read. A
        // consumer sent to a replica in its rack gets no records from here either.
        let o = log.offsets();
        if p.fetch_offset >= o.log_start_offset && p.fetch_offset <= o.high_watermark {
            return Read::Done(Outcome {
                error: 0,
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start_offset,
                records: Some(Bytes::new()),
            });
        }
    }
    let want = budget.min(p.max_bytes.max(0) as usize);
    Read::Done(match log.read(p.fetch_offset, want.max(1)) {
        Ok(r) => Outcome {
            error: 0,
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            records: Some(r.records),
        },
        Err(LogError::NotLocal { .. }) => return read_remote(rd, p, want, &log),
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
    })
}

/// The replica a fetch comes from: `None` for consumers (replica id -1).
pub(super) fn replica_of(r: &FetchRequest, version: i16) -> Option<i32> {
    let replica = if version >= 15 { r.replica_state.replica_id.0 } else { r.replica_id.0 };
    (replica >= 0).then_some(replica)
}

pub(super) async fn fetch(rd: &Reads<'_>, r: FetchRequest, version: i16) -> FetchResponse {
    debug_assert!(replica_of(&r, version).is_none(), "a follower's fetch is not a consumer's");
    let client_rack = (version >= 11 && !r.rack_id.is_empty()).then(|| r.rack_id.to_string());
    let image = rd.view.image();
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
                rd.sessions.lock().remove(id);
                Mode::Sessionless
            }
            (id, 0) => {
                rd.sessions.lock().remove(id);
                Mode::New
            }
            (id, epoch) => match rd.sessions.lock().take(id, epoch) {
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

    // KIP-392: the leader sends a consumer with client.rack to an in-sync replica in its rack.
    let preferred: Vec<i32> = partitions
        .iter()
        .map(|p| {
            client_rack
                .as_deref()
                .and_then(|rack| rd.view.preferred_read_replica(&p.topic, p.partition, rack))
                .unwrap_or(-1)
        })
        .collect();
    let max_bytes = (r.max_bytes.max(0) as usize).min(rd.fetch_max_bytes);
    let min_bytes = r.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(r.max_wait_ms.clamp(0, MAX_WAIT_MS_CAP) as u64);
    let deadline = rd.clock.now() + wait;
    let mut receivers: Vec<watch::Receiver<i64>> =
        partitions.iter().filter_map(|p| rd.logs.get(&p.topic, p.partition)).map(|l| l.subscribe()).collect();
    let outcomes = loop {
        for rx in receivers.iter_mut() {
            rx.borrow_and_update();
        }
        let mut budget = max_bytes;
        let mut total = 0usize;
        let mut errors = false;
        let mut outs: Vec<Option<Outcome>> = Vec::with_capacity(partitions.len());
        let mut pending = Vec::new();
        for (i, p) in partitions.iter().enumerate() {
            match read_one(rd, p, budget, version, preferred[i] >= 0) {
                Read::Done(o) => {
                    let n = o.records.as_ref().map_or(0, |r| r.len());
                    budget = budget.saturating_sub(n);
                    total += n;
                    errors |= o.error != 0;
                    outs.push(Some(o));
                }
                Read::Remote(r) => {
                    // The read may fill what this partition may take: reserve it, so the
                    // response stays within max_bytes whatever the remote reads bring.
                    budget = budget.saturating_sub((p.max_bytes.max(0) as usize).min(budget));
                    pending.push((i, r));
                    outs.push(None);
                }
            }
        }
        let remote_pending = !pending.is_empty();
        if remote_pending {
            // Data already in hand (or an error to report) goes out now; the remote reads
            // carry on and warm the cache for the next fetch. Only a fetch with nothing else
            // to return waits for them, at most remote.fetch.max.wait.ms.
            let ready = total >= min_bytes.max(1) || errors;
            let wait = match rd.tiering {
                Some(t) if !ready => Duration::from_millis(t.fetch_max_wait_ms()),
                _ => Duration::ZERO,
            };
            finish_remote(rd, &partitions, &mut outs, pending, wait).await;
            total = outs.iter().flatten().map(|o| o.records.as_ref().map_or(0, |r| r.len())).sum();
            errors |= outs.iter().flatten().any(|o| o.error != 0);
        }
        let outs: Vec<Outcome> = outs
            .into_iter()
            .map(|o| {
                debug_assert!(o.is_some(), "every remote read is finished or answered empty");
                o.unwrap_or(Outcome {
                    error: ResponseError::KafkaStorageError.code(),
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: None,
                })
            })
            .collect();
        // A pending remote read ends the pass too: the client's next fetch finds its chunks.
        if total >= min_bytes.max(1)
            || errors
            || remote_pending
            || preferred.iter().any(|p| *p >= 0)
            || rd.clock.now() >= deadline
            || receivers.is_empty()
        {
            break outs;
        }
        let closed = {
            let changed = select_all(receivers.iter_mut().map(|rx| Box::pin(rx.changed())));
            match kora_common::timeout_at(rd.clock, deadline, changed).await {
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
        if rd.stopping() {
            break outs;
        }
    };

    // Build the response; incremental sessions report only partitions with news.
    let incremental = matches!(mode, Mode::Incremental(_));
    let isolation_committed = r.isolation_level == 1;
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut endpoints: std::collections::BTreeMap<i32, (String, u16, Option<String>)> = Default::default();
    for ((p, o), preferred) in partitions.iter_mut().zip(outcomes).zip(preferred) {
        let has_records = o.records.as_ref().is_some_and(|r| !r.is_empty());
        let news = !incremental
            || has_records
            || preferred >= 0
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
                rd.metrics
                    .bytes_out
                    .get_or_create(&TopicLabels { topic: p.topic.clone() })
                    .inc_by(rec.len() as u64);
            }
        }
        // KIP-951: a partition this broker does not lead names its leader.
        let moved = o.error == ResponseError::NotLeaderOrFollower.code()
            || o.error == ResponseError::FencedLeaderEpoch.code();
        let current_leader = match moved.then(|| rd.view.leader_hint(&p.topic, p.partition)).flatten() {
            Some(h) => {
                if let Some(ep) = h.endpoint {
                    endpoints.insert(h.leader_id, ep);
                }
                LeaderIdAndEpoch::default()
                    .with_leader_id(kafka_protocol::messages::BrokerId(h.leader_id))
                    .with_leader_epoch(h.leader_epoch)
            }
            None => LeaderIdAndEpoch::default(),
        };
        let pd = PartitionData::default()
            .with_current_leader(current_leader)
            .with_partition_index(p.partition)
            .with_error_code(o.error)
            .with_high_watermark(o.high_watermark)
            // No transactions yet: the last stable offset is the high watermark.
            .with_last_stable_offset(o.high_watermark)
            .with_log_start_offset(o.log_start_offset)
            .with_aborted_transactions(if isolation_committed { Some(Vec::new()) } else { None })
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(preferred))
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
        Mode::New => rd.sessions.lock().create(partitions, rd.clock.now_ms()).unwrap_or(0),
        Mode::Incremental(mut s) => {
            let id = s.id;
            s.partitions = partitions;
            rd.sessions.lock().put(s, rd.clock.now_ms());
            id
        }
    };
    let node_endpoints = endpoints
        .into_iter()
        .map(|(id, (host, port, rack))| {
            NodeEndpoint::default()
                .with_node_id(kafka_protocol::messages::BrokerId(id))
                .with_host(sb(&host))
                .with_port(port as i32)
                .with_rack(rack.as_deref().map(sb))
        })
        .collect();
    FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics)
        .with_node_endpoints(node_endpoints)
}

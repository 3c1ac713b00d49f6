//! Quotas at the request edge, for tenant connections: what a request uses is recorded on its
//! tenant's meters, and a request over a bound earns a throttle time, reported in the
//! response's `throttle_time_ms` and enforced by muting the connection for that long (KIP-219:
//! the answer goes out at once; the next request is read after the throttle).
//!
//! As Kafka does:
//! - Produce: the request's size on `producer_byte_rate`; the records are appended whatever the
//!   throttle (nothing is refused for rate). Over `storage_bytes`, produce is refused with
//!   POLICY_VIOLATION before anything is appended.
//! - Fetch: the response's record bytes on `consumer_byte_rate`; one fetch may return at most
//!   what a quota window allows. Unlike Kafka, a fetch that puts the tenant over its bound is
//!   answered with its records, then throttled like a produce. Kafka answers it empty and takes
//!   its bytes back; with record batches near a window's allowance that starves the consumer
//!   until the oldest window expires (librdkafka at a 256 KiB/s quota reading ~250 KB batches
//!   got 177 KiB/s that way; answered and throttled, it gets its quota).
//! - Every request: its handler's time on a thread (the polls of its future, not the time it
//!   waits) on `request_percentage`, as percent of one thread; that throttle is capped at one
//!   quota window.
//! - CreateTopics (v6+), CreatePartitions (v3+), DeleteTopics (v5+): the partitions they
//!   create or delete on `controller_mutation_rate` (KIP-599's token bucket); once the bucket
//!   is in debt, topics get THROTTLING_QUOTA_EXCEEDED. Older versions are never refused, only
//!   throttled.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ProduceResponse, RequestKind, ResponseKind};
use kora_common::Clock;
use kora_meta::{MetadataImage, TenantLimits};

use super::sb;
use crate::quotas::{Meter, TenantQuota};

/// What the edge checked before a tenant's request, for after it.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    /// Topics refused for the mutation quota (internal names), answered with code 89.
    throttled_topics: Vec<String>,
    /// Mutations taken, for the response's throttle.
    mutation_throttle_ms: u64,
}

/// One tenant request's quota state: whose, under which limits, when.
pub(super) struct Charge<'a> {
    pub(super) q: &'a TenantQuota,
    pub(super) limits: &'a TenantLimits,
    pub(super) window: kora_quota::RateConfig,
    pub(super) now_ms: u64,
}

/// Before a tenant's request (names already internal): an answer that replaces it (produce
/// over the storage quota), or what was admitted. Fetches are capped at a window's allowance.
/// `num_partitions`: the broker's default for CreateTopics without a count.
pub(super) fn before(
    c: &Charge<'_>,
    image: &MetadataImage,
    num_partitions: i32,
    version: i16,
    req: &mut RequestKind,
) -> Result<Admitted, Box<ResponseKind>> {
    let Charge { q, limits, window, .. } = *c;
    let mut admitted = Admitted::default();
    match req {
        RequestKind::Produce(r) => {
            if let Some(max) = limits.storage_bytes {
                let stored = q.storage_bytes();
                if stored >= max {
                    return Err(Box::new(storage_refusal(r, stored, max).into()));
                }
            }
        }
        RequestKind::Fetch(r) => {
            // One fetch returns at most what a window of the whole quota allows.
            if let Some(bound) = TenantQuota::quota(limits, Meter::Fetch) {
                let cap = window.max_in_window(bound).clamp(1.0, i32::MAX as f64) as i32;
                r.max_bytes = if r.max_bytes <= 0 { cap } else { r.max_bytes.min(cap) };
            }
        }
        RequestKind::CreateTopics(r) => {
            let partitions = |t: &kafka_protocol::messages::create_topics_request::CreatableTopic| {
                if !t.assignments.is_empty() {
                    t.assignments.len() as i32
                } else if t.num_partitions == -1 {
                    num_partitions
                } else {
                    t.num_partitions
                }
            };
            let mut m = Mutations { c, strict: version >= 6, admitted: &mut admitted };
            m.admit_each(&mut r.topics, |t| (partitions(t), Some(t.name.0.to_string())));
        }
        RequestKind::CreatePartitions(r) => {
            let mut m = Mutations { c, strict: version >= 3, admitted: &mut admitted };
            m.admit_each(&mut r.topics, |t| {
                let now = image.topic(t.name.0.as_str()).map(|x| x.partitions).unwrap_or(t.count);
                ((t.count - now).max(0), Some(t.name.0.to_string()))
            });
        }
        RequestKind::DeleteTopics(r) => {
            let mut m = Mutations { c, strict: version >= 5, admitted: &mut admitted };
            // v6 names topics in `topics` (by name or id), older versions in `topic_names`.
            m.admit_each(&mut r.topics, |t| {
                let topic = match &t.name {
                    Some(n) => image.topic(n.0.as_str()),
                    None => image.topic_by_id(&t.topic_id),
                };
                (topic.map_or(0, |x| x.partitions), topic.map(|x| x.name.clone()))
            });
            m.admit_each(&mut r.topic_names, |n| {
                (image.topic(n.0.as_str()).map_or(0, |x| x.partitions), Some(n.0.to_string()))
            });
        }
        _ => {}
    }
    Ok(admitted)
}

/// KIP-599 over the topics of one request.
struct Mutations<'a, 'c> {
    c: &'a Charge<'c>,
    /// Refuse while the bucket is in debt (new versions), or only throttle (old ones).
    strict: bool,
    admitted: &'a mut Admitted,
}

impl Mutations<'_, '_> {
    /// Keeps the items whose mutations may go ahead, taking their tokens; `what` gives an
    /// item's partitions and, to answer a refused one, its topic's name.
    fn admit_each<T>(&mut self, items: &mut Vec<T>, what: impl Fn(&T) -> (i32, Option<String>)) {
        let Charge { q, limits, window, now_ms } = *self.c;
        let mut kept = Vec::with_capacity(items.len());
        for item in std::mem::take(items) {
            let (partitions, name) = what(&item);
            if self.strict && !q.may_mutate(limits, window, now_ms) {
                // Refused: the answer says how long until the bucket is out of debt.
                let throttle = q.record_mutations(limits, window, 0.0, now_ms);
                self.admitted.mutation_throttle_ms = self.admitted.mutation_throttle_ms.max(throttle);
                self.admitted.throttled_topics.extend(name);
                continue;
            }
            let throttle = q.record_mutations(limits, window, f64::from(partitions.max(0)), now_ms);
            self.admitted.mutation_throttle_ms = self.admitted.mutation_throttle_ms.max(throttle);
            kept.push(item);
        }
        *items = kept;
    }
}

fn storage_refusal(r: &kafka_protocol::messages::ProduceRequest, stored: u64, max: u64) -> ProduceResponse {
    let message = format!(
        "the tenant stores {stored} bytes, at or over its storage quota of {max} bytes: nothing was written"
    );
    super::produce::refuse_all(r, ResponseError::PolicyViolation.code(), Some(&message))
}

/// After a tenant's request: records what it used, answers the topics the mutation quota
/// refused, and returns the throttle, which is also set on the response.
pub(super) fn after(
    c: &Charge<'_>,
    request_bytes: usize,
    busy: Duration,
    admitted: Admitted,
    resp: Option<&mut ResponseKind>,
    produce: bool,
) -> u64 {
    let Charge { q, limits, window, now_ms } = *c;
    // Request time as percent of one thread (Kafka's nanos × 100 / 1e9).
    let percent = busy.as_nanos() as f64 * 100.0 / 1e9;
    q.totals.request_seconds.inc_by(busy.as_secs_f64());
    let request_throttle = q.record(Meter::Request, percent, limits, now_ms).min(window.window_ms);
    let mut throttle = request_throttle.max(admitted.mutation_throttle_ms);
    // A produce counts its request's size, answered or not (acks=0).
    if produce {
        q.totals.bytes_in.inc_by(request_bytes as u64);
        throttle = throttle.max(q.record(Meter::Produce, request_bytes as f64, limits, now_ms));
    }
    if let Some(resp) = resp {
        if let ResponseKind::Fetch(f) = resp {
            let bytes: usize = f
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
                .sum();
            throttle = throttle.max(q.record(Meter::Fetch, bytes as f64, limits, now_ms));
            q.totals.bytes_out.inc_by(bytes as u64);
        }
        answer_throttled_topics(resp, admitted.throttled_topics);
        set_throttle_time(resp, throttle.min(i32::MAX as u64) as i32);
    }
    if throttle > 0 {
        q.totals.throttle_ms.inc_by(throttle);
        q.totals.throttled_requests.inc();
    }
    throttle
}

/// Topics the mutation quota refused join the response with THROTTLING_QUOTA_EXCEEDED (a
/// null message, as Kafka sends).
fn answer_throttled_topics(resp: &mut ResponseKind, topics: Vec<String>) {
    if topics.is_empty() {
        return;
    }
    let code = ResponseError::ThrottlingQuotaExceeded.code();
    let unique: HashSet<String> = topics.into_iter().collect();
    match resp {
        ResponseKind::CreateTopics(r) => r.topics.extend(unique.into_iter().map(|n| {
            CreatableTopicResult::default()
                .with_name(kafka_protocol::messages::TopicName(sb(&n)))
                .with_error_code(code)
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        })),
        ResponseKind::CreatePartitions(r) => r.results.extend(unique.into_iter().map(|n| {
            CreatePartitionsTopicResult::default()
                .with_name(kafka_protocol::messages::TopicName(sb(&n)))
                .with_error_code(code)
        })),
        ResponseKind::DeleteTopics(r) => r.responses.extend(unique.into_iter().map(|n| {
            DeletableTopicResult::default()
                .with_name(Some(kafka_protocol::messages::TopicName(sb(&n))))
                .with_error_code(code)
        })),
        _ => {}
    }
}

/// Sets `throttle_time_ms` on any response that has one.
pub(crate) fn set_throttle_time(resp: &mut ResponseKind, ms: i32) {
    macro_rules! set {
        ($($v:ident),* $(,)?) => {
            match resp {
                $(ResponseKind::$v(r) => r.throttle_time_ms = ms,)*
                _ => {}
            }
        };
    }
    set!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        CreateAcls,
        DescribeAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        DeleteGroups,
        DescribeLogDirs,
        ElectLeaders,
        IncrementalAlterConfigs,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeCluster,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
    );
}

/// A future and the time its polls took: the time a request spent on a thread, not the time
/// it waited (for replicas, a long poll, the controller).
pub(crate) struct Busy<'c, F> {
    inner: Pin<Box<F>>,
    clock: &'c dyn Clock,
    busy: Duration,
}

impl<'c, F: Future> Busy<'c, F> {
    pub(crate) fn new(clock: &'c dyn Clock, inner: F) -> Self {
        Busy { inner: Box::pin(inner), clock, busy: Duration::ZERO }
    }
}

impl<F: Future> Future for Busy<'_, F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let started = self.clock.now();
        let polled = self.inner.as_mut().poll(cx);
        let spent = self.clock.elapsed(started);
        self.busy += spent;
        polled.map(|out| (out, self.busy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, MetadataResponse};

    #[test]
    fn throttle_time_lands_in_the_response() {
        let mut r: ResponseKind = FetchResponse::default().into();
        set_throttle_time(&mut r, 250);
        assert!(matches!(&r, ResponseKind::Fetch(f) if f.throttle_time_ms == 250));
        let mut r: ResponseKind = MetadataResponse::default().into();
        set_throttle_time(&mut r, 7);
        assert!(matches!(&r, ResponseKind::Metadata(m) if m.throttle_time_ms == 7));
    }

    #[tokio::test]
    async fn busy_counts_polls_not_waits() {
        let clock = kora_common::SystemClock;
        let (out, busy) = Busy::new(&clock, async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            7
        })
        .await;
        assert_eq!(out, 7);
        assert!(busy < Duration::from_millis(20), "{busy:?}");
    }
}

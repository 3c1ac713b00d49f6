//! Prometheus metrics. Counters are updated on the request path (atomic adds); per-partition
//! gauges are refreshed from the logs at scrape time, so deleted partitions disappear.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use kora_group::Coordinator;
use kora_log::LogManager;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

/// A tenant's series (its `lkc-` id). /metrics is the operators' endpoint: tenants never
/// read it, so no tenant sees another's figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 20))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub request_latency: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub requests: Family<ApiLabels, Counter>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub messages_in: Family<TopicLabels, Counter>,
    pub log_size: Family<PartitionLabels, Gauge>,
    pub log_end_offset: Family<PartitionLabels, Gauge>,
    pub log_start_offset: Family<PartitionLabels, Gauge>,
    pub connections: Gauge,
    /// Per tenant: produce request bytes, fetched record bytes, throttle time given, requests
    /// throttled, request handling time, open connections.
    pub tenant_bytes_in: Family<TenantLabels, Counter>,
    pub tenant_bytes_out: Family<TenantLabels, Counter>,
    pub tenant_throttle_ms: Family<TenantLabels, Counter>,
    pub tenant_throttled_requests: Family<TenantLabels, Counter>,
    pub tenant_request_seconds: Family<TenantLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub tenant_connections: Family<TenantLabels, Gauge>,
    pub group_lag: Family<GroupPartitionLabels, Gauge>,
    pub group_committed_offset: Family<GroupPartitionLabels, Gauge>,
    pub group_members: Family<GroupLabels, Gauge>,
    pub cleaner_records_removed: Family<TopicLabels, Counter>,
    pub remote_bytes_uploaded: Counter,
    pub remote_bytes_deleted: Counter,
    pub remote_upload_errors: Counter,
    pub remote_upload_seconds: Histogram,
    pub remote_read_seconds: Histogram,
    pub remote_read_timeouts: Counter,
    pub remote_read_deferred: Counter,
    /// Committed ISR changes this broker asked for as leader.
    pub isr_changes: Counter,
    /// Partitions this broker leads, those with fewer in-sync replicas than replicas, and those
    /// below min.insync.replicas (Kafka's LeaderCount, UnderReplicatedPartitions,
    /// UnderMinIsrPartitionCount).
    pub leader_partitions: Gauge,
    /// The ingress limit in force (configured or learned from the disk), bytes/s; 0: none.
    pub ingress_limit_bytes_per_second: Gauge,
    /// The 90th percentile of produce append times over the last quota window, µs.
    pub append_p90_micros: Gauge,
    /// The egress limit in force (configured or learned from the network), bytes/s; 0: none.
    pub egress_limit_bytes_per_second: Gauge,
    /// The 90th percentile of the time responses took to leave over the last window, µs.
    pub send_p90_micros: Gauge,
    /// Request-time backpressure: the factor tenants' request time is cut to, in percent.
    pub request_backpressure_percent: Gauge,
    pub under_replicated_partitions: Gauge,
    pub under_min_isr_partitions: Gauge,
    /// Segment files open now, and reopenings of files closed to stay under log.max.open.files.
    pub open_segment_files: Gauge,
    pub segment_file_reopens: Gauge,
    /// Per partition: the high watermark (the log end is `log_end_offset`).
    pub log_high_watermark: Family<PartitionLabels, Gauge>,
    /// Diverged log tails this broker cut as a follower.
    pub replica_truncations: Counter,
    /// Bytes this broker appended as a follower.
    pub replication_bytes_in: Counter,
    /// Produce requests answered NOT_ENOUGH_REPLICAS(_AFTER_APPEND) or timed out waiting for
    /// the ISR.
    pub under_min_isr_produce: Counter,
    pub remote_upload_lag_bytes: Family<PartitionLabels, Gauge>,
    pub remote_upload_lag_seconds: Family<PartitionLabels, Gauge>,
    pub remote_bytes: Family<PartitionLabels, Gauge>,
    pub remote_cache_hits: Gauge,
    pub remote_cache_misses: Gauge,
    pub remote_cache_bytes: Gauge,
    pub remote_cache_disk_hits: Gauge,
    pub remote_cache_disk_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kora");
        let request_latency =
            Family::<ApiLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("request_latency_seconds", "Request handling time by API", request_latency.clone());
        let requests = Family::<ApiLabels, Counter>::default();
        registry.register("requests", "Requests handled by API", requests.clone());
        let bytes_in = Family::<TopicLabels, Counter>::default();
        registry.register("topic_bytes_in", "Record batch bytes appended", bytes_in.clone());
        let bytes_out = Family::<TopicLabels, Counter>::default();
        registry.register("topic_bytes_out", "Record batch bytes fetched", bytes_out.clone());
        let messages_in = Family::<TopicLabels, Counter>::default();
        registry.register("topic_messages_in", "Records appended", messages_in.clone());
        let log_size = Family::<PartitionLabels, Gauge>::default();
        registry.register("log_size_bytes", "Bytes of a partition's log on local disk", log_size.clone());
        let log_end_offset = Family::<PartitionLabels, Gauge>::default();
        registry.register("log_end_offset", "Next offset of a partition", log_end_offset.clone());
        let log_start_offset = Family::<PartitionLabels, Gauge>::default();
        registry.register("log_start_offset", "First offset of a partition", log_start_offset.clone());
        let connections = Gauge::default();
        registry.register("connections", "Open client connections", connections.clone());
        let tenant_bytes_in = Family::<TenantLabels, Counter>::default();
        registry.register("tenant_bytes_in", "Produce request bytes of a tenant", tenant_bytes_in.clone());
        let tenant_bytes_out = Family::<TenantLabels, Counter>::default();
        registry.register(
            "tenant_bytes_out",
            "Record bytes fetched by a tenant's consumers",
            tenant_bytes_out.clone(),
        );
        let tenant_throttle_ms = Family::<TenantLabels, Counter>::default();
        registry.register(
            "tenant_throttle_time_ms",
            "Throttle time given to a tenant's requests (their connections are muted for it)",
            tenant_throttle_ms.clone(),
        );
        let tenant_throttled_requests = Family::<TenantLabels, Counter>::default();
        registry.register(
            "tenant_throttled_requests",
            "Requests of a tenant answered with a throttle",
            tenant_throttled_requests.clone(),
        );
        let tenant_request_seconds =
            Family::<TenantLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "tenant_request_time_seconds",
            "Time a tenant's requests spent on the broker's threads",
            tenant_request_seconds.clone(),
        );
        let tenant_connections = Family::<TenantLabels, Gauge>::default();
        registry.register("tenant_connections", "Open connections of a tenant", tenant_connections.clone());
        let group_lag = Family::<GroupPartitionLabels, Gauge>::default();
        registry.register(
            "group_lag",
            "Records between a group's committed offset and the partition's high watermark",
            group_lag.clone(),
        );
        let group_committed_offset = Family::<GroupPartitionLabels, Gauge>::default();
        registry.register(
            "group_committed_offset",
            "A group's committed offset",
            group_committed_offset.clone(),
        );
        let group_members = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "group_members",
            "Members of a group, labelled with its state",
            group_members.clone(),
        );
        let cleaner_records_removed = Family::<TopicLabels, Counter>::default();
        registry.register(
            "cleaner_records_removed",
            "Records removed by log compaction",
            cleaner_records_removed.clone(),
        );
        let remote_bytes_uploaded = Counter::default();
        registry.register(
            "remote_bytes_uploaded",
            "Segment bytes uploaded to the object store",
            remote_bytes_uploaded.clone(),
        );
        let remote_bytes_deleted = Counter::default();
        registry.register(
            "remote_bytes_deleted",
            "Segment bytes deleted from the object store",
            remote_bytes_deleted.clone(),
        );
        let remote_upload_errors = Counter::default();
        registry.register(
            "remote_upload_errors",
            "Failed segment uploads (retried)",
            remote_upload_errors.clone(),
        );
        let remote_upload_seconds = latency_histogram();
        registry.register(
            "remote_upload_seconds",
            "Time to upload one segment",
            remote_upload_seconds.clone(),
        );
        let remote_read_seconds = latency_histogram();
        registry.register(
            "remote_read_seconds",
            "Time of one fetch read from the object store",
            remote_read_seconds.clone(),
        );
        let remote_read_timeouts = Counter::default();
        registry.register(
            "remote_read_timeouts",
            "Fetches answered empty for a partition because its object-store read took longer than remote.fetch.max.wait.ms",
            remote_read_timeouts.clone(),
        );
        let remote_read_deferred = Counter::default();
        registry.register(
            "remote_read_deferred",
            "Fetches answered without a partition's unfinished object-store read because other partitions had data ready (the read carries on into the cache)",
            remote_read_deferred.clone(),
        );
        let leader_partitions = Gauge::default();
        registry.register("leader_partitions", "Partitions this broker leads", leader_partitions.clone());
        let ingress_limit_bytes_per_second = Gauge::default();
        registry.register(
            "ingress_limit_bytes_per_second",
            "Produce bytes/s this broker takes from all tenants together before it scales their bounds down: quota.broker.ingress.bytes.per.second, or lower when learned from the disk falling behind (0: no limit)",
            ingress_limit_bytes_per_second.clone(),
        );
        let append_p90_micros = Gauge::default();
        registry.register(
            "append_p90_micros",
            "90th percentile of produce append times (write and any flush) over the last quota window, microseconds (upper edge of a power-of-two bucket)",
            append_p90_micros.clone(),
        );
        let egress_limit_bytes_per_second = Gauge::default();
        registry.register(
            "egress_limit_bytes_per_second",
            "Fetched bytes/s this broker serves all tenants together before it scales their bounds down: quota.broker.egress.bytes.per.second, or lower when learned from the network falling behind (0: no limit)",
            egress_limit_bytes_per_second.clone(),
        );
        let send_p90_micros = Gauge::default();
        registry.register(
            "send_p90_micros",
            "90th percentile of the time responses took to leave once ready (queued behind the connection's earlier answers and the socket's buffer) over the last quota window, microseconds (upper edge of a power-of-two bucket)",
            send_p90_micros.clone(),
        );
        let request_backpressure_percent = Gauge::default();
        request_backpressure_percent.set(100);
        registry.register(
            "request_backpressure_percent",
            "Request-time backpressure: tenants' request time is cut to this percent of what they use (100: none)",
            request_backpressure_percent.clone(),
        );
        let under_replicated_partitions = Gauge::default();
        registry.register(
            "under_replicated_partitions",
            "Partitions this broker leads whose ISR is smaller than their replica set",
            under_replicated_partitions.clone(),
        );
        let under_min_isr_partitions = Gauge::default();
        registry.register(
            "under_min_isr_partitions",
            "Partitions this broker leads with fewer in-sync replicas than min.insync.replicas (acks=all writes fail)",
            under_min_isr_partitions.clone(),
        );
        let open_segment_files = Gauge::default();
        registry.register(
            "open_segment_files",
            "Segment files open now (at most log.max.open.files)",
            open_segment_files.clone(),
        );
        let segment_file_reopens = Gauge::default();
        registry.register(
            "segment_file_reopens",
            "Times a segment file closed to stay under log.max.open.files was opened again",
            segment_file_reopens.clone(),
        );
        let log_high_watermark = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "log_high_watermark",
            "High watermark: what every in-sync replica has, and consumers may read",
            log_high_watermark.clone(),
        );
        let isr_changes = Counter::default();
        registry.register(
            "isr_changes",
            "ISR changes committed at this leader's request",
            isr_changes.clone(),
        );
        let replica_truncations = Counter::default();
        registry.register(
            "replica_truncations",
            "Diverged log tails cut by this broker as a follower",
            replica_truncations.clone(),
        );
        let replication_bytes_in = Counter::default();
        registry.register(
            "replication_bytes_in",
            "Bytes appended by this broker as a follower",
            replication_bytes_in.clone(),
        );
        let under_min_isr_produce = Counter::default();
        registry.register(
            "under_min_isr_produce",
            "acks=all partition writes refused for too few in-sync replicas, or timed out waiting for them",
            under_min_isr_produce.clone(),
        );
        let remote_upload_lag_bytes = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "remote_upload_lag_bytes",
            "Closed-segment bytes not yet uploaded",
            remote_upload_lag_bytes.clone(),
        );
        let remote_upload_lag_seconds = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "remote_upload_lag_seconds",
            "Age of the oldest closed segment not yet uploaded",
            remote_upload_lag_seconds.clone(),
        );
        let remote_bytes = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "remote_log_size_bytes",
            "Bytes of a partition in the object store",
            remote_bytes.clone(),
        );
        let remote_cache_hits = Gauge::default();
        registry.register(
            "remote_cache_hits",
            "Remote-read chunks served from the cache's memory",
            remote_cache_hits.clone(),
        );
        let remote_cache_misses = Gauge::default();
        registry.register(
            "remote_cache_misses",
            "Remote-read chunks fetched from the object store",
            remote_cache_misses.clone(),
        );
        let remote_cache_bytes = Gauge::default();
        registry.register(
            "remote_cache_bytes",
            "Bytes held in memory by the remote-read chunk cache",
            remote_cache_bytes.clone(),
        );
        let remote_cache_disk_hits = Gauge::default();
        registry.register(
            "remote_cache_disk_hits",
            "Remote-read chunks served from the cache's local-disk level",
            remote_cache_disk_hits.clone(),
        );
        let remote_cache_disk_bytes = Gauge::default();
        registry.register(
            "remote_cache_disk_bytes",
            "Bytes held on local disk by the remote-read chunk cache",
            remote_cache_disk_bytes.clone(),
        );
        Metrics {
            registry,
            request_latency,
            requests,
            bytes_in,
            bytes_out,
            messages_in,
            log_size,
            log_end_offset,
            log_start_offset,
            connections,
            tenant_bytes_in,
            tenant_bytes_out,
            tenant_throttle_ms,
            tenant_throttled_requests,
            tenant_request_seconds,
            tenant_connections,
            group_lag,
            group_committed_offset,
            group_members,
            cleaner_records_removed,
            remote_bytes_uploaded,
            remote_bytes_deleted,
            remote_upload_errors,
            remote_upload_seconds,
            remote_read_seconds,
            remote_read_timeouts,
            remote_read_deferred,
            isr_changes,
            leader_partitions,
            ingress_limit_bytes_per_second,
            append_p90_micros,
            egress_limit_bytes_per_second,
            send_p90_micros,
            request_backpressure_percent,
            under_replicated_partitions,
            under_min_isr_partitions,
            log_high_watermark,
            open_segment_files,
            segment_file_reopens,
            replica_truncations,
            replication_bytes_in,
            under_min_isr_produce,
            remote_upload_lag_bytes,
            remote_upload_lag_seconds,
            remote_bytes,
            remote_cache_hits,
            remote_cache_misses,
            remote_cache_bytes,
            remote_cache_disk_hits,
            remote_cache_disk_bytes,
        }
    }

    /// Prometheus text exposition, with partition and group gauges refreshed from `logs` and
    /// `groups`.
    pub fn render(&self, logs: &LogManager, groups: &Coordinator) -> String {
        self.group_lag.clear();
        self.group_committed_offset.clear();
        self.group_members.clear();
        for c in groups.committed() {
            let hw = logs.get(&c.topic, c.partition).map(|l| l.high_watermark());
            let l =
                GroupPartitionLabels { group: c.group, topic: c.topic, partition: c.partition.to_string() };
            self.group_committed_offset.get_or_create(&l).set(c.committed_offset);
            if let Some(hw) = hw {
                self.group_lag.get_or_create(&l).set((hw - c.committed_offset.max(0)).max(0));
            }
        }
        for (group, state, members) in groups.summary() {
            let l = GroupLabels { group, state: state.to_string() };
            self.group_members.get_or_create(&l).set(members as i64);
        }
        let (open, reopened) = kora_log::files::open_files_stats();
        self.open_segment_files.set(open as i64);
        self.segment_file_reopens.set(reopened as i64);
        self.log_size.clear();
        self.log_end_offset.clear();
        self.log_start_offset.clear();
        self.log_high_watermark.clear();
        for (topic, partition, log) in logs.all() {
            let o = log.offsets();
            let l = PartitionLabels { topic, partition: partition.to_string() };
            self.log_size.get_or_create(&l).set(o.size_bytes as i64);
            self.log_end_offset.get_or_create(&l).set(o.log_end_offset);
            self.log_high_watermark.get_or_create(&l).set(o.high_watermark);
            self.log_start_offset.get_or_create(&l).set(o.log_start_offset);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

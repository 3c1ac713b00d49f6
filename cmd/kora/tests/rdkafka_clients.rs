//! End-to-end tests with librdkafka (the rdkafka crate) against a real `kora dev` process.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Kora;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client")
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin(bootstrap).create_topics([&t], &AdminOptions::new()).await.expect("create_topics");
    for r in res {
        r.expect("topic created");
    }
}

/// AlterConfigs (legacy, full replacement) of one topic config.
async fn alter_topic(bootstrap: &str, topic: &str, key: &str, value: &str) {
    let cfg =
        rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic)).set(key, value);
    for r in admin(bootstrap).alter_configs([&cfg], &AdminOptions::new()).await.expect("alter") {
        r.expect("altered");
    }
}

/// Counts delivery outcomes and remembers acknowledged (partition, offset, id).
#[derive(Default)]
struct Tracker {
    ok: AtomicUsize,
    failed: AtomicUsize,
    acked: Mutex<Vec<(i32, i64, u64)>>,
    record_acks: bool,
}

impl ClientContext for Tracker {}
impl ProducerContext for Tracker {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, r: &DeliveryResult<'_>, id: Self::DeliveryOpaque) {
        match r {
            Ok(m) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if self.record_acks {
                    if let Ok(mut v) = self.acked.lock() {
                        v.push((m.partition(), m.offset(), *id));
                    }
                }
            }
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("delivery failed: {e}");
                }
            }
        }
    }
}

fn producer(bootstrap: &str, extra: &[(&str, &str)], record_acks: bool) -> ThreadedProducer<Tracker> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "120000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create_with_context(Tracker { record_acks, ..Default::default() }).expect("producer")
}

fn send_retrying(p: &ThreadedProducer<Tracker>, mut rec: BaseRecord<'_, [u8], [u8], Box<u64>>) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => panic!("send failed: {e}"),
        }
    }
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // rdkafka's assign() wants a group id; nothing is committed, so no coordinator is used.
        .set("group.id", "kora-tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

fn assign_from_start(c: &BaseConsumer, topic: &str, partitions: i32) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
}

/// Deterministic message i.
fn key_of(i: u64) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}
fn value_of(i: u64) -> Vec<u8> {
    let len = 20 + (i % 200) as usize;
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

fn check_message(
    m: &BorrowedMessage<'_>,
    partitions: i32,
    base_ts: i64,
    next: &mut HashMap<i32, u64>,
) -> u64 {
    let hs = m.headers().expect("headers");
    let idx = hs.iter().find(|h| h.key == "idx").and_then(|h| h.value).expect("idx header");
    let i = u64::from_be_bytes(idx.try_into().expect("8 bytes"));
    assert_eq!(i % partitions as u64, m.partition() as u64, "message {i} on the wrong partition");
    let expect = next.entry(m.partition()).or_insert(m.partition() as u64);
    assert_eq!(i, *expect, "partition {} out of order", m.partition());
    *expect += partitions as u64;
    assert_eq!(m.key(), Some(&key_of(i)[..]));
    assert_eq!(m.payload(), Some(&value_of(i)[..]));
    assert_eq!(m.timestamp().to_millis(), Some(base_ts + i as i64));
    let empty = hs.iter().find(|h| h.key == "empty").expect("empty header");
    assert_eq!(empty.value, Some(&b""[..]));
    i
}

fn message_count() -> u64 {
    std::env::var("KORA_TEST_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_byte_exact() {
    let kora = Kora::start(&[]);
    let n = message_count();
    let partitions = 8;
    let base_ts = now_ms() - 3_600_000;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&kora.bootstrap, &topic, partitions, &[]).await;
        let started = Instant::now();
        let p = producer(&kora.bootstrap, &[("compression.codec", codec), ("acks", "all")], false);
        for i in 0..n {
            let headers = OwnedHeaders::new()
                .insert(Header { key: "idx", value: Some(&i.to_be_bytes()) })
                .insert(Header { key: "empty", value: Some(&b""[..]) });
            let (k, v) = (key_of(i), value_of(i));
            let rec = BaseRecord::with_opaque_to(&topic, Box::new(i))
                .partition((i % partitions as u64) as i32)
                .key(&k[..])
                .payload(&v[..])
                .timestamp(base_ts + i as i64)
                .headers(headers);
            send_retrying(&p, rec);
        }
        p.flush(Duration::from_secs(120)).expect("flush");
        let ctx = p.context();
        assert_eq!(ctx.failed.load(Ordering::Relaxed), 0, "{codec}: failed deliveries");
        assert_eq!(ctx.ok.load(Ordering::Relaxed) as u64, n, "{codec}: acknowledged");
        let produced = started.elapsed();

        let c = consumer(&kora.bootstrap);
        assign_from_start(&c, &topic, partitions);
        let mut next = HashMap::new();
        let mut seen = 0u64;
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen < n {
            assert!(Instant::now() < deadline, "{codec}: consumed only {seen} of {n}");
            if let Some(m) = c.poll(Duration::from_millis(500)) {
                let m = m.expect("consume");
                check_message(&m, partitions, base_ts, &mut next);
                seen += 1;
            }
        }
        // Nothing beyond what was produced.
        assert!(c.poll(Duration::from_millis(300)).is_none(), "{codec}: extra messages");
        eprintln!(
            "{codec}: {n} messages produced in {produced:?}, verified in {:?}",
            started.elapsed() - produced
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_clean_and_unclean_restarts() {
    let mut kora = Kora::start(&["--set", "log.segment.bytes=100000"]);
    let topic = "restart";
    create_topic(&kora.bootstrap, topic, 3, &[]).await;
    let base_ts = now_ms() - 1000;
    let produce = |from: u64, to: u64, bootstrap: &str| {
        // Bounded batches so the 100 kB segments roll whatever the timing.
        let p = producer(bootstrap, &[("acks", "all"), ("batch.size", "50000")], false);
        for i in from..to {
            let headers = OwnedHeaders::new()
                .insert(Header { key: "idx", value: Some(&i.to_be_bytes()) })
                .insert(Header { key: "empty", value: Some(&b""[..]) });
            let (k, v) = (key_of(i), value_of(i));
            send_retrying(
                &p,
                BaseRecord::with_opaque_to(topic, Box::new(i))
                    .partition((i % 3) as i32)
                    .key(&k[..])
                    .payload(&v[..])
                    .timestamp(base_ts + i as i64)
                    .headers(headers),
            );
        }
        p.flush(Duration::from_secs(60)).expect("flush");
        assert_eq!(p.context().ok.load(Ordering::Relaxed) as u64, to - from);
    };
    produce(0, 20_000, &kora.bootstrap);
    kora.stop();
    kora.restart();
    produce(20_000, 30_000, &kora.bootstrap);
    kora.kill9();
    kora.restart();
    let c = consumer(&kora.bootstrap);
    assign_from_start(&c, topic, 3);
    let mut next = HashMap::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 30_000 {
        assert!(Instant::now() < deadline, "consumed {seen}");
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            check_message(&m.expect("consume"), 3, base_ts, &mut next);
            seen += 1;
        }
    }
    // Segments rolled at 100 kB.
    let segs = std::fs::read_dir(kora.data_dir().join("logs/restart-0"))
        .expect("partition dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log")))
        .count();
    assert!(segs > 3, "expected rolled segments, found {segs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_survives_kill_9_exactly_once() {
    let mut kora = Kora::start(&[]);
    let topic = "idem";
    create_topic(&kora.bootstrap, topic, 4, &[]).await;
    let p = Arc::new(producer(
        &kora.bootstrap,
        &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "2"), ("retry.backoff.ms", "50")],
        true,
    ));
    let total: u64 = 60_000;
    let sender = {
        let p = p.clone();
        std::thread::spawn(move || {
            for i in 0..total {
                let payload = i.to_be_bytes();
                send_retrying(
                    &p,
                    BaseRecord::with_opaque_to(topic, Box::new(i)).payload(&payload[..]).key(&payload[..]),
                );
                if i % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    // Crash the broker twice while the producer runs, restarting on the same port.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(400));
        kora.kill9();
        std::thread::sleep(Duration::from_millis(300));
        kora.restart();
    }
    sender.join().expect("sender");
    p.flush(Duration::from_secs(120)).expect("flush");
    let ctx = p.context();
    assert_eq!(ctx.failed.load(Ordering::Relaxed), 0, "failed deliveries");
    let acked = ctx.acked.lock().expect("acked").clone();
    assert_eq!(acked.len() as u64, total);

    // Read everything back: each acknowledged id exactly once, at its acknowledged offset.
    let c = consumer(&kora.bootstrap);
    assign_from_start(&c, topic, 4);
    let mut by_offset: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (by_offset.len() as u64) < total {
        assert!(Instant::now() < deadline, "read {} of {total}", by_offset.len());
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.expect("consume");
            let id = u64::from_be_bytes(m.payload().expect("payload").try_into().expect("8 bytes"));
            assert!(by_offset.insert((m.partition(), m.offset()), id).is_none());
        }
    }
    assert!(c.poll(Duration::from_millis(500)).is_none(), "duplicates or extra records in the log");
    let mut ids: Vec<u64> = by_offset.values().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, total, "every id exactly once");
    for (p, o, id) in acked {
        assert_eq!(by_offset.get(&(p, o)), Some(&id), "acked id {id} at {p}/{o}");
    }
    // Per partition, ids increase with offsets (order preserved).
    let mut last: HashMap<i32, u64> = HashMap::new();
    for ((p, _), id) in &by_offset {
        if let Some(prev) = last.insert(*p, *id) {
            assert!(*id > prev, "partition {p}: {id} after {prev}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_by_timestamp_delete_records_and_retention() {
    let kora = Kora::start(&["--set", "log.retention.check.interval.ms=200"]);
    let topic = "times";
    create_topic(&kora.bootstrap, topic, 1, &[("segment.bytes", "20000")]).await;
    let base_ts = now_ms() - 600_000;
    // Batches of at most 16 kB, so the 20 kB segments roll whatever the timing.
    let p = producer(&kora.bootstrap, &[("acks", "all"), ("linger.ms", "0"), ("batch.size", "16000")], false);
    for i in 0..5_000u64 {
        let v = value_of(i);
        send_retrying(
            &p,
            BaseRecord::with_opaque_to(topic, Box::new(i)).payload(&v[..]).timestamp(base_ts + i as i64 * 10),
        );
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let c = consumer(&kora.bootstrap);
    // ListOffsets by timestamp: first record at or after.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(base_ts + 12_345)).expect("tpl");
    let got = c.offsets_for_times(tpl, Duration::from_secs(10)).expect("offsets_for_times");
    assert_eq!(got.find_partition(topic, 0).expect("p0").offset(), Offset::Offset(1235));
    let (lo, hi) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!((lo, hi), (0, 5000));

    // DeleteRecords moves the low watermark.
    let mut del = TopicPartitionList::new();
    del.add_partition_offset(topic, 0, Offset::Offset(1500)).expect("tpl");
    let res =
        admin(&kora.bootstrap).delete_records(&del, &AdminOptions::new()).await.expect("delete_records");
    assert_eq!(res.find_partition(topic, 0).expect("p0").offset(), Offset::Offset(1500));
    let (lo, _) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!(lo, 1500);
    let mut beyond = TopicPartitionList::new();
    beyond.add_partition_offset(topic, 0, Offset::Offset(999_999)).expect("tpl");
    let res =
        admin(&kora.bootstrap).delete_records(&beyond, &AdminOptions::new()).await.expect("delete_records");
    assert!(
        res.find_partition(topic, 0).expect("p0").error().is_err(),
        "beyond the high watermark is an error"
    );

    // Size retention: afterwards the log minus its oldest segment is under retention.bytes
    // (Kafka's rule; a segment may exceed segment.bytes when one batch does).
    let dir = kora.data_dir().join("logs/times-0");
    let size_before: u64 = segment_sizes(&dir).iter().sum();
    alter_topic(&kora.bootstrap, topic, "retention.bytes", "50000").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (lo, _) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
        let sizes = segment_sizes(&dir);
        let total: u64 = sizes.iter().sum();
        if lo > 1500 && total - sizes.first().copied().unwrap_or(0) < 50_000 {
            assert!(total < size_before);
            break;
        }
        assert!(Instant::now() < deadline, "size retention did not run: lo {lo}, segments {sizes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Time retention: everything is older than 1 s once retention.ms drops.
    alter_topic(&kora.bootstrap, topic, "retention.ms", "1000").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (lo, hi) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
        if lo == 5000 {
            assert_eq!(hi, 5000);
            break;
        }
        assert!(Instant::now() < deadline, "time retention did not run: lo {lo}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The log keeps going after everything expired.
    let p = producer(&kora.bootstrap, &[("acks", "all")], false);
    send_retrying(&p, BaseRecord::with_opaque_to(topic, Box::new(0)).payload(&b"after"[..]));
    p.flush(Duration::from_secs(10)).expect("flush");
    let (_, hi) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!(hi, 5001);
    let metrics = kora.admin_get("/metrics");
    assert!(metrics.contains("kora_log_end_offset{topic=\"times\",partition=\"0\"} 5001"), "{metrics}");
    assert!(metrics.contains("kora_request_latency_seconds_count{api=\"Produce\"}"), "latency histogram");
    assert!(metrics.contains("kora_topic_bytes_in_total{topic=\"times\"}"), "bytes in");
}

/// Sizes of a partition's segment files, oldest first.
fn segment_sizes(dir: &std::path::Path) -> Vec<u64> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| Some((e.file_name().to_string_lossy().to_string(), e.metadata().ok()?.len())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

//! Compacted topics through a real client: updates and tombstones converge to the latest
//! value per key, records without keys are refused, and the result survives a restart.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Kora;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// (offset, key, value) of everything in partition 0, read from the start.
fn read_all(bootstrap: &str, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "compaction-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, hi) = c.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    loop {
        if out.last().is_some_and(|r: &(i64, String, Option<String>)| r.0 + 1 >= hi) {
            return out;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "reading stalled at {:?} of {hi}", out.last());
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topic_converges_to_latest_value_per_key() {
    let mut k = Kora::start(&["--set", "log.cleaner.backoff.ms=200"]);
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &k.bootstrap).create().expect("admin");
    let t = NewTopic::new("profiles", 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "2048")
        .set("min.cleanable.dirty.ratio", "0.01");
    for r in admin.create_topics([&t], &AdminOptions::new()).await.expect("create") {
        r.expect("created");
    }
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &k.bootstrap)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    for round in 0..30 {
        for user in 0..20 {
            let key = format!("user-{user}");
            // Every fifth user is deleted in the last round.
            let value = (round < 29 || user % 5 != 0).then(|| format!("profile-{user}-v{round}"));
            let mut rec = BaseRecord::<String, String>::to("profiles").key(&key);
            if let Some(v) = &value {
                rec = rec.payload(v);
            }
            p.send(rec).expect("send");
            latest.insert(key, value);
        }
        p.flush(Duration::from_secs(10)).expect("flush");
    }
    // Fresh keys afterwards close the segment that holds the last updates.
    for i in 0..40 {
        let key = format!("filler-{i}");
        let v = "x".repeat(100);
        p.send(BaseRecord::to("profiles").key(&key).payload(&v)).expect("send");
        latest.insert(key, Some(v));
    }
    p.flush(Duration::from_secs(10)).expect("flush");
    // A record without a key is refused.
    p.send(BaseRecord::<(), str>::to("profiles").payload("no key")).expect("queued");
    let start = Instant::now();
    loop {
        p.poll(Duration::from_millis(50));
        if p.in_flight_count() == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20));
    }
    let filler_start = 600;

    // Wait for the cleaner: below the filler, every key at most once.
    let start = Instant::now();
    let compacted = loop {
        let all = read_all(&k.bootstrap, "profiles");
        let head: Vec<_> = all.iter().filter(|r| r.0 < filler_start).collect();
        let mut keys: Vec<&String> = head.iter().map(|r| &r.1).collect();
        keys.sort();
        keys.dedup();
        if keys.len() == head.len() {
            break all;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not compacted: {} records below {filler_start}",
            head.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(compacted.windows(2).all(|w| w[0].0 < w[1].0), "offsets only grow");
    assert!(compacted.iter().all(|r| !r.1.is_empty()), "the keyless record never landed");
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (_, key, v) in &compacted {
        seen.insert(key.clone(), v.clone());
    }
    assert_eq!(seen, latest, "the latest value (or tombstone) of every key");
    assert!(k.admin_get("/metrics").contains("kora_cleaner_records_removed_total{topic=\"profiles\"}"));

    k.stop();
    k.restart();
    assert_eq!(read_all(&k.bootstrap, "profiles"), compacted);
}

//! KIP-227 incremental fetch sessions at the protocol level.

mod common;

use common::raw::{batch, connect, produce, request};
use common::Kora;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const V: i16 = 12;

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn part(p: i32, offset: i64) -> FetchPartition {
    FetchPartition::default().with_partition(p).with_fetch_offset(offset).with_partition_max_bytes(1 << 20)
}

fn fetch(session_id: i32, epoch: i32, parts: Vec<FetchPartition>, forgotten: Vec<i32>) -> FetchRequest {
    let mut r = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch);
    if !parts.is_empty() {
        r = r.with_topics(vec![FetchTopic::default().with_topic(topic("s")).with_partitions(parts)]);
    }
    if !forgotten.is_empty() {
        r = r.with_forgotten_topics_data(vec![ForgottenTopic::default()
            .with_topic(topic("s"))
            .with_partitions(forgotten)]);
    }
    r
}

fn partitions_in(r: &FetchResponse) -> Vec<(i32, i64, usize)> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.high_watermark, p.records.as_ref().map_or(0, |b| b.len())))
        .collect()
}

#[test]
fn incremental_sessions_send_only_changes() {
    let k = Kora::start(&[]);
    let mut s = connect(&k);
    let t = CreatableTopic::default().with_name(topic("s")).with_num_partitions(3).with_replication_factor(1);
    let r: CreateTopicsResponse =
        request(&mut s, ApiKey::CreateTopics, 7, &CreateTopicsRequest::default().with_topics(vec![t]))
            .expect("create");
    assert_eq!(r.topics[0].error_code, 0);
    // Six records in partition 0 (the helper writes partition 0); partitions 1 and 2 stay empty.
    for _ in 0..3 {
        let r = produce(&mut s, "s", -1, batch(2, 10));
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    // A full fetch that opens a session (id 0, epoch 0).
    let r: FetchResponse =
        request(&mut s, ApiKey::Fetch, V, &fetch(0, 0, vec![part(0, 0), part(1, 0), part(2, 0)], vec![]))
            .expect("fetch");
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert!(id > 0, "a session was created");
    let full = partitions_in(&r);
    assert_eq!(full.len(), 3, "a full response lists every partition: {full:?}");
    assert_eq!(full[0], (0, 6, full[0].2));
    assert!(full[0].2 > 0);

    // Incremental, nothing changed: the response names no partition.
    let r: FetchResponse =
        request(&mut s, ApiKey::Fetch, V, &fetch(id, 1, vec![part(0, 6)], vec![])).expect("fetch");
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(partitions_in(&r).is_empty(), "no news: {:?}", partitions_in(&r));

    // New data in partition 0 only: only partition 0 comes back.
    produce(&mut s, "s", -1, batch(1, 10));
    let r: FetchResponse = request(&mut s, ApiKey::Fetch, V, &fetch(id, 2, vec![], vec![])).expect("fetch");
    let got = partitions_in(&r);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0, got[0].1), (0, 7));

    // Forget partition 0, then more data there: nothing comes back.
    let r: FetchResponse = request(&mut s, ApiKey::Fetch, V, &fetch(id, 3, vec![], vec![0])).expect("fetch");
    assert!(partitions_in(&r).is_empty());
    produce(&mut s, "s", -1, batch(1, 10));
    let r: FetchResponse = request(&mut s, ApiKey::Fetch, V, &fetch(id, 4, vec![], vec![])).expect("fetch");
    assert!(partitions_in(&r).is_empty(), "forgotten partition reported: {:?}", partitions_in(&r));

    // Wrong epoch and unknown session.
    let r: FetchResponse = request(&mut s, ApiKey::Fetch, V, &fetch(id, 9, vec![], vec![])).expect("fetch");
    assert_eq!(r.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let r: FetchResponse =
        request(&mut s, ApiKey::Fetch, V, &fetch(id + 1000, 1, vec![], vec![])).expect("fetch");
    assert_eq!(r.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    // Closing the session (epoch -1) makes a sessionless full fetch; the id is gone after.
    let r: FetchResponse =
        request(&mut s, ApiKey::Fetch, V, &fetch(id, -1, vec![part(1, 0)], vec![])).expect("fetch");
    assert_eq!((r.error_code, r.session_id), (0, 0));
    let r: FetchResponse = request(&mut s, ApiKey::Fetch, V, &fetch(id, 5, vec![], vec![])).expect("fetch");
    assert_eq!(r.error_code, 70);
}

#[test]
fn long_poll_waits_for_data_or_max_wait() {
    let k = Kora::start(&[]);
    let mut s = connect(&k);
    let mut admin = connect(&k);
    let t =
        CreatableTopic::default().with_name(topic("lp")).with_num_partitions(1).with_replication_factor(1);
    let _: CreateTopicsResponse =
        request(&mut admin, ApiKey::CreateTopics, 7, &CreateTopicsRequest::default().with_topics(vec![t]))
            .expect("create");
    let req = FetchRequest::default()
        .with_max_wait_ms(800)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(topic("lp")).with_partitions(vec![part(0, 0)])]);
    // Nothing there: the fetch waits about max_wait_ms.
    let started = std::time::Instant::now();
    let r: FetchResponse = request(&mut s, ApiKey::Fetch, V, &req).expect("fetch");
    let waited = started.elapsed();
    assert!(waited >= std::time::Duration::from_millis(700), "returned after {waited:?}");
    assert_eq!(partitions_in(&r)[0].2, 0);
    // Data arriving during the wait ends it early.
    let producer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(150));
        produce(&mut admin, "lp", -1, batch(1, 10));
    });
    let started = std::time::Instant::now();
    let r: FetchResponse = request(&mut s, ApiKey::Fetch, V, &req.with_max_wait_ms(5000)).expect("fetch");
    let waited = started.elapsed();
    producer.join().expect("producer");
    assert!(waited < std::time::Duration::from_millis(2000), "woke after {waited:?}");
    assert!(partitions_in(&r)[0].2 > 0, "records returned");
}

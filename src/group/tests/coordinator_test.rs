//! The coordinator driven directly, with a manual clock and an in-memory log: timeouts,
//! offset expiry, and replay (including of a checkpoint) rebuilding the same state.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kora_common::clock::ManualClock;
use kora_group::classic::Parked;
use kora_group::{Coordinator, GroupConfig, GroupError, GroupLog, Topics};
use parking_lot::Mutex;
use uuid::Uuid;

#[derive(Debug, Default)]
struct MemLog {
    records: Mutex<Vec<(i32, Bytes, Option<Bytes>)>>,
}

impl GroupLog for MemLog {
    fn append(&self, partition: i32, records: &[(Bytes, Option<Bytes>)]) -> Result<(), GroupError> {
        let mut r = self.records.lock();
        for (k, v) in records {
            r.push((partition, k.clone(), v.clone()));
        }
        Ok(())
    }
}

struct OneTopic;
impl Topics for OneTopic {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        (name == "t").then_some((Uuid::from_u128(1), 4))
    }
    fn by_id(&self, id: &Uuid) -> Option<(String, i32)> {
        (*id == Uuid::from_u128(1)).then(|| ("t".to_string(), 4))
    }
    fn names(&self) -> Vec<String> {
        vec!["t".into()]
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn setup(cfg: GroupConfig) -> (Arc<ManualClock>, Arc<MemLog>, Coordinator) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Arc::new(MemLog::default());
    let c = Coordinator::new(cfg, clock.clone(), log.clone());
    (clock, log, c)
}

fn cfg() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
}

fn join_req(member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(20_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"m"))])
}

fn ready<T>(p: Parked<T>) -> T {
    match p {
        Parked::Now(t) => t,
        Parked::Wait(mut rx) => rx.try_recv().expect("answered"),
    }
}

fn commit(c: &Coordinator, group: &str, offset: i64) {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s("t"))).with_partitions(
            vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)],
        )]);
    let r = c.commit(&req, &OneTopic);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

fn fetch(c: &Coordinator, group: &str) -> i64 {
    let req = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName(s("t"))).with_partition_indexes(vec![0]),
    ]));
    c.fetch_offsets(&req, 7).topics[0].partitions[0].committed_offset
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let (clock, _log, c) = setup(cfg());
    let a = ready(c.join(&join_req(""), 3, "a", "/h"));
    assert_eq!((a.error_code, a.generation_id), (0, 1));
    let b = c.join(&join_req(""), 3, "b", "/h");
    let Parked::Wait(mut rx) = b else { panic!("b waits for a to rejoin") };
    // a keeps heartbeating but never rejoins: it is told to, then dropped at the deadline.
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(1)
        .with_member_id(a.member_id.clone());
    for _ in 0..4 {
        assert_eq!(
            c.heartbeat(&hb).error_code,
            kafka_protocol::error::ResponseError::RebalanceInProgress.code()
        );
        clock.advance_ms(4_900);
        c.tick();
    }
    assert!(rx.try_recv().is_err(), "still within the rebalance timeout");
    assert_eq!(c.heartbeat(&hb).error_code, kafka_protocol::error::ResponseError::RebalanceInProgress.code());
    clock.advance_ms(1_000);
    c.tick();
    let b = rx.try_recv().expect("join completed");
    assert_eq!(b.generation_id, 2);
    assert_eq!(b.leader, b.member_id, "b leads alone");
    assert_eq!(c.heartbeat(&hb).error_code, kafka_protocol::error::ResponseError::UnknownMemberId.code());
}

#[test]
fn a_silent_member_expires_after_its_session_timeout() {
    let (clock, _log, c) = setup(cfg());
    let a = ready(c.join(&join_req(""), 3, "a", "/h"));
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(1)
        .with_member_id(a.member_id.clone());
    assert_eq!(ready(c.sync(&sync)).error_code, 0);
    clock.advance_ms(9_000);
    c.tick();
    assert_eq!(c.summary()[0].2, 1);
    clock.advance_ms(2_000);
    c.tick();
    assert!(c.summary().is_empty(), "an empty group without offsets is gone");
}

#[test]
fn offsets_of_an_empty_group_expire_after_retention() {
    let (clock, log, c) = setup(GroupConfig { offsets_retention_ms: 60_000, ..cfg() });
    commit(&c, "idle", 42);
    clock.advance_ms(59_000);
    assert_eq!(c.expire_offsets(&OneTopic), 0);
    assert_eq!(fetch(&c, "idle"), 42);
    clock.advance_ms(2_000);
    assert_eq!(c.expire_offsets(&OneTopic), 1);
    assert_eq!(fetch(&c, "idle"), -1);
    let last = log.records.lock().last().cloned().expect("a record");
    assert!(last.2.is_none(), "expiry writes a tombstone");
}

fn replay_all(records: &[(i32, Bytes, Option<Bytes>)]) -> Coordinator {
    let (_clock, _log, c) = setup(cfg());
    for (_, k, v) in records {
        c.replay(k, v.as_deref()).expect("replay");
    }
    c
}

/// Committed offsets and (state, members) per group.
type State = (Vec<(String, String, i32, i64)>, BTreeMap<String, (&'static str, usize)>);

fn state(c: &Coordinator) -> State {
    let mut offsets: Vec<_> =
        c.committed().into_iter().map(|l| (l.group, l.topic, l.partition, l.committed_offset)).collect();
    offsets.sort();
    (offsets, c.summary().into_iter().map(|(g, st, n)| (g, (st, n))).collect())
}

#[test]
fn replay_and_checkpoints_rebuild_the_same_state() {
    let (_clock, log, c) = setup(cfg());
    for i in 0..50 {
        commit(&c, &format!("g{}", i % 5), i);
    }
    let a = ready(c.join(&join_req(""), 3, "a", "/h"));
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(1)
        .with_member_id(a.member_id);
    assert_eq!(ready(c.sync(&sync)).error_code, 0);
    let hb = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("cg")))
        .with_rebalance_timeout_ms(1000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
        .with_topic_partitions(Some(vec![]));
    let r = c.consumer_heartbeat(&hb, "c", "/h", &OneTopic);
    assert_eq!((r.error_code, r.member_epoch), (0, 1));
    // Delete one group's offsets: tombstones must win on replay too.
    let del = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g4"))]);
    assert_eq!(c.delete_groups(&del).results[0].error_code, 0);

    let expected = state(&c);
    let full = log.records.lock().clone();
    assert_eq!(state(&replay_all(&full)), expected);

    // A checkpoint of every partition alone carries the whole state.
    let mark = full.len();
    for p in 0..c.config().offsets_topic_partitions {
        c.checkpoint(p).expect("checkpoint");
    }
    let tail = log.records.lock()[mark..].to_vec();
    assert!(tail.len() < mark, "a checkpoint holds only live records");
    assert_eq!(state(&replay_all(&tail)), expected);
}

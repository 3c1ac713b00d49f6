//! Group APIs at the protocol level: the error codes clients rely on for bad or stale input,
//! and the admin APIs (DescribeGroups, ListGroups, OffsetFetch v8, DeleteGroups, OffsetDelete).

mod common;

use std::net::TcpStream;

use bytes::Bytes;
use common::raw::{connect, request};
use common::Kora;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as CgTopicPartitions;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn create_topic(c: &mut TcpStream, name: &str, partitions: i32) {
    let req =
        CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let resp: CreateTopicsResponse = request(c, ApiKey::CreateTopics, 5, &req).expect("create topics");
    assert_eq!(resp.topics[0].error_code, 0);
}

/// ConsumerProtocolSubscription v0 for `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = vec![0u8, 0];
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn join(
    c: &mut TcpStream,
    group: &str,
    member: &str,
    instance: Option<&str>,
    session_ms: i32,
    protocol_type: &str,
) -> JoinGroupResponse {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s(protocol_type))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(&["events"]))]);
    request(c, ApiKey::JoinGroup, 7, &req).expect("join response")
}

fn sync(
    c: &mut TcpStream,
    group: &str,
    member: &str,
    generation: i32,
    assign: Option<&[u8]>,
) -> SyncGroupResponse {
    let assignments = assign
        .map(|a| {
            vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(member))
                .with_assignment(Bytes::copy_from_slice(a))]
        })
        .unwrap_or_default();
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(assignments);
    request(c, ApiKey::SyncGroup, 5, &req).expect("sync response")
}

fn heartbeat(c: &mut TcpStream, group: &str, member: &str, generation: i32, instance: Option<&str>) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s));
    let resp: HeartbeatResponse = request(c, ApiKey::Heartbeat, 4, &req).expect("heartbeat response");
    resp.error_code
}

fn commit(c: &mut TcpStream, group: &str, member: &str, generation: i32, topic: &str, metadata: &str) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)
                .with_committed_leader_epoch(0)
                .with_committed_metadata(Some(s(metadata)))])]);
    let resp: OffsetCommitResponse = request(c, ApiKey::OffsetCommit, 8, &req).expect("commit response");
    resp.topics[0].partitions[0].error_code
}

#[test]
fn classic_protocol_errors() {
    let k = Kora::start(&[]);
    let mut c = connect(&k);
    create_topic(&mut c, "events", 2);

    // Bad joins.
    assert_eq!(
        join(&mut c, "", "", None, 10_000, "consumer").error_code,
        code(ResponseError::InvalidGroupId)
    );
    assert_eq!(
        join(&mut c, "g", "", None, 100, "consumer").error_code,
        code(ResponseError::InvalidSessionTimeout)
    );
    assert_eq!(
        join(&mut c, "g", "nobody", None, 10_000, "consumer").error_code,
        code(ResponseError::UnknownMemberId)
    );

    // KIP-394: a dynamic member first gets its id, then joins with it.
    let r = join(&mut c, "g", "", None, 10_000, "consumer");
    assert_eq!(r.error_code, code(ResponseError::MemberIdRequired));
    let me = r.member_id.to_string();
    assert!(!me.is_empty());
    let r = join(&mut c, "g", &me, None, 10_000, "consumer");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader.as_str(), me);
    assert_eq!(r.members.len(), 1, "the leader gets the member list");
    assert_eq!(r.protocol_name.as_deref(), Some("range"));

    // A different protocol type cannot join.
    let mut other = connect(&k);
    assert_eq!(
        join(&mut other, "g", "", None, 10_000, "connect").error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );

    // SyncGroup: stale generation, unknown member, then the real one.
    assert_eq!(sync(&mut c, "g", &me, 7, None).error_code, code(ResponseError::IllegalGeneration));
    assert_eq!(sync(&mut c, "g", "nobody", 1, None).error_code, code(ResponseError::UnknownMemberId));
    let r = sync(&mut c, "g", &me, 1, Some(b"my-assignment"));
    assert_eq!(r.error_code, 0);
    assert_eq!(&r.assignment[..], b"my-assignment");

    // Heartbeats.
    assert_eq!(heartbeat(&mut c, "g", &me, 1, None), 0);
    assert_eq!(heartbeat(&mut c, "g", &me, 0, None), code(ResponseError::IllegalGeneration));
    assert_eq!(heartbeat(&mut c, "g", "nobody", 1, None), code(ResponseError::UnknownMemberId));

    // Commits: stale generation, oversized metadata, unknown topic, then a good one.
    assert_eq!(commit(&mut c, "g", &me, 9, "events", ""), code(ResponseError::IllegalGeneration));
    let big = "x".repeat(4097);
    assert_eq!(commit(&mut c, "g", &me, 1, "events", &big), code(ResponseError::OffsetMetadataTooLarge));
    assert_eq!(
        commit(&mut c, "g", &me, 1, "no-such-topic", ""),
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(commit(&mut c, "g", &me, 1, "events", "checkpoint-7"), 0);

    // A non-empty group cannot be deleted; its subscribed topic's offsets cannot be deleted.
    let resp: DeleteGroupsResponse = request(
        &mut c,
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g")), GroupId(s("missing"))]),
    )
    .expect("delete groups");
    assert_eq!(resp.results[0].error_code, code(ResponseError::NonEmptyGroup));
    assert_eq!(resp.results[1].error_code, code(ResponseError::GroupIdNotFound));
    let od = OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![
        OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("events")))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    let resp: OffsetDeleteResponse = request(&mut c, ApiKey::OffsetDelete, 0, &od).expect("offset delete");
    assert_eq!(resp.topics[0].partitions[0].error_code, code(ResponseError::GroupSubscribedToTopic));

    // Describe and list.
    let resp: DescribeGroupsResponse = request(
        &mut c,
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
    )
    .expect("describe");
    let g = &resp.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(&g.members[0].member_assignment[..], b"my-assignment");
    let resp: ListGroupsResponse = request(
        &mut c,
        ApiKey::ListGroups,
        4,
        &ListGroupsRequest::default().with_states_filter(vec![s("Stable")]),
    )
    .expect("list");
    assert_eq!(resp.groups.iter().map(|g| g.group_id.as_str()).collect::<Vec<_>>(), vec!["g"]);
    let resp: ListGroupsResponse = request(
        &mut c,
        ApiKey::ListGroups,
        4,
        &ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
    )
    .expect("list");
    assert!(resp.groups.is_empty());

    // Leave, then the group can go.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&me))]);
    let resp: LeaveGroupResponse = request(&mut c, ApiKey::LeaveGroup, 4, &leave).expect("leave");
    assert_eq!(resp.members[0].error_code, 0);
    assert_eq!(heartbeat(&mut c, "g", &me, 1, None), code(ResponseError::UnknownMemberId));

    // Multi-group OffsetFetch (v8) sees the commit, metadata and leader epoch included.
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("g"))).with_topics(None),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("missing"))).with_topics(None),
    ]);
    let resp: OffsetFetchResponse = request(&mut c, ApiKey::OffsetFetch, 8, &req).expect("offset fetch");
    let p = &resp.groups[0].topics[0].partitions[0];
    assert_eq!((p.committed_offset, p.committed_leader_epoch), (42, 0));
    assert_eq!(p.metadata.as_deref(), Some("checkpoint-7"));
    assert!(resp.groups[1].topics.is_empty());

    let resp: OffsetDeleteResponse = request(&mut c, ApiKey::OffsetDelete, 0, &od).expect("offset delete");
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    let resp: DeleteGroupsResponse = request(
        &mut c,
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
    )
    .expect("delete groups");
    assert_eq!(resp.results[0].error_code, 0);
}

#[test]
fn static_member_replacement_fences_the_old_instance() {
    let k = Kora::start(&[]);
    let mut c = connect(&k);
    create_topic(&mut c, "events", 1);
    let r = join(&mut c, "sg", "", Some("inst-1"), 10_000, "consumer");
    assert_eq!(r.error_code, 0, "static members get their id without MEMBER_ID_REQUIRED");
    let old = r.member_id.to_string();
    assert_eq!(sync(&mut c, "sg", &old, r.generation_id, Some(b"a")).error_code, 0);
    let r2 = join(&mut c, "sg", "", Some("inst-1"), 10_000, "consumer");
    assert_eq!(r2.error_code, 0);
    assert_eq!(r2.generation_id, r.generation_id, "no rebalance");
    let new = r2.member_id.to_string();
    assert_ne!(new, old);
    assert_eq!(
        heartbeat(&mut c, "sg", &old, r.generation_id, Some("inst-1")),
        code(ResponseError::FencedInstanceId)
    );
    assert_eq!(heartbeat(&mut c, "sg", &new, r.generation_id, Some("inst-1")), 0);
    let r = sync(&mut c, "sg", &new, r2.generation_id, None);
    assert_eq!(&r.assignment[..], b"a", "the replacement keeps the assignment");
}

fn cg_heartbeat(c: &mut TcpStream, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    request(c, ApiKey::ConsumerGroupHeartbeat, 1, &req).expect("consumer group heartbeat")
}

#[test]
fn kip848_protocol_errors_and_epochs() {
    let k = Kora::start(&[]);
    let mut c = connect(&k);
    create_topic(&mut c, "events", 4);
    let base = || {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("cg")))
            .with_rebalance_timeout_ms(5000)
            .with_topic_partitions(Some(vec![]))
    };
    let r = cg_heartbeat(&mut c, base().with_member_id(s("ghost")).with_member_epoch(5));
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
    let r = cg_heartbeat(
        &mut c,
        base()
            .with_subscribed_topic_names(Some(vec![TopicName(s("events"))]))
            .with_server_assignor(Some(s("magic"))),
    );
    assert_eq!(r.error_code, code(ResponseError::UnsupportedAssignor));
    let r = cg_heartbeat(&mut c, base().with_subscribed_topic_regex(Some(s("(unclosed"))));
    assert_eq!(r.error_code, code(ResponseError::InvalidRegularExpression));
    let r = cg_heartbeat(&mut c, base());
    assert_eq!(r.error_code, code(ResponseError::InvalidRequest), "a join needs a subscription");

    // Join: epoch 1, all four partitions.
    let r = cg_heartbeat(&mut c, base().with_subscribed_topic_names(Some(vec![TopicName(s("events"))])));
    assert_eq!(r.error_code, 0);
    let id = r.member_id.clone().expect("member id").to_string();
    assert_eq!(r.member_epoch, 1);
    let a = r.assignment.expect("assignment");
    assert_eq!(a.topic_partitions[0].partitions, vec![0, 1, 2, 3]);
    let topic_id = a.topic_partitions[0].topic_id;

    // A wrong epoch is fenced; the right one is fine and sends no assignment again.
    let r = cg_heartbeat(&mut c, base().with_member_id(s(&id)).with_member_epoch(7));
    assert_eq!(r.error_code, code(ResponseError::FencedMemberEpoch));
    let owned = vec![CgTopicPartitions::default().with_topic_id(topic_id).with_partitions(vec![0, 1, 2, 3])];
    let r = cg_heartbeat(
        &mut c,
        base().with_member_id(s(&id)).with_member_epoch(1).with_topic_partitions(Some(owned.clone())),
    );
    assert_eq!(r.error_code, 0);
    assert!(r.assignment.is_none());

    // A second member joins: the first must revoke two partitions before the second gets them.
    let mut c2 = connect(&k);
    let r = cg_heartbeat(&mut c2, base().with_subscribed_topic_names(Some(vec![TopicName(s("events"))])));
    let id2 = r.member_id.clone().expect("member id").to_string();
    assert_eq!(r.member_epoch, 2);
    let got: usize =
        r.assignment.map(|a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum()).unwrap_or(0);
    assert_eq!(got, 0, "nothing is free yet");
    let r = cg_heartbeat(
        &mut c,
        base().with_member_id(s(&id)).with_member_epoch(1).with_topic_partitions(Some(owned.clone())),
    );
    assert_eq!(r.member_epoch, 1, "epoch stays until the revocation is acknowledged");
    let keep = r.assignment.expect("reduced assignment").topic_partitions[0].partitions.clone();
    assert_eq!(keep.len(), 2);
    // Offset commits with the current epoch work; a newer epoch is fenced, an older one stale.
    let commit = |c: &mut TcpStream, member: &str, epoch: i32| -> i16 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("cg")))
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("events")))
                .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0)])]);
        let resp: OffsetCommitResponse = request(c, ApiKey::OffsetCommit, 9, &req).expect("commit");
        resp.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(&mut c, &id, 1), 0);
    assert_eq!(commit(&mut c, &id, 2), code(ResponseError::FencedMemberEpoch));
    let kept = vec![CgTopicPartitions::default().with_topic_id(topic_id).with_partitions(keep.clone())];
    let r = cg_heartbeat(
        &mut c,
        base().with_member_id(s(&id)).with_member_epoch(1).with_topic_partitions(Some(kept)),
    );
    assert_eq!(r.member_epoch, 2);
    assert_eq!(commit(&mut c, &id, 1), code(ResponseError::StaleMemberEpoch));
    let r = cg_heartbeat(&mut c2, base().with_member_id(s(&id2)).with_member_epoch(2));
    let theirs = r.assignment.expect("freed partitions").topic_partitions[0].partitions.clone();
    assert_eq!(theirs.len(), 2);
    assert!(theirs.iter().all(|p| !keep.contains(p)), "no partition has two owners");

    // ConsumerGroupDescribe shows both members, stable.
    let resp: ConsumerGroupDescribeResponse = request(
        &mut c,
        ApiKey::ConsumerGroupDescribe,
        0,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("cg"))]),
    )
    .expect("describe");
    let g = &resp.groups[0];
    assert_eq!(g.group_epoch, 2);
    assert_eq!(g.members.len(), 2);
    assert_eq!(g.assignor_name.as_str(), "uniform");

    // Leaving: epoch -1.
    let r = cg_heartbeat(&mut c2, base().with_member_id(s(&id2)).with_member_epoch(-1));
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
}

#[test]
fn clients_cannot_write_to_the_offsets_topic() {
    let k = Kora::start(&[]);
    let mut c = connect(&k);
    let resp = common::raw::produce(&mut c, "__consumer_offsets", 1, common::raw::batch(1, 10));
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        code(ResponseError::InvalidTopicException)
    );
    let resp: MetadataResponse = request(
        &mut c,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(s("__consumer_offsets")))),
        ])),
    )
    .expect("metadata");
    assert!(resp.topics[0].is_internal);
    assert_eq!(resp.topics[0].partitions.len(), 50);
}

#[test]
fn group_state_survives_kill9() {
    let mut k = Kora::start(&[]);
    let mut c = connect(&k);
    create_topic(&mut c, "events", 2);
    // A classic member with a synced assignment ...
    let r = join(&mut c, "durable", "", Some("inst-d"), 30_000, "consumer");
    let member = r.member_id.to_string();
    assert_eq!(sync(&mut c, "durable", &member, r.generation_id, Some(b"parts")).error_code, 0);
    // ... and a KIP-848 member with its epoch and partitions.
    let r = cg_heartbeat(
        &mut c,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("durable-cg")))
            .with_rebalance_timeout_ms(5000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("events"))]))
            .with_topic_partitions(Some(vec![])),
    );
    let cg_member = r.member_id.clone().expect("member id").to_string();
    let epoch = r.member_epoch;
    drop(c);

    k.kill9();
    k.restart();
    let mut c = connect(&k);
    assert_eq!(
        heartbeat(&mut c, "durable", &member, 1, Some("inst-d")),
        0,
        "the classic member is still known"
    );
    assert_eq!(&sync(&mut c, "durable", &member, 1, None).assignment[..], b"parts");
    let r = cg_heartbeat(
        &mut c,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("durable-cg")))
            .with_member_id(s(&cg_member))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(5000),
    );
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.member_epoch, epoch);
    let owned: usize =
        r.assignment.map(|a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum()).unwrap_or(0);
    assert_eq!(owned, 2, "the member keeps its partitions");
}

#[test]
fn the_offsets_log_is_checkpointed_and_replays_to_the_latest_commit() {
    let mut k = Kora::start(&["--set", "offsets.retention.check.interval.ms=200"]);
    let mut c = connect(&k);
    create_topic(&mut c, "events", 1);
    let commit_at = |c: &mut TcpStream, offset: i64| {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("busy")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("events")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        let resp: OffsetCommitResponse = request(c, ApiKey::OffsetCommit, 8, &req).expect("commit");
        assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    };
    // One live key, 12,000 records: past the checkpoint threshold (4 x live + 10,000).
    for i in 0..12_000 {
        commit_at(&mut c, i);
    }
    let partition = {
        let h = "busy".encode_utf16().fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
        (h & 0x7fff_ffff) % 50
    };
    let needle = format!("kora_log_start_offset{{topic=\"__consumer_offsets\",partition=\"{partition}\"}} ");
    let start = std::time::Instant::now();
    loop {
        let m = k.admin_get("/metrics");
        let start_offset: i64 =
            m.lines().find_map(|l| l.strip_prefix(&needle)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        // The checkpoint ran once the partition held 10,004 records; everything before it is gone.
        if start_offset >= 10_000 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no checkpoint: log start {start_offset}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    commit_at(&mut c, 12_345);
    drop(c);
    k.kill9();
    k.restart();
    let mut c = connect(&k);
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s("busy")))
        .with_topics(None)]);
    let resp: OffsetFetchResponse = request(&mut c, ApiKey::OffsetFetch, 8, &req).expect("offset fetch");
    assert_eq!(resp.groups[0].topics[0].partitions[0].committed_offset, 12_345);
}

#[test]
fn the_offsets_log_is_compacted() {
    let mut k =
        Kora::start(&["--set", "offsets.topic.segment.bytes=65536", "--set", "log.cleaner.backoff.ms=200"]);
    let mut c = connect(&k);
    create_topic(&mut c, "events", 1);
    for i in 0..3_000 {
        assert_eq!(
            {
                let req = OffsetCommitRequest::default()
                    .with_group_id(GroupId(s("tidy")))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("events")))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(i)])]);
                let resp: OffsetCommitResponse =
                    request(&mut c, ApiKey::OffsetCommit, 8, &req).expect("commit");
                resp.topics[0].partitions[0].error_code
            },
            0
        );
    }
    let start = std::time::Instant::now();
    while !k
        .admin_get("/metrics")
        .contains("kora_cleaner_records_removed_total{topic=\"__consumer_offsets\"}")
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the offsets log was not compacted");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(c);
    k.kill9();
    k.restart();
    let mut c = connect(&k);
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s("tidy")))
        .with_topics(None)]);
    let resp: OffsetFetchResponse = request(&mut c, ApiKey::OffsetFetch, 8, &req).expect("offset fetch");
    assert_eq!(resp.groups[0].topics[0].partitions[0].committed_offset, 2_999);
}

//! Group APIs: FindCoordinator and the thin shells over the group coordinator (kora-group).
//! JoinGroup and SyncGroup may wait for the rest of the group; the wait happens here, outside
//! the coordinator's lock, and occupies only the requesting connection (as in Kafka).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::*;
use kora_group::classic::Parked;

use super::families::Coordination;
use super::sb;
use crate::groups::ImageTopics;

/// Who sent a request, as DescribeGroups reports it.
pub(crate) struct Client {
    pub(crate) id: String,
    pub(crate) host: String,
}

impl Client {
    pub(crate) fn new(header: &RequestHeader, ctx: &crate::edge::ConnectionContext) -> Self {
        Client {
            id: header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
            host: format!("/{}", ctx.peer.ip()),
        }
    }
}

fn topics(co: &Coordination<'_>) -> ImageTopics {
    ImageTopics(co.view.image())
}

pub(super) fn find_coordinator(
    co: &Coordination<'_>,
    r: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let adv = &co.advertised;
    let image = co.view.image();
    let entry = |key: &StrBytesAlias| {
        let base = CoordinatorEntry::default().with_key(key.clone());
        match r.key_type {
            // In a cell, a group's coordinator is the leader of its __consumer_offsets partition.
            0 if !image.brokers.is_empty() => {
                let p = kora_group::partition_for(key.as_str(), co.groups.config().offsets_topic_partitions);
                let Some(t) = image.topic(kora_group::OFFSETS_TOPIC) else {
                    co.offsets_topic.create_in_background();
                    return base
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                        .with_error_message(Some(sb("creating __consumer_offsets; retry")));
                };
                let leader = t.partition(p).map_or(-1, |s| s.leader);
                match image.brokers.get(&leader).filter(|x| !x.fenced) {
                    Some(x) => {
                        let (host, port) = x.registration.endpoint(co.listener);
                        base.with_node_id(BrokerId(leader)).with_host(sb(host)).with_port(port as i32)
                    }
                    None => base
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
                }
            }
            0 => base
                .with_node_id(BrokerId(co.view.node_id))
                .with_host(sb(&adv.host))
                .with_port(adv.port as i32),
            // No transactions yet. The answer must be one clients give up on at once, as they
            // do for InitProducerId with a transactional id: COORDINATOR_NOT_AVAILABLE would
            // have the Java client (and Kafka Streams with exactly_once_v2) retry for ever.
            1 => base
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                .with_error_message(Some(sb("transactions are not supported yet"))),
            _ => base
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(sb("unknown coordinator key type"))),
        }
    };
    if version >= 4 {
        return FindCoordinatorResponse::default()
            .with_coordinators(r.coordinator_keys.iter().map(entry).collect());
    }
    let e = entry(&r.key);
    FindCoordinatorResponse::default()
        .with_error_code(e.error_code)
        .with_error_message(e.error_message)
        .with_node_id(e.node_id)
        .with_host(e.host)
        .with_port(e.port)
}

type StrBytesAlias = kafka_protocol::protocol::StrBytes;

pub(super) async fn join_group(
    co: &Coordination<'_>,
    r: JoinGroupRequest,
    version: i16,
    client: &Client,
) -> JoinGroupResponse {
    let member_id = r.member_id.clone();
    match co.groups.join(&r, version, &client.id, &client.host) {
        Parked::Now(resp) => resp,
        Parked::Wait(rx) => rx.await.unwrap_or_else(|_| {
            JoinGroupResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_generation_id(-1)
                .with_member_id(member_id)
                .with_protocol_name(Some(Default::default()))
        }),
    }
}

pub(super) async fn sync_group(co: &Coordination<'_>, r: SyncGroupRequest) -> SyncGroupResponse {
    match co.groups.sync(&r) {
        Parked::Now(resp) => resp,
        Parked::Wait(rx) => rx.await.unwrap_or_else(|_| {
            SyncGroupResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }),
    }
}

pub(super) fn heartbeat(co: &Coordination<'_>, r: HeartbeatRequest) -> HeartbeatResponse {
    co.groups.heartbeat(&r)
}

pub(super) fn leave_group(co: &Coordination<'_>, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    co.groups.leave(&r, version)
}

/// Longest an offset commit waits for the offsets partition's followers.
const COMMIT_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) async fn offset_commit(co: &Coordination<'_>, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut resp = co.groups.commit(&r, &topics(co));
    let stored = resp.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code == 0);
    if !co.in_cell || !stored {
        return resp;
    }
    // As Kafka writes commits with acks=all: answered once every in-sync replica has them, so
    // a committed offset survives the leader's loss.
    let p = co.groups.partition_of(r.group_id.as_str());
    let Some(log) = co.logs.get(kora_group::OFFSETS_TOPIC, p) else { return resp };
    let upto = log.log_end_offset();
    if !crate::replication::wait_for_high_watermark(co.clock, &log, upto, COMMIT_REPLICATION_TIMEOUT).await {
        tracing::warn!(group = %r.group_id.as_str(), "offset commit not replicated in time");
        for p in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            if p.error_code == 0 {
                p.error_code = ResponseError::CoordinatorNotAvailable.code();
            }
        }
    }
    resp
}

pub(super) fn offset_fetch(
    co: &Coordination<'_>,
    r: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    co.groups.fetch_offsets(&r, version)
}

pub(super) fn describe_groups(
    co: &Coordination<'_>,
    r: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    co.groups.describe(&r, version, &topics(co))
}

pub(super) fn list_groups(co: &Coordination<'_>, r: ListGroupsRequest) -> ListGroupsResponse {
    co.groups.list(&r)
}

pub(super) fn delete_groups(co: &Coordination<'_>, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    co.groups.delete_groups(&r)
}

pub(super) fn offset_delete(co: &Coordination<'_>, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    co.groups.delete_offsets(&r, &topics(co))
}

pub(super) fn consumer_group_heartbeat(
    co: &Coordination<'_>,
    r: ConsumerGroupHeartbeatRequest,
    client: &Client,
) -> ConsumerGroupHeartbeatResponse {
    co.groups.consumer_heartbeat(&r, &client.id, &client.host, &topics(co))
}

pub(super) fn consumer_group_describe(
    co: &Coordination<'_>,
    r: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    co.groups.consumer_describe(&r, &topics(co))
}

//! The coordinator: every group and its committed offsets behind one lock, each change
//! written to the group's partition of the internal log before it becomes visible.
//!
//! One lock is enough: group operations are short and in memory (the log append is a page-cache
//! write), and it makes the order of records in the log the order of state changes. Parked
//! JoinGroup/SyncGroup responses wait outside the lock on oneshot channels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as CgDescribed;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kora_common::Clock;
use parking_lot::Mutex;

use crate::classic::{self, ClassicGroup, ClassicState, Ctx, Parked};
use crate::codec::{self, OffsetValue, RecordKey, RecordValue};
use crate::consumer::ConsumerGroup;
use crate::{partition_for, GroupConfig, GroupError, GroupLog, Topics};

pub type JoinOutcome = Parked<JoinGroupResponse>;
pub type SyncOutcome = Parked<SyncGroupResponse>;

/// Longest group id accepted (Kafka puts no limit; ours keeps records bounded).
const MAX_GROUP_ID_BYTES: usize = 1024;

#[derive(Debug)]
enum Kind {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

#[derive(Debug)]
struct Group {
    kind: Kind,
    offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl Group {
    fn is_empty(&self) -> bool {
        match &self.kind {
            Kind::Classic(g) => g.is_empty(),
            Kind::Consumer(g) => g.members.is_empty(),
        }
    }
    fn state_name(&self) -> &'static str {
        match &self.kind {
            Kind::Classic(g) => g.state.name(),
            Kind::Consumer(g) => g.state(),
        }
    }
    fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Classic(_) => "classic",
            Kind::Consumer(_) => "consumer",
        }
    }
    fn protocol_type(&self) -> String {
        match &self.kind {
            Kind::Classic(g) => g.protocol_type.clone().unwrap_or_default(),
            Kind::Consumer(_) => "consumer".into(),
        }
    }
    fn state_timestamp_ms(&self) -> i64 {
        match &self.kind {
            Kind::Classic(g) => g.state_timestamp_ms,
            Kind::Consumer(g) => g.state_timestamp_ms,
        }
    }
}

/// One committed offset, for lag reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
}

#[derive(Debug)]
pub struct Coordinator {
    cfg: GroupConfig,
    clock: Arc<dyn Clock>,
    log: Arc<dyn GroupLog>,
    groups: Mutex<HashMap<String, Group>>,
    /// The internal-log partitions whose groups this coordinator serves: all of them (None, a
    /// single node) or those this broker leads and has loaded (a cell). Requests for other
    /// groups get NOT_COORDINATOR.
    owned: parking_lot::RwLock<Option<std::collections::HashSet<i32>>>,
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn valid_group_id(g: &str) -> bool {
    !g.is_empty() && g.len() <= MAX_GROUP_ID_BYTES
}

fn encode_records(records: Vec<(RecordKey, Option<RecordValue>)>) -> Vec<(Bytes, Option<Bytes>)> {
    records.into_iter().map(|(k, v)| (codec::encode_key(&k), v.as_ref().map(codec::encode_value))).collect()
}

fn commit_error_code(e: &GroupError) -> i16 {
    match e {
        GroupError::TooLarge(_) => ResponseError::InvalidCommitOffsetSize.code(),
        _ => ResponseError::CoordinatorNotAvailable.code(),
    }
}

impl Coordinator {
    pub fn new(cfg: GroupConfig, clock: Arc<dyn Clock>, log: Arc<dyn GroupLog>) -> Self {
        assert!(cfg.offsets_topic_partitions > 0);
        Self { cfg, clock, log, groups: Mutex::new(HashMap::new()), owned: parking_lot::RwLock::new(None) }
    }

    /// Serve only the groups of partitions handed over with [`Coordinator::take_partition`]
    /// (a broker in a cell).
    pub fn serve_owned_partitions_only(&self) {
        let mut owned = self.owned.write();
        if owned.is_none() {
            *owned = Some(Default::default());
        }
    }

    /// Whether requests for `group` are served here.
    pub fn owns(&self, group: &str) -> bool {
        self.owned.read().as_ref().is_none_or(|o| o.contains(&self.partition_of(group)))
    }

    /// Partitions served here (None: all).
    pub fn owned_partitions(&self) -> Option<Vec<i32>> {
        self.owned.read().as_ref().map(|o| {
            let mut v: Vec<i32> = o.iter().copied().collect();
            v.sort_unstable();
            v
        })
    }

    /// Starts serving `partition`'s groups; its records were replayed just before.
    pub fn take_partition(&self, partition: i32) {
        if let Some(o) = self.owned.write().as_mut() {
            o.insert(partition);
        }
    }

    /// Stops serving `partition` and forgets its groups (another broker coordinates them now,
    /// or they are about to be replayed afresh). Returns how many groups were dropped.
    pub fn release_partition(&self, partition: i32) -> usize {
        if let Some(o) = self.owned.write().as_mut() {
            o.remove(&partition);
        }
        let mut groups = self.groups.lock();
        let before = groups.len();
        groups.retain(|gid, _| partition_for(gid, self.cfg.offsets_topic_partitions) != partition);
        before - groups.len()
    }

    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    /// The internal-log partition that holds `group`.
    pub fn partition_of(&self, group: &str) -> i32 {
        partition_for(group, self.cfg.offsets_topic_partitions)
    }

    fn writer(
        &self,
        group: &str,
    ) -> impl FnMut(Vec<(RecordKey, Option<RecordValue>)>) -> Result<(), GroupError> {
        let log = self.log.clone();
        let p = self.partition_of(group);
        move |records| {
            if records.is_empty() {
                return Ok(());
            }
            log.append(p, &encode_records(records))
        }
    }

    // ---- classic protocol ------------------------------------------------------------------

    pub fn join(
        &self,
        req: &JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinOutcome {
        let gid = req.group_id.to_string();
        if !valid_group_id(&gid) {
            return Parked::Now(classic::join_error(ResponseError::InvalidGroupId, &req.member_id));
        }
        if !self.owns(&gid) {
            return Parked::Now(classic::join_error(ResponseError::NotCoordinator, &req.member_id));
        }
        let now = self.clock.now_ms();
        let mut groups = self.groups.lock();
        let group = groups.entry(gid.clone()).or_insert_with(|| Group {
            kind: Kind::Classic(ClassicGroup::new(&gid, now)),
            offsets: BTreeMap::new(),
        });
        if let Kind::Consumer(cg) = &group.kind {
            if !cg.members.is_empty() {
                return Parked::Now(classic::join_error(
                    ResponseError::InconsistentGroupProtocol,
                    &req.member_id,
                ));
            }
            group.kind = Kind::Classic(ClassicGroup::new(&gid, now));
        }
        let Kind::Classic(g) = &mut group.kind else { unreachable!("converted above") };
        let mut persist = self.writer(&gid);
        let mut ctx = Ctx { now, cfg: &self.cfg, persist: &mut persist };
        g.join(&mut ctx, req, version, client_id, client_host)
    }

    pub fn sync(&self, req: &SyncGroupRequest) -> SyncOutcome {
        let gid = req.group_id.to_string();
        if !valid_group_id(&gid) {
            return Parked::Now(classic::sync_error(ResponseError::InvalidGroupId));
        }
        if !self.owns(&gid) {
            return Parked::Now(classic::sync_error(ResponseError::NotCoordinator));
        }
        let now = self.clock.now_ms();
        let mut groups = self.groups.lock();
        let Some(Group { kind: Kind::Classic(g), .. }) = groups.get_mut(&gid) else {
            return Parked::Now(classic::sync_error(ResponseError::UnknownMemberId));
        };
        let mut persist = self.writer(&gid);
        let mut ctx = Ctx { now, cfg: &self.cfg, persist: &mut persist };
        g.sync(&mut ctx, req)
    }

    pub fn heartbeat(&self, req: &HeartbeatRequest) -> HeartbeatResponse {
        let gid = req.group_id.to_string();
        if !valid_group_id(&gid) {
            return HeartbeatResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
        }
        if !self.owns(&gid) {
            return HeartbeatResponse::default().with_error_code(ResponseError::NotCoordinator.code());
        }
        let now = self.clock.now_ms();
        let mut groups = self.groups.lock();
        match groups.get_mut(&gid) {
            Some(Group { kind: Kind::Classic(g), .. }) => g.heartbeat(now, req),
            _ => HeartbeatResponse::default().with_error_code(ResponseError::UnknownMemberId.code()),
        }
    }

    pub fn leave(&self, req: &LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let gid = req.group_id.to_string();
        if !valid_group_id(&gid) {
            return LeaveGroupResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
        }
        if !self.owns(&gid) {
            return LeaveGroupResponse::default().with_error_code(ResponseError::NotCoordinator.code());
        }
        let now = self.clock.now_ms();
        let mut groups = self.groups.lock();
        let Some(Group { kind: Kind::Classic(g), .. }) = groups.get_mut(&gid) else {
            return LeaveGroupResponse::default().with_error_code(ResponseError::UnknownMemberId.code());
        };
        let mut persist = self.writer(&gid);
        let mut ctx = Ctx { now, cfg: &self.cfg, persist: &mut persist };
        if version < 3 {
            let code = g.leave(&mut ctx, &req.member_id, None).err().map_or(0, |e| e.code());
            return LeaveGroupResponse::default().with_error_code(code);
        }
        let members = req
            .members
            .iter()
            .map(|m| {
                let code = g
                    .leave(&mut ctx, &m.member_id, m.group_instance_id.as_deref())
                    .err()
                    .map_or(0, |e| e.code());
                MemberResponse::default()
                    .with_member_id(m.member_id.clone())
                    .with_group_instance_id(m.group_instance_id.clone())
                    .with_error_code(code)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    }

    // ---- KIP-848 ---------------------------------------------------------------------------

    pub fn consumer_heartbeat(
        &self,
        req: &ConsumerGroupHeartbeatRequest,
        client_id: &str,
        client_host: &str,
        topics: &dyn Topics,
    ) -> ConsumerGroupHeartbeatResponse {
        let gid = req.group_id.to_string();
        if !valid_group_id(&gid) {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(ResponseError::InvalidGroupId.code())
                .with_member_epoch(-1);
        }
        if !self.owns(&gid) {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(ResponseError::NotCoordinator.code())
                .with_member_epoch(-1);
        }
        let now = self.clock.now_ms();
        let mut groups = self.groups.lock();
        let default_assignor =
            self.cfg.consumer_assignors.first().cloned().unwrap_or_else(|| "uniform".into());
        let group = groups.entry(gid.clone()).or_insert_with(|| Group {
            kind: Kind::Consumer(ConsumerGroup::new(&gid, &default_assignor, now)),
            offsets: BTreeMap::new(),
        });
        if let Kind::Classic(cg) = &group.kind {
            if !cg.is_empty() {
                return ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s("the group uses the classic protocol")))
                    .with_member_epoch(-1);
            }
            group.kind = Kind::Consumer(ConsumerGroup::new(&gid, &default_assignor, now));
        }
        let Kind::Consumer(g) = &mut group.kind else { unreachable!("converted above") };
        let mut persist = self.writer(&gid);
        let mut ctx = Ctx { now, cfg: &self.cfg, persist: &mut persist };
        g.heartbeat(&mut ctx, req, client_id, client_host, topics)
    }

    pub fn consumer_describe(
        &self,
        req: &ConsumerGroupDescribeRequest,
        topics: &dyn Topics,
    ) -> ConsumerGroupDescribeResponse {
        let groups = self.groups.lock();
        let described = req
            .group_ids
            .iter()
            .map(|gid| match groups.get(gid.as_str()) {
                _ if !self.owns(gid) => CgDescribed::default()
                    .with_group_id(gid.clone())
                    .with_error_code(ResponseError::NotCoordinator.code()),
                Some(Group { kind: Kind::Consumer(g), .. }) => g.describe(topics),
                Some(_) => CgDescribed::default()
                    .with_group_id(gid.clone())
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s("the group is not a consumer group"))),
                None => CgDescribed::default()
                    .with_group_id(gid.clone())
                    .with_group_state(s("Dead"))
                    .with_error_code(ResponseError::GroupIdNotFound.code()),
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(described)
    }

    // ---- offsets ---------------------------------------------------------------------------

    pub fn commit(&self, req: &OffsetCommitRequest, topics: &dyn Topics) -> OffsetCommitResponse {
        let gid = req.group_id.to_string();
        let all = |code: i16| {
            OffsetCommitResponse::default().with_topics(
                req.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
        };
        if !valid_group_id(&gid) {
            return all(ResponseError::InvalidGroupId.code());
        }
        if !self.owns(&gid) {
            return all(ResponseError::NotCoordinator.code());
        }
        let now = self.clock.now_ms();
        let mut groups = self.groups.lock();
        let generation = req.generation_id_or_member_epoch;
        let simple = generation < 0 && req.member_id.is_empty();
        let check = match groups.get(&gid) {
            None if simple => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
            Some(g) => match &g.kind {
                Kind::Classic(c) if simple => {
                    if c.state == ClassicState::Empty {
                        Ok(())
                    } else {
                        Err(ResponseError::UnknownMemberId)
                    }
                }
                Kind::Classic(c) => {
                    if c.state == ClassicState::CompletingRebalance {
                        Err(ResponseError::RebalanceInProgress)
                    } else {
                        c.validate_member(&req.member_id, req.group_instance_id.as_deref(), generation)
                    }
                }
                Kind::Consumer(c) if simple => {
                    if c.members.is_empty() {
                        Ok(())
                    } else {
                        Err(ResponseError::UnknownMemberId)
                    }
                }
                Kind::Consumer(c) => c.validate_commit(&req.member_id, generation),
            },
        };
        if let Err(e) = check {
            return all(e.code());
        }
        let mut records = Vec::new();
        let mut results: Vec<OffsetCommitResponseTopic> = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let known = topics.by_name(&t.name);
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
                let code = if known.is_none_or(|(_, n)| p.partition_index < 0 || p.partition_index >= n) {
                    ResponseError::UnknownTopicOrPartition.code()
                } else if metadata.len() > self.cfg.offset_metadata_max_bytes {
                    ResponseError::OffsetMetadataTooLarge.code()
                } else {
                    records.push((
                        RecordKey::Offset {
                            group: gid.clone(),
                            topic: t.name.to_string(),
                            partition: p.partition_index,
                        },
                        Some(RecordValue::Offset(OffsetValue {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata,
                            commit_timestamp_ms: now,
                        })),
                    ));
                    0
                };
                parts.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code),
                );
            }
            results
                .push(OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(parts));
        }
        let written = records.clone();
        if let Err(e) = (self.writer(&gid))(records) {
            tracing::warn!(group = %gid, error = %e, "offset commit not stored");
            let code = commit_error_code(&e);
            for t in &mut results {
                for p in &mut t.partitions {
                    if p.error_code == 0 {
                        p.error_code = code;
                    }
                }
            }
            return OffsetCommitResponse::default().with_topics(results);
        }
        let group = groups.entry(gid.clone()).or_insert_with(|| Group {
            kind: Kind::Classic(ClassicGroup::new(&gid, now)),
            offsets: BTreeMap::new(),
        });
        for (k, v) in written {
            if let (RecordKey::Offset { topic, partition, .. }, Some(RecordValue::Offset(v))) = (k, v) {
                group.offsets.insert((topic, partition), v);
            }
        }
        OffsetCommitResponse::default().with_topics(results)
    }

    /// OffsetFetch, single-group (v1-7) or multi-group (v8+).
    pub fn fetch_offsets(&self, req: &OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let groups = self.groups.lock();
        let one = |gid: &str, member: Option<(&str, i32)>, wanted: Option<Vec<(TopicName, Vec<i32>)>>| {
            let g = groups.get(gid);
            if !valid_group_id(gid) {
                return (ResponseError::InvalidGroupId.code(), Vec::new());
            }
            if !self.owns(gid) {
                return (ResponseError::NotCoordinator.code(), Vec::new());
            }
            if let (Some((member_id, epoch)), Some(Group { kind: Kind::Consumer(c), .. })) = (member, g) {
                if let Err(e) = c.validate_commit(member_id, epoch) {
                    return (e.code(), Vec::new());
                }
            }
            let wanted = wanted.unwrap_or_else(|| {
                let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                if let Some(g) = g {
                    for (t, p) in g.offsets.keys() {
                        by_topic.entry(t.clone()).or_default().push(*p);
                    }
                }
                by_topic.into_iter().map(|(t, ps)| (TopicName(s(&t)), ps)).collect()
            });
            let out = wanted
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| {
                            let v = g.and_then(|g| g.offsets.get(&(t.to_string(), p)));
                            (p, v.cloned())
                        })
                        .collect::<Vec<_>>();
                    (t, parts)
                })
                .collect::<Vec<_>>();
            (0, out)
        };
        if version < 8 {
            let wanted = req.topics.as_ref().map(|ts| {
                ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect::<Vec<_>>()
            });
            let (code, topics) = one(&req.group_id, None, wanted);
            let topics = topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default().with_name(t).with_partitions(
                        ps.into_iter()
                            .map(|(p, v)| {
                                let (o, e, m) = v.map_or((-1, -1, String::new()), |v| {
                                    (v.offset, v.leader_epoch, v.metadata)
                                });
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_committed_leader_epoch(e)
                                    .with_metadata(Some(s(&m)))
                            })
                            .collect(),
                    )
                })
                .collect();
            return OffsetFetchResponse::default().with_error_code(code).with_topics(topics);
        }
        let out = req
            .groups
            .iter()
            .map(|rg| {
                let member = rg.member_id.as_deref().filter(|m| !m.is_empty()).map(|m| (m, rg.member_epoch));
                let wanted = rg.topics.as_ref().map(|ts| {
                    ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect::<Vec<_>>()
                });
                let (code, topics) = one(&rg.group_id, member, wanted);
                OffsetFetchResponseGroup::default()
                    .with_group_id(rg.group_id.clone())
                    .with_error_code(code)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default().with_name(t).with_partitions(
                                    ps.into_iter()
                                        .map(|(p, v)| {
                                            let (o, e, m) = v.map_or((-1, -1, String::new()), |v| {
                                                (v.offset, v.leader_epoch, v.metadata)
                                            });
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(o)
                                                .with_committed_leader_epoch(e)
                                                .with_metadata(Some(s(&m)))
                                        })
                                        .collect(),
                                )
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetFetchResponse::default().with_groups(out)
    }

    // ---- admin -----------------------------------------------------------------------------

    pub fn describe(
        &self,
        req: &DescribeGroupsRequest,
        version: i16,
        topics: &dyn Topics,
    ) -> DescribeGroupsResponse {
        let groups = self.groups.lock();
        let described = req
            .groups
            .iter()
            .map(|gid| {
                let base =
                    DescribedGroup::default().with_group_id(gid.clone()).with_authorized_operations(i32::MIN);
                if !self.owns(gid) {
                    return base.with_error_code(ResponseError::NotCoordinator.code());
                }
                match groups.get(gid.as_str()) {
                    None => {
                        let d = base.with_group_state(s("Dead"));
                        if version >= 6 {
                            d.with_error_code(ResponseError::GroupIdNotFound.code())
                        } else {
                            d
                        }
                    }
                    Some(g) => match &g.kind {
                        Kind::Classic(c) => {
                            let protocol = c.protocol.clone().unwrap_or_default();
                            let show =
                                matches!(c.state, ClassicState::Stable | ClassicState::CompletingRebalance);
                            base.with_group_state(s(c.state.name()))
                                .with_protocol_type(s(&c.protocol_type.clone().unwrap_or_default()))
                                .with_protocol_data(s(if show { &protocol } else { "" }))
                                .with_members(
                                    c.members
                                        .values()
                                        .map(|m| {
                                            DescribedGroupMember::default()
                                                .with_member_id(s(&m.member_id))
                                                .with_group_instance_id(m.instance_id.as_deref().map(s))
                                                .with_client_id(s(&m.client_id))
                                                .with_client_host(s(&m.client_host))
                                                .with_member_metadata(if show {
                                                    m.metadata(&protocol)
                                                } else {
                                                    Bytes::new()
                                                })
                                                .with_member_assignment(if c.state == ClassicState::Stable {
                                                    m.assignment.clone()
                                                } else {
                                                    Bytes::new()
                                                })
                                        })
                                        .collect(),
                                )
                        }
                        Kind::Consumer(c) => base
                            .with_group_state(s(c.state()))
                            .with_protocol_type(s("consumer"))
                            .with_protocol_data(s(&c.assignor))
                            .with_members(
                                c.members
                                    .values()
                                    .map(|m| {
                                        DescribedGroupMember::default()
                                            .with_member_id(s(&m.member_id))
                                            .with_group_instance_id(m.value.instance_id.as_deref().map(s))
                                            .with_client_id(s(&m.value.client_id))
                                            .with_client_host(s(&m.value.client_host))
                                            .with_member_metadata(codec::encode_subscription(
                                                &m.value.subscribed_topic_names,
                                            ))
                                            .with_member_assignment(codec::encode_assignment(
                                                &c.assignment_by_name(&m.member_id, topics),
                                            ))
                                    })
                                    .collect(),
                            ),
                    },
                }
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(described)
    }

    pub fn list(&self, req: &ListGroupsRequest) -> ListGroupsResponse {
        let groups = self.groups.lock();
        let states: Vec<String> = req.states_filter.iter().map(|x| x.to_lowercase()).collect();
        let types: Vec<String> = req.types_filter.iter().map(|x| x.to_lowercase()).collect();
        let mut listed: Vec<ListedGroup> = groups
            .iter()
            .filter(|(id, _)| self.owns(id))
            .filter(|(_, g)| states.is_empty() || states.contains(&g.state_name().to_lowercase()))
            .filter(|(_, g)| types.is_empty() || types.iter().any(|t| t == g.type_name()))
            .map(|(id, g)| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s(&g.protocol_type()))
                    .with_group_state(s(g.state_name()))
                    .with_group_type(s(g.type_name()))
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        ListGroupsResponse::default().with_groups(listed)
    }

    fn tombstones(gid: &str, g: &Group) -> Vec<(RecordKey, Option<RecordValue>)> {
        let mut out: Vec<(RecordKey, Option<RecordValue>)> = g
            .offsets
            .keys()
            .map(|(t, p)| {
                (RecordKey::Offset { group: gid.to_string(), topic: t.clone(), partition: *p }, None)
            })
            .collect();
        match &g.kind {
            Kind::Classic(_) => out.push((RecordKey::ClassicGroup { group: gid.to_string() }, None)),
            Kind::Consumer(_) => out.push((RecordKey::ConsumerGroup { group: gid.to_string() }, None)),
        }
        out
    }

    pub fn delete_groups(&self, req: &DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut groups = self.groups.lock();
        let results = req
            .groups_names
            .iter()
            .map(|gid| {
                let code = match groups.get(gid.as_str()) {
                    _ if !valid_group_id(gid) => ResponseError::InvalidGroupId.code(),
                    _ if !self.owns(gid) => ResponseError::NotCoordinator.code(),
                    None => ResponseError::GroupIdNotFound.code(),
                    Some(g) if !g.is_empty() => ResponseError::NonEmptyGroup.code(),
                    Some(g) => match (self.writer(gid))(Self::tombstones(gid, g)) {
                        Ok(()) => {
                            groups.remove(gid.as_str());
                            0
                        }
                        Err(e) => {
                            tracing::warn!(group = %gid.as_str(), error = %e, "group deletion not stored");
                            ResponseError::CoordinatorNotAvailable.code()
                        }
                    },
                };
                DeletableGroupResult::default().with_group_id(gid.clone()).with_error_code(code)
            })
            .collect();
        DeleteGroupsResponse::default().with_results(results)
    }

    pub fn delete_offsets(&self, req: &OffsetDeleteRequest, topics: &dyn Topics) -> OffsetDeleteResponse {
        let gid = req.group_id.to_string();
        if !self.owns(&gid) {
            return OffsetDeleteResponse::default().with_error_code(ResponseError::NotCoordinator.code());
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(&gid) else {
            return OffsetDeleteResponse::default().with_error_code(ResponseError::GroupIdNotFound.code());
        };
        let subscribed: Option<BTreeSet<String>> = match &g.kind {
            Kind::Classic(c) if c.is_empty() => Some(BTreeSet::new()),
            Kind::Classic(c) => c.subscribed_topics(),
            Kind::Consumer(c) => Some(c.subscribed_topic_names(topics)),
        };
        let Some(subscribed) = subscribed else {
            return OffsetDeleteResponse::default().with_error_code(ResponseError::NonEmptyGroup.code());
        };
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let busy = subscribed.contains(t.name.as_str());
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if busy {
                        ResponseError::GroupSubscribedToTopic.code()
                    } else {
                        if g.offsets.contains_key(&(t.name.to_string(), p.partition_index)) {
                            records.push((
                                RecordKey::Offset {
                                    group: gid.clone(),
                                    topic: t.name.to_string(),
                                    partition: p.partition_index,
                                },
                                None,
                            ));
                        }
                        0
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            results
                .push(OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(parts));
        }
        let removed = records.clone();
        if let Err(e) = (self.writer(&gid))(records) {
            tracing::warn!(group = %gid, error = %e, "offset deletion not stored");
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
        for (k, _) in removed {
            if let RecordKey::Offset { topic, partition, .. } = k {
                g.offsets.remove(&(topic, partition));
            }
        }
        OffsetDeleteResponse::default().with_topics(results)
    }

    // ---- time ------------------------------------------------------------------------------

    /// Drives session, rebalance and revocation timeouts; drops empty groups without offsets.
    pub fn tick(&self) {
        let now = self.clock.now_ms();
        let mut groups = self.groups.lock();
        let mut dead = Vec::new();
        for (gid, g) in groups.iter_mut() {
            let mut persist = self.writer(gid);
            match &mut g.kind {
                Kind::Classic(c) => {
                    let mut ctx = Ctx { now, cfg: &self.cfg, persist: &mut persist };
                    c.tick(&mut ctx);
                }
                Kind::Consumer(c) => {
                    let records = c.tick(now, self.cfg.consumer_session_timeout_ms);
                    if let Err(e) = persist(records) {
                        tracing::warn!(group = %gid, error = %e, "storing expired members failed");
                    }
                }
            }
            if g.is_empty() && g.offsets.is_empty() {
                dead.push(gid.clone());
            }
        }
        for gid in dead {
            if let Some(g) = groups.get(&gid) {
                let tomb = Self::tombstones(&gid, g);
                if (self.writer(&gid))(tomb).is_ok() {
                    groups.remove(&gid);
                }
            }
        }
    }

    /// offsets.retention.minutes (KIP-211): offsets of an empty group expire once the group
    /// has been empty and the offset uncommitted for the retention; offsets of topics a
    /// non-empty consumer group no longer subscribes to expire a retention after their commit.
    /// Returns how many offsets expired.
    pub fn expire_offsets(&self, topics: &dyn Topics) -> usize {
        let now = self.clock.now_ms();
        let retention = self.cfg.offsets_retention_ms;
        let mut groups = self.groups.lock();
        let mut expired = 0;
        for (gid, g) in groups.iter_mut() {
            let subscribed: Option<BTreeSet<String>> = match &g.kind {
                _ if g_is_empty(g) => None,
                Kind::Classic(c) => match c.subscribed_topics() {
                    Some(t) => Some(t),
                    None => continue,
                },
                Kind::Consumer(c) => Some(c.subscribed_topic_names(topics)),
            };
            let empty_since = g.state_timestamp_ms();
            let gone: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|((t, _), v)| match &subscribed {
                    None => now - v.commit_timestamp_ms.max(empty_since) >= retention,
                    Some(sub) => !sub.contains(t) && now - v.commit_timestamp_ms >= retention,
                })
                .map(|(k, _)| k.clone())
                .collect();
            if gone.is_empty() {
                continue;
            }
            let records = gone
                .iter()
                .map(|(t, p)| {
                    (RecordKey::Offset { group: gid.clone(), topic: t.clone(), partition: *p }, None)
                })
                .collect();
            if (self.writer(gid))(records).is_ok() {
                for k in &gone {
                    g.offsets.remove(k);
                }
                expired += gone.len();
            }
        }
        expired
    }

    // ---- the log ---------------------------------------------------------------------------

    /// Applies one record of the internal log (in log order) while loading.
    pub fn replay(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), GroupError> {
        let k = codec::decode_key(key)?;
        let v = value.map(|v| codec::decode_value(&k, v)).transpose()?;
        let now = self.clock.now_ms();
        let gid = k.group().to_string();
        let mut groups = self.groups.lock();
        let default_assignor =
            self.cfg.consumer_assignors.first().cloned().unwrap_or_else(|| "uniform".into());
        match (k, v) {
            (RecordKey::Offset { topic, partition, .. }, Some(RecordValue::Offset(v))) => {
                let g = groups.entry(gid.clone()).or_insert_with(|| Group {
                    kind: Kind::Classic(ClassicGroup::new(&gid, now)),
                    offsets: BTreeMap::new(),
                });
                g.offsets.insert((topic, partition), v);
            }
            (RecordKey::Offset { topic, partition, .. }, None) => {
                if let Some(g) = groups.get_mut(&gid) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            (RecordKey::ClassicGroup { .. }, Some(RecordValue::ClassicGroup(v))) => {
                let offsets = groups.remove(&gid).map(|g| g.offsets).unwrap_or_default();
                groups.insert(
                    gid.clone(),
                    Group { kind: Kind::Classic(ClassicGroup::from_record(&gid, &v, now)), offsets },
                );
            }
            (RecordKey::ConsumerGroup { .. }, Some(RecordValue::ConsumerGroup(v))) => {
                let g = groups.entry(gid.clone()).or_insert_with(|| Group {
                    kind: Kind::Consumer(ConsumerGroup::new(&gid, &default_assignor, now)),
                    offsets: BTreeMap::new(),
                });
                if !matches!(g.kind, Kind::Consumer(_)) {
                    g.kind = Kind::Consumer(ConsumerGroup::new(&gid, &default_assignor, now));
                }
                if let Kind::Consumer(c) = &mut g.kind {
                    c.replay_group(&v);
                }
            }
            (RecordKey::ConsumerMember { member_id, .. }, v) => {
                let v = match v {
                    Some(RecordValue::ConsumerMember(m)) => Some(*m),
                    _ => None,
                };
                let g = groups.entry(gid.clone()).or_insert_with(|| Group {
                    kind: Kind::Consumer(ConsumerGroup::new(&gid, &default_assignor, now)),
                    offsets: BTreeMap::new(),
                });
                if !matches!(g.kind, Kind::Consumer(_)) {
                    g.kind = Kind::Consumer(ConsumerGroup::new(&gid, &default_assignor, now));
                }
                if let Kind::Consumer(c) = &mut g.kind {
                    c.replay_member(&member_id, v, now);
                }
            }
            (RecordKey::ClassicGroup { .. } | RecordKey::ConsumerGroup { .. }, None) => {
                if let Some(g) = groups.get_mut(&gid) {
                    g.kind = Kind::Classic(ClassicGroup::new(&gid, now));
                    if g.offsets.is_empty() {
                        groups.remove(&gid);
                    }
                }
            }
            (k, v) => return Err(GroupError::Corrupt(format!("value {v:?} does not match key {k:?}"))),
        }
        Ok(())
    }

    /// Every live record of the groups in internal-log `partition`: what a checkpoint of that
    /// partition must contain to replace everything before it. Written under the lock so no
    /// change of these groups can interleave.
    pub fn checkpoint(&self, partition: i32) -> Result<usize, GroupError> {
        let groups = self.groups.lock();
        let mut records = Vec::new();
        for (gid, g) in groups.iter() {
            if self.partition_of(gid) != partition {
                continue;
            }
            match &g.kind {
                Kind::Classic(c) if c.generation > 0 || !c.members.is_empty() => records.push((
                    RecordKey::ClassicGroup { group: gid.clone() },
                    Some(RecordValue::ClassicGroup(c.record())),
                )),
                Kind::Classic(_) => {}
                Kind::Consumer(c) => records.extend(c.records()),
            }
            for ((t, p), v) in &g.offsets {
                records.push((
                    RecordKey::Offset { group: gid.clone(), topic: t.clone(), partition: *p },
                    Some(RecordValue::Offset(v.clone())),
                ));
            }
        }
        let n = records.len();
        // Bounded batches so one checkpoint never exceeds the log's batch size.
        for chunk in encode_records(records).chunks(500) {
            self.log.append(partition, chunk)?;
        }
        Ok(n)
    }

    /// Live keys in a partition (groups + offsets), to decide when a checkpoint pays off.
    pub fn live_records(&self, partition: i32) -> usize {
        let groups = self.groups.lock();
        groups
            .iter()
            .filter(|(gid, _)| self.partition_of(gid) == partition)
            .map(|(_, g)| {
                g.offsets.len()
                    + match &g.kind {
                        Kind::Classic(_) => 1,
                        Kind::Consumer(c) => 1 + c.members.len(),
                    }
            })
            .sum()
    }

    /// Committed offsets of every group, for lag.
    pub fn committed(&self) -> Vec<GroupLag> {
        let groups = self.groups.lock();
        let mut out = Vec::new();
        for (gid, g) in groups.iter() {
            for ((t, p), v) in &g.offsets {
                out.push(GroupLag {
                    group: gid.clone(),
                    topic: t.clone(),
                    partition: *p,
                    committed_offset: v.offset,
                });
            }
        }
        out
    }

    /// (group, state, members) of every group, for metrics.
    pub fn summary(&self) -> Vec<(String, &'static str, usize)> {
        let groups = self.groups.lock();
        groups
            .iter()
            .map(|(gid, g)| {
                let n = match &g.kind {
                    Kind::Classic(c) => c.members.len(),
                    Kind::Consumer(c) => c.members.len(),
                };
                (gid.clone(), g.state_name(), n)
            })
            .collect()
    }
}

fn g_is_empty(g: &Group) -> bool {
    g.is_empty()
}

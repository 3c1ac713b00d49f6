//! The KIP-848 consumer group protocol: members heartbeat with their subscription and the
//! partitions they own; the coordinator computes a target assignment with a server-side
//! assignor and reconciles each member towards it.
//!
//! Epochs: the group epoch grows whenever membership, a subscription or the partition count
//! of a subscribed topic changes; the target assignment is recomputed at that epoch. A member
//! reaches the new epoch only after it has released the partitions it must give up: first it
//! is sent its assignment minus those partitions and keeps its epoch (UNREVOKED_PARTITIONS);
//! when a heartbeat shows they are no longer owned, it moves to the target epoch and receives
//! the partitions of its target that no other member still owns or is revoking (those arrive on
//! a later heartbeat, UNRELEASED_PARTITIONS). So no partition is owned by two members at once.
//! A member that does not revoke within its rebalance timeout, or stops heartbeating for
//! group.consumer.session.timeout.ms, is fenced and removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribeAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribeTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions as HeartbeatTopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use regex::Regex;
use uuid::Uuid;

use crate::assignor::{self, MemberSpec};
use crate::classic::Ctx;
use crate::codec::{ConsumerGroupValue, ConsumerMemberValue, Partitions, RecordKey, RecordValue};
use crate::Topics;

/// Bound on a subscription regex, so one member cannot make every heartbeat expensive.
const MAX_REGEX_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub member_id: String,
    pub value: ConsumerMemberValue,
    last_heartbeat_ms: i64,
    revocation_deadline_ms: i64,
    /// The current assignment was sent to the member since it last changed.
    sent: bool,
}

#[derive(Debug)]
pub struct ConsumerGroup {
    pub id: String,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: BTreeMap<String, Partitions>,
    static_members: HashMap<String, String>,
    /// (topic id, partitions) of every subscribed topic when the target was computed.
    topology: BTreeMap<Uuid, i32>,
    /// Set by replay: recompute the target on the next heartbeat.
    target_stale: bool,
    pub state_timestamp_ms: i64,
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn hb_error(code: ResponseError, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code.code())
        .with_error_message(Some(s(message)))
        .with_member_epoch(-1)
}

fn overlaps(a: &Partitions, b: &Partitions) -> bool {
    a.iter().any(|(t, ps)| b.get(t).is_some_and(|qs| !ps.is_disjoint(qs)))
}

fn minus(a: &Partitions, b: &Partitions) -> Partitions {
    let mut out = Partitions::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(qs) => ps.difference(qs).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

pub(crate) fn partitions_from_request(
    tps: &[kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions],
) -> Partitions {
    let mut out = Partitions::new();
    for tp in tps {
        if !tp.partitions.is_empty() {
            out.entry(tp.topic_id).or_default().extend(tp.partitions.iter().copied());
        }
    }
    out
}

pub(crate) fn validate_regex(r: &str) -> Result<Regex, String> {
    if r.len() > MAX_REGEX_BYTES {
        return Err(format!("regex longer than {MAX_REGEX_BYTES} bytes"));
    }
    // RE2J (Kafka) and the regex crate share RE2 syntax; Kafka matches the whole name.
    Regex::new(&format!("^(?:{r})$")).map_err(|e| e.to_string())
}

impl ConsumerGroup {
    pub fn new(id: &str, assignor: &str, now: i64) -> Self {
        Self {
            id: id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            assignor: assignor.to_string(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            static_members: HashMap::new(),
            topology: BTreeMap::new(),
            target_stale: false,
            state_timestamp_ms: now,
        }
    }

    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch != self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.value.member_epoch != self.assignment_epoch
                || !m.value.pending_revocation.is_empty()
                || self.target.get(&m.member_id).is_some_and(|t| *t != m.value.assigned)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    // ---- replay ----------------------------------------------------------------------------

    pub(crate) fn replay_group(&mut self, v: &ConsumerGroupValue) {
        self.epoch = v.epoch;
        self.assignment_epoch = v.epoch;
        self.assignor = v.assignor.clone();
        self.target_stale = true;
    }

    pub(crate) fn replay_member(&mut self, member_id: &str, v: Option<ConsumerMemberValue>, now: i64) {
        match v {
            Some(v) => {
                if let Some(i) = &v.instance_id {
                    self.static_members.insert(i.clone(), member_id.to_string());
                }
                self.members.insert(
                    member_id.to_string(),
                    ConsumerMember {
                        member_id: member_id.to_string(),
                        value: v,
                        last_heartbeat_ms: now,
                        revocation_deadline_ms: i64::MAX,
                        sent: false,
                    },
                );
            }
            None => {
                self.remove_member(member_id);
            }
        }
        self.target_stale = true;
    }

    /// Every live record of the group, for the log's checkpoint.
    pub(crate) fn records(&self) -> Vec<(RecordKey, Option<RecordValue>)> {
        let mut out = vec![self.group_record()];
        for m in self.members.values() {
            out.push(self.member_record(&m.member_id));
        }
        out
    }

    fn group_record(&self) -> (RecordKey, Option<RecordValue>) {
        (
            RecordKey::ConsumerGroup { group: self.id.clone() },
            Some(RecordValue::ConsumerGroup(ConsumerGroupValue {
                epoch: self.epoch,
                assignor: self.assignor.clone(),
            })),
        )
    }

    fn member_record(&self, member_id: &str) -> (RecordKey, Option<RecordValue>) {
        let key = RecordKey::ConsumerMember { group: self.id.clone(), member_id: member_id.to_string() };
        let value =
            self.members.get(member_id).map(|m| RecordValue::ConsumerMember(Box::new(m.value.clone())));
        (key, value)
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(i) = &m.value.instance_id {
                if self.static_members.get(i).is_some_and(|x| x == member_id) {
                    self.static_members.remove(i);
                }
            }
        }
        self.target.remove(member_id);
    }

    // ---- assignment ------------------------------------------------------------------------

    fn resolve(
        &self,
        v: &ConsumerMemberValue,
        topics: &dyn Topics,
        names: &mut Option<Vec<String>>,
    ) -> BTreeSet<Uuid> {
        let mut out = BTreeSet::new();
        for n in &v.subscribed_topic_names {
            if let Some((id, _)) = topics.by_name(n) {
                out.insert(id);
            }
        }
        if let Some(r) = v.subscribed_topic_regex.as_deref().and_then(|r| validate_regex(r).ok()) {
            // A regex sees only the topics of its group's namespace, by the names its clients
            // use: a tenant's `.*` never reaches another tenant's (or the default namespace's).
            let ns = kora_common::Namespace::of(&self.id);
            for n in names.get_or_insert_with(|| topics.names()).iter() {
                if ns.unscope(n).is_some_and(|plain| r.is_match(plain)) {
                    if let Some((id, _)) = topics.by_name(n) {
                        out.insert(id);
                    }
                }
            }
        }
        out
    }

    fn current_topology(&self, topics: &dyn Topics) -> (BTreeMap<Uuid, i32>, Vec<MemberSpec>) {
        let mut names = None;
        let mut topology = BTreeMap::new();
        let mut specs = Vec::with_capacity(self.members.len());
        for m in self.members.values() {
            let subscribed = self.resolve(&m.value, topics, &mut names);
            for id in &subscribed {
                if let Some((_, n)) = topics.by_id(id) {
                    topology.insert(*id, n);
                }
            }
            specs.push(MemberSpec {
                member_id: m.member_id.clone(),
                topics: subscribed,
                current: self.target.get(&m.member_id).cloned().unwrap_or_default(),
            });
        }
        (topology, specs)
    }

    /// Recomputes the target when the epoch moved or subscribed topics changed shape.
    fn refresh_target(&mut self, topics: &dyn Topics, already_bumped: bool) -> bool {
        let (topology, specs) = self.current_topology(topics);
        let mut bumped = false;
        if topology != self.topology && !self.target_stale && !already_bumped {
            self.epoch += 1;
            bumped = true;
        }
        if self.epoch != self.assignment_epoch || bumped || self.target_stale {
            let name = self
                .members
                .values()
                .find_map(|m| m.value.server_assignor.clone())
                .unwrap_or_else(|| self.assignor.clone());
            self.target = assignor::assign(&name, &specs, &topology);
            self.assignor = name;
            self.assignment_epoch = self.epoch;
            self.topology = topology;
            self.target_stale = false;
        }
        bumped
    }

    /// Moves one member towards its target. `owned`: what the member says it owns, if it said.
    /// Returns whether the member changed; `Err` if it was fenced.
    fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<&Partitions>,
        now: i64,
    ) -> Result<bool, ResponseError> {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let mut held_by_others = Partitions::new();
        for (id, m) in &self.members {
            if id != member_id {
                for (t, ps) in m.value.assigned.iter().chain(m.value.pending_revocation.iter()) {
                    held_by_others.entry(*t).or_default().extend(ps.iter().copied());
                }
            }
        }
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let mut changed = false;
        if !m.value.pending_revocation.is_empty() {
            let released = owned.is_some_and(|o| !overlaps(o, &m.value.pending_revocation));
            if released {
                m.value.pending_revocation.clear();
                changed = true;
            } else if now > m.revocation_deadline_ms {
                return Err(ResponseError::FencedMemberEpoch);
            } else {
                return Ok(false);
            }
        }
        let revoke = minus(&m.value.assigned, &target);
        if !revoke.is_empty() {
            m.value.assigned = minus(&m.value.assigned, &revoke);
            m.value.pending_revocation = revoke;
            m.revocation_deadline_ms = now + m.value.rebalance_timeout_ms.max(0) as i64;
            m.sent = false;
            return Ok(true);
        }
        let wanted = minus(&target, &m.value.assigned);
        let free = minus(&wanted, &held_by_others);
        if !free.is_empty() {
            for (t, ps) in free {
                m.value.assigned.entry(t).or_default().extend(ps);
            }
            m.sent = false;
            changed = true;
        }
        if m.value.member_epoch != assignment_epoch {
            m.value.previous_member_epoch = m.value.member_epoch;
            m.value.member_epoch = assignment_epoch;
            changed = true;
        }
        Ok(changed)
    }

    // ---- the heartbeat -----------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn heartbeat(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: &ConsumerGroupHeartbeatRequest,
        client_id: &str,
        client_host: &str,
        topics: &dyn Topics,
    ) -> ConsumerGroupHeartbeatResponse {
        let now = ctx.now;
        let epoch = req.member_epoch;
        let instance_id = req.instance_id.as_ref().map(|x| x.to_string());
        if let Some(a) = &req.server_assignor {
            if !ctx.cfg.consumer_assignors.iter().any(|x| x == a.as_str()) {
                return hb_error(ResponseError::UnsupportedAssignor, &format!("assignor {a} is not enabled"));
            }
        }
        if let Some(r) = &req.subscribed_topic_regex {
            if let Err(e) = validate_regex(r) {
                return hb_error(ResponseError::InvalidRegularExpression, &e);
            }
        }
        let mut records: Vec<(RecordKey, Option<RecordValue>)> = Vec::new();
        let epoch_before = self.epoch;
        let mut member_id = req.member_id.to_string();
        let mut new_member = false;

        if epoch == -1 || epoch == -2 {
            let Some(m) = self.members.get_mut(&member_id) else {
                return hb_error(ResponseError::UnknownMemberId, "unknown member");
            };
            if epoch == -2 && m.value.instance_id.is_some() {
                // A static member's temporary leave: it keeps its partitions for the session
                // timeout, waiting for the same instance to come back.
                m.last_heartbeat_ms = now;
                m.value.member_epoch = -2;
                records.push(self.member_record(&member_id));
            } else {
                self.remove_member(&member_id);
                self.epoch += 1;
                records.push(self.member_record(&member_id));
            }
            if self.epoch != epoch_before {
                records.push(self.group_record());
            }
            if let Err(e) = (ctx.persist)(records) {
                tracing::warn!(group = %self.id, error = %e, "storing member leave failed");
            }
            return ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(s(&member_id)))
                .with_member_epoch(epoch)
                .with_heartbeat_interval_ms(0);
        }

        if epoch == 0 {
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return hb_error(
                    ResponseError::InvalidRequest,
                    "a joining member must send its subscription",
                );
            }
            if member_id.is_empty() {
                member_id = Uuid::new_v4().simple().to_string();
            }
            let replaced = instance_id.as_ref().and_then(|i| self.static_members.get(i)).cloned();
            if let Some(old) = replaced.filter(|old| *old != member_id) {
                let still_active = self.members.get(&old).is_some_and(|m| m.value.member_epoch != -2);
                if still_active {
                    return hb_error(ResponseError::UnreleasedInstanceId, "the instance id is still in use");
                }
                // The static member is back: it resumes its epoch and assignment.
                if let Some(mut m) = self.members.remove(&old) {
                    records.push((
                        RecordKey::ConsumerMember { group: self.id.clone(), member_id: old.clone() },
                        None,
                    ));
                    m.member_id = member_id.clone();
                    m.value.member_epoch = m.value.previous_member_epoch.max(0);
                    m.sent = false;
                    if let Some(t) = self.target.remove(&old) {
                        self.target.insert(member_id.clone(), t);
                    }
                    self.members.insert(member_id.clone(), m);
                    if let Some(i) = &instance_id {
                        self.static_members.insert(i.clone(), member_id.clone());
                    }
                }
            } else if let Some(m) = self.members.get_mut(&member_id) {
                // A rejoin of a known id starts over: it owns nothing.
                m.value.assigned.clear();
                m.value.pending_revocation.clear();
                m.value.member_epoch = 0;
                m.sent = false;
            } else {
                if self.members.len() >= ctx.cfg.consumer_max_size {
                    return hb_error(ResponseError::GroupMaxSizeReached, "group.consumer.max.size reached");
                }
                if let Some(i) = &instance_id {
                    self.static_members.insert(i.clone(), member_id.clone());
                }
                self.members.insert(
                    member_id.clone(),
                    ConsumerMember {
                        member_id: member_id.clone(),
                        value: ConsumerMemberValue {
                            instance_id: instance_id.clone(),
                            rebalance_timeout_ms: if req.rebalance_timeout_ms > 0 {
                                req.rebalance_timeout_ms
                            } else {
                                300_000
                            },
                            ..Default::default()
                        },
                        last_heartbeat_ms: now,
                        revocation_deadline_ms: i64::MAX,
                        sent: false,
                    },
                );
                new_member = true;
            }
        } else {
            let Some(m) = self.members.get(&member_id) else {
                return hb_error(ResponseError::UnknownMemberId, "unknown member");
            };
            if let Some(i) = &instance_id {
                if self.static_members.get(i).is_some_and(|cur| *cur != member_id) {
                    return hb_error(
                        ResponseError::FencedInstanceId,
                        "the instance id belongs to another member",
                    );
                }
            }
            if epoch != m.value.member_epoch {
                // A lost response: the member still at the previous epoch, owning a subset of
                // what it has now, is told again.
                let owned = req.topic_partitions.as_deref().map(partitions_from_request);
                let benign = epoch == m.value.previous_member_epoch
                    && owned.as_ref().is_some_and(|o| minus(o, &m.value.assigned).is_empty());
                if !benign {
                    return hb_error(ResponseError::FencedMemberEpoch, "the member epoch is fenced");
                }
            }
        }

        // Subscription and member details.
        let Some(m) = self.members.get_mut(&member_id) else {
            return hb_error(ResponseError::UnknownMemberId, "unknown member");
        };
        let mut member_changed = epoch == 0;
        let mut subscription_changed = false;
        m.last_heartbeat_ms = now;
        if let Some(names) = &req.subscribed_topic_names {
            let names: Vec<String> = names.iter().map(|n: &TopicName| n.to_string()).collect();
            if names != m.value.subscribed_topic_names {
                m.value.subscribed_topic_names = names;
                subscription_changed = true;
            }
        }
        if let Some(r) = &req.subscribed_topic_regex {
            let r = Some(r.to_string()).filter(|r| !r.is_empty());
            if r != m.value.subscribed_topic_regex {
                m.value.subscribed_topic_regex = r;
                subscription_changed = true;
            }
        }
        if let Some(a) = &req.server_assignor {
            let a = Some(a.to_string());
            if a != m.value.server_assignor {
                m.value.server_assignor = a;
                subscription_changed = true;
            }
        }
        if req.rack_id.is_some() && req.rack_id.as_ref().map(|x| x.to_string()) != m.value.rack_id {
            m.value.rack_id = req.rack_id.as_ref().map(|x| x.to_string());
            member_changed = true;
        }
        if req.rebalance_timeout_ms > 0 && req.rebalance_timeout_ms != m.value.rebalance_timeout_ms {
            m.value.rebalance_timeout_ms = req.rebalance_timeout_ms;
            member_changed = true;
        }
        if m.value.client_id != client_id || m.value.client_host != client_host {
            m.value.client_id = client_id.to_string();
            m.value.client_host = client_host.to_string();
            member_changed = true;
        }
        // One epoch bump per heartbeat, whatever changed.
        let bump = subscription_changed || new_member;
        if bump {
            self.epoch += 1;
            member_changed = true;
        }
        self.refresh_target(topics, bump);
        let owned = req.topic_partitions.as_deref().map(partitions_from_request);
        match self.reconcile(&member_id, owned.as_ref(), now) {
            Ok(changed) => member_changed |= changed,
            Err(code) => {
                tracing::info!(group = %self.id, member = %member_id, "member fenced: revocation not acknowledged in time");
                self.remove_member(&member_id);
                self.epoch += 1;
                records.push(self.member_record(&member_id));
                records.push(self.group_record());
                if let Err(e) = (ctx.persist)(records) {
                    tracing::warn!(group = %self.id, error = %e, "storing fenced member failed");
                }
                return hb_error(code, "the member did not revoke its partitions in time");
            }
        }
        if member_changed {
            records.push(self.member_record(&member_id));
        }
        if self.epoch != epoch_before {
            records.push(self.group_record());
            self.state_timestamp_ms = now;
        }
        if !records.is_empty() {
            if let Err(e) = (ctx.persist)(records) {
                tracing::warn!(group = %self.id, error = %e, "storing consumer group state failed");
                return hb_error(ResponseError::CoordinatorNotAvailable, "the offsets log is unavailable");
            }
        }
        let Some(m) = self.members.get_mut(&member_id) else {
            return hb_error(ResponseError::UnknownMemberId, "unknown member");
        };
        let send = !m.sent || owned.as_ref().is_some_and(|o| *o != m.value.assigned) || epoch == 0;
        m.sent = true;
        let mut resp = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s(&member_id)))
            .with_member_epoch(m.value.member_epoch)
            .with_heartbeat_interval_ms(ctx.cfg.consumer_heartbeat_interval_ms);
        if send {
            resp.assignment = Some(
                HeartbeatAssignment::default().with_topic_partitions(
                    m.value
                        .assigned
                        .iter()
                        .map(|(t, ps)| {
                            HeartbeatTopicPartitions::default()
                                .with_topic_id(*t)
                                .with_partitions(ps.iter().copied().collect())
                        })
                        .collect(),
                ),
            );
        }
        resp
    }

    /// Session and revocation timeouts. Returns the records to write.
    pub(crate) fn tick(
        &mut self,
        now: i64,
        session_timeout_ms: i32,
    ) -> Vec<(RecordKey, Option<RecordValue>)> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now - m.last_heartbeat_ms > session_timeout_ms as i64
                    || (!m.value.pending_revocation.is_empty() && now > m.revocation_deadline_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        let mut records = Vec::new();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member expired");
            self.remove_member(&id);
            records.push(self.member_record(&id));
        }
        if !records.is_empty() {
            self.epoch += 1;
            self.state_timestamp_ms = now;
            records.push(self.group_record());
        }
        records
    }

    pub(crate) fn validate_commit(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        let m = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if epoch > m.value.member_epoch {
            return Err(ResponseError::FencedMemberEpoch);
        }
        if epoch < m.value.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    pub fn subscribed_topic_names(&self, topics: &dyn Topics) -> BTreeSet<String> {
        let mut names = None;
        let mut out = BTreeSet::new();
        for m in self.members.values() {
            for id in self.resolve(&m.value, topics, &mut names) {
                if let Some((n, _)) = topics.by_id(&id) {
                    out.insert(n);
                }
            }
        }
        out
    }

    pub(crate) fn describe(&self, topics: &dyn Topics) -> DescribedGroup {
        let conv = |p: &Partitions| {
            DescribeAssignment::default().with_topic_partitions(
                p.iter()
                    .map(|(t, ps)| {
                        DescribeTopicPartitions::default()
                            .with_topic_id(*t)
                            .with_topic_name(TopicName(s(&topics.by_id(t).map(|x| x.0).unwrap_or_default())))
                            .with_partitions(ps.iter().copied().collect())
                    })
                    .collect(),
            )
        };
        DescribedGroup::default()
            .with_group_id(s(&self.id).into())
            .with_group_state(s(self.state()))
            .with_group_epoch(self.epoch)
            .with_assignment_epoch(self.assignment_epoch)
            .with_assignor_name(s(&self.assignor))
            .with_authorized_operations(i32::MIN)
            .with_members(
                self.members
                    .values()
                    .map(|m| {
                        DescribedMember::default()
                            .with_member_id(s(&m.member_id))
                            .with_instance_id(m.value.instance_id.as_deref().map(s))
                            .with_rack_id(m.value.rack_id.as_deref().map(s))
                            .with_member_epoch(m.value.member_epoch)
                            .with_client_id(s(&m.value.client_id))
                            .with_client_host(s(&m.value.client_host))
                            .with_subscribed_topic_names(
                                m.value.subscribed_topic_names.iter().map(|n| TopicName(s(n))).collect(),
                            )
                            .with_subscribed_topic_regex(m.value.subscribed_topic_regex.as_deref().map(s))
                            .with_assignment(conv(&m.value.assigned))
                            .with_target_assignment(conv(
                                &self.target.get(&m.member_id).cloned().unwrap_or_default(),
                            ))
                            .with_member_type(1)
                    })
                    .collect(),
            )
    }

    /// The member's assignment as (topic name, partitions), for classic-style descriptions.
    pub fn assignment_by_name(&self, member_id: &str, topics: &dyn Topics) -> Vec<(String, Vec<i32>)> {
        self.members
            .get(member_id)
            .map(|m| {
                m.value
                    .assigned
                    .iter()
                    .filter_map(|(t, ps)| topics.by_id(t).map(|(n, _)| (n, ps.iter().copied().collect())))
                    .collect()
            })
            .unwrap_or_default()
    }
}

//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as Kafka's
//! GroupCoordinator runs it.
//!
//! States: `Empty` → (a join) → `PreparingRebalance` → (every known member rejoined, or the
//! rebalance timeout passed) → `CompletingRebalance` (generation + 1, protocol chosen, leader
//! gets the member list) → (the leader's SyncGroup, written to the log) → `Stable`. A join with
//! new metadata, a leave or an expired session sends a Stable or CompletingRebalance group
//! back to `PreparingRebalance`. JoinGroup and SyncGroup responses are parked (oneshot
//! senders) until the state they wait for is reached; the coordinator's tick drives timeouts.
//!
//! Static members (KIP-345) are keyed by group.instance.id: a known instance rejoining with a
//! new member id replaces the old id without a rebalance when its metadata is unchanged, and the
//! old id is fenced (FENCED_INSTANCE_ID). Dynamic members joining without an id get one back
//! with MEMBER_ID_REQUIRED (KIP-394) and must rejoin with it within their session timeout.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use crate::codec::{ClassicGroupValue, ClassicMemberValue, RecordKey, RecordValue};
use crate::GroupConfig;
use crate::GroupError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    pub fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

#[derive(Debug)]
pub struct ClassicMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_seq: u64,
    last_heartbeat_ms: i64,
    join_waiter: Option<(oneshot::Sender<JoinGroupResponse>, i16)>,
    sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
}

impl ClassicMember {
    /// The member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// The result of a JoinGroup or SyncGroup: an answer now, or one that arrives when the group
/// reaches the state the request waits for.
#[derive(Debug)]
pub enum Parked<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// Records to write: a key and its value, or `None` for a tombstone.
pub(crate) type Records = Vec<(RecordKey, Option<RecordValue>)>;

pub(crate) struct Ctx<'a> {
    pub now: i64,
    pub cfg: &'a GroupConfig,
    /// Writes records to the group's internal-log partition.
    pub persist: &'a mut dyn FnMut(Records) -> Result<(), GroupError>,
}

#[derive(Debug)]
pub struct ClassicGroup {
    pub id: String,
    pub state: ClassicState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, ClassicMember>,
    /// group.instance.id → member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED: id → deadline.
    pending: HashMap<String, i64>,
    pub state_timestamp_ms: i64,
    rebalance_deadline_ms: i64,
    initial_delay_until_ms: Option<i64>,
    sync_deadline_ms: i64,
    next_seq: u64,
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

pub(crate) fn join_error(code: ResponseError, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code.code())
        .with_generation_id(-1)
        .with_member_id(s(member_id))
        .with_protocol_name(Some(StrBytes::default()))
}

pub(crate) fn sync_error(code: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code.code())
}

fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl ClassicGroup {
    pub fn new(id: &str, now: i64) -> Self {
        Self {
            id: id.to_string(),
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            state_timestamp_ms: now,
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
            sync_deadline_ms: 0,
            next_seq: 0,
        }
    }

    /// Rebuilds a group from its last GroupMetadataValue. Sessions restart from `now`.
    pub fn from_record(id: &str, v: &ClassicGroupValue, now: i64) -> Self {
        let mut g = Self::new(id, now);
        g.generation = v.generation;
        g.protocol_type = Some(v.protocol_type.clone()).filter(|p| !p.is_empty());
        g.protocol = v.protocol.clone();
        g.leader = v.leader.clone();
        g.state_timestamp_ms = if v.state_timestamp_ms > 0 { v.state_timestamp_ms } else { now };
        for m in &v.members {
            let protocols =
                v.protocol.iter().map(|p| (p.clone(), m.subscription.clone())).collect::<Vec<_>>();
            g.next_seq += 1;
            if let Some(i) = &m.instance_id {
                g.static_members.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                ClassicMember {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocol_type: v.protocol_type.clone(),
                    protocols,
                    assignment: m.assignment.clone(),
                    join_seq: g.next_seq,
                    last_heartbeat_ms: now,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        g.state = if g.members.is_empty() { ClassicState::Empty } else { ClassicState::Stable };
        g
    }

    pub fn record(&self) -> ClassicGroupValue {
        ClassicGroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| ClassicMemberValue {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self.protocol.as_deref().map(|p| m.metadata(p)).unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn persist(&self, ctx: &mut Ctx<'_>) -> Result<(), GroupError> {
        (ctx.persist)(vec![(
            RecordKey::ClassicGroup { group: self.id.clone() },
            Some(RecordValue::ClassicGroup(self.record())),
        )])
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn set_state(&mut self, st: ClassicState, now: i64) {
        self.state = st;
        self.state_timestamp_ms = now;
    }

    /// Protocols every member supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols
            .iter()
            .any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Vec<&str> = Vec::new();
        if let Some(first) = self.members.values().min_by_key(|m| m.join_seq) {
            for (name, _) in &first.protocols {
                if self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)) {
                    candidates.push(name);
                }
            }
        }
        // Each member votes for its most preferred candidate; ties go to the earlier candidate
        // in the longest-standing member's order.
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m.protocols.iter().find_map(|(n, _)| candidates.iter().position(|c| c == n)) {
                votes[i] += 1;
            }
        }
        let best = votes.iter().enumerate().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?.0;
        Some(candidates[best].to_string())
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members.values().map(|m| m.rebalance_timeout_ms as i64).max().unwrap_or(0)
    }

    fn prepare_rebalance(&mut self, now: i64, initial_delay_ms: i32) {
        if self.state == ClassicState::CompletingRebalance {
            // Syncs parked for the generation that will not complete.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(sync_error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let was_empty = self.state == ClassicState::Empty;
        self.set_state(ClassicState::PreparingRebalance, now);
        self.rebalance_deadline_ms = now + self.max_rebalance_timeout();
        self.initial_delay_until_ms =
            (was_empty && initial_delay_ms > 0).then_some(now + initial_delay_ms as i64);
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Completes the join phase if it may complete now.
    fn maybe_complete_join(&mut self, ctx: &mut Ctx<'_>) {
        if self.state != ClassicState::PreparingRebalance {
            return;
        }
        let delay_over = self.initial_delay_until_ms.is_none_or(|t| ctx.now >= t);
        if (self.all_joined() && delay_over) || ctx.now >= self.rebalance_deadline_ms {
            self.complete_join(ctx);
        }
    }

    fn complete_join(&mut self, ctx: &mut Ctx<'_>) {
        // Members that did not rejoin in time leave the group.
        let gone: Vec<String> =
            self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.member_id.clone()).collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.initial_delay_until_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(ClassicState::Empty, ctx.now);
            if let Err(e) = self.persist(ctx) {
                tracing::warn!(group = %self.id, error = %e, "storing empty group failed");
            }
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.values().min_by_key(|m| m.join_seq).map(|m| m.member_id.clone());
        }
        self.set_state(ClassicState::CompletingRebalance, ctx.now);
        self.sync_deadline_ms = ctx.now + self.max_rebalance_timeout();
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let roster = self.roster();
        for m in self.members.values_mut() {
            let Some((w, _version)) = m.join_waiter.take() else { continue };
            m.last_heartbeat_ms = ctx.now;
            let is_leader = m.member_id == leader;
            let resp = JoinGroupResponse::default()
                .with_generation_id(self.generation)
                .with_protocol_type(self.protocol_type.as_deref().map(s))
                .with_protocol_name(Some(s(&protocol)))
                .with_leader(s(&leader))
                .with_member_id(s(&m.member_id))
                .with_members(if is_leader { roster.clone() } else { Vec::new() });
            let _ = w.send(resp);
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(i) = &m.instance_id {
                if self.static_members.get(i).is_some_and(|x| x == id) {
                    self.static_members.remove(i);
                }
            }
            if let Some((w, _)) = m.join_waiter {
                let _ = w.send(join_error(ResponseError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter {
                let _ = w.send(sync_error(ResponseError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// A member left or expired: rebalance the rest.
    fn member_gone(&mut self, id: &str, ctx: &mut Ctx<'_>) {
        self.remove_member(id);
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(ctx.now, 0);
                self.maybe_complete_join(ctx);
            }
            ClassicState::PreparingRebalance => self.maybe_complete_join(ctx),
            ClassicState::Empty => {}
        }
        if self.members.is_empty() && self.state != ClassicState::Empty {
            self.complete_join(ctx);
        }
    }

    pub(crate) fn join(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: &JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> Parked<JoinGroupResponse> {
        let member_id = req.member_id.to_string();
        let instance_id = req.group_instance_id.as_ref().map(|x| x.to_string());
        let session = req.session_timeout_ms;
        let rebalance = if version == 0 { session } else { req.rebalance_timeout_ms };
        if session < ctx.cfg.min_session_timeout_ms || session > ctx.cfg.max_session_timeout_ms {
            return Parked::Now(join_error(ResponseError::InvalidSessionTimeout, &member_id));
        }
        let protocol_type = req.protocol_type.to_string();
        let protocols: Vec<(String, Bytes)> =
            req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect();
        if !self.supports(&protocol_type, &protocols) {
            return Parked::Now(join_error(ResponseError::InconsistentGroupProtocol, &member_id));
        }
        let known = !member_id.is_empty();
        if known && !self.members.contains_key(&member_id) && !self.pending.contains_key(&member_id) {
            // A static member whose id was replaced is fenced; anyone else is unknown.
            let code = match instance_id.as_ref().and_then(|i| self.static_members.get(i)) {
                Some(current) if *current != member_id => ResponseError::FencedInstanceId,
                _ => ResponseError::UnknownMemberId,
            };
            return Parked::Now(join_error(code, &member_id));
        }
        if let (true, Some(i)) = (known, &instance_id) {
            if self.static_members.get(i).is_some_and(|cur| *cur != member_id) {
                return Parked::Now(join_error(ResponseError::FencedInstanceId, &member_id));
            }
        }
        let new_member = !self.members.contains_key(&member_id);
        if new_member && self.members.len() >= ctx.cfg.max_size {
            return Parked::Now(join_error(ResponseError::GroupMaxSizeReached, &member_id));
        }
        // A static member rejoining under a new id takes over its old identity.
        if !known {
            if let Some(old_id) = instance_id.as_ref().and_then(|i| self.static_members.get(i)).cloned() {
                return self.replace_static(
                    ctx,
                    &old_id,
                    version,
                    client_id,
                    client_host,
                    session,
                    rebalance,
                    protocols,
                );
            }
            if version >= 4 && instance_id.is_none() {
                let id = new_member_id(client_id);
                self.pending.insert(id.clone(), ctx.now + session as i64);
                return Parked::Now(join_error(ResponseError::MemberIdRequired, &id));
            }
        }
        let member_id = if known { member_id } else { new_member_id(client_id) };
        self.pending.remove(&member_id);
        let (tx, rx) = oneshot::channel();
        let changed;
        if let Some(m) = self.members.get_mut(&member_id) {
            changed = m.protocols != protocols;
            m.protocols = protocols;
            m.session_timeout_ms = session;
            m.rebalance_timeout_ms = rebalance;
            m.last_heartbeat_ms = ctx.now;
            // Answer a join that is still parked for this member before parking the new one.
            if let Some((w, _)) = m.join_waiter.take() {
                let _ = w.send(join_error(ResponseError::UnknownMemberId, &member_id));
            }
            let stable_follower = !changed && self.leader.as_deref() != Some(member_id.as_str());
            match self.state {
                ClassicState::CompletingRebalance if !changed => {
                    return Parked::Now(self.current_join_response(&member_id));
                }
                ClassicState::Stable if stable_follower => {
                    return Parked::Now(self.current_join_response(&member_id));
                }
                _ => {}
            }
            if let Some(m) = self.members.get_mut(&member_id) {
                m.join_waiter = Some((tx, version));
            }
        } else {
            changed = true;
            self.next_seq += 1;
            if let Some(i) = &instance_id {
                self.static_members.insert(i.clone(), member_id.clone());
            }
            if self.members.is_empty() {
                self.protocol_type = Some(protocol_type.clone());
            }
            self.members.insert(
                member_id.clone(),
                ClassicMember {
                    member_id: member_id.clone(),
                    instance_id,
                    client_id: client_id.to_string(),
                    client_host: client_host.to_string(),
                    session_timeout_ms: session,
                    rebalance_timeout_ms: rebalance,
                    protocol_type,
                    protocols,
                    assignment: Bytes::new(),
                    join_seq: self.next_seq,
                    last_heartbeat_ms: ctx.now,
                    join_waiter: Some((tx, version)),
                    sync_waiter: None,
                },
            );
        }
        match self.state {
            ClassicState::PreparingRebalance => {
                // New members joining during the initial delay extend it, within the
                // rebalance timeout (Kafka's InitialDelayedJoin).
                if let Some(t) = self.initial_delay_until_ms {
                    let extended = ctx.now + ctx.cfg.initial_rebalance_delay_ms as i64;
                    self.initial_delay_until_ms = Some(extended.max(t).min(self.rebalance_deadline_ms));
                }
                self.rebalance_deadline_ms = self.rebalance_deadline_ms.max(ctx.now + rebalance as i64);
            }
            _ => {
                let _ = changed;
                self.prepare_rebalance(ctx.now, ctx.cfg.initial_rebalance_delay_ms);
            }
        }
        self.maybe_complete_join(ctx);
        Parked::Wait(rx)
    }

    #[allow(clippy::too_many_arguments)]
    fn replace_static(
        &mut self,
        ctx: &mut Ctx<'_>,
        old_id: &str,
        version: i16,
        client_id: &str,
        client_host: &str,
        session: i32,
        rebalance: i32,
        protocols: Vec<(String, Bytes)>,
    ) -> Parked<JoinGroupResponse> {
        let Some(mut m) = self.members.remove(old_id) else {
            return Parked::Now(join_error(ResponseError::UnknownMemberId, ""));
        };
        let new_id = new_member_id(client_id);
        // The old incarnation's parked requests are fenced.
        if let Some((w, _)) = m.join_waiter.take() {
            let _ = w.send(join_error(ResponseError::FencedInstanceId, old_id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(sync_error(ResponseError::FencedInstanceId));
        }
        m.member_id = new_id.clone();
        m.client_id = client_id.to_string();
        m.client_host = client_host.to_string();
        m.session_timeout_ms = session;
        m.rebalance_timeout_ms = rebalance;
        m.protocols = protocols;
        m.last_heartbeat_ms = ctx.now;
        if let Some(i) = &m.instance_id {
            self.static_members.insert(i.clone(), new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), m);
        // As Kafka: a rejoin that leaves the group's protocol choice unchanged is stored and
        // answered with the current generation, also for the leader (which learns it leads;
        // from v9 it is told to skip the assignment, before that its SyncGroup in a Stable
        // group just returns the stored assignment).
        let same_protocol = self.select_protocol() == self.protocol;
        match self.state {
            ClassicState::Stable if same_protocol => {
                if let Err(e) = self.persist(ctx) {
                    tracing::warn!(group = %self.id, error = %e, "storing static member replacement failed");
                    return Parked::Now(join_error(ResponseError::CoordinatorNotAvailable, ""));
                }
                let mut resp = self.current_join_response(&new_id);
                if was_leader && version >= 9 {
                    // KIP-814: the leader learns it leads, but must not recompute assignments.
                    resp.skip_assignment = true;
                }
                Parked::Now(resp)
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join_waiter = Some((tx, version));
                }
                if self.state != ClassicState::PreparingRebalance {
                    self.prepare_rebalance(ctx.now, 0);
                }
                self.maybe_complete_join(ctx);
                Parked::Wait(rx)
            }
        }
    }

    /// Every member with its metadata for the chosen protocol: what the leader assigns from.
    fn roster(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(s(&m.member_id))
                    .with_group_instance_id(m.instance_id.as_deref().map(s))
                    .with_metadata(m.metadata(&protocol))
            })
            .collect()
    }

    fn current_join_response(&self, member_id: &str) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id { self.roster() } else { Vec::new() };
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.as_deref().map(s))
            .with_protocol_name(Some(s(&protocol)))
            .with_leader(s(&leader))
            .with_member_id(s(member_id))
            .with_members(members)
    }

    /// Checks member id, instance id and generation as SyncGroup, Heartbeat and OffsetCommit
    /// do.
    pub(crate) fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(i) = instance_id {
            match self.static_members.get(i) {
                Some(cur) if cur != member_id => return Err(ResponseError::FencedInstanceId),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub(crate) fn sync(&mut self, ctx: &mut Ctx<'_>, req: &SyncGroupRequest) -> Parked<SyncGroupResponse> {
        let member_id = req.member_id.to_string();
        if let Err(e) = self.validate_member(&member_id, req.group_instance_id.as_deref(), req.generation_id)
        {
            return Parked::Now(sync_error(e));
        }
        if req.protocol_type.as_ref().is_some_and(|p| Some(p.as_str()) != self.protocol_type.as_deref())
            || req.protocol_name.as_ref().is_some_and(|p| Some(p.as_str()) != self.protocol.as_deref())
        {
            return Parked::Now(sync_error(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            ClassicState::Empty => Parked::Now(sync_error(ResponseError::UnknownMemberId)),
            ClassicState::PreparingRebalance => Parked::Now(sync_error(ResponseError::RebalanceInProgress)),
            ClassicState::Stable => {
                let m = &self.members[&member_id];
                Parked::Now(self.sync_response(&m.assignment))
            }
            ClassicState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(&member_id) {
                    m.last_heartbeat_ms = ctx.now;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(sync_error(ResponseError::RebalanceInProgress));
                    }
                }
                if self.leader.as_deref() == Some(member_id.as_str()) {
                    let given: HashMap<&str, &Bytes> =
                        req.assignments.iter().map(|a| (a.member_id.as_str(), &a.assignment)).collect();
                    for m in self.members.values_mut() {
                        m.assignment =
                            given.get(m.member_id.as_str()).map(|b| (*b).clone()).unwrap_or_default();
                    }
                    if let Err(e) = self.persist(ctx) {
                        tracing::warn!(group = %self.id, error = %e, "storing group assignment failed");
                        for m in self.members.values_mut() {
                            m.assignment = Bytes::new();
                            if let Some(w) = m.sync_waiter.take() {
                                let _ = w.send(sync_error(ResponseError::CoordinatorNotAvailable));
                            }
                        }
                        self.prepare_rebalance(ctx.now, 0);
                        return Parked::Wait(rx);
                    }
                    self.set_state(ClassicState::Stable, ctx.now);
                    let resp: Vec<_> = self
                        .members
                        .values_mut()
                        .filter_map(|m| m.sync_waiter.take().map(|w| (w, m.assignment.clone())))
                        .collect();
                    for (w, a) in resp {
                        let _ = w.send(self.sync_response(&a));
                    }
                }
                Parked::Wait(rx)
            }
        }
    }

    fn sync_response(&self, assignment: &Bytes) -> SyncGroupResponse {
        SyncGroupResponse::default()
            .with_protocol_type(self.protocol_type.as_deref().map(s))
            .with_protocol_name(self.protocol.as_deref().map(s))
            .with_assignment(assignment.clone())
    }

    pub(crate) fn heartbeat(&mut self, now: i64, req: &HeartbeatRequest) -> HeartbeatResponse {
        let member_id = req.member_id.to_string();
        let code = match self.validate_member(&member_id, req.group_instance_id.as_deref(), req.generation_id)
        {
            Err(e) => e.code(),
            Ok(()) => {
                if let Some(m) = self.members.get_mut(&member_id) {
                    m.last_heartbeat_ms = now;
                }
                match self.state {
                    ClassicState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
                    ClassicState::Empty => ResponseError::UnknownMemberId.code(),
                    _ => 0,
                }
            }
        };
        HeartbeatResponse::default().with_error_code(code)
    }

    /// One LeaveGroup member: by instance id (checked against the member id when one is
    /// given) or by member id.
    pub(crate) fn leave(
        &mut self,
        ctx: &mut Ctx<'_>,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let id = match instance_id {
            Some(i) => match self.static_members.get(i) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(cur) if !member_id.is_empty() && cur != member_id => {
                    return Err(ResponseError::FencedInstanceId);
                }
                Some(cur) => cur.clone(),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            self.maybe_complete_join(ctx);
            return Ok(());
        }
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.member_gone(&id, ctx);
        Ok(())
    }

    /// Drives timeouts: expired sessions, the join phase's deadline and initial delay, and the
    /// sync deadline.
    pub(crate) fn tick(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now - m.last_heartbeat_ms > m.session_timeout_ms as i64
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.member_gone(&id, ctx);
        }
        match self.state {
            ClassicState::PreparingRebalance => self.maybe_complete_join(ctx),
            ClassicState::CompletingRebalance if now >= self.sync_deadline_ms => {
                // Members that never sent SyncGroup are dropped; the rest rebalance.
                let lagging: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.sync_waiter.is_none())
                    .map(|m| m.member_id.clone())
                    .collect();
                for id in lagging {
                    self.remove_member(&id);
                }
                self.prepare_rebalance(now, 0);
                self.maybe_complete_join(ctx);
                if self.members.is_empty() {
                    self.complete_join(ctx);
                }
            }
            _ => {}
        }
    }

    /// Topics the members subscribe to, when the group uses the consumer protocol.
    pub fn subscribed_topics(&self) -> Option<std::collections::BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut out = std::collections::BTreeSet::new();
        for m in self.members.values() {
            out.extend(crate::codec::subscription_topics(&m.metadata(protocol))?);
        }
        Some(out)
    }
}

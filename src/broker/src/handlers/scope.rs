//! Names scoped to the connection's namespace, at the request edge (see `kora_common::namespace`).
//!
//! [`Scope::request`] rewrites a request's topic names, topic ids, group ids and transactional
//! ids into internal names before the handler runs; [`Scope::response`] rewrites the answer's
//! back and drops what belongs to other namespaces. Handlers, logs, groups and metadata never
//! learn that tenants exist.
//!
//! A name the client may not use here (a topic name too long once prefixed; in the default
//! namespace, a name shaped like a tenant's) becomes a placeholder that no topic can have, so
//! the handler answers for it as for any invalid or unknown topic, and the answer carries the
//! client's own name again. A topic id of another namespace's topic becomes an id no topic has
//! (UNKNOWN_TOPIC_ID), and goes back as sent. Group and transactional ids of a tenant never
//! fail to scope; in the default namespace a tenant-shaped one closes the connection. KIP-848
//! regex subscriptions need no rewriting: kora-group matches a group's regex only against the
//! topics of the group's namespace, by their plain names.
//!
//! Authorization happens here too, on the client's names, before they are scoped: a topic or
//! group the connection's [`Gate`] does not allow for the request's operation becomes a
//! placeholder as well, and its entry in the answer comes back under the client's name with
//! Kafka's TOPIC_AUTHORIZATION_FAILED / GROUP_AUTHORIZATION_FAILED; a request about one group
//! it may not touch is answered at once; listings leave out what it may not describe.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsResponse, ElectLeadersResponse, GroupId, ListPartitionReassignmentsResponse,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kora_auth::{AclOperation as Op, ResourceType as Rt};
use kora_common::Namespace;
use kora_meta::MetadataImage;
use uuid::Uuid;

use super::authz::Gate;

/// Starts every placeholder: a control character no topic name may hold.
const PLACEHOLDER: &str = "\u{1}refused-";
/// Placeholders of groups the connection may not touch.
const GROUP_PLACEHOLDER: &str = "\u{1}denied-group-";

pub(crate) struct Scope<'a> {
    ns: &'a Namespace,
    image: Arc<MetadataImage>,
    gate: &'a Gate,
    /// (placeholder, the client's name) for names refused in this namespace.
    refused: Vec<(String, StrBytes)>,
    /// Placeholders (in `refused`) of topics the gate denied.
    denied: Vec<String>,
    /// (placeholder, the client's group id) for groups the gate denied.
    denied_groups: Vec<(String, StrBytes)>,
    /// (placeholder id, the client's id) for ids of other namespaces' topics.
    ids: Vec<(Uuid, Uuid)>,
    /// Ids (placeholders, in `ids`) of topics the gate denied.
    denied_ids: Vec<Uuid>,
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

impl<'a> Scope<'a> {
    pub(crate) fn new(ns: &'a Namespace, image: Arc<MetadataImage>, gate: &'a Gate) -> Self {
        Self {
            ns,
            image,
            gate,
            refused: Vec::new(),
            denied: Vec::new(),
            denied_groups: Vec::new(),
            ids: Vec::new(),
            denied_ids: Vec::new(),
        }
    }

    /// `topic_in`, after checking `op` on it: a denied topic becomes a placeholder.
    fn topic_op(&mut self, t: &mut TopicName, op: Op) {
        if self.gate.allows(op, Rt::Topic, &t.0) {
            self.topic_in(t);
        } else {
            let placeholder = format!("{PLACEHOLDER}{}", self.refused.len());
            let original = std::mem::replace(&mut t.0, s(&placeholder));
            self.refused.push((placeholder.clone(), original));
            self.denied.push(placeholder);
        }
    }

    fn topics_op<'t>(&mut self, ts: impl IntoIterator<Item = &'t mut TopicName>, op: Op) {
        for t in ts {
            self.topic_op(t, op);
        }
    }

    /// A topic named by id (its name empty): checked under its plain name.
    fn id_op(&mut self, id: &mut Uuid, op: Op) {
        self.id_in(id);
        if matches!(self.gate, Gate::Open) || id.is_nil() {
            return;
        }
        let plain = self.image.topic_by_id(id).and_then(|t| self.ns.unscope(&t.name).map(String::from));
        if let Some(plain) = plain {
            if !self.gate.allows(op, Rt::Topic, &plain) {
                let placeholder = Uuid::from_u128(self.ids.len() as u128 + 1);
                self.ids.push((placeholder, *id));
                self.denied_ids.push(placeholder);
                *id = placeholder;
            }
        }
    }

    /// Whether an entry of the answer (its name or id not yet rewritten back) is a denied one.
    fn denied(&self, t: &TopicName, id: &Uuid) -> bool {
        self.denied.iter().any(|p| **p == *t.0) || self.denied_ids.contains(id)
    }

    /// A group the gate does not allow `op` on becomes a placeholder; false then.
    fn group_op(&mut self, g: &mut GroupId, op: Op) -> Result<bool, String> {
        if self.gate.allows(op, Rt::Group, &g.0) {
            self.group_in(g)?;
            return Ok(true);
        }
        let placeholder = format!("{GROUP_PLACEHOLDER}{}", self.denied_groups.len());
        let original = std::mem::replace(&mut g.0, s(&placeholder));
        self.denied_groups.push((placeholder, original));
        Ok(false)
    }

    /// A denied group's placeholder back to the client's id: true when it was one.
    fn group_denied_out(&self, g: &mut StrBytes) -> bool {
        match self.denied_groups.iter().find(|(p, _)| **p == **g) {
            Some((_, original)) => {
                *g = original.clone();
                true
            }
            None => false,
        }
    }

    fn is_default(&self) -> bool {
        *self.ns == Namespace::Default
    }

    fn topic_in(&mut self, t: &mut TopicName) {
        if self.is_default() && kora_common::namespace::owner(&t.0).is_none() {
            return; // the common case: unchanged, no allocation
        }
        match self.ns.scope_topic(&t.0) {
            Ok(internal) => t.0 = s(&internal),
            Err(_) => {
                let placeholder = format!("{PLACEHOLDER}{}", self.refused.len());
                let original = std::mem::replace(&mut t.0, s(&placeholder));
                self.refused.push((placeholder, original));
            }
        }
    }

    /// The client's name for an internal topic name; false: not this namespace's (drop it).
    fn topic_out(&self, t: &mut TopicName) -> bool {
        if let Some((_, original)) = self.refused.iter().find(|(p, _)| **p == *t.0) {
            t.0 = original.clone();
            return true;
        }
        if self.is_default() {
            return kora_common::namespace::owner(&t.0).is_none();
        }
        match self.ns.unscope(&t.0) {
            Some(name) => {
                t.0 = s(name);
                true
            }
            None => false,
        }
    }

    fn id_in(&mut self, id: &mut Uuid) {
        if id.is_nil() {
            return;
        }
        let foreign = self.image.topic_by_id(id).is_some_and(|t| self.ns.unscope(&t.name).is_none());
        if foreign {
            // Ids of v4 UUIDs never have these values.
            let placeholder = Uuid::from_u128(self.ids.len() as u128 + 1);
            self.ids.push((placeholder, *id));
            *id = placeholder;
        }
    }

    fn id_out(&self, id: &mut Uuid) {
        if let Some((_, original)) = self.ids.iter().find(|(p, _)| p == id) {
            *id = *original;
        }
    }

    /// Whether a topic id is this namespace's (or unknown), for listings by id.
    fn id_visible(&self, id: &Uuid) -> bool {
        self.image.topic_by_id(id).is_none_or(|t| self.ns.unscope(&t.name).is_some())
    }

    fn name_in(&self, g: &mut StrBytes) -> Result<(), String> {
        if self.is_default() && kora_common::namespace::owner(g).is_none() {
            return Ok(());
        }
        let internal = self.ns.scope(g).map_err(|e| e.to_string())?;
        *g = s(&internal);
        Ok(())
    }

    fn group_in(&self, g: &mut GroupId) -> Result<(), String> {
        self.name_in(&mut g.0)
    }

    /// The client's form of an internal group or transactional id; false: another namespace's.
    fn name_out(&self, g: &mut StrBytes) -> bool {
        if self.is_default() {
            return kora_common::namespace::owner(g).is_none();
        }
        match self.ns.unscope(g) {
            Some(name) => {
                *g = s(name);
                true
            }
            None => false,
        }
    }

    fn group_out(&self, g: &mut GroupId) -> bool {
        self.name_out(&mut g.0)
    }

    /// Error texts name internal topics; the client sees its own names.
    fn message_out(&self, m: &mut Option<StrBytes>) {
        let Some(text) = m.as_ref() else { return };
        let mut out = text.to_string();
        if let Namespace::Tenant(t) = self.ns {
            out = out.replace(&format!("{t}{}", kora_common::namespace::SEPARATOR), "");
        }
        for (p, original) in &self.refused {
            out = out.replace(p.as_str(), original);
        }
        if out != **text {
            *m = Some(s(&out));
        }
    }
}

/// Requests only operators may make: a tenant is refused (CLUSTER_AUTHORIZATION_FAILED).
pub(crate) fn operator_only(req: &RequestKind) -> Option<ResponseKind> {
    let code = ResponseError::ClusterAuthorizationFailed.code();
    let message = Some(s("this operation is for the cell's operators"));
    Some(match req {
        RequestKind::AlterPartitionReassignments(_) => AlterPartitionReassignmentsResponse::default()
            .with_error_code(code)
            .with_error_message(message)
            .into(),
        RequestKind::ListPartitionReassignments(_) => ListPartitionReassignmentsResponse::default()
            .with_error_code(code)
            .with_error_message(message)
            .into(),
        RequestKind::ElectLeaders(_) => ElectLeadersResponse::default().with_error_code(code).into(),
        _ => return None,
    })
}

/// Resource types of DescribeConfigs / AlterConfigs.
const TOPIC_RESOURCE: i8 = 2;

const GROUP_DENIED: i16 = 30; // GROUP_AUTHORIZATION_FAILED
const TOPIC_DENIED: i16 = 29; // TOPIC_AUTHORIZATION_FAILED
const CLUSTER_DENIED: i16 = 31; // CLUSTER_AUTHORIZATION_FAILED

/// The answer to a request about one group the connection may not use.
fn group_refusal(req: &RequestKind) -> Option<ResponseKind> {
    use kafka_protocol::messages::*;
    Some(match req {
        RequestKind::JoinGroup(_) => {
            JoinGroupResponse::default().with_error_code(GROUP_DENIED).with_generation_id(-1).into()
        }
        RequestKind::SyncGroup(_) => SyncGroupResponse::default().with_error_code(GROUP_DENIED).into(),
        RequestKind::Heartbeat(_) => HeartbeatResponse::default().with_error_code(GROUP_DENIED).into(),
        RequestKind::LeaveGroup(_) => LeaveGroupResponse::default().with_error_code(GROUP_DENIED).into(),
        RequestKind::OffsetDelete(_) => OffsetDeleteResponse::default().with_error_code(GROUP_DENIED).into(),
        RequestKind::ConsumerGroupHeartbeat(_) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(GROUP_DENIED)
            .with_error_message(Some(s("Group authorization failed.")))
            .into(),
        RequestKind::OffsetCommit(r) => OffsetCommitResponse::default()
            .with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        offset_commit_response::OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        offset_commit_response::OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(GROUP_DENIED)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
            .into(),
        _ => return None,
    })
}

/// The one group a request is about, and the operation it needs on it.
fn single_group(req: &RequestKind) -> Option<(&str, Op)> {
    Some(match req {
        RequestKind::JoinGroup(r) => (&r.group_id.0, Op::Read),
        RequestKind::SyncGroup(r) => (&r.group_id.0, Op::Read),
        RequestKind::Heartbeat(r) => (&r.group_id.0, Op::Read),
        RequestKind::LeaveGroup(r) => (&r.group_id.0, Op::Read),
        RequestKind::OffsetCommit(r) => (&r.group_id.0, Op::Read),
        RequestKind::OffsetDelete(r) => (&r.group_id.0, Op::Delete),
        RequestKind::ConsumerGroupHeartbeat(r) => (&r.group_id.0, Op::Read),
        _ => return None,
    })
}

impl Scope<'_> {
    /// Checks and rewrites a request's names. `Ok(Some)`: the answer, without running the
    /// handler (a refused request about one group, or a cluster operation). `Err`: close the
    /// connection.
    pub(crate) fn request(&mut self, req: &mut RequestKind) -> Result<Option<ResponseKind>, String> {
        if let Some((group, op)) = single_group(req) {
            if !self.gate.allows(op, Rt::Group, group) {
                return Ok(group_refusal(req));
            }
        }
        match req {
            RequestKind::Metadata(r) => {
                // Auto-creation needs CREATE (on the cluster or the topic).
                let may_create = self.gate.allows_cluster(Op::Create);
                for t in r.topics.iter_mut().flatten() {
                    if let Some(n) = t.name.as_mut() {
                        if !may_create && !self.gate.allows(Op::Create, Rt::Topic, &n.0) {
                            r.allow_auto_topic_creation = false;
                        }
                        self.topic_op(n, Op::Describe);
                    }
                    self.id_op(&mut t.topic_id, Op::Describe);
                }
            }
            RequestKind::Produce(r) => {
                if let Some(t) = r.transactional_id.as_mut() {
                    self.name_in(&mut t.0)?;
                }
                for t in r.topic_data.iter_mut() {
                    if t.name.0.is_empty() {
                        self.id_op(&mut t.topic_id, Op::Write);
                    } else {
                        self.topic_op(&mut t.name, Op::Write);
                    }
                }
            }
            RequestKind::Fetch(r) => {
                for t in r.topics.iter_mut() {
                    if t.topic.0.is_empty() {
                        self.id_op(&mut t.topic_id, Op::Read);
                    } else {
                        self.topic_op(&mut t.topic, Op::Read);
                    }
                }
                for t in r.forgotten_topics_data.iter_mut() {
                    self.topic_in(&mut t.topic);
                    self.id_in(&mut t.topic_id);
                }
            }
            RequestKind::ListOffsets(r) => {
                self.topics_op(r.topics.iter_mut().map(|t| &mut t.name), Op::Describe)
            }
            RequestKind::DeleteRecords(r) => {
                self.topics_op(r.topics.iter_mut().map(|t| &mut t.name), Op::Delete)
            }
            RequestKind::OffsetForLeaderEpoch(r) => {
                self.topics_op(r.topics.iter_mut().map(|t| &mut t.topic), Op::Describe)
            }
            RequestKind::InitProducerId(r) => {
                if let Some(t) = r.transactional_id.as_mut() {
                    self.name_in(&mut t.0)?;
                } else if !self.gate.allows_cluster(Op::IdempotentWrite)
                    && !self.gate.allows_some(Op::Write, Rt::Topic)
                {
                    let resp = kafka_protocol::messages::InitProducerIdResponse::default()
                        .with_error_code(CLUSTER_DENIED)
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1);
                    return Ok(Some(resp.into()));
                }
            }
            RequestKind::CreateTopics(r) => {
                let cluster = self.gate.allows_cluster(Op::Create);
                for t in r.topics.iter_mut() {
                    if cluster {
                        self.topic_in(&mut t.name);
                    } else {
                        self.topic_op(&mut t.name, Op::Create);
                    }
                }
            }
            RequestKind::DeleteTopics(r) => {
                self.topics_op(r.topic_names.iter_mut(), Op::Delete);
                for t in r.topics.iter_mut() {
                    match t.name.as_mut() {
                        Some(n) => self.topic_op(n, Op::Delete),
                        None => self.id_op(&mut t.topic_id, Op::Delete),
                    }
                }
            }
            RequestKind::CreatePartitions(r) => {
                self.topics_op(r.topics.iter_mut().map(|t| &mut t.name), Op::Alter)
            }
            RequestKind::DescribeConfigs(r) => {
                for res in r.resources.iter_mut().filter(|x| x.resource_type == TOPIC_RESOURCE) {
                    self.resource_op(&mut res.resource_name, Op::DescribeConfigs);
                }
            }
            RequestKind::AlterConfigs(r) => {
                for res in r.resources.iter_mut().filter(|x| x.resource_type == TOPIC_RESOURCE) {
                    self.resource_op(&mut res.resource_name, Op::AlterConfigs);
                }
            }
            RequestKind::IncrementalAlterConfigs(r) => {
                for res in r.resources.iter_mut().filter(|x| x.resource_type == TOPIC_RESOURCE) {
                    self.resource_op(&mut res.resource_name, Op::AlterConfigs);
                }
            }
            RequestKind::DescribeLogDirs(r) => {
                if !self.gate.allows_cluster(Op::Describe) {
                    let resp = kafka_protocol::messages::DescribeLogDirsResponse::default()
                        .with_error_code(CLUSTER_DENIED);
                    return Ok(Some(resp.into()));
                }
                for t in r.topics.iter_mut().flatten() {
                    self.topic_in(&mut t.topic);
                }
            }
            RequestKind::FindCoordinator(r) => {
                // Groups (0) and transactional ids (1) are both names of the namespace.
                let rt = if r.key_type == 1 { Rt::TransactionalId } else { Rt::Group };
                for k in std::iter::once(&mut r.key).chain(r.coordinator_keys.iter_mut()) {
                    if k.is_empty() || self.gate.allows(Op::Describe, rt, k) {
                        self.name_in(k)?;
                    } else {
                        let mut g = GroupId(std::mem::take(k));
                        self.group_op(&mut g, Op::Describe)?;
                        *k = g.0;
                    }
                }
            }
            RequestKind::JoinGroup(r) => self.group_in(&mut r.group_id)?,
            RequestKind::SyncGroup(r) => self.group_in(&mut r.group_id)?,
            RequestKind::Heartbeat(r) => self.group_in(&mut r.group_id)?,
            RequestKind::LeaveGroup(r) => self.group_in(&mut r.group_id)?,
            RequestKind::OffsetCommit(r) => {
                self.group_in(&mut r.group_id)?;
                for t in r.topics.iter_mut() {
                    if t.name.0.is_empty() {
                        self.id_op(&mut t.topic_id, Op::Read);
                    } else {
                        self.topic_op(&mut t.name, Op::Read);
                    }
                }
            }
            RequestKind::OffsetFetch(r) => {
                if !r.group_id.0.is_empty() {
                    self.group_op(&mut r.group_id, Op::Describe)?;
                }
                self.topics_op(r.topics.iter_mut().flatten().map(|t| &mut t.name), Op::Describe);
                for g in r.groups.iter_mut() {
                    self.group_op(&mut g.group_id, Op::Describe)?;
                    for t in g.topics.iter_mut().flatten() {
                        if t.name.0.is_empty() {
                            self.id_op(&mut t.topic_id, Op::Describe);
                        } else {
                            self.topic_op(&mut t.name, Op::Describe);
                        }
                    }
                }
            }
            RequestKind::DescribeGroups(r) => {
                for g in r.groups.iter_mut() {
                    self.group_op(g, Op::Describe)?;
                }
            }
            RequestKind::DeleteGroups(r) => {
                for g in r.groups_names.iter_mut() {
                    self.group_op(g, Op::Delete)?;
                }
            }
            RequestKind::OffsetDelete(r) => {
                self.group_in(&mut r.group_id)?;
                self.topics_op(r.topics.iter_mut().map(|t| &mut t.name), Op::Read);
            }
            RequestKind::ConsumerGroupHeartbeat(r) => {
                let denied = r
                    .subscribed_topic_names
                    .iter()
                    .flatten()
                    .find(|t| !self.gate.allows(Op::Describe, Rt::Topic, &t.0));
                if let Some(t) = denied {
                    let resp = kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(TOPIC_DENIED)
                        .with_error_message(Some(s(&format!(
                            "Topic authorization failed for topics [{}]",
                            &*t.0
                        ))));
                    return Ok(Some(resp.into()));
                }
                self.group_in(&mut r.group_id)?;
                for t in r.subscribed_topic_names.iter_mut().flatten() {
                    self.topic_in(t);
                }
                for tp in r.topic_partitions.iter_mut().flatten() {
                    self.id_in(&mut tp.topic_id);
                }
            }
            RequestKind::ConsumerGroupDescribe(r) => {
                for g in r.group_ids.iter_mut() {
                    self.group_op(g, Op::Describe)?;
                }
            }
            // No names: ApiVersions, DescribeCluster, SASL; ListGroups is filtered on the way out.
            _ => {}
        }
        Ok(None)
    }
}

impl Scope<'_> {
    fn resource_op(&mut self, name: &mut StrBytes, op: Op) {
        let mut t = TopicName(std::mem::take(name));
        self.topic_op(&mut t, op);
        *name = t.0;
    }

    fn resource_out(&self, name: &mut StrBytes) -> bool {
        let mut t = TopicName(std::mem::take(name));
        let keep = self.topic_out(&mut t);
        *name = t.0;
        keep
    }

    /// Rewrites a response's names to the client's, drops other namespaces' resources and
    /// what the connection may not describe, and marks denied entries with Kafka's errors.
    pub(crate) fn response(&self, resp: &mut ResponseKind) {
        let open = matches!(self.gate, Gate::Open);
        match resp {
            ResponseKind::Metadata(r) => {
                // A tenant's cluster is its logical cluster.
                if let Namespace::Tenant(t) = self.ns {
                    r.cluster_id = Some(s(t.as_str()));
                }
                r.topics.retain_mut(|t| {
                    let denied = match t.name.as_ref() {
                        Some(n) => self.denied(n, &t.topic_id),
                        None => self.denied_ids.contains(&t.topic_id),
                    };
                    self.id_out(&mut t.topic_id);
                    let keep = match t.name.as_mut() {
                        Some(n) => self.topic_out(n),
                        None => self.id_visible(&t.topic_id),
                    };
                    if denied {
                        t.error_code = TOPIC_DENIED;
                        t.partitions.clear();
                        return keep;
                    }
                    // Listings leave out what the connection may not describe.
                    keep && (open
                        || t.name.as_ref().is_none_or(|n| self.gate.allows(Op::Describe, Rt::Topic, &n.0)))
                });
            }
            ResponseKind::Produce(r) => r.responses.retain_mut(|t| {
                let denied = self.denied(&t.name, &t.topic_id);
                self.id_out(&mut t.topic_id);
                for p in t.partition_responses.iter_mut() {
                    self.message_out(&mut p.error_message);
                    if denied {
                        p.error_code = TOPIC_DENIED;
                        p.error_message = None;
                        p.base_offset = -1;
                    }
                }
                t.name.0.is_empty() || self.topic_out(&mut t.name)
            }),
            ResponseKind::Fetch(r) => r.responses.retain_mut(|t| {
                let denied = self.denied(&t.topic, &t.topic_id);
                self.id_out(&mut t.topic_id);
                if denied {
                    for p in t.partitions.iter_mut() {
                        p.error_code = TOPIC_DENIED;
                        // Empty, not null: librdkafka cannot parse a null record set.
                        p.records = Some(bytes::Bytes::new());
                        p.high_watermark = -1;
                    }
                }
                t.topic.0.is_empty() || self.topic_out(&mut t.topic)
            }),
            ResponseKind::ListOffsets(r) => r.topics.retain_mut(|t| {
                if self.denied(&t.name, &Uuid::nil()) {
                    for p in t.partitions.iter_mut() {
                        p.error_code = TOPIC_DENIED;
                        p.offset = -1;
                        p.timestamp = -1;
                    }
                }
                self.topic_out(&mut t.name)
            }),
            ResponseKind::DeleteRecords(r) => r.topics.retain_mut(|t| {
                if self.denied(&t.name, &Uuid::nil()) {
                    for p in t.partitions.iter_mut() {
                        p.error_code = TOPIC_DENIED;
                        p.low_watermark = -1;
                    }
                }
                self.topic_out(&mut t.name)
            }),
            ResponseKind::OffsetForLeaderEpoch(r) => r.topics.retain_mut(|t| {
                if self.denied(&t.topic, &Uuid::nil()) {
                    for p in t.partitions.iter_mut() {
                        p.error_code = TOPIC_DENIED;
                        p.end_offset = -1;
                        p.leader_epoch = -1;
                    }
                }
                self.topic_out(&mut t.topic)
            }),
            ResponseKind::CreateTopics(r) => r.topics.retain_mut(|t| {
                if self.denied(&t.name, &Uuid::nil()) {
                    t.error_code = TOPIC_DENIED;
                    t.error_message = Some(s("Authorization failed."));
                    t.num_partitions = -1;
                    t.replication_factor = -1;
                    t.configs = None;
                }
                self.message_out(&mut t.error_message);
                self.topic_out(&mut t.name)
            }),
            ResponseKind::DeleteTopics(r) => r.responses.retain_mut(|t| {
                let denied = match t.name.as_ref() {
                    Some(n) => self.denied(n, &t.topic_id),
                    None => self.denied_ids.contains(&t.topic_id),
                };
                if denied {
                    t.error_code = TOPIC_DENIED;
                    t.error_message = None;
                }
                self.id_out(&mut t.topic_id);
                self.message_out(&mut t.error_message);
                match t.name.as_mut() {
                    Some(n) => self.topic_out(n),
                    None => true,
                }
            }),
            ResponseKind::CreatePartitions(r) => r.results.retain_mut(|t| {
                if self.denied(&t.name, &Uuid::nil()) {
                    t.error_code = TOPIC_DENIED;
                    t.error_message = None;
                }
                self.message_out(&mut t.error_message);
                self.topic_out(&mut t.name)
            }),
            ResponseKind::DescribeConfigs(r) => r.results.retain_mut(|x| {
                if x.resource_type == TOPIC_RESOURCE
                    && self.denied(&TopicName(x.resource_name.clone()), &Uuid::nil())
                {
                    x.error_code = TOPIC_DENIED;
                    x.error_message = None;
                    x.configs.clear();
                }
                self.message_out(&mut x.error_message);
                x.resource_type != TOPIC_RESOURCE || self.resource_out(&mut x.resource_name)
            }),
            ResponseKind::AlterConfigs(r) => r.responses.retain_mut(|x| {
                if x.resource_type == TOPIC_RESOURCE
                    && self.denied(&TopicName(x.resource_name.clone()), &Uuid::nil())
                {
                    x.error_code = TOPIC_DENIED;
                    x.error_message = None;
                }
                self.message_out(&mut x.error_message);
                x.resource_type != TOPIC_RESOURCE || self.resource_out(&mut x.resource_name)
            }),
            ResponseKind::IncrementalAlterConfigs(r) => r.responses.retain_mut(|x| {
                if x.resource_type == TOPIC_RESOURCE
                    && self.denied(&TopicName(x.resource_name.clone()), &Uuid::nil())
                {
                    x.error_code = TOPIC_DENIED;
                    x.error_message = None;
                }
                self.message_out(&mut x.error_message);
                x.resource_type != TOPIC_RESOURCE || self.resource_out(&mut x.resource_name)
            }),
            ResponseKind::DescribeLogDirs(r) => {
                for d in r.results.iter_mut() {
                    d.topics.retain_mut(|t| self.topic_out(&mut t.name));
                }
            }
            ResponseKind::FindCoordinator(r) => {
                self.message_out(&mut r.error_message);
                for c in r.coordinators.iter_mut() {
                    if self.group_denied_out(&mut c.key) {
                        c.error_code = GROUP_DENIED;
                        c.error_message = None;
                        c.node_id = (-1).into();
                        c.host = s("");
                        c.port = -1;
                    } else {
                        self.name_out(&mut c.key);
                    }
                    self.message_out(&mut c.error_message);
                }
                // v0-3 name one key, answered at the top.
                if r.coordinators.is_empty() && !self.denied_groups.is_empty() {
                    r.error_code = GROUP_DENIED;
                    r.node_id = (-1).into();
                    r.host = s("");
                    r.port = -1;
                }
            }
            ResponseKind::OffsetCommit(r) => r.topics.retain_mut(|t| {
                if self.denied(&t.name, &t.topic_id) {
                    for p in t.partitions.iter_mut() {
                        p.error_code = TOPIC_DENIED;
                    }
                }
                self.id_out(&mut t.topic_id);
                t.name.0.is_empty() || self.topic_out(&mut t.name)
            }),
            ResponseKind::OffsetFetch(r) => {
                if !self.denied_groups.is_empty() && r.groups.is_empty() {
                    r.error_code = GROUP_DENIED;
                    r.topics.clear();
                }
                r.topics.retain_mut(|t| {
                    if self.denied(&t.name, &Uuid::nil()) {
                        for p in t.partitions.iter_mut() {
                            p.error_code = TOPIC_DENIED;
                            p.committed_offset = -1;
                        }
                    }
                    self.topic_out(&mut t.name)
                });
                r.groups.retain_mut(|g| {
                    if self.group_denied_out(&mut g.group_id.0) {
                        g.error_code = GROUP_DENIED;
                        g.topics.clear();
                        return true;
                    }
                    g.topics.retain_mut(|t| {
                        if self.denied(&t.name, &t.topic_id) {
                            for p in t.partitions.iter_mut() {
                                p.error_code = TOPIC_DENIED;
                                p.committed_offset = -1;
                            }
                        }
                        self.id_out(&mut t.topic_id);
                        t.name.0.is_empty() || self.topic_out(&mut t.name)
                    });
                    self.group_out(&mut g.group_id)
                });
            }
            ResponseKind::DescribeGroups(r) => r.groups.retain_mut(|g| {
                if self.group_denied_out(&mut g.group_id.0) {
                    g.error_code = GROUP_DENIED;
                    g.group_state = s("");
                    g.members.clear();
                    return true;
                }
                self.message_out(&mut g.error_message);
                self.group_out(&mut g.group_id)
            }),
            ResponseKind::ListGroups(r) => r.groups.retain_mut(|g| {
                self.group_out(&mut g.group_id)
                    && (open || self.gate.allows(Op::Describe, Rt::Group, &g.group_id.0))
            }),
            ResponseKind::DeleteGroups(r) => r.results.retain_mut(|g| {
                if self.group_denied_out(&mut g.group_id.0) {
                    g.error_code = GROUP_DENIED;
                    return true;
                }
                self.group_out(&mut g.group_id)
            }),
            ResponseKind::OffsetDelete(r) => r.topics.retain_mut(|t| {
                if self.denied(&t.name, &Uuid::nil()) {
                    for p in t.partitions.iter_mut() {
                        p.error_code = TOPIC_DENIED;
                    }
                }
                self.topic_out(&mut t.name)
            }),
            ResponseKind::DescribeCluster(r) => {
                if let Namespace::Tenant(t) = self.ns {
                    r.cluster_id = s(t.as_str());
                }
            }
            ResponseKind::ConsumerGroupHeartbeat(r) => self.message_out(&mut r.error_message),
            ResponseKind::ConsumerGroupDescribe(r) => r.groups.retain_mut(|g| {
                if self.group_denied_out(&mut g.group_id.0) {
                    g.error_code = GROUP_DENIED;
                    g.error_message = None;
                    g.members.clear();
                    return true;
                }
                self.message_out(&mut g.error_message);
                for m in g.members.iter_mut() {
                    m.subscribed_topic_names.retain_mut(|t| self.topic_out(t));
                    for a in [&mut m.assignment, &mut m.target_assignment] {
                        a.topic_partitions.retain_mut(|tp| self.topic_out(&mut tp.topic_name));
                    }
                }
                self.group_out(&mut g.group_id)
            }),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kora_common::TenantId;

    fn tenant(id: &str) -> Namespace {
        Namespace::Tenant(TenantId::parse(id).expect("id"))
    }

    fn topic(name: &str) -> MetadataResponseTopic {
        MetadataResponseTopic::default().with_name(Some(TopicName(s(name))))
    }

    #[test]
    fn metadata_is_scoped_both_ways_and_refused_names_come_back_as_sent() {
        let ns = tenant("lkc-a");
        let mut scope = Scope::new(&ns, Arc::new(MetadataImage::default()), &Gate::Open);
        let long = "t".repeat(249);
        let mut req: RequestKind = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(s("orders")))),
                MetadataRequestTopic::default().with_name(Some(TopicName(s(&long)))),
            ]))
            .into();
        scope.request(&mut req).expect("scoped");
        let RequestKind::Metadata(r) = &req else { panic!("metadata") };
        let names: Vec<String> = r
            .topics
            .iter()
            .flatten()
            .map(|t| t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default())
            .collect();
        assert_eq!(names[0], "lkc-a~orders");
        assert!(names[1].starts_with(PLACEHOLDER));
        let mut resp: ResponseKind = MetadataResponse::default()
            .with_topics(vec![
                topic("lkc-a~orders"),
                topic(&names[1]),
                topic("lkc-b~orders"),
                topic("orders"),
            ])
            .into();
        scope.response(&mut resp);
        let ResponseKind::Metadata(r) = resp else { panic!("metadata") };
        let out: Vec<String> =
            r.topics.iter().map(|t| t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default()).collect();
        assert_eq!(out, ["orders".to_string(), long]);
    }

    #[test]
    fn the_default_namespace_keeps_names_and_never_sees_tenants() {
        let ns = Namespace::Default;
        let mut scope = Scope::new(&ns, Arc::new(MetadataImage::default()), &Gate::Open);
        let mut req: RequestKind = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(s("orders")))),
                MetadataRequestTopic::default().with_name(Some(TopicName(s("lkc-b~orders")))),
            ]))
            .into();
        scope.request(&mut req).expect("scoped");
        let RequestKind::Metadata(r) = &req else { panic!("metadata") };
        let names: Vec<String> = r
            .topics
            .iter()
            .flatten()
            .map(|t| t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default())
            .collect();
        assert_eq!(names[0], "orders");
        assert!(names[1].starts_with(PLACEHOLDER), "a tenant's name never reaches the handler: {names:?}");
        let mut resp: ResponseKind = MetadataResponse::default()
            .with_topics(vec![topic("orders"), topic("lkc-b~orders"), topic(&names[1])])
            .into();
        scope.response(&mut resp);
        let ResponseKind::Metadata(r) = resp else { panic!("metadata") };
        let out: Vec<String> =
            r.topics.iter().map(|t| t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default()).collect();
        assert_eq!(
            out,
            ["orders", "lkc-b~orders"],
            "the refused name comes back as sent, the tenant's topic not at all"
        );
        // Tenant-shaped group ids close the connection in the default namespace.
        let mut join: RequestKind =
            kafka_protocol::messages::JoinGroupRequest::default().with_group_id(GroupId(s("lkc-b~g"))).into();
        assert!(scope.request(&mut join).is_err());
    }
}

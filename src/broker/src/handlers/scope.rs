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

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsResponse, ElectLeadersResponse, GroupId, ListPartitionReassignmentsResponse,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kora_common::Namespace;
use kora_meta::MetadataImage;
use uuid::Uuid;

/// Starts every placeholder: a control character no topic name may hold.
const PLACEHOLDER: &str = "\u{1}refused-";

pub(crate) struct Scope<'a> {
    ns: &'a Namespace,
    image: Arc<MetadataImage>,
    /// (placeholder, the client's name) for names refused in this namespace.
    refused: Vec<(String, StrBytes)>,
    /// (placeholder id, the client's id) for ids of other namespaces' topics.
    ids: Vec<(Uuid, Uuid)>,
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

impl<'a> Scope<'a> {
    pub(crate) fn new(ns: &'a Namespace, image: Arc<MetadataImage>) -> Self {
        Self { ns, image, refused: Vec::new(), ids: Vec::new() }
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

    fn topics_in<'t>(&mut self, ts: impl IntoIterator<Item = &'t mut TopicName>) {
        for t in ts {
            self.topic_in(t);
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

impl Scope<'_> {
    /// Rewrites a request's names into internal ones. `Err`: close the connection.
    pub(crate) fn request(&mut self, req: &mut RequestKind) -> Result<(), String> {
        match req {
            RequestKind::Metadata(r) => {
                for t in r.topics.iter_mut().flatten() {
                    if let Some(n) = t.name.as_mut() {
                        self.topic_in(n);
                    }
                    self.id_in(&mut t.topic_id);
                }
            }
            RequestKind::Produce(r) => {
                if let Some(t) = r.transactional_id.as_mut() {
                    self.name_in(&mut t.0)?;
                }
                for t in r.topic_data.iter_mut() {
                    self.topic_in(&mut t.name);
                    self.id_in(&mut t.topic_id);
                }
            }
            RequestKind::Fetch(r) => {
                for t in r.topics.iter_mut() {
                    self.topic_in(&mut t.topic);
                    self.id_in(&mut t.topic_id);
                }
                for t in r.forgotten_topics_data.iter_mut() {
                    self.topic_in(&mut t.topic);
                    self.id_in(&mut t.topic_id);
                }
            }
            RequestKind::ListOffsets(r) => self.topics_in(r.topics.iter_mut().map(|t| &mut t.name)),
            RequestKind::DeleteRecords(r) => self.topics_in(r.topics.iter_mut().map(|t| &mut t.name)),
            RequestKind::OffsetForLeaderEpoch(r) => self.topics_in(r.topics.iter_mut().map(|t| &mut t.topic)),
            RequestKind::InitProducerId(r) => {
                if let Some(t) = r.transactional_id.as_mut() {
                    self.name_in(&mut t.0)?;
                }
            }
            RequestKind::CreateTopics(r) => self.topics_in(r.topics.iter_mut().map(|t| &mut t.name)),
            RequestKind::DeleteTopics(r) => {
                self.topics_in(r.topic_names.iter_mut());
                for t in r.topics.iter_mut() {
                    if let Some(n) = t.name.as_mut() {
                        self.topic_in(n);
                    }
                    self.id_in(&mut t.topic_id);
                }
            }
            RequestKind::CreatePartitions(r) => self.topics_in(r.topics.iter_mut().map(|t| &mut t.name)),
            RequestKind::DescribeConfigs(r) => {
                for res in r.resources.iter_mut().filter(|x| x.resource_type == TOPIC_RESOURCE) {
                    self.resource_in(&mut res.resource_name);
                }
            }
            RequestKind::AlterConfigs(r) => {
                for res in r.resources.iter_mut().filter(|x| x.resource_type == TOPIC_RESOURCE) {
                    self.resource_in(&mut res.resource_name);
                }
            }
            RequestKind::IncrementalAlterConfigs(r) => {
                for res in r.resources.iter_mut().filter(|x| x.resource_type == TOPIC_RESOURCE) {
                    self.resource_in(&mut res.resource_name);
                }
            }
            RequestKind::DescribeLogDirs(r) => {
                for t in r.topics.iter_mut().flatten() {
                    self.topic_in(&mut t.topic);
                }
            }
            RequestKind::FindCoordinator(r) => {
                // Groups (0) and transactional ids (1) are both names of the namespace.
                self.name_in(&mut r.key)?;
                for k in r.coordinator_keys.iter_mut() {
                    self.name_in(k)?;
                }
            }
            RequestKind::JoinGroup(r) => self.group_in(&mut r.group_id)?,
            RequestKind::SyncGroup(r) => self.group_in(&mut r.group_id)?,
            RequestKind::Heartbeat(r) => self.group_in(&mut r.group_id)?,
            RequestKind::LeaveGroup(r) => self.group_in(&mut r.group_id)?,
            RequestKind::OffsetCommit(r) => {
                self.group_in(&mut r.group_id)?;
                for t in r.topics.iter_mut() {
                    self.topic_in(&mut t.name);
                    self.id_in(&mut t.topic_id);
                }
            }
            RequestKind::OffsetFetch(r) => {
                self.group_in(&mut r.group_id)?;
                for t in r.topics.iter_mut().flatten() {
                    self.topic_in(&mut t.name);
                }
                for g in r.groups.iter_mut() {
                    self.group_in(&mut g.group_id)?;
                    for t in g.topics.iter_mut().flatten() {
                        self.topic_in(&mut t.name);
                        self.id_in(&mut t.topic_id);
                    }
                }
            }
            RequestKind::DescribeGroups(r) => {
                for g in r.groups.iter_mut() {
                    self.group_in(g)?;
                }
            }
            RequestKind::DeleteGroups(r) => {
                for g in r.groups_names.iter_mut() {
                    self.group_in(g)?;
                }
            }
            RequestKind::OffsetDelete(r) => {
                self.group_in(&mut r.group_id)?;
                self.topics_in(r.topics.iter_mut().map(|t| &mut t.name));
            }
            RequestKind::ConsumerGroupHeartbeat(r) => {
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
                    self.group_in(g)?;
                }
            }
            // No names: ApiVersions, DescribeCluster, SASL; ListGroups is filtered on the way out.
            _ => {}
        }
        Ok(())
    }

    fn resource_in(&mut self, name: &mut StrBytes) {
        let mut t = TopicName(std::mem::take(name));
        self.topic_in(&mut t);
        *name = t.0;
    }

    fn resource_out(&self, name: &mut StrBytes) -> bool {
        let mut t = TopicName(std::mem::take(name));
        let keep = self.topic_out(&mut t);
        *name = t.0;
        keep
    }

    /// Rewrites a response's names to the client's and drops other namespaces' resources.
    pub(crate) fn response(&self, resp: &mut ResponseKind) {
        match resp {
            ResponseKind::Metadata(r) => {
                // A tenant's cluster is its logical cluster.
                if let Namespace::Tenant(t) = self.ns {
                    r.cluster_id = Some(s(t.as_str()));
                }
                r.topics.retain_mut(|t| {
                    self.id_out(&mut t.topic_id);
                    match t.name.as_mut() {
                        Some(n) => self.topic_out(n),
                        None => self.id_visible(&t.topic_id),
                    }
                });
            }
            ResponseKind::Produce(r) => r.responses.retain_mut(|t| {
                self.id_out(&mut t.topic_id);
                for p in t.partition_responses.iter_mut() {
                    self.message_out(&mut p.error_message);
                }
                t.name.0.is_empty() || self.topic_out(&mut t.name)
            }),
            ResponseKind::Fetch(r) => r.responses.retain_mut(|t| {
                self.id_out(&mut t.topic_id);
                t.topic.0.is_empty() || self.topic_out(&mut t.topic)
            }),
            ResponseKind::ListOffsets(r) => r.topics.retain_mut(|t| self.topic_out(&mut t.name)),
            ResponseKind::DeleteRecords(r) => r.topics.retain_mut(|t| self.topic_out(&mut t.name)),
            ResponseKind::OffsetForLeaderEpoch(r) => r.topics.retain_mut(|t| self.topic_out(&mut t.topic)),
            ResponseKind::CreateTopics(r) => r.topics.retain_mut(|t| {
                self.message_out(&mut t.error_message);
                self.topic_out(&mut t.name)
            }),
            ResponseKind::DeleteTopics(r) => r.responses.retain_mut(|t| {
                self.id_out(&mut t.topic_id);
                self.message_out(&mut t.error_message);
                match t.name.as_mut() {
                    Some(n) => self.topic_out(n),
                    None => true,
                }
            }),
            ResponseKind::CreatePartitions(r) => r.results.retain_mut(|t| {
                self.message_out(&mut t.error_message);
                self.topic_out(&mut t.name)
            }),
            ResponseKind::DescribeConfigs(r) => r.results.retain_mut(|x| {
                self.message_out(&mut x.error_message);
                x.resource_type != TOPIC_RESOURCE || self.resource_out(&mut x.resource_name)
            }),
            ResponseKind::AlterConfigs(r) => r.responses.retain_mut(|x| {
                self.message_out(&mut x.error_message);
                x.resource_type != TOPIC_RESOURCE || self.resource_out(&mut x.resource_name)
            }),
            ResponseKind::IncrementalAlterConfigs(r) => r.responses.retain_mut(|x| {
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
                    self.name_out(&mut c.key);
                    self.message_out(&mut c.error_message);
                }
            }
            ResponseKind::OffsetCommit(r) => r.topics.retain_mut(|t| {
                self.id_out(&mut t.topic_id);
                t.name.0.is_empty() || self.topic_out(&mut t.name)
            }),
            ResponseKind::OffsetFetch(r) => {
                r.topics.retain_mut(|t| self.topic_out(&mut t.name));
                r.groups.retain_mut(|g| {
                    g.topics.retain_mut(|t| {
                        self.id_out(&mut t.topic_id);
                        t.name.0.is_empty() || self.topic_out(&mut t.name)
                    });
                    self.group_out(&mut g.group_id)
                });
            }
            ResponseKind::DescribeGroups(r) => r.groups.retain_mut(|g| {
                self.message_out(&mut g.error_message);
                self.group_out(&mut g.group_id)
            }),
            ResponseKind::ListGroups(r) => r.groups.retain_mut(|g| self.group_out(&mut g.group_id)),
            ResponseKind::DeleteGroups(r) => r.results.retain_mut(|g| self.group_out(&mut g.group_id)),
            ResponseKind::OffsetDelete(r) => r.topics.retain_mut(|t| self.topic_out(&mut t.name)),
            ResponseKind::DescribeCluster(r) => {
                if let Namespace::Tenant(t) = self.ns {
                    r.cluster_id = s(t.as_str());
                }
            }
            ResponseKind::ConsumerGroupHeartbeat(r) => self.message_out(&mut r.error_message),
            ResponseKind::ConsumerGroupDescribe(r) => r.groups.retain_mut(|g| {
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
        let mut scope = Scope::new(&ns, Arc::new(MetadataImage::default()));
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
        let mut scope = Scope::new(&ns, Arc::new(MetadataImage::default()));
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

//! The metadata image: an immutable view of the applied state, and the pure state machine that
//! produces the next image from a record.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{BrokerRegistration, MetadataRecord, RemoteSegment};
use crate::security::{Credential, TenantImage};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Config overrides by Kafka name; defaults are not stored.
    pub configs: BTreeMap<String, String>,
    /// Per partition: replicas, leader, ISR and leader epoch. Empty on a single node (the
    /// broker leads every partition at epoch 0).
    #[serde(default)]
    pub assignments: Vec<PartitionState>,
}

/// Where a partition lives in a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Broker ids, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The leader, or -1 while no in-sync replica is available (unclean election is off).
    pub leader: i32,
    pub leader_epoch: i32,
    /// In-sync replicas: the leader and the followers caught up with it. Only these may
    /// become leader (unclean election is off). While the partition is offline, the last
    /// members, which alone may lead again.
    pub isr: Vec<i32>,
    /// Bumped by every change of leader or ISR; an AlterPartition names the one it saw.
    #[serde(default)]
    pub partition_epoch: i32,
    /// An ongoing reassignment: replicas being added (they follow and must join the ISR) and
    /// replicas leaving once it completes. `replicas` holds both (target first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionState {
    /// The preferred leader: the first replica.
    pub fn preferred(&self) -> i32 {
        self.replicas.first().copied().unwrap_or(-1)
    }

    /// Whether a reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas before the ongoing reassignment (or now, without one).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.adding.contains(r)).collect()
    }

    /// The replicas once the ongoing reassignment completes.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.removing.contains(r)).collect()
    }

    /// Starts (or replaces, or with None cancels) a move to `target`. Returns false when
    /// nothing changes.
    fn reassign(&mut self, target: Option<&[i32]>, alive: impl Fn(i32) -> bool) -> bool {
        let original = self.original_replicas();
        let target: Vec<i32> = target.map(|t| t.to_vec()).unwrap_or_else(|| original.clone());
        let mut replicas = target.clone();
        replicas.extend(original.iter().copied().filter(|r| !target.contains(r)));
        let adding: Vec<i32> = target.iter().copied().filter(|r| !original.contains(r)).collect();
        let removing: Vec<i32> = original.iter().copied().filter(|r| !target.contains(r)).collect();
        if (&replicas, &adding, &removing) == (&self.replicas, &self.adding, &self.removing) {
            return false;
        }
        // A replica no longer part of the partition leaves the ISR at once.
        self.isr.retain(|r| replicas.contains(r));
        self.replicas = replicas;
        self.adding = adding;
        self.removing = removing;
        if self.isr.is_empty() || !self.replicas.contains(&self.leader) {
            self.elect_within(&alive);
        }
        self.partition_epoch += 1;
        true
    }

    /// Completes the move once every added replica is in sync: the removed ones go (a leader
    /// among them hands over to an in-sync target replica). False if it cannot complete yet.
    fn complete_reassignment(&mut self, alive: impl Fn(i32) -> bool) -> bool {
        if !self.reassigning() || !self.adding.iter().all(|r| self.isr.contains(r)) {
            return false;
        }
        let removing = std::mem::take(&mut self.removing);
        self.adding.clear();
        self.replicas.retain(|r| !removing.contains(r));
        self.isr.retain(|r| !removing.contains(r));
        if removing.contains(&self.leader) {
            self.elect_within(&alive);
        }
        self.partition_epoch += 1;
        true
    }

    /// A new leader among the in-sync replicas, target replicas first (-1 if none is alive).
    fn elect_within(&mut self, alive: &impl Fn(i32) -> bool) {
        let next = self
            .replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .chain(self.removing.iter().copied())
            .find(|r| self.isr.contains(r) && alive(*r));
        let next = next.unwrap_or(-1);
        if next != self.leader {
            self.leader = next;
            self.leader_epoch += 1;
        }
    }
}

impl TopicImage {
    /// The partition's placement; None on a single node (or an unknown partition).
    pub fn partition(&self, p: i32) -> Option<&PartitionState> {
        usize::try_from(p).ok().and_then(|i| self.assignments.get(i))
    }

    /// Whether `broker` keeps a replica of partition `p` (on a single node: every partition).
    pub fn hosts(&self, p: i32, broker: i32) -> bool {
        self.assignments.is_empty() || self.partition(p).is_some_and(|s| s.replicas.contains(&broker))
    }

    /// Whether `broker` leads partition `p` (on a single node: every partition).
    pub fn leads(&self, p: i32, broker: i32) -> bool {
        self.assignments.is_empty() || self.partition(p).is_some_and(|s| s.leader == broker)
    }
}

fn initial_state(replicas: &[i32], brokers: &BTreeMap<i32, BrokerImage>) -> PartitionState {
    let alive = |id: &i32| brokers.get(id).is_some_and(|b| !b.fenced);
    let leader = replicas.iter().copied().find(alive).unwrap_or(-1);
    // Every live replica of an empty log is in sync.
    PartitionState {
        replicas: replicas.to_vec(),
        leader,
        leader_epoch: 0,
        isr: replicas.iter().copied().filter(alive).collect(),
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// Index of the last applied record (0: nothing applied).
    pub applied_index: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub topic_ids: HashMap<Uuid, String>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// Remote manifests: per (topic id, partition), segments in offset order.
    pub remote: HashMap<(Uuid, i32), Arc<Vec<RemoteSegment>>>,
    /// Brokers registered with the cell (empty for `kora dev`'s single node).
    pub brokers: BTreeMap<i32, BrokerImage>,
    /// Tenants by id.
    pub tenants: BTreeMap<String, Arc<TenantImage>>,
    /// Credentials by login name.
    pub credentials: BTreeMap<String, Arc<Credential>>,
    /// ACLs by namespace (a tenant's id; "" for the default namespace), sorted, no duplicates.
    pub acls: BTreeMap<String, Arc<Vec<kora_auth::AclBinding>>>,
}

/// The key of a namespace's ACLs in [`MetadataImage::acls`].
pub fn acl_key(tenant: Option<&str>) -> String {
    tenant.unwrap_or_default().to_string()
}

/// A registered broker and whether it is fenced (its lease lapsed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub registration: BrokerRegistration,
    pub fenced: bool,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topic_ids.get(id).and_then(|n| self.topics.get(n))
    }

    /// The remote manifest of a partition (empty when nothing is uploaded).
    pub fn remote_segments(&self, topic_id: &Uuid, partition: i32) -> &[RemoteSegment] {
        self.remote.get(&(*topic_id, partition)).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// The remote manifest, shared (no copy) for readers that outlive this image borrow.
    pub fn remote_manifest(&self, topic_id: &Uuid, partition: i32) -> Arc<Vec<RemoteSegment>> {
        self.remote.get(&(*topic_id, partition)).cloned().unwrap_or_default()
    }

    pub fn tenant_by_name(&self, name: &str) -> Option<&Arc<TenantImage>> {
        self.tenants.values().find(|t| t.name == name)
    }

    /// The internal names of a tenant's topics.
    pub fn tenant_topics<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Arc<TopicImage>> + 'a {
        self.topics
            .values()
            .filter(move |t| kora_common::namespace::owner(&t.name).is_some_and(|o| o.as_str() == id))
    }

    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|t| t.partitions.max(0) as usize).sum()
    }

    /// Applies one committed record. Deterministic; a record whose precondition no longer
    /// holds changes nothing (the controller validated it against an older image).
    pub fn apply(&mut self, index: u64, record: &MetadataRecord) {
        assert!(index > self.applied_index, "records apply in order: {index} after {}", self.applied_index);
        self.applied_index = index;
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                partitions,
                replication_factor,
                configs,
                assignments,
            } => {
                if self.topics.contains_key(name) || self.topic_ids.contains_key(topic_id) {
                    return;
                }
                self.topic_ids.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: *partitions,
                        replication_factor: *replication_factor,
                        configs: configs.clone(),
                        assignments: assignments.iter().map(|r| initial_state(r, &self.brokers)).collect(),
                    }),
                );
            }
            MetadataRecord::DeleteTopic { name } => {
                if let Some(t) = self.topics.remove(name) {
                    self.topic_ids.remove(&t.topic_id);
                    // Its objects become orphans, removed by the uploader's sweep.
                    self.remote.retain(|(id, _), _| *id != t.topic_id);
                }
            }
            MetadataRecord::AddRemoteSegment { topic_id, partition, segment } => {
                if !self.topic_ids.contains_key(topic_id) {
                    return;
                }
                let m = Arc::make_mut(self.remote.entry((*topic_id, *partition)).or_default());
                // Segments are added in offset order and never overlap.
                if m.last().is_none_or(|last| segment.base_offset >= last.end_offset) {
                    m.push(segment.clone());
                }
            }
            MetadataRecord::RemoveRemoteSegments { topic_id, partition, bases } => {
                if let Some(m) = self.remote.get_mut(&(*topic_id, *partition)) {
                    Arc::make_mut(m).retain(|s| !bases.contains(&s.base_offset));
                }
            }
            MetadataRecord::CreatePartitions { name, count, assignments } => {
                let brokers = &self.brokers;
                if let Some(t) = self.topics.get_mut(name) {
                    if *count > t.partitions {
                        let t = Arc::make_mut(t);
                        if !t.assignments.is_empty() {
                            t.assignments.extend(assignments.iter().map(|r| initial_state(r, brokers)));
                        }
                        t.partitions = *count;
                    }
                }
            }
            MetadataRecord::SetTopicConfigs { name, configs } => {
                if let Some(t) = self.topics.get_mut(name) {
                    Arc::make_mut(t).configs = configs.clone();
                }
            }
            MetadataRecord::AllocateProducerIds { start, count } => {
                self.next_producer_id = self.next_producer_id.max(start + count);
            }
            MetadataRecord::RegisterBroker { broker } => {
                let id = broker.broker_id;
                let same_run =
                    self.brokers.get(&id).is_some_and(|b| b.registration.incarnation == broker.incarnation);
                let old = self.brokers.insert(id, BrokerImage { registration: broker.clone(), fenced: true });
                if !same_run {
                    // A new run may have lost what the old one had not synced: it leaves
                    // every ISR it shares (and what it led moves), and catches up as a
                    // follower. Where it was the last in-sync replica it alone may lead.
                    if old.is_some() {
                        self.remove_from_isr(id);
                    }
                }
                if let Some(b) = self.brokers.get_mut(&id) {
                    b.fenced = false;
                }
                self.move_leadership(|s| s.leader < 0 && s.isr.contains(&id), id);
            }
            MetadataRecord::FenceBroker { broker_id, incarnation } => {
                let id = *broker_id;
                if self.set_fenced(id, *incarnation, true) {
                    // Its partitions go to another in-sync, unfenced replica, or offline; it
                    // leaves every ISR it shares with others.
                    self.remove_from_isr(id);
                }
            }
            MetadataRecord::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let brokers = &self.brokers;
                let Some(t) = self.topics.get_mut(topic) else { return };
                let Some(s) = t.partition(*partition) else { return };
                let valid = s.leader == *leader
                    && s.leader_epoch == *leader_epoch
                    && s.partition_epoch == *partition_epoch
                    && isr.contains(leader)
                    && isr.iter().all(|r| s.replicas.contains(r))
                    // Only live brokers join; members may stay while fenced until removed.
                    && isr.iter().all(|r| s.isr.contains(r) || brokers.get(r).is_some_and(|b| !b.fenced));
                if valid {
                    let t = Arc::make_mut(t);
                    let s = &mut t.assignments[*partition as usize];
                    s.isr = isr.clone();
                    s.partition_epoch += 1;
                }
            }
            MetadataRecord::ReassignPartition { topic, partition, target } => {
                let brokers = &self.brokers;
                let alive = |id: i32| brokers.get(&id).is_some_and(|b| !b.fenced);
                if let Some(t) = self.topics.get_mut(topic) {
                    if t.partition(*partition).is_some() {
                        let t = Arc::make_mut(t);
                        t.assignments[*partition as usize].reassign(target.as_deref(), alive);
                    }
                }
            }
            MetadataRecord::CompleteReassignment { topic, partition } => {
                let brokers = &self.brokers;
                let alive = |id: i32| brokers.get(&id).is_some_and(|b| !b.fenced);
                if let Some(t) = self.topics.get_mut(topic) {
                    if t.partition(*partition).is_some_and(|s| s.reassigning()) {
                        let t = Arc::make_mut(t);
                        t.assignments[*partition as usize].complete_reassignment(alive);
                    }
                }
            }
            MetadataRecord::ElectLeader { topic, partition, leader } => {
                let alive = self.brokers.get(leader).is_some_and(|b| !b.fenced);
                let Some(t) = self.topics.get_mut(topic) else { return };
                let Some(s) = t.partition(*partition) else { return };
                if alive && s.isr.contains(leader) && s.leader != *leader {
                    let t = Arc::make_mut(t);
                    let s = &mut t.assignments[*partition as usize];
                    s.leader = *leader;
                    s.leader_epoch += 1;
                    s.partition_epoch += 1;
                }
            }
            MetadataRecord::CreateTenant { tenant } => {
                if !self.tenants.contains_key(&tenant.id) && self.tenant_by_name(&tenant.name).is_none() {
                    self.tenants.insert(tenant.id.clone(), Arc::new(tenant.clone()));
                }
            }
            MetadataRecord::SetTenantLimits { id, limits } => {
                if let Some(t) = self.tenants.get_mut(id) {
                    Arc::make_mut(t).limits = limits.clone();
                }
            }
            MetadataRecord::DeleteTenant { id } => {
                if self.tenants.remove(id).is_some() {
                    self.credentials.retain(|_, c| c.tenant.as_deref() != Some(id.as_str()));
                    self.acls.remove(id.as_str());
                }
            }
            MetadataRecord::CreateAcls { tenant, bindings } => {
                if tenant.as_ref().is_some_and(|t| !self.tenants.contains_key(t)) {
                    return;
                }
                let set = Arc::make_mut(self.acls.entry(acl_key(tenant.as_deref())).or_default());
                set.extend(bindings.iter().cloned());
                set.sort();
                set.dedup();
            }
            MetadataRecord::DeleteAcls { tenant, bindings } => {
                let key = acl_key(tenant.as_deref());
                if let Some(set) = self.acls.get_mut(&key) {
                    Arc::make_mut(set).retain(|b| !bindings.contains(b));
                    if set.is_empty() {
                        self.acls.remove(&key);
                    }
                }
            }
            MetadataRecord::PutCredential { credential } => {
                // A tenant's credential needs its tenant; a login keeps its owner.
                let owner_ok = credential.tenant.as_ref().is_none_or(|t| self.tenants.contains_key(t));
                let same_owner =
                    self.credentials.get(&credential.login).is_none_or(|c| c.tenant == credential.tenant);
                if owner_ok && same_owner {
                    self.credentials.insert(credential.login.clone(), Arc::new(credential.clone()));
                }
            }
            MetadataRecord::DeleteCredential { login } => {
                self.credentials.remove(login);
            }
            MetadataRecord::UnfenceBroker { broker_id, incarnation } => {
                let id = *broker_id;
                if self.set_fenced(id, *incarnation, false) {
                    self.move_leadership(|s| s.leader < 0 && s.isr.contains(&id), id);
                }
            }
        }
    }
}

impl MetadataImage {
    /// Fences or unfences this run (`incarnation`) of a broker; false when that run is not the
    /// registered one (a record about an earlier run changes nothing).
    fn set_fenced(&mut self, id: i32, incarnation: Uuid, fenced: bool) -> bool {
        match self.brokers.get_mut(&id) {
            Some(b) if b.registration.incarnation == incarnation => {
                b.fenced = fenced;
                true
            }
            _ => false,
        }
    }

    /// Applies `f` to every partition state; `f` says whether it changed one.
    fn update_partitions(&mut self, mut f: impl FnMut(&mut PartitionState) -> bool) {
        for t in self.topics.values_mut() {
            if t.assignments.is_empty() {
                continue;
            }
            let mut copy = (**t).clone();
            let mut changed = false;
            for s in copy.assignments.iter_mut() {
                changed |= f(s);
            }
            if changed {
                *t = Arc::new(copy);
            }
        }
    }

    /// Partitions matching `which` get `broker` as leader, at a new epoch.
    fn move_leadership(&mut self, which: impl Fn(&PartitionState) -> bool, broker: i32) {
        self.update_partitions(|s| {
            if !which(s) {
                return false;
            }
            s.leader = broker;
            if !s.isr.contains(&broker) {
                s.isr.push(broker);
            }
            s.leader_epoch += 1;
            s.partition_epoch += 1;
            true
        });
    }

    /// `id` (fenced, or a new run) leaves every ISR that has other members; partitions it led
    /// move to the next unfenced ISR member, or go offline keeping `id` as the last member.
    fn remove_from_isr(&mut self, id: i32) {
        let brokers = self.brokers.clone();
        self.update_partitions(|s| {
            if !s.isr.contains(&id) && s.leader != id {
                return false;
            }
            let mut changed = false;
            if s.leader == id {
                let next =
                    s.isr.iter().copied().find(|r| *r != id && brokers.get(r).is_some_and(|b| !b.fenced));
                s.leader = next.unwrap_or(-1);
                s.leader_epoch += 1;
                changed = true;
            }
            if s.isr.len() > 1 && s.isr.contains(&id) {
                s.isr.retain(|r| *r != id);
                changed = true;
            }
            if changed {
                s.partition_epoch += 1;
            }
            changed
        });
    }
}

/// The image in a serializable form (Raft snapshots). Maps with tuple keys become lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSnapshot {
    pub applied_index: u64,
    pub cluster_id: String,
    pub next_producer_id: i64,
    pub topics: Vec<TopicImage>,
    pub remote: Vec<(Uuid, i32, Vec<RemoteSegment>)>,
    #[serde(default)]
    pub brokers: Vec<BrokerImage>,
    #[serde(default)]
    pub tenants: Vec<TenantImage>,
    #[serde(default)]
    pub credentials: Vec<Credential>,
    #[serde(default)]
    pub acls: Vec<(String, Vec<kora_auth::AclBinding>)>,
}

impl MetadataImage {
    pub fn to_snapshot(&self) -> ImageSnapshot {
        let mut remote: Vec<_> = self.remote.iter().map(|((id, p), s)| (*id, *p, s.to_vec())).collect();
        remote.sort_by_key(|(id, p, _)| (*id, *p));
        ImageSnapshot {
            applied_index: self.applied_index,
            cluster_id: self.cluster_id.clone(),
            next_producer_id: self.next_producer_id,
            topics: self.topics.values().map(|t| (**t).clone()).collect(),
            remote,
            brokers: self.brokers.values().cloned().collect(),
            tenants: self.tenants.values().map(|t| (**t).clone()).collect(),
            credentials: self.credentials.values().map(|c| (**c).clone()).collect(),
            acls: self.acls.iter().map(|(k, v)| (k.clone(), (**v).clone())).collect(),
        }
    }

    pub fn from_snapshot(s: ImageSnapshot) -> Self {
        let mut image = MetadataImage {
            applied_index: s.applied_index,
            cluster_id: s.cluster_id,
            next_producer_id: s.next_producer_id,
            ..Default::default()
        };
        for t in s.topics {
            image.topic_ids.insert(t.topic_id, t.name.clone());
            image.topics.insert(t.name.clone(), Arc::new(t));
        }
        for b in s.brokers {
            image.brokers.insert(b.registration.broker_id, b);
        }
        for t in s.tenants {
            image.tenants.insert(t.id.clone(), Arc::new(t));
        }
        for c in s.credentials {
            image.credentials.insert(c.login.clone(), Arc::new(c));
        }
        for (k, v) in s.acls {
            image.acls.insert(k, Arc::new(v));
        }
        for (id, p, segs) in s.remote {
            if image.topic_ids.contains_key(&id) {
                image.remote.insert((id, p), Arc::new(segs));
            }
        }
        image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_is_deterministic_and_idempotent_on_conflicts() {
        let id = Uuid::from_u128(1);
        let create = MetadataRecord::CreateTopic {
            name: "a".into(),
            topic_id: id,
            partitions: 3,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        };
        let mut img = MetadataImage::default();
        img.apply(1, &create);
        img.apply(
            2,
            &MetadataRecord::CreatePartitions { name: "a".into(), count: 5, assignments: Vec::new() },
        );
        img.apply(
            3,
            &MetadataRecord::CreatePartitions { name: "a".into(), count: 2, assignments: Vec::new() },
        );
        img.apply(4, &create); // already exists: no-op
        assert_eq!(img.topic("a").map(|t| t.partitions), Some(5));
        assert_eq!(img.topic_by_id(&id).map(|t| t.name.as_str()), Some("a"));
        img.apply(5, &MetadataRecord::DeleteTopic { name: "a".into() });
        assert!(img.topic("a").is_none() && img.topic_ids.is_empty());
        img.apply(6, &MetadataRecord::AllocateProducerIds { start: 0, count: 1000 });
        assert_eq!(img.next_producer_id, 1000);
        assert_eq!(img.applied_index, 6);
    }
}

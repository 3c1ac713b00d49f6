//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): moving partitions
//! between the brokers of a cell. A move adds the new replicas as followers (throttled by
//! `leader.replication.throttled.rate` / `follower.replication.throttled.rate`), and completes
//! on the active controller once every added replica is in sync: the removed replicas leave and
//! delete their logs. ElectLeaders moves leadership within a partition's replicas.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kora_meta::{Election, ElectionOutcome, MetaError};

use super::families::Catalog;
use super::sb;
use crate::errors::meta_error_code;

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().map(|i| BrokerId(*i)).collect()
}

pub(super) async fn alter(
    cat: &Catalog<'_>,
    r: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    // v1 may forbid changing the replication factor; v0 always allows it.
    let rf_change_allowed = version < 1 || r.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|v| v.iter().map(|x| x.0).collect());
            let current = cat.view.image().topic(&name).and_then(|x| x.partition(p.partition_index).cloned());
            let (code, message) = match (&current, &target) {
                (None, _) => (ResponseError::UnknownTopicOrPartition.code(), None),
                (Some(s), Some(target))
                    if !rf_change_allowed && target.len() != s.original_replicas().len() =>
                {
                    (
                        ResponseError::InvalidReplicationFactor.code(),
                        Some(format!(
                            "{} replicas would become {}",
                            s.original_replicas().len(),
                            target.len()
                        )),
                    )
                }
                _ => {
                    let (n, idx) = (name.clone(), p.partition_index);
                    match cat.view.call(move |c| c.reassign_partition(&n, idx, target)).await {
                        Ok(_) => (0, None),
                        Err(e @ (MetaError::InvalidReplicationFactor(_) | MetaError::InvalidRequest(_))) => {
                            (ResponseError::InvalidReplicaAssignment.code(), Some(e.to_string()))
                        }
                        Err(e) => (meta_error_code(&e), Some(e.to_string())),
                    }
                }
            };
            parts.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_error_message(message.map(|m| sb(&m))),
            );
        }
        responses.push(ReassignableTopicResponse::default().with_name(t.name).with_partitions(parts));
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(rf_change_allowed)
        .with_responses(responses)
}

pub(super) fn list(
    cat: &Catalog<'_>,
    r: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = cat.view.image();
    let mut topics = Vec::new();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match r.topics {
        Some(ts) => ts.into_iter().map(|t| (t.name.0.to_string(), Some(t.partition_indexes))).collect(),
        None => image.topics.keys().map(|n| (n.clone(), None)).collect(),
    };
    for (name, partitions) in wanted {
        let Some(t) = image.topic(&name) else { continue };
        let ongoing: Vec<OngoingPartitionReassignment> = t
            .assignments
            .iter()
            .enumerate()
            .filter(|(p, s)| s.reassigning() && partitions.as_ref().is_none_or(|w| w.contains(&(*p as i32))))
            .map(|(p, s)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p as i32)
                    .with_replicas(ids(&s.replicas))
                    .with_adding_replicas(ids(&s.adding))
                    .with_removing_replicas(ids(&s.removing))
            })
            .collect();
        if !ongoing.is_empty() {
            topics.push(
                OngoingTopicReassignment::default().with_name(sb(&name).into()).with_partitions(ongoing),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// ElectLeaders (KIP-460; kafka-leader-election): a preferred election moves leadership to a
/// partition's first replica where it is alive and in sync; an "unclean" one gives a leaderless
/// partition a leader, from its in-sync replicas only (Kora never elects a replica that may lack
/// acknowledged records). A null list means every partition.
pub(super) async fn elect_leaders(
    cat: &Catalog<'_>,
    r: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let election = match (version, r.election_type) {
        (0, _) | (_, 0) => Election::Preferred,
        (_, 1) => Election::Unclean,
        (_, other) => {
            tracing::debug!(election_type = other, "unknown election type");
            return ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        }
    };
    let image = cat.view.image();
    let wanted: Vec<(String, Vec<i32>)> = match r.topic_partitions {
        Some(ts) => ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect(),
        None => image.topics.iter().map(|(n, t)| (n.clone(), (0..t.partitions).collect())).collect(),
    };
    // One controller request for every partition named (a cell forwards it once).
    let asked: Vec<(String, i32)> =
        wanted.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p))).collect();
    let outcomes = cat.view.call(move |c| c.elect_leaders(asked, election)).await;
    let mut outcomes = match outcomes {
        Ok(o) => o.into_iter(),
        Err(e) => {
            return ElectLeadersResponse::default()
                .with_error_code(meta_error_code(&e))
                .with_replica_election_results(Vec::new());
        }
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut out = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (code, message) = match outcomes.next() {
                Some(ElectionOutcome::Elected { .. }) => (0, None),
                Some(ElectionOutcome::NotNeeded) => (ResponseError::ElectionNotNeeded.code(), None),
                Some(ElectionOutcome::PreferredNotAvailable) => (
                    ResponseError::PreferredLeaderNotAvailable.code(),
                    Some("the preferred replica is not alive and in sync"),
                ),
                Some(ElectionOutcome::NoEligibleLeader) => (
                    ResponseError::EligibleLeadersNotAvailable.code(),
                    Some("no live in-sync replica (Kora does not elect replicas outside the ISR)"),
                ),
                Some(ElectionOutcome::UnknownPartition) | None => {
                    (ResponseError::UnknownTopicOrPartition.code(), None)
                }
            };
            out.push(
                PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(code)
                    .with_error_message(message.map(sb)),
            );
        }
        results
            .push(ReplicaElectionResult::default().with_topic(sb(&topic).into()).with_partition_result(out));
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

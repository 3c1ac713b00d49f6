//! Metadata and DescribeCluster: what the cluster looks like to clients. One broker is both
//! the leader of every partition and the controller; leader epochs are 0.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kora_meta::{MetaError, TopicImage, TopicRequest};

use super::families::Catalog;
use super::sb;
use crate::errors::meta_error_code;

/// Partitions of a topic on a single node: this node leads every one, at leader epoch 0.
pub(crate) fn single_node_partitions(node_id: i32, partitions: i32) -> Vec<MetadataResponsePartition> {
    let id = BrokerId(node_id);
    (0..partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(id)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![id])
                .with_isr_nodes(vec![id])
        })
        .collect()
}

/// Partitions of a topic placed in a cell: leader, epoch, replicas and ISR from metadata. An
/// offline partition (no leader) says LEADER_NOT_AVAILABLE.
fn cell_partitions(t: &TopicImage) -> Vec<MetadataResponsePartition> {
    t.assignments
        .iter()
        .enumerate()
        .map(|(p, s)| {
            let e = MetadataResponsePartition::default()
                .with_partition_index(p as i32)
                .with_leader_id(BrokerId(s.leader))
                .with_leader_epoch(s.leader_epoch)
                .with_replica_nodes(s.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(s.isr.iter().copied().map(BrokerId).collect());
            if s.leader < 0 {
                e.with_error_code(ResponseError::LeaderNotAvailable.code())
            } else {
                e
            }
        })
        .collect()
}

/// The brokers clients may talk to: the cell's unfenced brokers with their racks, or this one.
fn brokers(cat: &Catalog<'_>, image: &kora_meta::MetadataImage) -> Vec<MetadataResponseBroker> {
    if image.brokers.is_empty() {
        return vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(cat.config.node_id))
            .with_host(sb(&cat.config.advertised_for(cat.listener).host))
            .with_port(cat.config.advertised_for(cat.listener).port as i32)];
    }
    image
        .brokers
        .values()
        .filter(|x| !x.fenced)
        .map(|x| {
            let r = &x.registration;
            let (host, port) = r.endpoint(cat.listener);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(r.broker_id))
                .with_host(sb(host))
                .with_port(port as i32)
                .with_rack(r.rack.as_deref().map(sb))
        })
        .collect()
}

fn topic_entry(cat: &Catalog<'_>, t: &TopicImage) -> MetadataResponseTopic {
    let partitions = if t.assignments.is_empty() {
        single_node_partitions(cat.config.node_id, t.partitions)
    } else {
        cell_partitions(t)
    };
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(&t.name))))
        .with_topic_id(t.topic_id)
        .with_partitions(partitions)
        .with_is_internal(crate::groups::is_internal(&t.name))
        .with_topic_authorized_operations(i32::MIN)
}

fn error_entry(name: Option<&str>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(sb(n))))
        .with_topic_id(id)
        .with_error_code(code)
        .with_topic_authorized_operations(i32::MIN)
}

pub(super) async fn metadata(cat: &Catalog<'_>, r: MetadataRequest, version: i16) -> MetadataResponse {
    let image = cat.view.image();
    let topics = match &r.topics {
        None => image.topics.values().map(|t| topic_entry(cat, t)).collect(),
        Some(list) => {
            // Before v4 there is no flag: auto-creation follows the broker setting.
            let may_create =
                cat.config.auto_create_topics_enable && (version < 4 || r.allow_auto_topic_creation);
            let mut out = Vec::with_capacity(list.len());
            for req in list {
                let name = req.name.as_ref().map(|n| n.0.to_string());
                let found = match &name {
                    Some(n) if !n.is_empty() => image.topic(n).cloned(),
                    _ => image.topic_by_id(&req.topic_id).cloned(),
                };
                if let Some(t) = found {
                    out.push(topic_entry(cat, &t));
                    continue;
                }
                let Some(n) = name.filter(|n| !n.is_empty()) else {
                    out.push(error_entry(None, req.topic_id, ResponseError::UnknownTopicId.code()));
                    continue;
                };
                if !may_create {
                    out.push(error_entry(
                        Some(&n),
                        uuid::Uuid::nil(),
                        ResponseError::UnknownTopicOrPartition.code(),
                    ));
                    continue;
                }
                out.push(auto_create(cat, &n).await);
            }
            out
        }
    };
    let me = cat.config.node_id;
    MetadataResponse::default()
        .with_brokers(brokers(cat, &image))
        .with_cluster_id(Some(sb(&image.cluster_id)))
        // Clients send admin requests to the controller id; any broker forwards them.
        .with_controller_id(BrokerId(me))
        .with_topics(topics)
        .with_cluster_authorized_operations(i32::MIN)
}

async fn auto_create(cat: &Catalog<'_>, name: &str) -> MetadataResponseTopic {
    let req = TopicRequest {
        name: name.to_string(),
        partitions: -1,
        replication_factor: -1,
        configs: Default::default(),
    };
    let created = cat.view.call(move |c| c.create_topic(&req, false)).await;
    match created {
        Ok(_) | Err(MetaError::TopicExists(_)) => {
            let image = cat.view.image();
            match image.topic(name).cloned() {
                Some(t) => {
                    cat.sync_logs();
                    tracing::info!(topic = name, partitions = t.partitions, "auto-created topic");
                    topic_entry(cat, &t)
                }
                // Deleted again in between: let the client retry.
                None => error_entry(Some(name), uuid::Uuid::nil(), ResponseError::LeaderNotAvailable.code()),
            }
        }
        Err(e) => error_entry(Some(name), uuid::Uuid::nil(), meta_error_code(&e)),
    }
}

pub(super) fn describe_cluster(cat: &Catalog<'_>, r: DescribeClusterRequest) -> DescribeClusterResponse {
    let image = cat.view.image();
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(sb(&image.cluster_id))
        .with_controller_id(BrokerId(cat.config.node_id))
        .with_endpoint_type(r.endpoint_type)
        .with_cluster_authorized_operations(i32::MIN);
    // endpoint_type 1: brokers (default); 2: controllers, which Kora does not expose.
    if r.endpoint_type != 1 {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(sb("only broker endpoints are exposed")));
    }
    resp.with_brokers(
        brokers(cat, &image)
            .into_iter()
            .map(|x| {
                DescribeClusterBroker::default()
                    .with_broker_id(x.node_id)
                    .with_host(x.host)
                    .with_port(x.port)
                    .with_rack(x.rack)
            })
            .collect(),
    )
}

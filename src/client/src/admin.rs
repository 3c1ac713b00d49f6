//! Cluster questions built from several requests: the brokers and partition leaders
//! (Metadata), the groups (ListGroups on every broker), and one group's members, committed
//! offsets and lag (FindCoordinator, DescribeGroups, OffsetFetch, ListOffsets on leaders).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde::Serialize;

use crate::{ClientError, Connection};

const CLIENT_ID: &str = "kora-cli";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    /// "classic" or "consumer" (KIP-848); empty when the broker does not say.
    pub group_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// topic → partitions, when the group uses the consumer protocol.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// -1: nothing committed.
    pub committed_offset: i64,
    pub log_end_offset: i64,
    /// Records not yet committed (log end − committed, or the whole log when nothing is).
    pub lag: i64,
    pub member_id: Option<String>,
    pub metadata: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub coordinator: i32,
    pub members: Vec<MemberDescription>,
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
}

fn kafka_error(code: i16) -> String {
    kafka_protocol::error::ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"))
}

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokerInfo {
    pub id: i32,
    pub address: String,
    pub rack: Option<String>,
}

/// A partition's leadership as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: i32,
    /// -1: no leader (offline).
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

impl PartitionInfo {
    /// Fewer in-sync replicas than replicas.
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }
}

/// Brokers, controller and every partition's leadership.
/// A partition move under way.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller: i32,
    pub brokers: Vec<BrokerInfo>,
    pub partitions: Vec<PartitionInfo>,
}

/// A view of a cluster through one bootstrap connection, with connections to other brokers
/// opened on demand.
pub struct Admin {
    bootstrap: Connection,
    brokers: BTreeMap<i32, String>,
    leaders: BTreeMap<(String, i32), i32>,
    timeout: Duration,
    security: crate::ClientSecurity,
}

impl Admin {
    /// Connects to the first reachable address of a comma-separated bootstrap list.
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::connect_with(bootstrap, timeout, crate::ClientSecurity::default()).await
    }

    /// As [`Admin::connect`], every connection secured (and logged in) with `security`.
    pub async fn connect_with(
        bootstrap: &str,
        timeout: Duration,
        security: crate::ClientSecurity,
    ) -> Result<Self, ClientError> {
        let mut last = None;
        for addr in bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match Connection::connect_with(addr, CLIENT_ID, timeout, &security).await {
                Ok(c) => {
                    let mut a = Admin {
                        bootstrap: c,
                        brokers: BTreeMap::new(),
                        leaders: BTreeMap::new(),
                        timeout,
                        security,
                    };
                    a.refresh_metadata().await?;
                    return Ok(a);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol {
            addr: bootstrap.into(),
            message: "empty bootstrap list".into(),
        }))
    }

    async fn refresh_metadata(&mut self) -> Result<(), ClientError> {
        let (_, m) = self.bootstrap.send(&MetadataRequest::default().with_topics(None), 12).await?;
        self.brokers = m.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
        self.leaders.clear();
        for t in &m.topics {
            let Some(name) = &t.name else { continue };
            for p in &t.partitions {
                self.leaders.insert((name.to_string(), p.partition_index), p.leader_id.0);
            }
        }
        Ok(())
    }

    async fn connect_to(&self, node: i32) -> Result<Connection, ClientError> {
        let addr = self.brokers.get(&node).cloned().ok_or_else(|| ClientError::Protocol {
            addr: self.bootstrap.addr().into(),
            message: format!("broker {node} is not in the metadata"),
        })?;
        Connection::connect_with(&addr, CLIENT_ID, self.timeout, &self.security).await
    }

    /// Brokers (with racks) and every partition's leader, replicas and ISR, from Metadata.
    pub async fn describe_cluster(&mut self) -> Result<ClusterDescription, ClientError> {
        let (_, m) = self.bootstrap.send(&MetadataRequest::default().with_topics(None), 12).await?;
        let brokers = m
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                address: format!("{}:{}", b.host, b.port),
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        let mut partitions = Vec::new();
        for t in &m.topics {
            let Some(name) = &t.name else { continue };
            for p in &t.partitions {
                partitions.push(PartitionInfo {
                    topic: name.to_string(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                    isr: p.isr_nodes.iter().map(|r| r.0).collect(),
                    error_code: p.error_code,
                });
            }
        }
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(ClusterDescription {
            cluster_id: m.cluster_id.as_ref().map(|c| c.to_string()),
            controller: m.controller_id.0,
            brokers,
            partitions,
        })
    }

    /// Starts moving `topic`-`partition` to `replicas` (None cancels an ongoing move), with
    /// AlterPartitionReassignments. Err(message) when the cluster refuses it.
    pub async fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        replicas: Option<Vec<i32>>,
    ) -> Result<Result<(), String>, ClientError> {
        use kafka_protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        let req = kafka_protocol::messages::AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(partition)
                    .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))])]);
        let (_, r) = self.bootstrap.send(&req, 0).await?;
        if r.error_code != 0 {
            return Ok(Err(format!(
                "error {}: {}",
                r.error_code,
                r.error_message.map(|m| m.to_string()).unwrap_or_default()
            )));
        }
        let p = r.responses.first().and_then(|t| t.partitions.first());
        Ok(match p {
            Some(p) if p.error_code == 0 => Ok(()),
            Some(p) => Err(format!(
                "error {}: {}",
                p.error_code,
                p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default()
            )),
            None => Err("empty response".into()),
        })
    }

    /// Ongoing partition moves (ListPartitionReassignments).
    pub async fn reassignments(&mut self) -> Result<Vec<Reassignment>, ClientError> {
        let req = kafka_protocol::messages::ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32);
        let (_, r) = self.bootstrap.send(&req, 0).await?;
        if r.error_code != 0 {
            return Err(self.bootstrap_error(format!("ListPartitionReassignments error {}", r.error_code)));
        }
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut out = Vec::new();
        for t in &r.topics {
            for p in &t.partitions {
                out.push(Reassignment {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    replicas: ids(&p.replicas),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    fn bootstrap_error(&self, message: String) -> ClientError {
        ClientError::Protocol { addr: self.bootstrap.addr().into(), message }
    }

    /// Every group on every broker.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        let mut out = BTreeMap::new();
        let nodes: Vec<i32> = self.brokers.keys().copied().collect();
        for node in nodes {
            let mut c = self.connect_to(node).await?;
            let (_, r) = c.send(&ListGroupsRequest::default(), 5).await?;
            if r.error_code != 0 {
                return Err(ClientError::Protocol {
                    addr: c.addr().into(),
                    message: kafka_error(r.error_code),
                });
            }
            for g in r.groups {
                out.insert(
                    g.group_id.to_string(),
                    GroupListing {
                        group: g.group_id.to_string(),
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        group_type: g.group_type.to_string(),
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// Members, committed offsets and lag of one group.
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let key = StrBytes::from_string(group.to_string());
        // v4 batches keys and drops the single `key` field.
        let v = self.bootstrap.version_for(kafka_protocol::messages::ApiKey::FindCoordinator, 4)?;
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![key.clone()])
        } else {
            FindCoordinatorRequest::default().with_key(key.clone())
        };
        let (v, f) = self.bootstrap.send(&req, v).await?;
        let (code, node) = if v >= 4 {
            let c = f.coordinators.first().ok_or_else(|| ClientError::Protocol {
                addr: self.bootstrap.addr().into(),
                message: "FindCoordinator returned no coordinator".into(),
            })?;
            (c.error_code, c.node_id.0)
        } else {
            (f.error_code, f.node_id.0)
        };
        if code != 0 {
            return Err(ClientError::Protocol {
                addr: self.bootstrap.addr().into(),
                message: kafka_error(code),
            });
        }
        let mut coord = self.connect_to(node).await?;
        let (_, d) =
            coord.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(key.clone())]), 5).await?;
        let g = d.groups.into_iter().next().ok_or_else(|| ClientError::Protocol {
            addr: coord.addr().into(),
            message: "DescribeGroups returned no group".into(),
        })?;
        if g.error_code == kafka_protocol::error::ResponseError::GroupIdNotFound.code() {
            return Err(ClientError::GroupNotFound(group.to_string()));
        }
        if g.error_code != 0 {
            return Err(ClientError::Protocol {
                addr: coord.addr().into(),
                message: kafka_error(g.error_code),
            });
        }
        let consumer = g.protocol_type.as_str() == "consumer";
        let members: Vec<MemberDescription> = g
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|x| x.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: if consumer { decode_assignment(&m.member_assignment) } else { BTreeMap::new() },
            })
            .collect();
        let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
        for m in &members {
            for (t, ps) in &m.assignment {
                for p in ps {
                    owner.insert((t.clone(), *p), m.member_id.clone());
                }
            }
        }
        let (_, o) = coord
            .send(&OffsetFetchRequest::default().with_group_id(GroupId(key)).with_topics(None), 7)
            .await?;
        if o.error_code != 0 {
            return Err(ClientError::Protocol {
                addr: coord.addr().into(),
                message: kafka_error(o.error_code),
            });
        }
        let mut committed: BTreeMap<(String, i32), (i64, String)> = BTreeMap::new();
        for t in &o.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 {
                    committed.insert(
                        (t.name.to_string(), p.partition_index),
                        (p.committed_offset, p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default()),
                    );
                }
            }
        }
        let wanted: BTreeSet<(String, i32)> = committed.keys().chain(owner.keys()).cloned().collect();
        let ends = self.log_end_offsets(&wanted).await?;
        if g.group_state.as_str() == "Dead" && members.is_empty() && committed.is_empty() {
            return Err(ClientError::GroupNotFound(group.to_string()));
        }
        let partitions: Vec<PartitionLag> = wanted
            .into_iter()
            .map(|(t, p)| {
                let (c, meta) = committed.get(&(t.clone(), p)).cloned().unwrap_or((-1, String::new()));
                let end = ends.get(&(t.clone(), p)).copied().unwrap_or(-1);
                let lag = if end < 0 { 0 } else { (end - c.max(0)).max(0) };
                PartitionLag {
                    member_id: owner.get(&(t.clone(), p)).cloned(),
                    topic: t,
                    partition: p,
                    committed_offset: c,
                    log_end_offset: end,
                    lag,
                    metadata: meta,
                }
            })
            .collect();
        Ok(GroupDescription {
            group: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            coordinator: node,
            total_lag: partitions.iter().map(|p| p.lag).sum(),
            members,
            partitions,
        })
    }

    /// Latest offsets, asked of each partition's leader.
    async fn log_end_offsets(
        &mut self,
        parts: &BTreeSet<(String, i32)>,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for (t, p) in parts {
            if let Some(&l) = self.leaders.get(&(t.clone(), *p)) {
                by_leader.entry(l).or_default().entry(t.clone()).or_default().push(*p);
            }
        }
        let mut out = BTreeMap::new();
        for (leader, topics) in by_leader {
            let mut c = self.connect_to(leader).await?;
            let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(
                                ps.iter()
                                    .map(|&p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_timestamp(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
            let (_, r) = c.send(&req, 7).await?;
            for t in r.topics {
                for p in t.partitions {
                    if p.error_code == 0 {
                        out.insert((t.name.to_string(), p.partition_index), p.offset);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A ConsumerProtocolAssignment blob → topic → partitions (empty if it is not one).
fn decode_assignment(b: &Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut buf = b.clone();
    if buf.remaining() < 2 {
        return BTreeMap::new();
    }
    let version = buf.get_i16();
    let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) else {
        return BTreeMap::new();
    };
    a.assigned_partitions.into_iter().map(|tp| (tp.topic.to_string(), tp.partitions)).collect()
}

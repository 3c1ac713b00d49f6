//! The null sink: the loopback limit for `kora bench`.
//!
//! It runs the broker's connection loop and request decoding (`server::decode_frame`, same
//! framing and limits) but stores nothing: Produce is answered at once with made-up offsets,
//! counted per partition from the batch headers. The broker's produce throughput divided by the
//! sink's, measured with the same generator in the same run, is Kora's headline ratio: what
//! fraction of the machine's loopback + client + decode budget survives storage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsResponse, InitProducerIdResponse, MetadataResponse,
    ProduceResponse, ProducerId, RequestKind, ResponseKind, TopicName,
};
use parking_lot::Mutex;

use crate::config::Advertised;
use crate::handlers::{api_versions_list, api_versions_unsupported, sb, single_node_partitions};
use crate::server::{decode_frame, encode, Decoded, FrameHandler, Outcome};
use kora_log::batch::{peek_offset_and_len, BatchHeader};

const NODE_ID: i32 = 1;

#[derive(Debug)]
pub struct Sink {
    partitions: i32,
    advertised: Advertised,
    max_frame_bytes: usize,
    offsets: Mutex<HashMap<(String, i32), i64>>,
    topics: Mutex<Vec<String>>,
    next_producer_id: AtomicI64,
}

impl Sink {
    pub fn new(partitions: i32, advertised: Advertised, max_frame_bytes: usize) -> Self {
        assert!(partitions > 0, "the sink needs at least one partition per topic");
        Sink {
            partitions,
            advertised,
            max_frame_bytes,
            offsets: Mutex::new(HashMap::new()),
            topics: Mutex::new(Vec::new()),
            next_producer_id: AtomicI64::new(0),
        }
    }

    fn topic_entry(&self, name: &str) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(sb(name))))
            .with_partitions(single_node_partitions(NODE_ID, self.partitions))
    }

    fn note_topic(&self, name: &str) {
        let mut t = self.topics.lock();
        if !t.iter().any(|x| x == name) {
            t.push(name.to_string());
        }
    }

    fn respond(&self, req: RequestKind) -> Result<Option<ResponseKind>, String> {
        Ok(Some(match req {
            RequestKind::ApiVersions(_) => ApiVersionsResponse::default().with_api_keys(api_versions_list()).into(),
            RequestKind::Metadata(r) => {
                let names: Vec<String> = match r.topics {
                    None => self.topics.lock().clone(),
                    Some(ts) => ts.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect(),
                };
                for n in &names {
                    self.note_topic(n);
                }
                MetadataResponse::default()
                    .with_brokers(vec![MetadataResponseBroker::default()
                        .with_node_id(BrokerId(NODE_ID))
                        .with_host(sb(&self.advertised.host))
                        .with_port(self.advertised.port as i32)])
                    .with_cluster_id(Some(sb("kora-sink")))
                    .with_controller_id(BrokerId(NODE_ID))
                    .with_topics(names.iter().map(|n| self.topic_entry(n)).collect())
                    .into()
            }
            RequestKind::CreateTopics(r) => CreateTopicsResponse::default()
                .with_topics(
                    r.topics
                        .iter()
                        .map(|t| {
                            self.note_topic(t.name.0.as_str());
                            CreatableTopicResult::default()
                                .with_name(t.name.clone())
                                .with_num_partitions(self.partitions)
                                .with_replication_factor(1)
                        })
                        .collect(),
                )
                .into(),
            RequestKind::InitProducerId(_) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(self.next_producer_id.fetch_add(1, Ordering::Relaxed)))
                .with_producer_epoch(0)
                .into(),
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let mut offsets = self.offsets.lock();
                let responses = r
                    .topic_data
                    .into_iter()
                    .map(|t| {
                        let name = t.name.0.to_string();
                        let parts = t
                            .partition_data
                            .iter()
                            .map(|p| {
                                let count = p.records.as_ref().map_or(0, records_in);
                                let next = offsets.entry((name.clone(), p.index)).or_insert(0);
                                let base = *next;
                                *next += count;
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_base_offset(base)
                                    .with_log_append_time_ms(-1)
                                    .with_log_start_offset(0)
                            })
                            .collect();
                        TopicProduceResponse::default().with_name(t.name).with_partition_responses(parts)
                    })
                    .collect();
                if acks == 0 {
                    return Ok(None);
                }
                ProduceResponse::default().with_responses(responses).into()
            }
            other => {
                return Err(format!(
                    "the sink answers ApiVersions, Metadata, CreateTopics, InitProducerId and Produce, not {other:?}"
                ))
            }
        }))
    }
}

/// Records in a produce payload, from the batch headers only (the sink validates nothing).
fn records_in(records: &Bytes) -> i64 {
    let mut n = 0i64;
    let mut pos = 0usize;
    while let Some((_, len)) = peek_offset_and_len(&records[pos..]) {
        match BatchHeader::parse(&records[pos..]) {
            Ok(h) => n += h.records_count.max(0) as i64,
            Err(_) => break,
        }
        pos += len;
        if pos >= records.len() {
            break;
        }
    }
    n
}

impl FrameHandler for Sink {
    async fn handle(&self, frame: Bytes, _ctx: &mut crate::edge::ConnectionContext) -> Outcome {
        match decode_frame(frame) {
            Err(reason) => Outcome::Close(reason),
            Ok(Decoded::UnsupportedApiVersions { correlation_id }) => {
                encode(correlation_id, ApiKey::ApiVersions, 0, api_versions_unsupported().into())
            }
            Ok(Decoded::Request { api_key, version, header, body }) => match self.respond(*body) {
                Ok(Some(resp)) => encode(header.correlation_id, api_key, version, resp),
                Ok(None) => Outcome::Silent,
                Err(reason) => Outcome::Close(reason),
            },
        }
    }
    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
    fn stopping(&self) -> bool {
        false
    }
    /// The real clock: the sink is the loopback limit `kora bench` measures in real time.
    fn clock(&self) -> &dyn kora_common::Clock {
        &kora_common::SystemClock
    }
}

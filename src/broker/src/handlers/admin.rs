//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs. Every change goes through the controller; the logs are brought in
//! line with the new image before the response, so a client may produce right after.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, TopicName,
};
use kora_common::topic_config::ConfigType;
use kora_common::TOPIC_CONFIGS;
use kora_meta::{MetaError, TopicRequest};

use super::families::Catalog;
use super::sb;
use crate::errors::meta_error_code;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One described config: name, value, source, type, doc, and the synonyms chain.
struct Described {
    name: String,
    value: String,
    source: i8,
    config_type: i8,
    doc: &'static str,
    read_only: bool,
    synonyms: Vec<(String, String, i8)>,
}

fn describe_topic(cat: &Catalog<'_>, overrides: &BTreeMap<String, String>) -> Vec<Described> {
    let defaults = &cat.config.topic_defaults;
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(d.name) {
                synonyms.push((d.name.to_string(), v.clone(), SOURCE_DYNAMIC_TOPIC));
            }
            if let Some(v) = defaults.get(d.name) {
                synonyms.push((d.broker_synonym.to_string(), v.clone(), SOURCE_STATIC_BROKER));
            }
            synonyms.push((d.broker_synonym.to_string(), d.default.to_string(), SOURCE_DEFAULT));
            let (value, source) = (synonyms[0].1.clone(), synonyms[0].2);
            Described {
                name: d.name.to_string(),
                value,
                source,
                config_type: d.config_type as i8,
                doc: d.doc,
                read_only: false,
                synonyms,
            }
        })
        .collect()
}

fn describe_broker(cat: &Catalog<'_>) -> Vec<Described> {
    let c = &cat.config;
    let stat = |name: &str, value: String, t: ConfigType| Described {
        name: name.to_string(),
        value: value.clone(),
        source: SOURCE_STATIC_BROKER,
        config_type: t as i8,
        doc: crate::config::BROKER_KEYS.iter().find(|(k, _)| *k == name).map(|(_, d)| *d).unwrap_or(""),
        read_only: true,
        synonyms: vec![(name.to_string(), value, SOURCE_STATIC_BROKER)],
    };
    let mut out = vec![
        stat("node.id", c.node_id.to_string(), ConfigType::Int),
        stat("data.dir", c.data_dir.display().to_string(), ConfigType::String),
        stat(
            "listeners",
            c.listeners.iter().map(|l| format!("{}://{}", l.name, l.bind)).collect::<Vec<_>>().join(","),
            ConfigType::String,
        ),
        stat(
            "advertised.listeners",
            c.listeners
                .iter()
                .map(|l| format!("{}://{}:{}", l.name, l.advertised.host, l.advertised.port))
                .collect::<Vec<_>>()
                .join(","),
            ConfigType::String,
        ),
        stat("admin.listeners", c.admin_listener.to_string(), ConfigType::String),
        stat("auto.create.topics.enable", c.auto_create_topics_enable.to_string(), ConfigType::Boolean),
        stat("num.partitions", c.num_partitions.to_string(), ConfigType::Int),
        stat("default.replication.factor", c.default_replication_factor.to_string(), ConfigType::Int),
        stat("socket.request.max.bytes", c.socket_request_max_bytes.to_string(), ConfigType::Int),
        stat("max.connections", c.max_connections.to_string(), ConfigType::Int),
        stat("fetch.max.bytes", c.fetch_max_bytes.to_string(), ConfigType::Int),
        stat(
            "log.retention.check.interval.ms",
            c.log_retention_check_interval_ms.to_string(),
            ConfigType::Long,
        ),
        stat(
            "log.flush.scheduler.interval.ms",
            c.log_flush_scheduler_interval_ms.to_string(),
            ConfigType::Long,
        ),
        stat(
            "max.incremental.fetch.session.cache.slots",
            c.fetch_session_cache_slots.to_string(),
            ConfigType::Int,
        ),
        stat("max.partitions.per.topic", c.max_partitions_per_topic.to_string(), ConfigType::Int),
    ];
    for d in TOPIC_CONFIGS {
        let (value, source) = match c.topic_defaults.get(d.name) {
            Some(v) => (v.clone(), SOURCE_STATIC_BROKER),
            None => (d.default.to_string(), SOURCE_DEFAULT),
        };
        out.push(Described {
            name: d.broker_synonym.to_string(),
            value: value.clone(),
            source,
            config_type: d.config_type as i8,
            doc: d.doc,
            read_only: true,
            synonyms: vec![(d.broker_synonym.to_string(), value, source)],
        });
    }
    out
}

pub(super) async fn create_topics(
    cat: &Catalog<'_>,
    r: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let dups: HashSet<String> =
        r.topics.iter().map(|t| t.name.0.to_string()).filter(|n| !seen.insert(n.clone())).collect();
    let mut results = Vec::with_capacity(r.topics.len());
    let mut created_any = false;
    for t in r.topics {
        let name = t.name.0.to_string();
        let result =
            CreatableTopicResult::default().with_name(t.name.clone()).with_topic_config_error_code(0);
        if dups.contains(&name) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb("duplicate topic name in request"))),
            );
            continue;
        }
        let me = cat.config.node_id;
        let mut partitions = t.num_partitions;
        let mut rf = t.replication_factor;
        if !t.assignments.is_empty() {
            // Manual assignment: every replica must be this broker.
            let bad = t
                .assignments
                .iter()
                .any(|a| a.broker_ids.iter().any(|id| id.0 != me) || a.broker_ids.is_empty());
            let mut idx: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
            idx.sort_unstable();
            if bad || idx != (0..idx.len() as i32).collect::<Vec<_>>() || partitions != -1 || rf != -1 {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                        .with_error_message(Some(sb("replica assignment must name this broker for partitions 0..n, without num_partitions/replication_factor"))),
                );
                continue;
            }
            partitions = idx.len() as i32;
            rf = t.assignments[0].broker_ids.len() as i16;
        }
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => bad_config = Some(format!("config '{}' has no value", c.name.as_str())),
            }
        }
        if let Some(msg) = bad_config {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidConfig.code())
                    .with_error_message(Some(sb(&msg))),
            );
            continue;
        }
        let req = TopicRequest { name: name.clone(), partitions, replication_factor: rf, configs };
        let validate_only = r.validate_only;
        match cat.view.call(move |c| c.create_topic(&req, validate_only)).await {
            Ok(topic) => {
                created_any |= !validate_only;
                let mut res = result
                    .with_topic_id(topic.topic_id)
                    .with_num_partitions(topic.partitions)
                    .with_replication_factor(topic.replication_factor);
                if version >= 5 {
                    let cfgs = describe_topic(cat, &topic.configs)
                        .into_iter()
                        .map(|d| {
                            CreatableTopicConfigs::default()
                                .with_name(sb(&d.name))
                                .with_value(Some(sb(&d.value)))
                                .with_config_source(d.source)
                                .with_read_only(d.read_only)
                        })
                        .collect();
                    res = res.with_configs(Some(cfgs));
                }
                results.push(res);
            }
            Err(e) => {
                results.push(
                    result
                        .with_error_code(meta_error_code(&e))
                        .with_error_message(Some(sb(&e.to_string())))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                );
            }
        }
    }
    if created_any {
        cat.sync_logs();
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub(super) async fn delete_topics(
    cat: &Catalog<'_>,
    r: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics by name or id; older versions by name only.
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        r.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        r.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    let mut results = Vec::with_capacity(targets.len());
    let mut deleted_any = false;
    for (name, id) in targets {
        let image = cat.view.image();
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => image.topic_by_id(&id).map(|t| t.name.clone()),
        };
        let base = DeletableTopicResult::default()
            .with_name(name.as_ref().map(|n| TopicName(sb(n))))
            .with_topic_id(id);
        let Some(n) = resolved else {
            results.push(base.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        if crate::groups::is_internal(&n) {
            results.push(
                base.with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb("internal topics cannot be deleted"))),
            );
            continue;
        }
        let n2 = n.clone();
        match cat.view.call(move |c| c.delete_topic(&n2)).await {
            Ok(tid) => {
                deleted_any = true;
                tracing::info!(topic = %n, "topic deleted");
                results.push(base.with_name(Some(TopicName(sb(&n)))).with_topic_id(tid));
            }
            Err(e) => results
                .push(base.with_error_code(meta_error_code(&e)).with_error_message(Some(sb(&e.to_string())))),
        }
    }
    if deleted_any {
        cat.sync_logs();
    }
    DeleteTopicsResponse::default().with_responses(results)
}

pub(super) async fn create_partitions(
    cat: &Catalog<'_>,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(r.topics.len());
    let mut changed = false;
    for t in r.topics {
        let name = t.name.0.to_string();
        let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if crate::groups::is_internal(&name) {
            // Groups are hashed over the partition count; changing it would lose them.
            results.push(
                base.with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb("internal topics cannot gain partitions"))),
            );
            continue;
        }
        if let Some(a) = &t.assignments {
            if a.iter().any(|x| x.broker_ids.iter().any(|id| id.0 != cat.config.node_id)) {
                results.push(
                    base.with_error_code(ResponseError::InvalidReplicaAssignment.code())
                        .with_error_message(Some(sb("assignments may only name this broker"))),
                );
                continue;
            }
        }
        let (count, validate_only) = (t.count, r.validate_only);
        match cat.view.call(move |c| c.create_partitions(&name, count, validate_only)).await {
            Ok(()) => {
                changed |= !validate_only;
                results.push(base);
            }
            Err(e) => results
                .push(base.with_error_code(meta_error_code(&e)).with_error_message(Some(sb(&e.to_string())))),
        }
    }
    if changed {
        cat.sync_logs();
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub(super) fn describe_configs(
    cat: &Catalog<'_>,
    r: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = cat.view.image();
    let results = r
        .resources
        .into_iter()
        .map(|res| {
            let name = res.resource_name.to_string();
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let described = match res.resource_type {
                RESOURCE_TOPIC => match image.topic(&name) {
                    Some(t) => describe_topic(cat, &t.configs),
                    None => {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(sb(&format!("unknown topic '{name}'"))))
                    }
                },
                RESOURCE_BROKER => {
                    if !name.is_empty() && name != cat.config.node_id.to_string() {
                        return base
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(sb(&format!(
                                "this is broker {}, not '{name}'",
                                cat.config.node_id
                            ))));
                    }
                    describe_broker(cat)
                }
                other => {
                    return base
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(&format!("resource type {other} is not supported"))))
                }
            };
            let wanted: Option<HashSet<String>> =
                res.configuration_keys.map(|ks| ks.iter().map(|k| k.to_string()).collect());
            let configs = described
                .into_iter()
                .filter(|d| wanted.as_ref().is_none_or(|w| w.contains(&d.name)))
                .map(|d| {
                    let mut e = DescribeConfigsResourceResult::default()
                        .with_name(sb(&d.name))
                        .with_value(Some(sb(&d.value)))
                        .with_read_only(d.read_only)
                        .with_config_source(d.source)
                        .with_config_type(d.config_type);
                    if r.include_synonyms {
                        e = e.with_synonyms(
                            d.synonyms
                                .iter()
                                .map(|(n, v, s)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(sb(n))
                                        .with_value(Some(sb(v)))
                                        .with_source(*s)
                                })
                                .collect(),
                        );
                    }
                    if r.include_documentation && version >= 3 {
                        e = e.with_documentation(Some(sb(d.doc)));
                    }
                    e
                })
                .collect();
            base.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Shared tail of AlterConfigs and IncrementalAlterConfigs: commit `overrides` for a topic.
async fn commit_topic_configs(
    cat: &Catalog<'_>,
    name: String,
    overrides: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), MetaError> {
    cat.view.call(move |c| c.set_topic_configs(&name, overrides, validate_only)).await
}

fn static_broker_error() -> (i16, String) {
    (
        ResponseError::InvalidConfig.code(),
        "broker configs are static in Kora: change the config file and restart".into(),
    )
}

pub(super) async fn alter_configs(cat: &Catalog<'_>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut out = Vec::with_capacity(r.resources.len());
    let mut changed = false;
    for res in r.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let (code, msg) = match res.resource_type {
            RESOURCE_TOPIC => {
                // Full replacement: the given set becomes the topic's overrides.
                let overrides: BTreeMap<String, String> = res
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                match commit_topic_configs(cat, res.resource_name.to_string(), overrides, r.validate_only)
                    .await
                {
                    Ok(()) => {
                        changed |= !r.validate_only;
                        (0, None)
                    }
                    Err(e) => (meta_error_code(&e), Some(e.to_string())),
                }
            }
            RESOURCE_BROKER => {
                let (c, m) = static_broker_error();
                (c, Some(m))
            }
            other => (
                ResponseError::InvalidRequest.code(),
                Some(format!("resource type {other} is not supported")),
            ),
        };
        out.push(base.with_error_code(code).with_error_message(msg.map(|m| sb(&m))));
    }
    if changed {
        cat.sync_logs();
    }
    AlterConfigsResponse::default().with_responses(out)
}

pub(super) async fn incremental_alter_configs(
    cat: &Catalog<'_>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut out = Vec::with_capacity(r.resources.len());
    let mut changed = false;
    for res in r.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let name = res.resource_name.to_string();
        let result: Result<(), (i16, String)> = match res.resource_type {
            RESOURCE_TOPIC => {
                let image = cat.view.image();
                match image.topic(&name) {
                    None => Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("unknown topic '{name}'"),
                    )),
                    Some(t) => {
                        let mut overrides = t.configs.clone();
                        let mut err = None;
                        for c in &res.configs {
                            let key = c.name.to_string();
                            let value = c.value.as_ref().map(|v| v.to_string());
                            let is_list = kora_common::topic_config_def(&key)
                                .is_some_and(|d| d.config_type == ConfigType::List);
                            match (c.config_operation, value) {
                                (0, Some(v)) => {
                                    overrides.insert(key, v);
                                }
                                (1, _) => {
                                    overrides.remove(&key);
                                }
                                (2 | 3, Some(v)) if is_list => {
                                    let current = overrides
                                        .get(&key)
                                        .cloned()
                                        .or_else(|| {
                                            kora_common::topic_config_def(&key).map(|d| d.default.to_string())
                                        })
                                        .unwrap_or_default();
                                    let mut items: Vec<String> = current
                                        .split(',')
                                        .map(|s| s.trim().to_string())
                                        .filter(|s| !s.is_empty())
                                        .collect();
                                    for item in
                                        v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
                                    {
                                        if c.config_operation == 2 {
                                            if !items.contains(&item) {
                                                items.push(item);
                                            }
                                        } else {
                                            items.retain(|x| *x != item);
                                        }
                                    }
                                    overrides.insert(key, items.join(","));
                                }
                                (2 | 3, _) => {
                                    err = Some((
                                        ResponseError::InvalidConfig.code(),
                                        format!("'{key}' is not a list config"),
                                    ));
                                }
                                (op, _) => {
                                    err = Some((
                                        ResponseError::InvalidRequest.code(),
                                        format!("operation {op} needs a value or is unknown"),
                                    ));
                                }
                            }
                        }
                        match err {
                            Some(e) => Err(e),
                            None => commit_topic_configs(cat, name.clone(), overrides, r.validate_only)
                                .await
                                .map(|()| changed |= !r.validate_only)
                                .map_err(|e| (meta_error_code(&e), e.to_string())),
                        }
                    }
                }
            }
            // No broker config is dynamic in Kora, so deleting dynamic values (what
            // kafka-reassign-partitions --verify does to clear throttles) finds none to delete
            // and succeeds, as it does in Kafka when nothing was set; setting one is refused.
            RESOURCE_BROKER if res.configs.iter().all(|c| c.config_operation == 1) => Ok(()),
            RESOURCE_BROKER => Err(static_broker_error()),
            other => {
                Err((ResponseError::InvalidRequest.code(), format!("resource type {other} is not supported")))
            }
        };
        out.push(match result {
            Ok(()) => base,
            Err((code, msg)) => base.with_error_code(code).with_error_message(Some(sb(&msg))),
        });
    }
    if changed {
        cat.sync_logs();
    }
    IncrementalAlterConfigsResponse::default().with_responses(out)
}

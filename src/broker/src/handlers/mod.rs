//! Request handlers, one module per API family, and the table of API versions we serve.
//!
//! The table is the single source for ApiVersions and for the version check in the server:
//! a version is listed only when its fields are implemented.

mod acls;
mod admin;
pub(crate) mod authz;
mod client_quotas;
mod credentials;
mod families;
mod fetch;
mod groups;
mod log_dirs;
mod metadata;
mod offsets;
mod produce;
pub(crate) mod quota;
mod reassign;
mod replica_fetch;
pub(crate) mod sasl;
mod scope;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::edge::ConnectionContext;
pub(crate) use metadata::single_node_partitions;

/// (API, min version, max version) served by Kora.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

pub(crate) fn supported_range(k: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(key, _, _)| *key == k).map(|&(_, lo, hi)| (lo, hi))
}

pub(crate) fn api_versions_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(k, lo, hi)| {
            let crate_range = k.valid_versions();
            debug_assert!(lo >= crate_range.min && hi <= crate_range.max, "{k:?} beyond the codec");
            ApiVersion::default().with_api_key(k as i16).with_min_version(lo).with_max_version(hi)
        })
        .collect()
}

/// The v0 answer to an ApiVersions request at a version we do not know (KIP-511).
pub(crate) fn api_versions_unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(kafka_protocol::error::ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_versions_list())
}

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Runs the handler for one decoded request, giving it its family's handles
/// (`families`), never the whole broker. `Ok(None)`: no response (acks=0).
/// `Err(reason)`: close the connection.
///
/// This is the request edge (`crate::edge`): the one place that sees both a request and who
/// sent it, where names are scoped to the connection's namespace on the way in and out.
/// `request_bytes`: the frame's size (what produce quotas count).
pub(crate) async fn dispatch(
    b: &Broker,
    ctx: &mut ConnectionContext,
    header: &RequestHeader,
    req: RequestKind,
    request_bytes: usize,
) -> Result<Option<ResponseKind>, String> {
    let v = header.request_api_version;
    let api = ApiKey::try_from(header.request_api_key).map_err(|_| "unknown API key".to_string())?;
    sasl::gate(&b.security(), ctx, api)?;
    let resp: ResponseKind = match req {
        RequestKind::SaslHandshake(r) => sasl::handshake(&b.security(), ctx, r, v).into(),
        RequestKind::SaslAuthenticate(r) => sasl::authenticate(&b.security(), ctx, r, v).await.into(),
        other => return dispatch_authenticated(b, ctx, header, other, request_bytes).await,
    };
    Ok(Some(resp))
}

/// Requests of a connection allowed to make them (authenticated, or on a listener that needs
/// no authentication).
async fn dispatch_authenticated(
    b: &Broker,
    ctx: &mut ConnectionContext,
    header: &RequestHeader,
    mut req: RequestKind,
    request_bytes: usize,
) -> Result<Option<ResponseKind>, String> {
    let tenant = ctx.namespace != kora_common::Namespace::Default;
    if tenant {
        if let Some(refused) = scope::operator_only(&req) {
            return Ok(Some(refused));
        }
    }
    let image = b.view.image();
    // A deleted key (or tenant) ends its sessions at their next request.
    if let Some(c) = ctx.credential.as_ref().filter(|_| !ctx.listener_user) {
        if !image.credentials.contains_key(&c.login) {
            return Err(format!("the credential of {} was deleted", ctx.principal));
        }
    }
    let gate = b.authz.gate(&image, ctx);
    // A follower's fetch names the internal partitions of every namespace (a tenant's topics
    // replicate too): it is not scoped, and `handle` lets only brokers make it.
    if let RequestKind::Fetch(f) = &req {
        if fetch::replica_of(f, header.request_api_version).is_some() {
            drop(image);
            return handle(b, ctx, &gate, header, req).await;
        }
    }
    let quota = ctx.quota.clone();
    let limits = quota
        .as_ref()
        .map(|q| image.tenants.get(q.id.as_str()).map(|t| t.limits.clone()).unwrap_or_default());
    let produce = matches!(&req, RequestKind::Produce(_));
    let namespace = ctx.namespace.clone();
    let mut scope = scope::Scope::new(&namespace, image.clone(), &gate);
    if let Some(answer) = scope.request(&mut req)? {
        return Ok(Some(answer));
    }
    let (Some(q), Some(limits)) = (quota, limits) else {
        let mut resp = handle(b, ctx, &gate, header, req).await?;
        if let Some(r) = resp.as_mut() {
            scope.response(r);
        }
        return Ok(resp);
    };
    // A tenant's request: its quotas are checked before and charged after (`quota`).
    let v = header.request_api_version;
    let charge = |now_ms| quota::Charge { q: &q, limits: &limits, window: b.quotas.config.window, now_ms };
    let admitted =
        match quota::before(&charge(b.quotas.now_ms()), &image, b.config.num_partitions, v, &mut req) {
            Ok(a) => a,
            Err(mut answer) => {
                scope.response(&mut answer);
                return Ok(Some(*answer));
            }
        };
    drop(image);
    let work = async {
        b.faults.burn_cpu();
        handle(b, ctx, &gate, header, req).await
    };
    let (resp, busy) = quota::Busy::new(&*b.clock, work).await;
    let mut resp = resp?;
    let throttle_ms =
        quota::after(&charge(b.quotas.now_ms()), request_bytes, busy, admitted, resp.as_mut(), produce);
    ctx.mute(b.clock.now(), throttle_ms);
    if let Some(r) = resp.as_mut() {
        scope.response(r);
    }
    Ok(resp)
}

/// The handler of a request whose names are internal.
async fn handle(
    b: &Broker,
    ctx: &ConnectionContext,
    gate: &authz::Gate,
    header: &RequestHeader,
    req: RequestKind,
) -> Result<Option<ResponseKind>, String> {
    let v = header.request_api_version;
    let client = || groups::Client::new(header, ctx);
    let resp: ResponseKind = match req {
        RequestKind::ApiVersions(_) => {
            ApiVersionsResponse::default().with_api_keys(api_versions_list()).into()
        }
        RequestKind::Metadata(r) => metadata::metadata(&b.catalog(&ctx.listener), r, v).await.into(),
        RequestKind::DescribeCluster(r) => metadata::describe_cluster(&b.catalog(&ctx.listener), r).into(),
        RequestKind::Produce(r) => {
            return produce::produce(&b.writes(), r, v).await.map(|o| o.map(Into::into))
        }
        RequestKind::Fetch(r) => match fetch::replica_of(&r, v) {
            None => fetch::fetch(&b.reads(), r, v).await.into(),
            // A follower's fetch moves high watermarks and the ISR: only brokers may send one
            // (CLUSTER_ACTION on the cluster, as Kafka; never a tenant's principal).
            Some(_)
                if ctx.namespace != kora_common::Namespace::Default
                    || !gate.allows_cluster(kora_auth::AclOperation::ClusterAction) =>
            {
                replica_fetch::refused(&r).into()
            }
            Some(replica) => {
                // Fault injection cuts peers off both ways: a follower's fetch that arrives
                // during the cut, or a long poll that was waiting when it began, gets no answer
                // (as a partitioned network would drop it), so nothing written after the cut
                // replicates.
                if b.faults.isolated() {
                    return Err("isolated from peers by fault injection".into());
                }
                let resp = replica_fetch::replica_fetch(&b.followers(), r, v, replica).await;
                if b.faults.isolated() {
                    return Err("isolated from peers by fault injection".into());
                }
                resp.into()
            }
        },
        RequestKind::ListOffsets(r) => offsets::list_offsets(&b.reads(), r).await.into(),
        RequestKind::DeleteRecords(r) => offsets::delete_records(&b.reads(), r).await.into(),
        RequestKind::OffsetForLeaderEpoch(r) => offsets::offset_for_leader_epoch(&b.reads(), r).into(),
        RequestKind::InitProducerId(r) => produce::init_producer_id(&b.writes(), r).await.into(),
        RequestKind::CreateTopics(r) => admin::create_topics(&b.catalog(&ctx.listener), r, v).await.into(),
        RequestKind::DeleteTopics(r) => admin::delete_topics(&b.catalog(&ctx.listener), r, v).await.into(),
        RequestKind::CreatePartitions(r) => {
            admin::create_partitions(&b.catalog(&ctx.listener), r).await.into()
        }
        RequestKind::AlterPartitionReassignments(r) => {
            reassign::alter(&b.catalog(&ctx.listener), r, v).await.into()
        }
        RequestKind::ListPartitionReassignments(r) => reassign::list(&b.catalog(&ctx.listener), r).into(),
        RequestKind::ElectLeaders(r) => reassign::elect_leaders(&b.catalog(&ctx.listener), r, v).await.into(),
        RequestKind::DescribeUserScramCredentials(r) => {
            credentials::describe(&b.security(), ctx, gate, r).into()
        }
        RequestKind::AlterUserScramCredentials(r) => {
            credentials::alter(&b.security(), ctx, gate, r).await.into()
        }
        RequestKind::DescribeClientQuotas(r) => client_quotas::describe(&b.security(), ctx, gate, r).into(),
        RequestKind::AlterClientQuotas(r) => client_quotas::alter(&b.security(), ctx, gate, r).await.into(),
        RequestKind::CreateAcls(r) => acls::create(&b.security(), ctx, gate, r, v).await?.into(),
        RequestKind::DescribeAcls(r) => acls::describe(&b.security(), ctx, gate, r)?.into(),
        RequestKind::DeleteAcls(r) => acls::delete(&b.security(), ctx, gate, r).await?.into(),
        RequestKind::DescribeLogDirs(r) => log_dirs::describe_log_dirs(&b.storage(), r).into(),
        RequestKind::DescribeConfigs(r) => admin::describe_configs(&b.catalog(&ctx.listener), r, v).into(),
        RequestKind::AlterConfigs(r) => admin::alter_configs(&b.catalog(&ctx.listener), r).await.into(),
        RequestKind::IncrementalAlterConfigs(r) => {
            admin::incremental_alter_configs(&b.catalog(&ctx.listener), r).await.into()
        }
        RequestKind::FindCoordinator(r) => {
            groups::find_coordinator(&b.coordination(&ctx.listener), r, v).into()
        }
        RequestKind::JoinGroup(r) => {
            groups::join_group(&b.coordination(&ctx.listener), r, v, &client()).await.into()
        }
        RequestKind::SyncGroup(r) => groups::sync_group(&b.coordination(&ctx.listener), r).await.into(),
        RequestKind::Heartbeat(r) => groups::heartbeat(&b.coordination(&ctx.listener), r).into(),
        RequestKind::LeaveGroup(r) => groups::leave_group(&b.coordination(&ctx.listener), r, v).into(),
        RequestKind::OffsetCommit(r) => groups::offset_commit(&b.coordination(&ctx.listener), r).await.into(),
        RequestKind::OffsetFetch(r) => groups::offset_fetch(&b.coordination(&ctx.listener), r, v).into(),
        RequestKind::DescribeGroups(r) => {
            groups::describe_groups(&b.coordination(&ctx.listener), r, v).into()
        }
        RequestKind::ListGroups(r) => groups::list_groups(&b.coordination(&ctx.listener), r).into(),
        RequestKind::DeleteGroups(r) => groups::delete_groups(&b.coordination(&ctx.listener), r).into(),
        RequestKind::OffsetDelete(r) => groups::offset_delete(&b.coordination(&ctx.listener), r).into(),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            groups::consumer_group_heartbeat(&b.coordination(&ctx.listener), r, &client()).into()
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            groups::consumer_group_describe(&b.coordination(&ctx.listener), r).into()
        }
        other => return Err(format!("no handler for {other:?}")),
    };
    Ok(Some(resp))
}

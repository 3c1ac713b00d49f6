//! CreateAcls, DescribeAcls and DeleteAcls (v1-3) for the connection's namespace, with Kafka's
//! checks (kora-auth's `acl`). A tenant's ACLs name its principals (`User:<key id>`,
//! `User:alice`) and its resources by their plain names; they are the tenant's alone.
//! CreateAcls and DeleteAcls need ALTER on the cluster, DescribeAcls DESCRIBE (a tenant's
//! admin keys have both).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kora_auth::{AclBinding, AclFilter, AclOperation, AclPermission, PatternType, ResourceType};
use kora_common::Namespace;

use super::authz::Gate;
use super::families::Security;
use super::sb;
use crate::edge::ConnectionContext;

fn tenant_of(ns: &Namespace) -> Option<String> {
    match ns {
        Namespace::Default => None,
        Namespace::Tenant(t) => Some(t.to_string()),
    }
}

fn denied() -> (i16, &'static str) {
    (ResponseError::ClusterAuthorizationFailed.code(), "Cluster authorization failed.")
}

pub(crate) async fn create(
    sec: &Security<'_>,
    ctx: &ConnectionContext,
    gate: &Gate,
    r: CreateAclsRequest,
    version: i16,
) -> Result<CreateAclsResponse, String> {
    let bindings: Vec<AclBinding> = r
        .creations
        .iter()
        .map(|c| AclBinding {
            resource_type: ResourceType::from_code(c.resource_type),
            resource_name: c.resource_name.to_string(),
            pattern_type: PatternType::from_code(c.resource_pattern_type),
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: AclOperation::from_code(c.operation),
            permission: AclPermission::from_code(c.permission_type),
        })
        .collect();
    let each = |code: i16, message: Option<&str>| {
        bindings
            .iter()
            .map(|_| AclCreationResult::default().with_error_code(code).with_error_message(message.map(sb)))
            .collect::<Vec<_>>()
    };
    if !gate.allows_cluster(AclOperation::Alter) {
        let (code, message) = denied();
        return Ok(CreateAclsResponse::default().with_results(each(code, Some(message))));
    }
    let checks = match kora_auth::acl::validate_creations(&bindings) {
        Ok(c) => c,
        // An UNKNOWN code: Kafka cannot parse the request and closes the connection.
        Err(e) if e.error_code() != kora_auth::acl::UNKNOWN_SERVER_ERROR => return Err(e.to_string()),
        Err(e) => {
            return Ok(CreateAclsResponse::default().with_results(each(e.error_code(), e.client_message())))
        }
    };
    let mut results = Vec::with_capacity(bindings.len());
    let mut valid = Vec::new();
    for (b, check) in bindings.iter().zip(checks) {
        let check = check.and_then(|()| {
            // CreateAcls v0 knows only LITERAL patterns.
            if version == 0 && b.pattern_type != PatternType::Literal {
                Err(kora_auth::AclError::InvalidRequest(
                    "Version 0 only supports literal resource pattern types".into(),
                ))
            } else {
                Ok(())
            }
        });
        match check {
            Ok(()) => {
                valid.push(b.clone());
                results.push(AclCreationResult::default());
            }
            Err(e) => results.push(
                AclCreationResult::default()
                    .with_error_code(e.error_code())
                    .with_error_message(e.client_message().map(sb)),
            ),
        }
    }
    let tenant = tenant_of(&ctx.namespace);
    if let Err(e) = sec.view.call(move |c| c.create_acls(tenant.as_deref(), valid)).await {
        let code = crate::errors::meta_error_code(&e);
        for r in results.iter_mut().filter(|r| r.error_code == 0) {
            r.error_code = code;
            r.error_message = Some(sb(&e.to_string()));
        }
    }
    Ok(CreateAclsResponse::default().with_results(results))
}

fn filter(
    resource_type: i8,
    name: &Option<kafka_protocol::protocol::StrBytes>,
    pattern: i8,
    principal: &Option<kafka_protocol::protocol::StrBytes>,
    host: &Option<kafka_protocol::protocol::StrBytes>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter {
        resource_type: ResourceType::from_code(resource_type),
        resource_name: name.as_ref().map(|n| n.to_string()),
        pattern_type: PatternType::from_code(pattern),
        principal: principal.as_ref().map(|n| n.to_string()),
        host: host.as_ref().map(|n| n.to_string()),
        operation: AclOperation::from_code(operation),
        permission: AclPermission::from_code(permission),
    }
}

pub(crate) fn describe(
    sec: &Security<'_>,
    ctx: &ConnectionContext,
    gate: &Gate,
    r: DescribeAclsRequest,
) -> Result<DescribeAclsResponse, String> {
    if !gate.allows_cluster(AclOperation::Describe) {
        let (code, message) = denied();
        return Ok(DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(sb(message))));
    }
    let f = filter(
        r.resource_type_filter,
        &r.resource_name_filter,
        r.pattern_type_filter,
        &r.principal_filter,
        &r.host_filter,
        r.operation,
        r.permission_type,
    );
    f.validate().map_err(|e| e.to_string())?;
    let image = sec.view.image();
    let key = kora_meta::image::acl_key(tenant_of(&ctx.namespace).as_deref());
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in image.acls.get(&key).iter().flat_map(|v| v.iter()).filter(|b| f.matches(b)) {
        let acl = AclDescription::default()
            .with_principal(sb(&b.principal))
            .with_host(sb(&b.host))
            .with_operation(b.operation.code())
            .with_permission_type(b.permission.code());
        let same = |x: &DescribeAclsResource| {
            x.resource_type == b.resource_type.code()
                && *x.resource_name == *b.resource_name
                && x.pattern_type == b.pattern_type.code()
        };
        match resources.iter_mut().find(|x| same(x)) {
            Some(x) => x.acls.push(acl),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(sb(&b.resource_name))
                    .with_pattern_type(b.pattern_type.code())
                    .with_acls(vec![acl]),
            ),
        }
    }
    Ok(DescribeAclsResponse::default().with_resources(resources))
}

pub(crate) async fn delete(
    sec: &Security<'_>,
    ctx: &ConnectionContext,
    gate: &Gate,
    r: DeleteAclsRequest,
) -> Result<DeleteAclsResponse, String> {
    if !gate.allows_cluster(AclOperation::Alter) {
        let (code, message) = denied();
        let results = r
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default().with_error_code(code).with_error_message(Some(sb(message)))
            })
            .collect();
        return Ok(DeleteAclsResponse::default().with_filter_results(results));
    }
    let filters: Vec<AclFilter> = r
        .filters
        .iter()
        .map(|x| {
            filter(
                x.resource_type_filter,
                &x.resource_name_filter,
                x.pattern_type_filter,
                &x.principal_filter,
                &x.host_filter,
                x.operation,
                x.permission_type,
            )
        })
        .collect();
    for f in &filters {
        f.validate().map_err(|e| e.to_string())?;
    }
    let tenant = tenant_of(&ctx.namespace);
    let n = filters.len();
    let matched = match sec.view.call(move |c| c.delete_acls(tenant.as_deref(), filters)).await {
        Ok(m) => m,
        Err(e) => {
            let code = crate::errors::meta_error_code(&e);
            let results = (0..n)
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(sb(&e.to_string())))
                })
                .collect();
            return Ok(DeleteAclsResponse::default().with_filter_results(results));
        }
    };
    let results = matched
        .into_iter()
        .map(|bindings| {
            DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(sb(&b.resource_name))
                            .with_pattern_type(b.pattern_type.code())
                            .with_principal(sb(&b.principal))
                            .with_host(sb(&b.host))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            )
        })
        .collect();
    Ok(DeleteAclsResponse::default().with_filter_results(results))
}

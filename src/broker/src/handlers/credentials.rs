//! KIP-554: DescribeUserScramCredentials and AlterUserScramCredentials, with Kafka's checks
//! and texts, for the SCRAM users of the connection's namespace.
//!
//! A tenant's user `alice` logs in as `<tenant id>~alice` (see `kora_meta::security`); the
//! client names and sees `alice`. API keys hold SCRAM secrets too but are not users here:
//! they are neither listed nor alterable, and no user may take a key's name. DESCRIBE
//! (ALTER) on the cluster is needed, as in Kafka: a tenant's admin keys have it, its other
//! principals through its ACLs.

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kora_auth::scram::{Mechanism, ScramCredential};
use kora_auth::AclOperation;
use kora_common::Namespace;
use kora_meta::{Credential, Identity, MetaError, ScramSecret};

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

fn infos(c: &Credential) -> Vec<CredentialInfo> {
    Mechanism::ALL
        .into_iter()
        .filter_map(|m| {
            c.scram.get(m.name()).map(|s| {
                CredentialInfo::default().with_mechanism(m.kafka_type()).with_iterations(s.iterations as i32)
            })
        })
        .collect()
}

fn is_user_of(c: &Credential, ns: &Namespace) -> bool {
    matches!(c.identity, Identity::ScramUser) && c.tenant == tenant_of(ns)
}

const API_KEY_NAME: &str = "this name belongs to an API key";

/// Whether `name` is one of the namespace's API keys. A tenant's key logs in as its id and its
/// user `name` as `<tenant>~name`, so the logins differ, but both are `User:<name>` in the
/// tenant's ACLs: a user named like a key would hold the key's grants. (In the default
/// namespace the logins are the same and the controller refuses: CredentialExists.)
fn is_api_key_of(image: &kora_meta::MetadataImage, name: &str, ns: &Namespace) -> bool {
    image.credentials.get(name).is_some_and(|c| c.is_api_key() && c.tenant == tenant_of(ns))
}

pub(crate) fn describe(
    sec: &Security<'_>,
    ctx: &ConnectionContext,
    gate: &Gate,
    r: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !gate.allows_cluster(AclOperation::Describe) {
        // As Kafka's error response: the error at the top and for each user named.
        let message = "Cluster authorization failed.";
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let results = r
            .users
            .iter()
            .flatten()
            .map(|u| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(u.name.clone())
                    .with_error_code(code)
                    .with_error_message(Some(sb(message)))
            })
            .collect();
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(sb(message)))
            .with_results(results);
    }
    let image = sec.view.image();
    let ns = &ctx.namespace;
    let results = match r.users.filter(|u| !u.is_empty()) {
        // All of the namespace's users.
        None => image
            .credentials
            .values()
            .filter(|c| is_user_of(c, ns))
            .map(|c| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(sb(c.principal_name()))
                    .with_credential_infos(infos(c))
            })
            .collect(),
        Some(users) => {
            let mut seen = HashSet::new();
            let duplicated: HashSet<String> = users
                .iter()
                .filter(|u| !seen.insert(u.name.to_string()))
                .map(|u| u.name.to_string())
                .collect();
            let mut done = HashSet::new();
            users
                .iter()
                .filter(|u| done.insert(u.name.to_string()))
                .map(|u| {
                    let base = DescribeUserScramCredentialsResult::default().with_user(u.name.clone());
                    if duplicated.contains(u.name.as_str()) {
                        return base
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(sb(
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        )));
                    }
                    let found = ns
                        .scope(&u.name)
                        .ok()
                        .and_then(|login| image.credentials.get(&login).cloned())
                        .filter(|c| is_user_of(c, ns));
                    match found {
                        Some(c) => base.with_credential_infos(infos(&c)),
                        None => {
                            base.with_error_code(ResponseError::ResourceNotFound.code()).with_error_message(
                                Some(sb("Attempt to describe a user credential that does not exist")),
                            )
                        }
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One user's change, validated: (upserts, deletions) by mechanism name.
type Change = (Vec<(String, ScramSecret)>, Vec<String>);

fn result(user: &StrBytes, e: ResponseError, message: &str) -> AlterUserScramCredentialsResult {
    AlterUserScramCredentialsResult::default()
        .with_user(user.clone())
        .with_error_code(e.code())
        .with_error_message(Some(sb(message)))
}

pub(crate) async fn alter(
    sec: &Security<'_>,
    ctx: &ConnectionContext,
    gate: &Gate,
    r: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut users: Vec<StrBytes> = Vec::new();
    for name in r.deletions.iter().map(|d| &d.name).chain(r.upsertions.iter().map(|u| &u.name)) {
        if !users.contains(name) {
            users.push(name.clone());
        }
    }
    if !gate.allows_cluster(AclOperation::Alter) {
        let message = "Cluster authorization failed.";
        let results =
            users.iter().map(|u| result(u, ResponseError::ClusterAuthorizationFailed, message)).collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    let mut results = Vec::with_capacity(users.len());
    for user in &users {
        let deletions: Vec<_> = r.deletions.iter().filter(|d| d.name == *user).collect();
        let upsertions: Vec<_> = r.upsertions.iter().filter(|u| u.name == *user).collect();
        let mechanisms: Vec<i8> =
            deletions.iter().map(|d| d.mechanism).chain(upsertions.iter().map(|u| u.mechanism)).collect();
        // Kafka's checks, in its order.
        if user.is_empty() {
            results.push(result(user, ResponseError::UnacceptableCredential, "Username must not be empty"));
            continue;
        }
        if mechanisms.iter().any(|m| Mechanism::from_kafka_type(*m).is_none()) {
            results.push(result(user, ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism"));
            continue;
        }
        let mut distinct = mechanisms.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != mechanisms.len() {
            results.push(result(
                user,
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request",
            ));
            continue;
        }
        let mut change: Change = (Vec::new(), Vec::new());
        let mut refused = None;
        for u in &upsertions {
            let Some(m) = Mechanism::from_kafka_type(u.mechanism) else { continue };
            let iterations = u32::try_from(u.iterations).unwrap_or(0);
            match ScramCredential::from_salted_password(m, &u.salt, &u.salted_password, iterations) {
                Ok(c) => change.0.push((m.name().to_string(), ScramSecret::from(c))),
                Err(e) => refused = Some(e.to_string()),
            }
        }
        if let Some(message) = refused {
            results.push(result(user, ResponseError::UnacceptableCredential, &message));
            continue;
        }
        change.1 = deletions
            .iter()
            .filter_map(|d| Mechanism::from_kafka_type(d.mechanism))
            .map(|m| m.name().to_string())
            .collect();
        if !change.0.is_empty() && is_api_key_of(&sec.view.image(), user, &ctx.namespace) {
            results.push(result(user, ResponseError::UnacceptableCredential, API_KEY_NAME));
            continue;
        }
        let login = match ctx.namespace.scope(user) {
            Ok(l) => l,
            Err(e) => {
                results.push(result(user, ResponseError::UnacceptableCredential, &e.to_string()));
                continue;
            }
        };
        let tenant = tenant_of(&ctx.namespace);
        let (upsert, delete) = change;
        let outcome = sec.view.call(move |c| c.alter_scram(&login, tenant.as_deref(), upsert, delete)).await;
        results.push(match outcome {
            Ok(()) => AlterUserScramCredentialsResult::default().with_user(user.clone()),
            Err(MetaError::UnknownCredential(_)) => result(
                user,
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist",
            ),
            Err(MetaError::CredentialExists(_)) => {
                result(user, ResponseError::UnacceptableCredential, API_KEY_NAME)
            }
            Err(e) => result(user, ResponseError::UnknownServerError, &e.to_string()),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

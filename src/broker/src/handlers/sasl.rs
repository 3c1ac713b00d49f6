//! SASL at the request edge: SaslHandshake v0-1, SaslAuthenticate v0-2 and KIP-368
//! re-authentication, over the listener's listener-local users (`crate::inter_broker`) and
//! then the credentials in the metadata image (kora-auth does the mechanisms).
//!
//! A connection on a SASL listener starts in `AwaitingHandshake`, where only ApiVersions and
//! SaslHandshake are served; anything else closes it, as Kafka does. After SaslHandshake v1
//! the tokens come in SaslAuthenticate requests; after v0 as bare frames (`raw`), which
//! `server::handle_frame` routes here before decoding. A failed authentication answers
//! SASL_AUTHENTICATION_FAILED with the mechanism's text and then closes the connection.
//! Success sets the connection's principal, namespace (its tenant) and credential.
//!
//! Re-authentication: with `connections.max.reauth.ms` set, SaslAuthenticate v1+ tells the
//! client its session lifetime; the client re-runs SaslHandshake and SaslAuthenticate on the
//! same connection before it ends (the principal may not change). A request other than those
//! two after the session ended closes the connection.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kora_auth::scram::{Mechanism, ScramCredential, ScramServer};
use kora_common::{Namespace, TenantId};
use kora_meta::Credential;

use super::families::Security;
use super::sb;
use crate::edge::{Authentication, ConnectionContext, Principal};
use crate::listeners::SaslMechanism;

/// Characters of a server nonce (printable, no ',').
const NONCE_CHARS: usize = 32;

/// Whether a request may run on this connection in its authentication state; `Err` closes
/// the connection with the reason.
pub(crate) fn gate(sec: &Security<'_>, ctx: &ConnectionContext, api: ApiKey) -> Result<(), String> {
    let sasl_api = matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
    match &ctx.authentication {
        Authentication::NotRequired => Ok(()),
        Authentication::AwaitingHandshake | Authentication::InProgress { reauthenticating: false, .. } => {
            if sasl_api || api == ApiKey::ApiVersions {
                Ok(())
            } else {
                Err(format!("unexpected {api:?} request during SASL authentication"))
            }
        }
        Authentication::InProgress { reauthenticating: true, .. } => Ok(()),
        Authentication::Authenticated { expires: Some(at) } if !sasl_api && sec.clock.now() >= *at => {
            Err(format!(
                "SASL session of {} expired (connections.max.reauth.ms) without re-authentication",
                ctx.principal
            ))
        }
        Authentication::Authenticated { .. } => Ok(()),
        Authentication::Failed(reason) => Err(reason.clone()),
    }
}

pub(crate) fn handshake(
    sec: &Security<'_>,
    ctx: &mut ConnectionContext,
    r: SaslHandshakeRequest,
    version: i16,
) -> SaslHandshakeResponse {
    let enabled: Vec<_> = sec.sasl.mechanisms.iter().map(|m| sb(m.name())).collect();
    let reauthenticating = match &ctx.authentication {
        Authentication::AwaitingHandshake => false,
        // KIP-368: a new handshake on an authenticated connection re-authenticates it.
        Authentication::Authenticated { .. } if version >= 1 => true,
        _ => {
            return SaslHandshakeResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_mechanisms(enabled)
        }
    };
    let Some(mechanism) = SaslMechanism::parse(&r.mechanism).filter(|m| sec.sasl.mechanisms.contains(m))
    else {
        ctx.authentication = Authentication::Failed(format!(
            "client asked for SASL mechanism '{}', which is not enabled",
            &*r.mechanism
        ));
        return SaslHandshakeResponse::default()
            .with_error_code(ResponseError::UnsupportedSaslMechanism.code())
            .with_mechanisms(enabled);
    };
    let scram = scram_mechanism(mechanism).map(|m| Box::new(ScramServer::new(m)));
    ctx.authentication = Authentication::InProgress { mechanism, raw: version == 0, scram, reauthenticating };
    SaslHandshakeResponse::default().with_mechanisms(enabled)
}

fn scram_mechanism(m: SaslMechanism) -> Option<Mechanism> {
    match m {
        SaslMechanism::Plain => None,
        SaslMechanism::ScramSha256 => Some(Mechanism::Sha256),
        SaslMechanism::ScramSha512 => Some(Mechanism::Sha512),
    }
}

/// SaslAuthenticate (tokens after SaslHandshake v1).
pub(crate) async fn authenticate(
    sec: &Security<'_>,
    ctx: &mut ConnectionContext,
    r: SaslAuthenticateRequest,
    version: i16,
) -> SaslAuthenticateResponse {
    if !matches!(ctx.authentication, Authentication::InProgress { raw: false, .. }) {
        return SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(sb("SaslAuthenticate request received outside a SASL exchange")));
    }
    match step(sec, ctx, &r.auth_bytes).await {
        Ok(token) => {
            let lifetime_ms = match (&ctx.authentication, version) {
                (Authentication::Authenticated { expires: Some(_) }, 1..) => {
                    sec.sasl.connections_max_reauth_ms as i64
                }
                _ => 0,
            };
            SaslAuthenticateResponse::default()
                .with_auth_bytes(token.into())
                .with_session_lifetime_ms(lifetime_ms)
        }
        Err(message) => SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(Some(sb(&message))),
    }
}

/// A bare token after SaslHandshake v0: the server's token, or `Err` to close.
pub(crate) async fn raw_token(
    sec: &Security<'_>,
    ctx: &mut ConnectionContext,
    token: &[u8],
) -> Result<Vec<u8>, String> {
    step(sec, ctx, token).await
}

/// One client token of the exchange. On failure the connection is marked failed (closed
/// after the answer) and `Err` holds the text the client may see.
async fn step(sec: &Security<'_>, ctx: &mut ConnectionContext, token: &[u8]) -> Result<Vec<u8>, String> {
    let state = std::mem::replace(&mut ctx.authentication, Authentication::Failed(String::new()));
    let Authentication::InProgress { mechanism, raw, scram, reauthenticating } = state else {
        return fail(ctx, "SASL token outside a SASL exchange".into());
    };
    let image = sec.view.image();
    // A listener-local user (its JAAS entry) wins over a stored credential of the same name.
    let listener = ctx.listener.clone();
    let lookup = |login: &str| {
        sec.listener_users.get(&listener, mechanism, login).or_else(|| image.credentials.get(login).cloned())
    };
    match (mechanism, scram) {
        (SaslMechanism::Plain, _) => {
            let parsed = kora_auth::plain::parse(token).map_err(|e| e.to_string());
            let (username, password) = match parsed {
                Ok(m) if m.username.is_empty() => return fail(ctx, "Authentication failed: username not specified".into()),
                Ok(m) if m.password.is_empty() => return fail(ctx, "Authentication failed: password not specified".into()),
                Ok(m) if !m.authzid.is_empty() && m.authzid != m.username => {
                    return fail(
                        ctx,
                        "Authentication failed: Client requested an authorization id that is different from username"
                            .into(),
                    )
                }
                Ok(m) => (m.username.to_string(), m.password.to_string()),
                Err(e) => return fail(ctx, e),
            };
            let credential = lookup(&username);
            // PBKDF2 takes milliseconds: off the async workers.
            let verified = match credential.clone() {
                Some(c) => {
                    tokio::task::spawn_blocking(move || verify_plain(&c, &password)).await.unwrap_or(false)
                }
                None => false,
            };
            match credential.filter(|_| verified) {
                Some(c) => complete(sec, ctx, c, reauthenticating).map(|()| Vec::new()),
                None => fail(ctx, kora_auth::AuthError::InvalidCredentials("PLAIN").to_string()),
            }
        }
        (_, Some(mut server)) => {
            let m = server.mechanism();
            if server.awaiting_first() {
                let nonce = sec.entropy.string(kora_common::entropy::ALPHANUMERIC, NONCE_CHARS);
                let reply = server
                    .client_first(token, &nonce, |login| lookup(login).and_then(|c| scram_credential(&c, m)));
                match reply {
                    Ok(reply) => {
                        ctx.authentication = Authentication::InProgress {
                            mechanism,
                            raw,
                            scram: Some(server),
                            reauthenticating,
                        };
                        Ok(reply)
                    }
                    Err(e) => fail(ctx, e.to_string()),
                }
            } else {
                match server.client_final(token) {
                    Ok((reply, login)) => match lookup(&login) {
                        Some(c) => complete(sec, ctx, c, reauthenticating).map(|()| reply),
                        // Deleted between the two messages.
                        None => fail(ctx, kora_auth::AuthError::InvalidCredentials(m.name()).to_string()),
                    },
                    Err(e) => fail(ctx, e.to_string()),
                }
            }
        }
        (_, None) => fail(ctx, "SCRAM exchange without its state".into()),
    }
}

fn fail(ctx: &mut ConnectionContext, message: String) -> Result<Vec<u8>, String> {
    ctx.authentication = Authentication::Failed(format!("SASL authentication failed: {message}"));
    Err(message)
}

/// PLAIN against a stored credential: its SCRAM-SHA-256 secret (cheaper), else SHA-512.
fn verify_plain(c: &Credential, password: &str) -> bool {
    [Mechanism::Sha256, Mechanism::Sha512]
        .into_iter()
        .find_map(|m| scram_credential(c, m))
        .is_some_and(|s| s.verify_password(password))
}

fn scram_credential(c: &Credential, m: Mechanism) -> Option<ScramCredential> {
    c.scram.get(m.name()).map(|s| s.credential(m))
}

/// The exchange succeeded: the connection is `c`'s.
fn complete(
    sec: &Security<'_>,
    ctx: &mut ConnectionContext,
    c: Arc<Credential>,
    reauthenticating: bool,
) -> Result<(), String> {
    let principal = Principal { kind: "User".into(), name: c.principal_name().to_string() };
    let namespace = match c.tenant.as_deref().map(TenantId::parse) {
        None => Namespace::Default,
        Some(Ok(t)) => Namespace::Tenant(t),
        Some(Err(e)) => return fail(ctx, format!("credential of a malformed tenant: {e}")).map(|_| ()),
    };
    if reauthenticating && (principal != ctx.principal || namespace != ctx.namespace) {
        return fail(ctx, "Cannot change principals during re-authentication".into()).map(|_| ());
    }
    // A tenant's new connection takes one of its connection slots here (max_connections), and
    // a creation rate over its quota mutes it for the throttle (KIP-219's way of delaying).
    if let (Namespace::Tenant(t), false) = (&namespace, reauthenticating) {
        let image = sec.view.image();
        let limits = image.tenants.get(t.as_str()).map(|x| x.limits.clone()).unwrap_or_default();
        let q = sec.quotas.tenant(t.as_str());
        match q.open_connection(&limits, sec.quotas.config.window, sec.quotas.now_ms()) {
            Ok((slot, delay_ms)) => {
                ctx.connection_slot = Some(slot);
                ctx.quota = Some(q);
                ctx.mute(sec.clock.now(), delay_ms);
            }
            Err((max, open)) => {
                return fail(
                    ctx,
                    format!("tenant {t} is at its limit of {max} connections ({open} open over the cell)"),
                )
                .map(|_| ())
            }
        }
    }
    ctx.principal = principal;
    ctx.namespace = namespace;
    ctx.listener_user = sec.listener_users.holds(&ctx.listener, &c);
    ctx.credential = Some(c);
    let reauth_ms = sec.sasl.connections_max_reauth_ms;
    ctx.authentication = Authentication::Authenticated {
        expires: (reauth_ms > 0).then(|| sec.clock.now() + Duration::from_millis(reauth_ms)),
    };
    Ok(())
}

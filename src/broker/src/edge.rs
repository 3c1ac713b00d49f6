//! The request edge: what the broker knows about who is asking, per connection.
//!
//! The listener makes a [`ConnectionContext`] when it accepts a connection and hands it, by
//! `&mut`, to every request of that connection in turn (requests of one connection are handled
//! one at a time, so nothing else can see it change). Today every connection is PLAINTEXT and
//! anonymous in the default namespace; authentication (SASL, mTLS) will set `principal` and
//! `namespace` on the same context, and a re-authentication replaces them.
//!
//! Names are scoped here, not below: `handlers::dispatch` is the one place that sees both the
//! request and the context, so the tenancy work rewrites a request's names into internal ones
//! (`kora_common::Namespace::scope`) before the handler runs, and the response's back
//! (`unscope`, dropping other tenants' resources) after it. Handlers, logs, metadata and groups
//! keep working on internal names and never learn that tenants exist. See
//! `kora_common::namespace` for why the mapping cannot let one tenant reach another's names.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::listeners::SaslMechanism;

use kora_common::Namespace;

pub use crate::listeners::SecurityProtocol;

/// Who a connection is, as Kafka's `KafkaPrincipal` (`User:alice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// Kafka's principal for unauthenticated connections.
    pub fn anonymous() -> Self {
        Self { kind: "User".into(), name: "ANONYMOUS".into() }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Where a connection is in SASL authentication (a state machine driven by SaslHandshake and
/// SaslAuthenticate; see `handlers::sasl`).
#[derive(Debug, Default)]
pub enum Authentication {
    /// A PLAINTEXT (or SSL) listener: nothing to authenticate with SASL.
    #[default]
    NotRequired,
    /// A SASL listener, before SaslHandshake: only ApiVersions and SaslHandshake are served.
    AwaitingHandshake,
    /// After SaslHandshake: the exchange for `mechanism`. `raw`: SaslHandshake v0 was used, so
    /// tokens arrive as bare size-prefixed frames, not SaslAuthenticate requests.
    /// `reauthenticating`: a KIP-368 re-authentication of a connection already authenticated.
    InProgress {
        mechanism: SaslMechanism,
        raw: bool,
        scram: Option<Box<kora_auth::scram::ScramServer>>,
        reauthenticating: bool,
    },
    /// Authenticated; the session must be renewed by `expires` (connections.max.reauth.ms),
    /// after which any other request closes the connection.
    Authenticated { expires: Option<Instant> },
    /// Authentication failed: the answer goes out, then the connection closes (the reason is
    /// logged).
    Failed(String),
}

/// One client connection, as every request on it sees it.
#[derive(Debug)]
pub struct ConnectionContext {
    /// The listener's name (`listeners`: `PLAINTEXT://...` is named PLAINTEXT).
    pub listener: String,
    pub security_protocol: SecurityProtocol,
    pub peer: SocketAddr,
    /// The authenticated principal; anonymous until the connection authenticates.
    pub principal: Principal,
    /// Whose names the connection sees: its tenant, once it has one (the key its quota state
    /// and limits will hang off).
    pub namespace: Namespace,
    /// SASL state on SASL listeners.
    pub authentication: Authentication,
    /// The credential it authenticated with (its role: tenant admin or ACL-limited).
    pub credential: Option<Arc<kora_meta::Credential>>,
    /// The credential is a listener-local user of the listener's JAAS entry, not a stored one
    /// (so not one the metadata can delete).
    pub listener_user: bool,
    /// The tenant's quota accounting, once the connection is a tenant's.
    pub quota: Option<Arc<crate::quotas::TenantQuota>>,
    /// The tenant's connection slot on this broker (max_connections), freed when the
    /// connection closes.
    pub connection_slot: Option<crate::quotas::ConnectionSlot>,
    /// Muted until then (KIP-219): the connection's next request is read only after.
    pub mute_until: Option<Instant>,
}

impl ConnectionContext {
    /// A new connection on a listener: anonymous, in the default namespace; on a SASL
    /// listener it must authenticate first.
    pub fn new(listener: &str, security_protocol: SecurityProtocol, peer: SocketAddr) -> Self {
        Self {
            listener: listener.to_string(),
            security_protocol,
            peer,
            principal: Principal::anonymous(),
            namespace: Namespace::Default,
            authentication: if security_protocol.sasl() {
                Authentication::AwaitingHandshake
            } else {
                Authentication::NotRequired
            },
            credential: None,
            listener_user: false,
            quota: None,
            connection_slot: None,
            mute_until: None,
        }
    }

    /// A connection on a PLAINTEXT listener: anonymous, in the default namespace.
    pub fn plaintext(listener: &str, peer: SocketAddr) -> Self {
        Self::new(listener, SecurityProtocol::Plaintext, peer)
    }

    /// On an SSL listener: the principal of the client's certificate (`User:` and the mapped
    /// subject, `User:ANONYMOUS` without a certificate), in the default namespace. SASL_SSL
    /// connections take theirs from SASL instead.
    pub fn set_ssl_principal(&mut self, name: String) {
        self.principal = Principal { kind: "User".into(), name };
    }

    /// Mutes the connection for `ms` from `now` (the longest of several mutes wins).
    pub fn mute(&mut self, now: Instant, ms: u64) {
        if ms == 0 {
            return;
        }
        let until = now + std::time::Duration::from_millis(ms);
        self.mute_until = Some(self.mute_until.map_or(until, |u| u.max(until)));
    }

    /// Whether the next frame is a bare SASL token (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.authentication, Authentication::InProgress { raw: true, .. })
    }
}

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

use kora_common::Namespace;

/// Kafka's security protocols (`listener.security.protocol.map` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

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

/// One client connection, as every request on it sees it.
#[derive(Debug, Clone)]
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
}

impl ConnectionContext {
    /// A connection on a PLAINTEXT listener: anonymous, in the default namespace.
    pub fn plaintext(listener: &str, peer: SocketAddr) -> Self {
        Self {
            listener: listener.to_string(),
            security_protocol: SecurityProtocol::Plaintext,
            peer,
            principal: Principal::anonymous(),
            namespace: Namespace::Default,
        }
    }
}

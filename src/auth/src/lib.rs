//! SASL mechanisms as Kafka brokers speak them, and Kafka's ACLs, as pure logic: no I/O, no
//! clock, no global randomness (the server nonce comes from the caller, through a seam).
//!
//! - [`plain`]: RFC 4616 PLAIN, with Kafka's checks and error texts.
//! - [`scram`]: RFC 5802 / RFC 7677 SCRAM-SHA-256 and SCRAM-SHA-512, the server side of the
//!   exchange and the client side (a broker dialling another), and the credentials a broker stores (salt, StoredKey, ServerKey, iterations:
//!   never the password), derived either from a password or, as AlterUserScramCredentials
//!   (KIP-554) sends it, from a client-computed salted password.
//! - [`jaas`]: Kafka's `sasl.jaas.config` values (a broker's inter-broker login and its
//!   listener-local PLAIN users).
//! - [`acl`]: Kafka's ACL semantics as its KRaft `StandardAuthorizer` applies them: bindings
//!   and CreateAcls' checks, DescribeAcls / DeleteAcls filters, and an indexed [`Authorizer`].
//!
//! The request edge (kora-broker) drives these with SaslHandshake / SaslAuthenticate and looks
//! credentials and ACLs up in the metadata image; this crate knows nothing of either.

pub mod acl;
pub mod jaas;
pub mod plain;
pub mod scram;

pub use acl::{
    AclBinding, AclError, AclFilter, AclOperation, AclPermission, Authorizer, AuthorizerConfig, Decision,
    PatternType, ResourceType,
};

/// Why an authentication failed. `Display` is what the client may be told: like Kafka, a
/// wrong password and an unknown user read the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client's message does not parse (its text says how).
    #[error("{0}")]
    Malformed(String),
    /// Unknown user, wrong password, bad nonce: one text for all, as Kafka does.
    #[error(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {0}"
    )]
    InvalidCredentials(&'static str),
    /// An authorization id other than the user name.
    #[error("Authentication failed: Client requested an authorization id that is different from username")]
    AuthzidMismatch,
    /// A message arrived in the wrong state of the exchange.
    #[error("unexpected SASL message in state {0}")]
    State(&'static str),
}

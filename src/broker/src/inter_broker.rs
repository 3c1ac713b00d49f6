//! The inter-broker listener from both sides, with Kafka's settings: how this broker dials
//! the other brokers of its cell (`inter.broker.listener.name`'s protocol, TLS with the
//! listener's own keystore and truststore, SASL with `sasl.mechanism.inter.broker.protocol`
//! and the `username` / `password` of the listener's JAAS entry), and the listener-local users
//! a SASL listener accepts without metadata (`user_<name>="<password>"` options of its JAAS
//! entries, Kafka's PlainLoginModule convention, honoured by Kora for SCRAM too).
//!
//! Listener-local users are how a cell's brokers authenticate to each other before the
//! metadata holds any credential (Kafka needs `kafka-storage format --add-scram` for SCRAM).
//! They live only in each broker's memory: salted and iterated at start-up like stored
//! credentials, in the default namespace, never in the metadata.
//!
//! Deliberately not here: authorization. A follower's fetch needs CLUSTER_ACTION on the
//! cluster (`handlers::replica_fetch`), so the inter-broker principal is one of `super.users`
//! or has that ACL when `authorizer.class.name` is set.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kora_auth::scram::{Mechanism, ScramCredential};
use kora_common::Entropy;
use kora_meta::{Credential, Identity, ScramSecret};
use kora_tls::ClientTls;

use crate::config_types::ConfigFileError;
use crate::listeners::{
    ListenerConfig, SaslConfig, SaslMechanism, SecurityProtocol, INTER_BROKER_MECHANISM as MECHANISM_KEY,
};

/// How this broker dials the others of its cell.
#[derive(Clone)]
pub struct InterBrokerClient {
    /// The inter-broker listener's protocol.
    pub protocol: SecurityProtocol,
    /// SSL and SASL_SSL: the listener's truststore checks the other brokers' certificates and
    /// its keystore is this broker's client certificate (for `ssl.client.auth`).
    pub tls: Option<Arc<ClientTls>>,
    /// SASL_PLAINTEXT and SASL_SSL: the login.
    pub login: Option<kora_client::SaslLogin>,
    /// The listener's ssl.reload.interval.ms: renewed files reach new connections.
    pub reload_interval: Option<Duration>,
}

impl Default for InterBrokerClient {
    fn default() -> Self {
        Self { protocol: SecurityProtocol::Plaintext, tls: None, login: None, reload_interval: None }
    }
}

impl fmt::Debug for InterBrokerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterBrokerClient")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.as_ref().map(|t| t.settings()))
            .field("login", &self.login)
            .finish()
    }
}

impl InterBrokerClient {
    /// The security of a new connection (the TLS files as last reloaded).
    pub fn security(&self, entropy: Arc<dyn Entropy>) -> kora_client::ClientSecurity {
        kora_client::ClientSecurity {
            tls: self.tls.as_ref().map(|t| t.connector()),
            sasl: self.login.clone(),
            entropy,
        }
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigFileError {
    ConfigFileError::Invalid { key: key.to_string(), reason: reason.into() }
}

/// The client of the inter-broker listener (`listeners[0]`), checked at start-up: a SASL
/// listener needs an enabled mechanism and a JAAS entry with `username` and `password`; a TLS
/// one needs a truststore. Reads certificate files.
pub(crate) fn client(
    listeners: &[ListenerConfig],
    sasl: &SaslConfig,
) -> Result<InterBrokerClient, ConfigFileError> {
    let Some(ib) = listeners.first() else { return Ok(InterBrokerClient::default()) };
    let mut out = InterBrokerClient { protocol: ib.protocol, ..InterBrokerClient::default() };
    if ib.protocol.sasl() {
        let m = sasl.inter_broker_mechanism;
        if !sasl.mechanisms.contains(&m) {
            return Err(invalid(
                MECHANISM_KEY,
                format!("{} is not in sasl.enabled.mechanisms: brokers of the cell could not log in to each other", m.name()),
            ));
        }
        let key = format!(
            "listener.name.{}.{}.sasl.jaas.config",
            ib.name.to_ascii_lowercase(),
            m.name().to_ascii_lowercase()
        );
        let jaas = ib.jaas.iter().find(|(x, _)| *x == m).map(|(_, j)| j);
        let option = |name: &str| jaas.and_then(|j| j.options.get(name)).filter(|v| !v.is_empty());
        let (Some(username), Some(password)) = (option("username"), option("password")) else {
            return Err(invalid(
                &key,
                format!(
                    "the inter-broker listener {} is {}: set {key} with the username and password brokers log in with, e.g. {} required username=\"broker\" password=\"...\" user_broker=\"...\";",
                    ib.name,
                    ib.protocol.name(),
                    m.login_module()
                ),
            ));
        };
        out.login = Some(kora_client::SaslLogin {
            mechanism: m.client(),
            username: username.clone(),
            password: password.clone(),
        });
    }
    if let Some(tls) = &ib.tls {
        let settings = tls.server.settings().clone();
        if settings.truststore.is_none() {
            return Err(invalid(
                kora_tls::keys::TRUSTSTORE_LOCATION,
                format!(
                    "the inter-broker listener {} is {}: brokers check each other's certificates against its truststore; set {} or {} (for this listener alone, listener.name.{}.{})",
                    ib.name,
                    ib.protocol.name(),
                    kora_tls::keys::TRUSTSTORE_LOCATION,
                    kora_tls::keys::TRUSTSTORE_CERTIFICATES,
                    ib.name.to_ascii_lowercase(),
                    kora_tls::keys::TRUSTSTORE_LOCATION,
                ),
            ));
        }
        let client = ClientTls::new(settings)
            .map_err(|e| invalid("inter.broker.listener.name", format!("listener {}: {e}", ib.name)))?;
        out.tls = Some(Arc::new(client));
        out.reload_interval = tls.reload_interval;
    }
    Ok(out)
}

/// Iterations of a listener-local user's credential: Kafka's minimum (they are derived at
/// every start).
const LOCAL_ITERATIONS: u32 = kora_auth::scram::MIN_ITERATIONS;

/// The listener-local users of every SASL listener, derived once at start-up.
#[derive(Default)]
pub struct ListenerUsers {
    by_listener: HashMap<(String, SaslMechanism), HashMap<String, Arc<Credential>>>,
}

impl fmt::Debug for ListenerUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for ((l, mech), users) in &self.by_listener {
            m.entry(&format!("{l}/{}", mech.name()), &users.keys().collect::<Vec<_>>());
        }
        m.finish()
    }
}

impl ListenerUsers {
    /// Salts (from `entropy`) and iterates each `user_<name>` password of each listener's JAAS
    /// entries. CPU-bound (PBKDF2): call it once, at start-up.
    pub fn derive(listeners: &[ListenerConfig], entropy: &dyn Entropy) -> Self {
        let mut by_listener: HashMap<_, HashMap<_, _>> = HashMap::new();
        for l in listeners {
            for (m, jaas) in &l.jaas {
                // PLAIN is verified against the SHA-256 credential.
                let scram = match m {
                    SaslMechanism::Plain | SaslMechanism::ScramSha256 => Mechanism::Sha256,
                    SaslMechanism::ScramSha512 => Mechanism::Sha512,
                };
                for (user, password) in jaas.users() {
                    let mut salt = [0u8; 16];
                    entropy.fill(&mut salt);
                    let Ok(c) = ScramCredential::from_password(scram, password, &salt, LOCAL_ITERATIONS)
                    else {
                        unreachable!("a listener-local credential within Kafka's iteration bounds");
                    };
                    let credential = Credential {
                        login: user.to_string(),
                        tenant: None,
                        identity: Identity::ScramUser,
                        scram: [(scram.name().to_string(), ScramSecret::from(c))].into_iter().collect(),
                    };
                    by_listener
                        .entry((l.name.clone(), *m))
                        .or_default()
                        .insert(user.to_string(), Arc::new(credential));
                }
            }
        }
        Self { by_listener }
    }

    /// Whether `c` is one of `listener`'s listener-local users (not a stored credential).
    pub fn holds(&self, listener: &str, c: &Arc<Credential>) -> bool {
        SaslMechanism::ALL
            .into_iter()
            .any(|m| self.get(listener, m, &c.login).is_some_and(|x| Arc::ptr_eq(&x, c)))
    }

    /// `login`'s credential for `mechanism` on `listener`, if it is a listener-local user.
    pub fn get(&self, listener: &str, mechanism: SaslMechanism, login: &str) -> Option<Arc<Credential>> {
        self.by_listener.get(&(listener.to_string(), mechanism)).and_then(|u| u.get(login)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::{parse_inter_broker_mechanism as parse_mechanism, parse_listeners, parse_sasl};
    use std::collections::BTreeMap;

    fn flat(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const JAAS: &str = r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="pw" user_broker="pw";"#;

    #[test]
    fn a_sasl_inter_broker_listener_needs_a_login_and_an_enabled_mechanism() {
        let base = [
            ("listeners", "BROKER://127.0.0.1:0,CLIENT://127.0.0.1:0"),
            ("listener.security.protocol.map", "BROKER:SASL_PLAINTEXT,CLIENT:PLAINTEXT"),
            ("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let f = flat(&[&base[..], extra].concat());
            let listeners = parse_listeners(&f)?;
            client(&listeners, &parse_sasl(&f)?)
        };
        let e = with(&[]).expect_err("no JAAS").to_string();
        assert!(e.contains("listener.name.broker.scram-sha-512.sasl.jaas.config"), "{e}");
        let e = with(&[
            ("sasl.enabled.mechanisms", "PLAIN"),
            ("listener.name.broker.scram-sha-512.sasl.jaas.config", JAAS),
        ])
        .expect_err("not enabled")
        .to_string();
        assert!(e.contains(MECHANISM_KEY) && e.contains("sasl.enabled.mechanisms"), "{e}");
        let c = with(&[("listener.name.broker.scram-sha-512.sasl.jaas.config", JAAS)]).expect("ok");
        let login = c.login.expect("login");
        assert_eq!((login.username.as_str(), login.mechanism.name()), ("broker", "SCRAM-SHA-512"));
        assert!(c.tls.is_none());
        assert!(!format!("{:?}", with(&[("listener.name.broker.scram-sha-512.sasl.jaas.config", JAAS)]))
            .contains("pw"));
        let e = parse_mechanism(&flat(&[(MECHANISM_KEY, "GSSAPI")])).expect_err("GSSAPI").to_string();
        assert!(e.contains(MECHANISM_KEY), "{e}");
        // A PLAINTEXT inter-broker listener needs nothing.
        let f = flat(&[("listeners", "PLAINTEXT://127.0.0.1:0")]);
        let c = client(&parse_listeners(&f).expect("listeners"), &parse_sasl(&f).expect("sasl")).expect("ok");
        assert!(c.login.is_none() && c.tls.is_none());
    }

    #[test]
    fn listener_local_users_are_per_listener_and_mechanism() {
        let f = flat(&[
            ("listeners", "A://127.0.0.1:0,B://127.0.0.1:0"),
            ("listener.security.protocol.map", "A:SASL_PLAINTEXT,B:SASL_PLAINTEXT"),
            ("listener.name.a.scram-sha-512.sasl.jaas.config", JAAS),
            (
                "listener.name.b.plain.sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="secret";"#,
            ),
        ]);
        let users = ListenerUsers::derive(&parse_listeners(&f).expect("listeners"), &kora_common::OsEntropy);
        let c = users.get("A", SaslMechanism::ScramSha512, "broker").expect("broker on A");
        let secret = c.scram["SCRAM-SHA-512"].credential(Mechanism::Sha512);
        assert!(secret.verify_password("pw") && !secret.verify_password("pw2"));
        assert!(users.get("A", SaslMechanism::ScramSha256, "broker").is_none(), "other mechanism");
        assert!(users.get("B", SaslMechanism::ScramSha512, "broker").is_none(), "other listener");
        let alice = users.get("B", SaslMechanism::Plain, "alice").expect("alice on B");
        assert!(alice.tenant.is_none());
        assert!(alice.scram["SCRAM-SHA-256"].credential(Mechanism::Sha256).verify_password("secret"));
        assert!(!format!("{users:?}").contains("secret"));
    }
}

//! Security with librdkafka (the rdkafka crate built with its `ssl` and `sasl` features) against
//! real `kora dev --auth` processes:
//!
//! - SASL PLAIN inside TLS (a SASL_SSL listener) with a tenant's API key, and a wrong secret;
//! - SCRAM-SHA-512 on SASL_PLAINTEXT, for an API key and for a SCRAM user the tenant's admin
//!   creates with AlterUserScramCredentials (KIP-554), limited by the tenant's ACLs;
//! - mTLS (an SSL listener with `ssl.client.auth=required`): the client certificate's subject is
//!   the principal of the default namespace's ACLs, which a `super.users` certificate creates
//!   through the broker (CreateAcls); a client without a certificate cannot connect.
//!
//! Certificates (a CA, a server certificate for 127.0.0.1, client certificates) are made with
//! rcgen into a temporary directory. What librdkafka cannot send through rust-rdkafka
//! (CreateAcls, AlterUserScramCredentials) goes as raw Kafka requests (kafka-protocol), over
//! rustls for the mTLS listener.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::Kora;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, CreateAclsRequest, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

// ---------------------------------------------------------------------------------------
// Certificates

/// A client certificate and its key: PEM files for librdkafka, DER for rustls.
struct Identity {
    cert: PathBuf,
    key: PathBuf,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// A CA (`ca.pem`), and a server keystore for 127.0.0.1 (`server.pem`: key, then certificate,
/// Kafka's PEM keystore file) in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "Kora security test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).expect("write ca.pem");
        let pki = Pki { dir, issuer };
        // The broker is reached as 127.0.0.1: librdkafka checks the name (as the IP SAN).
        let (cert, key) = pki.leaf(
            vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))],
            &[(DnType::CommonName, "kora-server")],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(pki.path("server.pem"), format!("{}{}", key.serialize_pem(), cert.pem()))
            .expect("write server.pem");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> String {
        self.path("ca.pem").display().to_string()
    }

    fn server_keystore(&self) -> String {
        self.path("server.pem").display().to_string()
    }

    fn leaf(
        &self,
        sans: Vec<SanType>,
        dn: &[(DnType, &str)],
        usage: ExtendedKeyUsagePurpose,
    ) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = sans;
        params.distinguished_name = DistinguishedName::new();
        for (ty, value) in dn {
            let value = match ty {
                DnType::CountryName => DnValue::PrintableString((*value).try_into().expect("printable")),
                _ => DnValue::Utf8String(value.to_string()),
            };
            params.distinguished_name.push(ty.clone(), value);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert, key)
    }

    /// A client certificate with this subject, in the order given (least specific first, as
    /// encoded: the principal prints it most specific first).
    fn client(&self, name: &str, dn: &[(DnType, &str)]) -> Identity {
        let (cert, key) = self.leaf(Vec::new(), dn, ExtendedKeyUsagePurpose::ClientAuth);
        let id = Identity {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        };
        std::fs::write(&id.cert, cert.pem()).expect("write certificate");
        std::fs::write(&id.key, key.serialize_pem()).expect("write key");
        id
    }
}

// ---------------------------------------------------------------------------------------
// Brokers and the operator CLI

/// A `kora dev --auth` with these settings, its CLI config dir (where it records its operator
/// token) its own.
struct Dev {
    kora: Kora,
    config_dir: tempfile::TempDir,
}

impl Dev {
    fn start(settings: &[(&str, &str)]) -> Dev {
        let config_dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["--auth".to_string()];
        for (k, v) in settings {
            args.push("--set".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dir = config_dir.path().display().to_string();
        let kora = Kora::start_with_env(&args, &[("KORA_CONFIG_DIR", &dir)]);
        Dev { kora, config_dir }
    }

    /// `kora --output json ARGS --admin <this broker's admin>`: its JSON answer.
    fn cli(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_kora"))
            .args(["--output", "json"])
            .args(args)
            .args(["--admin", &self.kora.admin])
            .env("KORA_CONFIG_DIR", self.config_dir.path())
            .output()
            .expect("run the kora CLI");
        assert!(out.status.success(), "kora {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("the CLI answers JSON")
    }

    /// A new tenant and its first (admin) API key.
    fn tenant(&self, name: &str) -> (TenantKey, serde_json::Value) {
        let created = self.cli(&["tenant", "create", name]);
        let k = &created["api_key"];
        let key = TenantKey {
            id: k["key"].as_str().expect("key id").to_string(),
            secret: k["secret"].as_str().expect("secret").to_string(),
            tenant: k["tenant"].as_str().expect("tenant id").to_string(),
        };
        assert!(key.tenant.starts_with("lkc-"), "{created}");
        (key, created)
    }
}

/// A tenant's API key.
struct TenantKey {
    id: String,
    secret: String,
    tenant: String,
}

// ---------------------------------------------------------------------------------------
// librdkafka clients

fn config(pairs: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in pairs {
        c.set(*k, *v);
    }
    c
}

/// Produces `values` one at a time; the first delivery error, if any.
async fn produce(conf: &ClientConfig, topic: &str, values: &[&str]) -> Result<(), KafkaError> {
    let mut c = conf.clone();
    let p: FutureProducer = c.set("message.timeout.ms", "15000").create().expect("producer");
    for v in values {
        p.send(FutureRecord::<(), str>::to(topic).payload(v), Duration::from_secs(0))
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// What a consumer of group `group` subscribed to `topic` reads from the start: until it has
/// `n` values, gets an error (returned), or 30 s pass.
fn consume(conf: &ClientConfig, topic: &str, group: &str, n: usize) -> (Vec<String>, Option<KafkaError>) {
    let mut c = conf.clone();
    let consumer: BaseConsumer = c
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
            Some(Err(e)) => return (values, Some(e)),
        }
    }
    (values, None)
}

/// Records the errors librdkafka reports to its error callback.
#[derive(Default, Clone)]
struct Errors(Arc<Mutex<Vec<(KafkaError, String)>>>);

impl Errors {
    fn seen(&self) -> Vec<(KafkaError, String)> {
        self.0.lock().expect("errors").clone()
    }
}

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().expect("errors").push((error, reason.to_string()));
    }
}

impl ProducerContext for Errors {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// A client with `conf` gets no metadata, and librdkafka's error callback reports an error for
/// which `expected` holds (within 10 s); every error reported by then.
fn refused(conf: &ClientConfig, expected: impl Fn(&KafkaError, &str) -> bool) -> Vec<(KafkaError, String)> {
    let errors = Errors::default();
    let p: BaseProducer<Errors> = conf.create_with_context(errors.clone()).expect("client");
    let md = p.client().fetch_metadata(None, Duration::from_secs(3));
    assert!(md.is_err(), "metadata for a client that should be refused: {:?}", md.map(|m| m.topics().len()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        p.poll(Duration::from_millis(100));
        let seen = errors.seen();
        if seen.iter().any(|(e, r)| expected(e, r)) {
            return seen;
        }
        assert!(Instant::now() < deadline, "not the expected error; librdkafka reported {seen:?}");
    }
}

fn topics_seen(conf: &ClientConfig) -> BTreeSet<String> {
    let p: BaseProducer = conf.create().expect("client");
    let md = p.client().fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    md.topics().iter().map(|t| t.name().to_string()).collect()
}

fn cluster_id(conf: &ClientConfig) -> Option<String> {
    let p: BaseProducer = conf.create().expect("client");
    p.client().fetch_cluster_id(Duration::from_secs(10))
}

// ---------------------------------------------------------------------------------------
// Raw Kafka requests (what rust-rdkafka has no call for)

struct Raw<S> {
    stream: S,
    correlation_id: i32,
}

impl<S: Read + Write> Raw<S> {
    fn new(stream: S) -> Self {
        Raw { stream, correlation_id: 0 }
    }

    fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let api = ApiKey::try_from(R::KEY).expect("API key");
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("rdkafka-security-test")))
            .encode(&mut buf, api.request_header_version(version))
            .expect("encode header");
        req.encode(&mut buf, version).expect("encode request");
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame).expect("send request");
        self.stream.flush().expect("flush");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap_or_else(|e| panic!("no {api:?} response: {e}"));
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).expect("response body");
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, api.response_header_version(version)).expect("response header");
        assert_eq!(header.correlation_id, self.correlation_id);
        R::Response::decode(&mut body, version).expect("decode response")
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A plaintext connection logged in with SASL PLAIN (SaslHandshake v1, SaslAuthenticate v2).
fn sasl_plain(bootstrap: &str, user: &str, password: &str) -> Raw<TcpStream> {
    let s = TcpStream::connect(bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut raw = Raw::new(s);
    let r = raw.call(1, &SaslHandshakeRequest::default().with_mechanism(sb("PLAIN")));
    assert_eq!(r.error_code, 0, "SaslHandshake PLAIN");
    let token = format!("\0{user}\0{password}");
    let r = raw.call(2, &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)));
    assert_eq!(r.error_code, 0, "SaslAuthenticate: {:?}", r.error_message);
    raw
}

/// A TLS connection presenting `id`'s certificate (rustls), trusting the test CA.
fn mtls(
    bootstrap: &str,
    pki: &Pki,
    id: &Identity,
) -> Raw<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.issuer.der().clone()).expect("CA");
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![id.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
            )
            .expect("client certificate");
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let s = TcpStream::connect(bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    Raw::new(rustls::StreamOwned::new(conn, s))
}

// Kafka's codes for ACLs (org.apache.kafka.common.acl / resource).
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const ALLOW: i8 = 3;

fn allow(principal: &str, resource_type: i8, name: &str, pattern: i8, operation: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(sb(name))
        .with_resource_pattern_type(pattern)
        .with_principal(sb(principal))
        .with_host(sb("*"))
        .with_operation(operation)
        .with_permission_type(ALLOW)
}

/// CreateAcls v3; each creation's (error code, message). An empty message is none (Kora
/// answers a success with "", Kafka with null; clients read neither).
fn create_acls<S: Read + Write>(raw: &mut Raw<S>, acls: Vec<AclCreation>) -> Vec<(i16, Option<String>)> {
    let r = raw.call(3, &CreateAclsRequest::default().with_creations(acls));
    r.results
        .iter()
        .map(|x| (x.error_code, x.error_message.as_ref().filter(|m| !m.is_empty()).map(|m| m.to_string())))
        .collect()
}

fn is_authentication_failure(e: &KafkaError, reason: &str, mechanism: &str) -> bool {
    // librdkafka's _AUTHENTICATION, with the broker's SASL_AUTHENTICATION_FAILED text.
    *e == KafkaError::Global(RDKafkaErrorCode::Authentication)
        && reason.contains("SASL authentication error")
        && reason.contains(&format!("invalid credentials with SASL mechanism {mechanism}"))
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn sorted_owned(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_inside_tls_with_a_tenant_api_key() {
    let pki = Pki::new();
    let dev = Dev::start(&[
        ("listeners", "SASL_SSL://127.0.0.1:0"),
        ("ssl.keystore.location", &pki.server_keystore()),
    ]);
    let bootstrap = dev.kora.bootstrap.clone();
    let (key, created) = dev.tenant("acme");
    // The tenant's bootstrap is the SASL_SSL listener.
    let listed = created["tenant"]["bootstrap"].as_array().expect("bootstrap list");
    assert!(
        listed.iter().any(|b| b["address"] == bootstrap.as_str() && b["security_protocol"] == "SASL_SSL"),
        "{listed:?}"
    );
    let ca = pki.ca();
    let conf = config(&[
        ("bootstrap.servers", &bootstrap),
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", &ca),
        ("sasl.mechanisms", "PLAIN"),
        ("sasl.username", &key.id),
        ("sasl.password", &key.secret),
    ]);
    produce(&conf, "orders", &["o1", "o2", "o3"]).await.expect("produce over SASL_SSL");
    let (values, error) = consume(&conf, "orders", "orders-group", 3);
    assert_eq!(error, None);
    assert_eq!(sorted_owned(values), sorted(&["o1", "o2", "o3"]));
    // The key's cluster is its tenant, with its topic only.
    assert_eq!(cluster_id(&conf).as_deref(), Some(key.tenant.as_str()));
    assert_eq!(topics_seen(&conf), BTreeSet::from(["orders".to_string()]));

    // A wrong secret inside TLS: SASL authentication failed, as librdkafka reports it.
    let mut bad = conf.clone();
    bad.set("sasl.password", "not-the-secret");
    let errors = refused(&bad, |e, r| is_authentication_failure(e, r, "PLAIN"));
    // TLS itself succeeded: the failure is SASL's, not the handshake's.
    assert!(!errors.iter().any(|(_, r)| r.contains("SSL handshake failed")), "{errors:?}");
    // The broker carries on for the right secret.
    assert_eq!(topics_seen(&conf), BTreeSet::from(["orders".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_for_an_api_key_and_a_kip_554_user() {
    // kora dev --auth's own listener: SASL_PLAINTEXT.
    let dev = Dev::start(&[]);
    let bootstrap = dev.kora.bootstrap.clone();
    let (key, _) = dev.tenant("scram");
    let scram = |user: &str, password: &str| {
        config(&[
            ("bootstrap.servers", &bootstrap),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", user),
            ("sasl.password", password),
        ])
    };
    let conf = scram(&key.id, &key.secret);
    produce(&conf, "events", &["e1", "e2"]).await.expect("produce with SCRAM-SHA-512");
    let (values, error) = consume(&conf, "events", "events-group", 2);
    assert_eq!(error, None);
    assert_eq!(sorted_owned(values), sorted(&["e1", "e2"]));
    assert_eq!(cluster_id(&conf).as_deref(), Some(key.tenant.as_str()));
    refused(&scram(&key.id, "not-the-secret"), |e, r| is_authentication_failure(e, r, "SCRAM-SHA-512"));

    // The tenant's admin creates the SCRAM user alice (KIP-554: the client salts and hashes).
    let mut admin = sasl_plain(&bootstrap, &key.id, &key.secret);
    let password = "alice-secret";
    let salt: [u8; 16] = rand::random();
    let iterations = 8192;
    let mut salted = [0u8; 64];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        NonZeroU32::new(iterations).expect("iterations"),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let upsert = ScramCredentialUpsertion::default()
        .with_name(sb("alice"))
        .with_mechanism(2) // SCRAM-SHA-512
        .with_iterations(iterations as i32)
        .with_salt(Bytes::copy_from_slice(&salt))
        .with_salted_password(Bytes::copy_from_slice(&salted));
    let r = admin.call(0, &AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsert]));
    assert_eq!(r.results.len(), 1);
    assert_eq!((r.results[0].user.as_str(), r.results[0].error_code), ("alice", 0), "{:?}", r.results[0]);

    // alice logs in as <tenant id>~alice and is limited by the tenant's ACLs: none yet.
    let login = format!("{}~alice", key.tenant);
    let alice = scram(&login, password);
    let denied = produce(&alice, "alice-events", &["x"]).await;
    assert_eq!(denied, Err(KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)));
    let acls = create_acls(
        &mut admin,
        vec![
            allow("User:alice", TOPIC, "alice-", PREFIXED, ALL),
            allow("User:alice", GROUP, "alice-group", LITERAL, READ),
        ],
    );
    assert_eq!(acls, vec![(0, None), (0, None)]);
    produce(&alice, "alice-events", &["a1", "a2"]).await.expect("alice produces");
    let (values, error) = consume(&alice, "alice-events", "alice-group", 2);
    assert_eq!(error, None);
    assert_eq!(sorted_owned(values), sorted(&["a1", "a2"]));
    // Her topics are the tenant's; what her ACLs do not name she does not see.
    assert_eq!(topics_seen(&alice), BTreeSet::from(["alice-events".to_string()]));
    assert_eq!(topics_seen(&conf), BTreeSet::from(["alice-events".to_string(), "events".to_string()]));
    refused(&scram(&login, "not-her-secret"), |e, r| is_authentication_failure(e, r, "SCRAM-SHA-512"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_certificate_subject_is_the_principal_of_default_namespace_acls() {
    let pki = Pki::new();
    let alice = pki.client(
        "alice",
        &[
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "Acme"),
            (DnType::OrganizationalUnitName, "eng"),
            (DnType::CommonName, "alice"),
        ],
    );
    let operator =
        pki.client("operator", &[(DnType::OrganizationName, "Acme"), (DnType::CommonName, "kora-admin")]);
    let ca = pki.ca();
    let dev = Dev::start(&[
        ("listeners", "SSL://127.0.0.1:0"),
        ("ssl.keystore.location", &pki.server_keystore()),
        ("ssl.truststore.location", &ca),
        ("ssl.client.auth", "required"),
        ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
        // Java's RFC 2253 form of the subject, most specific first.
        ("super.users", "User:CN=kora-admin,O=Acme"),
    ]);
    let bootstrap = dev.kora.bootstrap.clone();
    let ssl = |id: Option<&Identity>| {
        let mut c = config(&[
            ("bootstrap.servers", &bootstrap),
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca),
        ]);
        if let Some(id) = id {
            c.set("ssl.certificate.location", id.cert.display().to_string());
            c.set("ssl.key.location", id.key.display().to_string());
        }
        c
    };
    let (op_conf, alice_conf) = (ssl(Some(&operator)), ssl(Some(&alice)));

    // The super user makes two topics and writes to the one alice will not be allowed.
    let admin: AdminClient<DefaultClientContext> = op_conf.create().expect("admin client");
    let topics = [
        NewTopic::new("granted", 1, TopicReplication::Fixed(1)),
        NewTopic::new("denied", 1, TopicReplication::Fixed(1)),
    ];
    for r in admin.create_topics(&topics, &AdminOptions::new()).await.expect("create_topics") {
        r.expect("topic created by the super user");
    }
    produce(&op_conf, "denied", &["not-for-alice"]).await.expect("the super user produces");

    // No ACL for alice yet: the authorizer refuses her, and lists nothing to her.
    let before = produce(&alice_conf, "granted", &["too-early"]).await;
    assert_eq!(before, Err(KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)));
    assert_eq!(topics_seen(&alice_conf), BTreeSet::new());

    // ACLs are altered through the broker by a principal allowed ALTER on the cluster: not alice.
    let principal = "User:CN=alice,OU=eng,O=Acme,C=US";
    let grants = || {
        vec![
            allow(principal, TOPIC, "granted", LITERAL, WRITE),
            allow(principal, TOPIC, "granted", LITERAL, READ),
            allow(principal, GROUP, "alice-group", LITERAL, READ),
        ]
    };
    let code = ResponseError::ClusterAuthorizationFailed.code();
    let by_alice = create_acls(&mut mtls(&bootstrap, &pki, &alice), grants());
    assert!(by_alice.iter().all(|(c, _)| *c == code), "{by_alice:?}");
    let still = produce(&alice_conf, "granted", &["still-too-early"]).await;
    assert_eq!(still, Err(KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)));
    let by_operator = create_acls(&mut mtls(&bootstrap, &pki, &operator), grants());
    assert_eq!(by_operator, vec![(0, None); 3]);

    // Her certificate's subject is the principal those ACLs name: she may use "granted" ...
    produce(&alice_conf, "granted", &["g1", "g2", "g3"]).await.expect("alice produces to granted");
    let (values, error) = consume(&alice_conf, "granted", "alice-group", 3);
    assert_eq!(error, None);
    assert_eq!(sorted_owned(values), sorted(&["g1", "g2", "g3"]));
    assert_eq!(topics_seen(&alice_conf), BTreeSet::from(["granted".to_string()]));
    // ... and nothing else.
    let denied = produce(&alice_conf, "denied", &["x"]).await;
    assert_eq!(denied, Err(KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)));
    let (values, error) = consume(&alice_conf, "denied", "alice-group", 1);
    assert!(values.is_empty(), "alice read {values:?}");
    assert_eq!(error, Some(KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed)));

    // Without a certificate the TLS handshake fails: the broker's TLS 1.3 certificate_required
    // alert, which librdkafka reports as a transport failure.
    refused(&ssl(None), |e, r| {
        *e == KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure)
            && r.contains("alert certificate required")
    });
    // The super user still works: the refused handshakes did not hurt the listener.
    assert!(topics_seen(&op_conf).is_superset(&BTreeSet::from(["granted".to_string(), "denied".to_string()])));
}

//! Real handshakes over loopback TCP with certificates made by rcgen in a temporary
//! directory: protocol versions, the three `ssl.client.auth` modes, principals, host name
//! checks, reloading changed files, and settings that must be refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kora_tls::{distinguished_name, server_name, ClientTls, ServerTls, TlsError, TlsSettings, ANONYMOUS};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::ProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

// ---------------------------------------------------------------------------------------
// Certificates

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Leaf {
    /// Kafka's PEM keystore file: the private key and the certificate chain in one file.
    fn keystore_file(&self) -> String {
        format!("{}{}", self.key, self.cert)
    }
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

impl Ca {
    fn leaf(&self, sans: &[&str], dn: &[(DnType, &str)], serial: u64, server: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = DistinguishedName::new();
        for (ty, value) in dn {
            let value = match ty {
                DnType::CountryName => DnValue::PrintableString((*value).try_into().unwrap()),
                _ => DnValue::Utf8String(value.to_string()),
            };
            params.distinguished_name.push(ty.clone(), value);
        }
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: cert.pem(), key: key.serialize_pem() }
    }

    fn server(&self, cn: &str, serial: u64) -> Leaf {
        self.leaf(&["localhost", "127.0.0.1"], &[(DnType::CommonName, cn)], serial, true)
    }

    /// A client certificate for `C=US, O=Acme, OU=eng, CN=<cn>` (in that encoded order).
    fn client(&self, cn: &str) -> Leaf {
        let dn = [
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "Acme"),
            (DnType::OrganizationalUnitName, "eng"),
            (DnType::CommonName, cn),
        ];
        self.leaf(&[], &dn, 7, false)
    }
}

// ---------------------------------------------------------------------------------------
// Settings

fn settings(pairs: &[(&str, &str)]) -> Result<TlsSettings, TlsError> {
    let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TlsSettings::from_map(&map)
}

fn server_tls(leaf: &Leaf, trust: Option<&Ca>, extra: &[(&str, &str)]) -> Arc<ServerTls> {
    let mut pairs = vec![
        ("ssl.keystore.type", "PEM"),
        ("ssl.keystore.certificate.chain", leaf.cert.as_str()),
        ("ssl.keystore.key", leaf.key.as_str()),
    ];
    if let Some(ca) = trust {
        pairs.push(("ssl.truststore.type", "PEM"));
        pairs.push(("ssl.truststore.certificates", ca.pem.as_str()));
    }
    pairs.extend_from_slice(extra);
    Arc::new(ServerTls::new(settings(&pairs).unwrap()).unwrap())
}

fn client_tls(trust: &Ca, identity: Option<&Leaf>, extra: &[(&str, &str)]) -> ClientTls {
    let mut pairs = vec![("ssl.truststore.certificates", trust.pem.as_str())];
    if let Some(leaf) = identity {
        pairs.push(("ssl.keystore.certificate.chain", leaf.cert.as_str()));
        pairs.push(("ssl.keystore.key", leaf.key.as_str()));
    }
    pairs.extend_from_slice(extra);
    ClientTls::new(settings(&pairs).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------
// One connection: the client sends "ping", the server answers "pong".

#[derive(Debug)]
struct Seen {
    protocol: Option<ProtocolVersion>,
    server_dn: String,
    server_serial: Vec<u8>,
}

struct Outcome {
    /// The principal the server derived, or why the server side failed.
    server: Result<String, String>,
    /// What the client saw, or why the client side failed.
    client: Result<Seen, String>,
}

async fn exchange(server: &Arc<ServerTls>, client: &ClientTls, host: &str) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = server.acceptor();
    let server = Arc::clone(server);
    let serving = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut ping = [0u8; 4];
        tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
        let principal = server.principal(tls.get_ref().1).map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let _ = tls.shutdown().await;
        Ok::<_, String>(principal)
    });
    let connector = client.connector();
    let name = server_name(host).unwrap();
    let talking = async move {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let conn = tls.get_ref().1;
        let end_entity = conn.peer_certificates().expect("server certificate")[0].clone();
        let protocol = conn.protocol_version();
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut pong = [0u8; 4];
        tls.read_exact(&mut pong).await.map_err(|e| e.to_string())?;
        assert_eq!(&pong, b"pong");
        let (_, parsed) = x509_parser::parse_x509_certificate(&end_entity).unwrap();
        Ok::<_, String>(Seen {
            protocol,
            server_dn: distinguished_name(&end_entity).unwrap(),
            server_serial: parsed.raw_serial().to_vec(),
        })
    };
    let client = timeout(Duration::from_secs(10), talking).await.expect("client timed out");
    let server = timeout(Duration::from_secs(10), serving).await.expect("server timed out").unwrap();
    Outcome { server, client }
}

fn ok(outcome: Outcome) -> (String, Seen) {
    match (outcome.server, outcome.client) {
        (Ok(principal), Ok(seen)) => (principal, seen),
        (server, client) => panic!("expected success; server: {server:?}, client: {client:?}"),
    }
}

fn refused(outcome: &Outcome) {
    assert!(
        outcome.server.is_err() && outcome.client.is_err(),
        "expected both sides to fail; server: {:?}, client: {:?}",
        outcome.server,
        outcome.client
    );
}

// ---------------------------------------------------------------------------------------
// Handshakes

#[tokio::test]
async fn tls13_by_default_without_client_auth() {
    let ca = new_ca("Kora Test CA");
    let server = server_tls(&ca.server("server-1", 1), None, &[]);
    // The client has a certificate, but a server with ssl.client.auth=none never asks for it.
    let alice = ca.client("alice");
    let (principal, seen) = ok(exchange(&server, &client_tls(&ca, Some(&alice), &[]), "localhost").await);
    assert_eq!(principal, ANONYMOUS);
    assert_eq!(seen.protocol, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(seen.server_dn, "CN=server-1");
    // The IP address in the certificate's names serves a client dialling 127.0.0.1.
    let (_, seen) = ok(exchange(&server, &client_tls(&ca, None, &[]), "127.0.0.1").await);
    assert_eq!(seen.protocol, Some(ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn tls12_only() {
    let ca = new_ca("Kora Test CA");
    let server = server_tls(&ca.server("server-1", 1), None, &[("ssl.enabled.protocols", "TLSv1.2")]);
    let (_, seen) = ok(exchange(&server, &client_tls(&ca, None, &[]), "localhost").await);
    assert_eq!(seen.protocol, Some(ProtocolVersion::TLSv1_2));
    // A client that only speaks TLS 1.3 finds no common version.
    let tls13 = client_tls(&ca, None, &[("ssl.enabled.protocols", "TLSv1.3")]);
    refused(&exchange(&server, &tls13, "localhost").await);
}

#[tokio::test]
async fn client_auth_required() {
    let ca = new_ca("Kora Test CA");
    let other = new_ca("Someone Else's CA");
    for protocols in ["TLSv1.2,TLSv1.3", "TLSv1.2"] {
        let server = server_tls(
            &ca.server("server-1", 1),
            Some(&ca),
            &[("ssl.client.auth", "required"), ("ssl.enabled.protocols", protocols)],
        );
        // No certificate: refused.
        refused(&exchange(&server, &client_tls(&ca, None, &[]), "localhost").await);
        // A certificate signed by the truststore's CA: in, with Kafka's principal.
        let alice = client_tls(&ca, Some(&ca.client("alice")), &[]);
        let (principal, _) = ok(exchange(&server, &alice, "localhost").await);
        assert_eq!(principal, "CN=alice,OU=eng,O=Acme,C=US", "{protocols}");
        // A certificate from a CA the server does not trust: refused.
        let mallory = client_tls(&ca, Some(&other.client("mallory")), &[]);
        refused(&exchange(&server, &mallory, "localhost").await);
    }
}

#[tokio::test]
async fn principal_mapping_rules_apply_to_the_subject() {
    let ca = new_ca("Kora Test CA");
    let server = server_tls(
        &ca.server("server-1", 1),
        Some(&ca),
        &[
            ("ssl.client.auth", "required"),
            ("ssl.principal.mapping.rules", "RULE:^CN=([^,]*),OU=eng,.*$/$1@ENG/L, DEFAULT"),
        ],
    );
    let alice = client_tls(&ca, Some(&ca.client("Alice")), &[]);
    assert_eq!(ok(exchange(&server, &alice, "localhost").await).0, "alice@eng");
}

#[tokio::test]
async fn client_auth_requested() {
    let ca = new_ca("Kora Test CA");
    let other = new_ca("Someone Else's CA");
    let server = server_tls(&ca.server("server-1", 1), Some(&ca), &[("ssl.client.auth", "requested")]);
    let (principal, _) = ok(exchange(&server, &client_tls(&ca, None, &[]), "localhost").await);
    assert_eq!(principal, ANONYMOUS);
    let bob = client_tls(&ca, Some(&ca.client("bob")), &[]);
    assert_eq!(ok(exchange(&server, &bob, "localhost").await).0, "CN=bob,OU=eng,O=Acme,C=US");
    // A certificate that is sent is checked, even though none is required.
    let mallory = client_tls(&ca, Some(&other.client("mallory")), &[]);
    refused(&exchange(&server, &mallory, "localhost").await);
}

#[tokio::test]
async fn endpoint_identification() {
    let ca = new_ca("Kora Test CA");
    let other = new_ca("Someone Else's CA");
    let server = server_tls(&ca.server("server-1", 1), None, &[]);
    // https (the default): the name dialled must be in the certificate.
    let strict = client_tls(&ca, None, &[]);
    assert!(exchange(&server, &strict, "broker.example").await.client.is_err());
    // Empty: any name, but the chain must still lead to a trusted CA.
    let lax = client_tls(&ca, None, &[("ssl.endpoint.identification.algorithm", "")]);
    assert!(!lax.settings().verify_hostname);
    ok(exchange(&server, &lax, "broker.example").await);
    let lax_other = client_tls(&other, None, &[("ssl.endpoint.identification.algorithm", "")]);
    assert!(exchange(&server, &lax_other, "localhost").await.client.is_err());
}

// ---------------------------------------------------------------------------------------
// Reloading

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
}

#[tokio::test]
async fn reload_serves_new_files_and_keeps_the_old_ones_when_broken() {
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("server.pem");
    let truststore = dir.path().join("ca.pem");
    let ca = new_ca("Kora Test CA");
    write(&keystore, &ca.server("server-1", 1).keystore_file());
    write(&truststore, &ca.pem);
    let server = Arc::new(
        ServerTls::new(
            settings(&[
                ("ssl.keystore.type", "PEM"),
                ("ssl.keystore.location", keystore.to_str().unwrap()),
                ("ssl.truststore.type", "PEM"),
                ("ssl.truststore.location", truststore.to_str().unwrap()),
                ("ssl.client.auth", "required"),
            ])
            .unwrap(),
        )
        .unwrap(),
    );
    let client = client_tls(&ca, Some(&ca.client("alice")), &[]);
    let (_, before) = ok(exchange(&server, &client, "localhost").await);
    assert_eq!(before.server_dn, "CN=server-1");
    assert!(!server.reload_if_changed().unwrap(), "nothing changed yet");

    // A renewed certificate: new connections get it without a restart.
    let server2 = ca.server("server-2", 2);
    write(&keystore, &server2.keystore_file());
    assert!(server.reload_if_changed().unwrap());
    let (_, after) = ok(exchange(&server, &client, "localhost").await);
    assert_eq!(after.server_dn, "CN=server-2");
    assert_ne!(after.server_serial, before.server_serial);
    assert!(!server.reload_if_changed().unwrap());

    // Broken renewals are refused with the setting and the file named, and the previous
    // certificate stays in service.
    let path = keystore.display().to_string();
    let server3 = ca.server("server-3", 3);
    let broken = [
        "garbage".to_owned(),
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_owned(),
        server3.cert.clone(),                       // no key
        format!("{}{}", server2.key, server3.cert), // a key of another certificate
        format!("{}{}", server3.key, server3.cert.replace("-----END CERTIFICATE-----\n", "")),
    ];
    for contents in &broken {
        write(&keystore, contents);
        let err = server.reload_if_changed().unwrap_err().to_string();
        assert!(err.contains("ssl.keystore.location") && err.contains(&path), "{err}");
        let (_, seen) = ok(exchange(&server, &client, "localhost").await);
        assert_eq!(seen.server_dn, "CN=server-2");
    }
    std::fs::remove_file(&keystore).unwrap();
    let err = server.reload_if_changed().unwrap_err();
    assert!(matches!(err, TlsError::Read { setting: "ssl.keystore.location", .. }), "{err}");
    assert_eq!(ok(exchange(&server, &client, "localhost").await).1.server_dn, "CN=server-2");

    // Fixed again; and a truststore change is picked up too: a CA swap shuts out clients of
    // the old CA.
    write(&keystore, &server3.keystore_file());
    assert!(server.reload_if_changed().unwrap());
    assert_eq!(ok(exchange(&server, &client, "localhost").await).1.server_dn, "CN=server-3");
    let new_ca = new_ca("Kora Test CA 2");
    write(&truststore, &new_ca.pem);
    assert!(server.reload_if_changed().unwrap());
    refused(&exchange(&server, &client, "localhost").await);
    let carol = client_tls(&ca, Some(&new_ca.client("carol")), &[]);
    assert_eq!(ok(exchange(&server, &carol, "localhost").await).0, "CN=carol,OU=eng,O=Acme,C=US");
}

#[tokio::test]
async fn watch_reloads_in_the_background_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("server.pem");
    let ca = new_ca("Kora Test CA");
    write(&keystore, &ca.server("server-1", 1).keystore_file());
    let server = Arc::new(
        ServerTls::new(settings(&[("ssl.keystore.location", keystore.to_str().unwrap())]).unwrap()).unwrap(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watching = tokio::spawn(Arc::clone(&server).watch(Duration::from_millis(20), stopped));
    let client = client_tls(&ca, None, &[]);
    assert_eq!(ok(exchange(&server, &client, "localhost").await).1.server_dn, "CN=server-1");

    write(&keystore, "half written");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ok(exchange(&server, &client, "localhost").await).1.server_dn, "CN=server-1");

    write(&keystore, &ca.server("server-2", 2).keystore_file());
    let mut seen = String::new();
    for _ in 0..100 {
        seen = ok(exchange(&server, &client, "localhost").await).1.server_dn;
        if seen == "CN=server-2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "CN=server-2");

    stop.send(true).unwrap();
    timeout(Duration::from_secs(5), watching).await.expect("watch stops").unwrap();
}

#[tokio::test]
async fn inline_settings_have_nothing_to_reload() {
    let ca = new_ca("Kora Test CA");
    let server = server_tls(&ca.server("server-1", 1), None, &[]);
    assert!(!server.reload_if_changed().unwrap());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    // Returns at once rather than polling nothing.
    timeout(Duration::from_secs(5), Arc::clone(&server).watch(Duration::from_millis(10), stopped))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Settings that must be refused, each naming its setting

fn refused_setting(result: Result<TlsSettings, TlsError>, name: &str) -> String {
    match result {
        Err(TlsError::Setting { setting, reason }) if setting == name => reason,
        other => panic!("expected an error naming {name}, got {other:?}"),
    }
}

#[test]
fn bad_settings_are_named() {
    let ca = new_ca("Kora Test CA");
    let leaf = ca.server("server-1", 1);
    let reason = refused_setting(settings(&[("ssl.keystore.type", "JKS")]), "ssl.keystore.type");
    assert!(reason.contains("JKS") && reason.contains("PEM"), "{reason}");
    refused_setting(settings(&[("ssl.truststore.type", "PKCS12")]), "ssl.truststore.type");
    refused_setting(settings(&[("ssl.keystore.certificate.chain", &leaf.cert)]), "ssl.keystore.key");
    refused_setting(settings(&[("ssl.keystore.key", &leaf.key)]), "ssl.keystore.certificate.chain");
    refused_setting(
        settings(&[("ssl.keystore.location", "/x.pem"), ("ssl.keystore.key", &leaf.key)]),
        "ssl.keystore.location",
    );
    refused_setting(
        settings(&[("ssl.truststore.location", "/x.pem"), ("ssl.truststore.certificates", &ca.pem)]),
        "ssl.truststore.location",
    );
    refused_setting(settings(&[("ssl.key.password", "secret")]), "ssl.key.password");
    refused_setting(settings(&[("ssl.client.auth", "sometimes")]), "ssl.client.auth");
    refused_setting(settings(&[("ssl.client.auth", "required")]), "ssl.client.auth");
    refused_setting(settings(&[("ssl.enabled.protocols", "TLSv1.1,TLSv1.2")]), "ssl.enabled.protocols");
    refused_setting(settings(&[("ssl.enabled.protocols", " , ")]), "ssl.enabled.protocols");
    refused_setting(
        settings(&[("ssl.endpoint.identification.algorithm", "ldap")]),
        "ssl.endpoint.identification.algorithm",
    );
    refused_setting(settings(&[("ssl.principal.mapping.rules", "RULE:oops")]), "ssl.principal.mapping.rules");

    // Defaults, and case-insensitive values, as Kafka.
    let s = settings(&[("ssl.keystore.type", "pem"), ("ssl.endpoint.identification.algorithm", "HTTPS")])
        .unwrap();
    assert!(s.verify_hostname && s.keystore.is_none() && s.truststore.is_none());
    assert_eq!(s.client_auth, kora_tls::ClientAuth::None);
    assert_eq!(s.enabled_protocols, vec![kora_tls::TlsVersion::Tls12, kora_tls::TlsVersion::Tls13]);
    // Inline keys never show in Debug output.
    let s =
        settings(&[("ssl.keystore.certificate.chain", &leaf.cert), ("ssl.keystore.key", &leaf.key)]).unwrap();
    assert!(!format!("{s:?}").contains("PRIVATE KEY"));
}

fn pem_error(result: Result<ServerTls, TlsError>, name: &str) -> String {
    match result {
        Err(err @ (TlsError::Pem { setting, .. } | TlsError::Rustls { setting, .. })) if setting == name => {
            err.to_string()
        }
        other => panic!("expected a PEM error naming {name}, got {:?}", other.err()),
    }
}

#[test]
fn bad_certificates_and_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("Kora Test CA");
    let leaf = ca.server("server-1", 1);
    let inline = |chain: &str, key: &str| {
        ServerTls::new(
            settings(&[("ssl.keystore.certificate.chain", chain), ("ssl.keystore.key", key)]).unwrap(),
        )
    };
    let garbage = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
    let err = pem_error(inline(garbage, &leaf.key), "ssl.keystore.certificate.chain");
    assert!(err.contains("inline value") && err.contains("not valid PEM"), "{err}");
    let err = pem_error(inline("hello", &leaf.key), "ssl.keystore.certificate.chain");
    assert!(err.contains("no CERTIFICATE"), "{err}");
    let err = pem_error(inline(&leaf.cert, &leaf.cert), "ssl.keystore.key");
    assert!(err.contains("no PRIVATE KEY"), "{err}");
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let err = pem_error(inline(&leaf.cert, encrypted), "ssl.keystore.key");
    assert!(err.contains("encrypted"), "{err}");
    let other = ca.server("server-2", 2);
    pem_error(inline(&leaf.cert, &other.key), "ssl.keystore.certificate.chain");
    let not_a_cert = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    pem_error(inline(not_a_cert, &leaf.key), "ssl.keystore.certificate.chain");

    // The keystore file form: a file with no key, and a file that is not there.
    let path = dir.path().join("server.pem");
    write(&path, &leaf.cert);
    let from_file = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("ssl.keystore.location", path.to_str().unwrap())];
        pairs.extend_from_slice(extra);
        ServerTls::new(settings(&pairs).unwrap())
    };
    let err = pem_error(from_file(&[]), "ssl.keystore.location");
    assert!(err.contains(path.to_str().unwrap()) && err.contains("no PRIVATE KEY"), "{err}");
    std::fs::remove_file(&path).unwrap();
    match from_file(&[]) {
        Err(err @ TlsError::Read { setting: "ssl.keystore.location", .. }) => {
            assert!(err.to_string().contains(path.to_str().unwrap()), "{err}")
        }
        other => panic!("expected a read error, got {:?}", other.err()),
    }

    // Truststores.
    write(&path, &leaf.keystore_file());
    let trust =
        |certs: &str| from_file(&[("ssl.client.auth", "required"), ("ssl.truststore.certificates", certs)]);
    let err = pem_error(trust("not pem at all"), "ssl.truststore.certificates");
    assert!(err.contains("no CERTIFICATE"), "{err}");
    let err = pem_error(trust(not_a_cert), "ssl.truststore.certificates");
    assert!(err.contains("not a usable CA certificate"), "{err}");
    let missing = dir.path().join("missing-ca.pem");
    let result =
        from_file(&[("ssl.client.auth", "required"), ("ssl.truststore.location", missing.to_str().unwrap())]);
    assert!(matches!(result, Err(TlsError::Read { setting: "ssl.truststore.location", .. })));

    // A server needs a keystore, a client a truststore.
    match ServerTls::new(TlsSettings::default()) {
        Err(TlsError::Setting { setting: "ssl.keystore.location", .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    match ClientTls::new(TlsSettings::default()) {
        Err(TlsError::Setting { setting: "ssl.truststore.location", .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    // Caller-built settings are checked too.
    let mut s = settings(&[("ssl.truststore.certificates", &ca.pem)]).unwrap();
    s.enabled_protocols.clear();
    assert!(matches!(ClientTls::new(s), Err(TlsError::Setting { setting: "ssl.enabled.protocols", .. })));
}

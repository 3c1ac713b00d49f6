//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side, as Kafka brokers
//! run it (ScramSaslServer): the user is looked up on the client's first message (an unknown
//! user fails there), the proof is checked on its final message, and every failure reads the
//! same. Kora is stricter than Kafka where Kafka is looser than the RFC: the nonce must equal
//! the combined nonce exactly and the channel binding must repeat the GS2 header; the Java
//! client and librdkafka send exactly that.
//!
//! Stored per user and mechanism: salt, StoredKey, ServerKey and iterations
//! ([`ScramCredential`]); the password is never stored, and the broker never needs it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Kafka's bounds on a credential's iteration count (ScramMechanism).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL mechanism name (SaslHandshake).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The mechanism's number in KIP-554's requests (1 and 2; 0 is UNKNOWN).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes a key of any length (RFC 2104): this cannot fail.
            let mut m =
                <M as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC key length"));
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Mechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
            Mechanism::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, iterations) of RFC 5802: PBKDF2 with this mechanism's HMAC, one
    /// block. The password is its UTF-8 bytes (Kafka applies no SASLprep).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Mechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// Why a credential cannot be stored (AlterUserScramCredentials' UNACCEPTABLE_CREDENTIAL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("Too few iterations")]
    TooFewIterations,
    #[error("Too many iterations")]
    TooManyIterations,
    #[error("the salted password must not be empty")]
    EmptySaltedPassword,
    #[error("the salt must not be empty")]
    EmptySalt,
}

fn check_iterations(iterations: u32) -> Result<(), CredentialError> {
    if iterations < MIN_ITERATIONS {
        return Err(CredentialError::TooFewIterations);
    }
    if iterations > MAX_ITERATIONS {
        return Err(CredentialError::TooManyIterations);
    }
    Ok(())
}

/// What a broker keeps of one user's password for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: Mechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs: they are password equivalents for this server.
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// From the client-computed salted password KIP-554's AlterUserScramCredentials carries.
    pub fn from_salted_password(
        mechanism: Mechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        check_iterations(iterations)?;
        if salted_password.is_empty() {
            return Err(CredentialError::EmptySaltedPassword);
        }
        if salt.is_empty() {
            return Err(CredentialError::EmptySalt);
        }
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Ok(Self {
            mechanism,
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        })
    }

    /// From a password (operators' commands; API key secrets).
    pub fn from_password(
        mechanism: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        check_iterations(iterations)?;
        let salted = mechanism.salted_password(password.as_bytes(), salt, iterations);
        Self::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is this credential's, compared in constant time (SASL/PLAIN against
    /// stored SCRAM credentials).
    pub fn verify_password(&self, password: &str) -> bool {
        let salted = self.mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        bool::from(self.mechanism.hash(&client_key).ct_eq(&self.stored_key))
    }
}

/// RFC 5802's saslname: `=2C` is `,` and `=3D` is `=`; any other `=`, and any `,`, is invalid.
fn decode_saslname(s: &str) -> Option<String> {
    if s.is_empty() || s.contains(',') {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// RFC 5802's printable nonce characters: 0x21-0x7E except `,`.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

#[derive(Debug)]
enum State {
    Start,
    SentFirst {
        username: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        credential: ScramCredential,
    },
    Done,
    Failed,
}

/// One connection's SCRAM exchange, server side.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: Mechanism,
    state: State,
}

impl ScramServer {
    pub fn new(mechanism: Mechanism) -> Self {
        Self { mechanism, state: State::Start }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the next message is the client's first.
    pub fn awaiting_first(&self) -> bool {
        matches!(self.state, State::Start)
    }

    fn invalid(&mut self) -> AuthError {
        self.state = State::Failed;
        AuthError::InvalidCredentials(self.mechanism.name())
    }

    /// Takes client-first, answers server-first. `server_nonce` is fresh randomness from the
    /// caller (printable, no `,`); `lookup` finds the user's credential for this mechanism.
    pub fn client_first(
        &mut self,
        message: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Start) {
            self.state = State::Failed;
            return Err(AuthError::State("client-first"));
        }
        assert!(valid_nonce(server_nonce), "the server nonce must be printable and without ','");
        let Ok(text) = std::str::from_utf8(message) else { return Err(self.invalid()) };
        // gs2-header: "n," (no channel binding; "y" and "p=" are refused), [ "a=" authzid ], ","
        let Some(after_flag) = text.strip_prefix("n,") else { return Err(self.invalid()) };
        let Some(comma) = after_flag.find(',') else { return Err(self.invalid()) };
        let (authzid_field, bare) = (&after_flag[..comma], &after_flag[comma + 1..]);
        let gs2_header = text[..2 + comma + 1].to_string();
        let authzid = match authzid_field {
            "" => None,
            a => match a.strip_prefix("a=").and_then(decode_saslname) {
                Some(a) => Some(a),
                None => return Err(self.invalid()),
            },
        };
        let mut fields = bare.split(',');
        let mut field = fields.next();
        if field.is_some_and(|f| f.starts_with("m=")) {
            field = fields.next(); // reserved for mandatory extensions: accepted and ignored, as Kafka does
        }
        let Some(username) = field.and_then(|f| f.strip_prefix("n=")).and_then(decode_saslname) else {
            return Err(self.invalid());
        };
        let Some(client_nonce) = fields.next().and_then(|f| f.strip_prefix("r=")).filter(|n| valid_nonce(n))
        else {
            return Err(self.invalid());
        };
        for ext in fields {
            let Some((key, value)) = ext.split_once('=') else { return Err(self.invalid()) };
            // Delegation tokens (tokenauth=true) are not served: fail as an unknown user would.
            if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
                return Err(self.invalid());
            }
        }
        if authzid.as_ref().is_some_and(|a| *a != username) {
            self.state = State::Failed;
            return Err(AuthError::AuthzidMismatch);
        }
        let Some(credential) = lookup(&username).filter(|c| {
            c.mechanism == self.mechanism && (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&c.iterations)
        }) else {
            return Err(self.invalid());
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first =
            format!("r={nonce},s={},i={}", B64.encode(&credential.salt), credential.iterations);
        let reply = server_first.clone().into_bytes();
        self.state = State::SentFirst {
            username,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
            credential,
        };
        Ok(reply)
    }

    /// Takes client-final, answers server-final (`v=` ServerSignature) and the authenticated
    /// user name.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), AuthError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::SentFirst { username, gs2_header, client_first_bare, server_first, nonce, credential } =
            state
        else {
            return Err(AuthError::State("client-final"));
        };
        let Ok(text) = std::str::from_utf8(message) else { return Err(self.invalid()) };
        let Some(p) = text.rfind(",p=") else { return Err(self.invalid()) };
        let (without_proof, proof_b64) = (&text[..p], &text[p + 3..]);
        let mut fields = without_proof.split(',');
        let binding = fields.next().and_then(|f| f.strip_prefix("c="));
        let their_nonce = fields.next().and_then(|f| f.strip_prefix("r="));
        // Without channel binding, c= repeats the GS2 header of client-first.
        if binding.and_then(|b| B64.decode(b).ok()).as_deref() != Some(gs2_header.as_bytes())
            || their_nonce != Some(nonce.as_str())
        {
            return Err(self.invalid());
        }
        let Ok(proof) = B64.decode(proof_b64) else { return Err(self.invalid()) };
        let m = self.mechanism;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(self.invalid());
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
            return Err(self.invalid());
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        self.state = State::Done;
        Ok((format!("v={}", B64.encode(server_signature)).into_bytes(), username))
    }

    /// The exchange finished and the client proved its password.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// RFC 5802's saslname, encoded: `,` is `=2C` and `=` is `=3D`.
fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

#[derive(Debug)]
enum ClientState {
    Start,
    SentFirst { client_first_bare: String, client_nonce: String },
    SentFinal { server_signature: Vec<u8> },
    Done,
    Failed,
}

/// One SCRAM exchange, client side, as Kafka clients run it (no channel binding, no
/// authorization id): a broker dialling another broker over a SASL inter-broker listener.
/// The password stays in this value only; a server that cannot prove it knows the password's
/// keys (`v=` of server-final) fails the exchange.
pub struct ScramClient {
    mechanism: Mechanism,
    username: String,
    password: String,
    state: ClientState,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    pub fn new(mechanism: Mechanism, username: &str, password: &str) -> Self {
        Self {
            mechanism,
            username: username.to_string(),
            password: password.to_string(),
            state: ClientState::Start,
        }
    }

    fn failed(&mut self, why: &str) -> AuthError {
        self.state = ClientState::Failed;
        AuthError::Malformed(format!("{}: {why}", self.mechanism.name()))
    }

    /// client-first; `client_nonce` is fresh randomness from the caller (printable, no `,`).
    pub fn client_first(&mut self, client_nonce: &str) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, ClientState::Start) {
            return Err(self.failed("client-first sent twice"));
        }
        if !valid_nonce(client_nonce) {
            return Err(self.failed("the client nonce must be printable and without ','"));
        }
        let bare = format!("n={},r={client_nonce}", encode_saslname(&self.username));
        let message = format!("n,,{bare}").into_bytes();
        self.state =
            ClientState::SentFirst { client_first_bare: bare, client_nonce: client_nonce.to_string() };
        Ok(message)
    }

    /// Takes server-first, answers client-final with the proof. Iterations outside Kafka's
    /// bounds are refused, so a server cannot make this client burn CPU.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, AuthError> {
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        let ClientState::SentFirst { client_first_bare, client_nonce } = state else {
            return Err(self.failed("server-first out of order"));
        };
        let Ok(text) = std::str::from_utf8(server_first) else {
            return Err(self.failed("server-first is not UTF-8"));
        };
        if let Some(e) = text.strip_prefix("e=") {
            return Err(self.failed(&format!("the server refused: {e}")));
        }
        let mut fields = text.split(',');
        let mut field = fields.next();
        if field.is_some_and(|f| f.starts_with("m=")) {
            return Err(self.failed("the server requires an extension this client does not know"));
        }
        let Some(nonce) = field.take().and_then(|f| f.strip_prefix("r=")).filter(|n| valid_nonce(n)) else {
            return Err(self.failed("server-first has no nonce"));
        };
        if !nonce.starts_with(&client_nonce) || nonce.len() == client_nonce.len() {
            return Err(self.failed("the server's nonce does not extend the client's"));
        }
        let Some(salt) = fields.next().and_then(|f| f.strip_prefix("s=")).and_then(|s| B64.decode(s).ok())
        else {
            return Err(self.failed("server-first has no salt"));
        };
        let Some(iterations) =
            fields.next().and_then(|f| f.strip_prefix("i=")).and_then(|i| i.parse::<u32>().ok())
        else {
            return Err(self.failed("server-first has no iteration count"));
        };
        if salt.is_empty() || check_iterations(iterations).is_err() {
            return Err(self.failed(&format!("unacceptable salt or iteration count {iterations}")));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        // c= is the GS2 header "n,," in base64.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{text},{without_proof}");
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = m.hmac(&salted, b"Server Key");
        self.state =
            ClientState::SentFinal { server_signature: m.hmac(&server_key, auth_message.as_bytes()) };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Takes server-final: the server proved it holds this password's ServerKey.
    pub fn server_final(&mut self, message: &[u8]) -> Result<(), AuthError> {
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        let ClientState::SentFinal { server_signature } = state else {
            return Err(self.failed("server-final out of order"));
        };
        let Ok(text) = std::str::from_utf8(message) else {
            return Err(self.failed("server-final is not UTF-8"));
        };
        if let Some(e) = text.strip_prefix("e=") {
            return Err(self.failed(&format!("the server refused: {e}")));
        }
        let theirs = text.strip_prefix("v=").and_then(|v| B64.decode(v).ok()).unwrap_or_default();
        if !bool::from(theirs.ct_eq(&server_signature)) {
            return Err(self.failed("the server's signature is wrong: it does not know this password"));
        }
        self.state = ClientState::Done;
        Ok(())
    }

    /// The exchange finished and the server proved itself.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// client-final for a client-first-bare of `n=<user>,r=<nonce>` and `server_first`, and
    /// the client that sent it (to check server-final).
    fn client_final(
        m: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, ScramClient) {
        let (user, nonce) = client_first_bare.split_once(",r=").expect("bare");
        let mut c = ScramClient::new(m, user.strip_prefix("n=").expect("n="), password);
        c.client_first(nonce).expect("client-first");
        let last = c.client_final(server_first.as_bytes()).expect("client-final");
        (String::from_utf8(last).expect("utf8"), c)
    }

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_example_exchange() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let cred = ScramCredential::from_password(Mechanism::Sha256, "pencil", &salt, 4096).expect("cred");
        let mut s = ScramServer::new(Mechanism::Sha256);
        let first = s
            .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", |u| {
                (u == "user").then(|| cred.clone())
            })
            .expect("server-first");
        assert_eq!(
            std::str::from_utf8(&first).expect("utf8"),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (last, user) = s
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .expect("server-final");
        assert_eq!(
            std::str::from_utf8(&last).expect("utf8"),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(user, "user");
        assert!(s.is_done());
        assert!(cred.verify_password("pencil") && !cred.verify_password("pencil2"));
    }

    #[test]
    fn sha512_round_trip_and_wrong_password() {
        let cred = ScramCredential::from_password(Mechanism::Sha512, "s3cret", b"salt-of-alice", 8192)
            .expect("cred");
        for (password, ok) in [("s3cret", true), ("S3cret", false)] {
            let mut s = ScramServer::new(Mechanism::Sha512);
            let bare = "n=alice,r=clientnonce123";
            let first =
                s.client_first(format!("n,,{bare}").as_bytes(), "servernonce456", |_| Some(cred.clone()));
            let first = String::from_utf8(first.expect("first")).expect("utf8");
            let (last, mut client) = client_final(Mechanism::Sha512, password, bare, &first);
            match s.client_final(last.as_bytes()) {
                Ok((v, user)) => {
                    assert!(ok, "a wrong password was accepted");
                    client.server_final(&v).expect("the server's signature");
                    assert!(client.is_done());
                    assert_eq!(user, "alice");
                }
                Err(e) => {
                    assert!(!ok, "the right password was refused: {e}");
                    assert_eq!(
                        e.to_string(),
                        "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_unknown_users_bad_messages_and_replays() {
        let cred = ScramCredential::from_password(Mechanism::Sha256, "pw", b"salt", 4096).expect("cred");
        let first = |msg: &str| {
            let mut s = ScramServer::new(Mechanism::Sha256);
            s.client_first(msg.as_bytes(), "snonce", |u| (u == "bob").then(|| cred.clone())).map(|_| s)
        };
        assert!(matches!(first("n,,n=alice,r=abc"), Err(AuthError::InvalidCredentials(_))), "unknown user");
        for bad in [
            "y,,n=bob,r=abc",
            "p=tls-unique,,n=bob,r=abc",
            "n,,n=bob",
            "n,,r=abc",
            "n,,n=b=ob,r=abc",
            "n,,n=bob,r=a b",
        ] {
            assert!(first(bad).is_err(), "{bad} accepted");
        }
        assert!(matches!(first("n,a=alice,n=bob,r=abc"), Err(AuthError::AuthzidMismatch)));
        assert!(first("n,a=bob,n=bob,r=abc").is_ok());
        assert!(first("n,,m=ext,n=bob,r=abc").is_ok(), "a reserved m= is ignored");
        assert!(first("n,,n=bob,r=abc,tokenauth=true").is_err(), "no delegation tokens");
        // A credential of the other mechanism does not authenticate this one.
        let mut s = ScramServer::new(Mechanism::Sha512);
        assert!(s.client_first(b"n,,n=bob,r=abc", "x", |_| Some(cred.clone())).is_err());
        // The nonce must be the combined one, and the binding the GS2 header.
        let bare = "n=bob,r=abc";
        for tamper in
            [|m: String| m.replace("r=abcsnonce", "r=abcsnonceX"), |m: String| m.replace("c=biws", "c=eSws")]
        {
            let mut s = first(&format!("n,,{bare}")).expect("first");
            let (last, _) = client_final(Mechanism::Sha256, "pw", bare, "r=abcsnonce,s=c2FsdA==,i=4096");
            assert!(s.client_final(tamper(last).as_bytes()).is_err());
        }
        // Messages out of order.
        let mut s = ScramServer::new(Mechanism::Sha256);
        assert!(matches!(s.client_final(b"c=biws,r=x,p=AAAA"), Err(AuthError::State(_))));
        let mut s = first(&format!("n,,{bare}")).expect("first");
        assert!(matches!(s.client_first(b"n,,n=bob,r=abc", "x", |_| None), Err(AuthError::State(_))));
    }

    #[test]
    fn credentials_follow_kip_554_bounds() {
        let m = Mechanism::Sha256;
        assert_eq!(
            ScramCredential::from_salted_password(m, b"s", b"x", 4095),
            Err(CredentialError::TooFewIterations)
        );
        assert_eq!(
            ScramCredential::from_salted_password(m, b"s", b"x", 16385),
            Err(CredentialError::TooManyIterations)
        );
        assert_eq!(
            ScramCredential::from_salted_password(m, b"s", b"", 4096),
            Err(CredentialError::EmptySaltedPassword)
        );
        assert_eq!(
            ScramCredential::from_salted_password(m, b"", b"x", 4096),
            Err(CredentialError::EmptySalt)
        );
        // What the AdminClient sends (Hi computed client-side) gives the same keys as the password.
        let salted = m.salted_password(b"pw", b"salt", 4096);
        assert_eq!(
            ScramCredential::from_salted_password(m, b"salt", &salted, 4096),
            ScramCredential::from_password(m, "pw", b"salt", 4096)
        );
        assert_eq!(Mechanism::from_kafka_type(2), Some(Mechanism::Sha512));
        assert_eq!(Mechanism::from_name("SCRAM-SHA-256"), Some(Mechanism::Sha256));
        assert_eq!(Mechanism::from_kafka_type(0), None);
        assert!(
            !format!("{:?}", ScramCredential::from_password(m, "pw", b"salt", 4096)).contains("stored_key")
        );
    }

    #[test]
    fn client_and_server_agree_and_the_client_checks_the_server() {
        for m in Mechanism::ALL {
            let user = "cell,broker=1";
            let cred = ScramCredential::from_password(m, "pw", b"salt", 4096).expect("cred");
            let mut client = ScramClient::new(m, user, "pw");
            let mut server = ScramServer::new(m);
            let first = client.client_first("cnonce").expect("first");
            assert_eq!(first, b"n,,n=cell=2Cbroker=3D1,r=cnonce");
            let reply =
                server.client_first(&first, "snonce", |u| (u == user).then(|| cred.clone())).expect("sf");
            let last = client.client_final(&reply).expect("cf");
            let (v, who) = server.client_final(&last).expect("sfinal");
            assert_eq!(who, user);
            client.server_final(&v).expect("verified");
            assert!(client.is_done() && server.is_done());

            // A server that does not know the password cannot answer server-final.
            let mut client = ScramClient::new(m, user, "pw");
            client.client_first("cnonce").expect("first");
            client.client_final(b"r=cnonceX,s=c2FsdA==,i=4096").expect("cf");
            assert!(client.server_final(b"v=AAAA").is_err());
            assert!(!client.is_done());
        }
        let refused = |server_first: &[u8]| {
            let mut c = ScramClient::new(Mechanism::Sha256, "u", "pw");
            c.client_first("abc").expect("first");
            c.client_final(server_first).is_err()
        };
        assert!(refused(b"r=xyz,s=c2FsdA==,i=4096"), "a nonce not extending the client's");
        assert!(refused(b"r=abc,s=c2FsdA==,i=4096"), "a nonce the server added nothing to");
        assert!(refused(b"r=abcd,s=c2FsdA==,i=100000000"), "iterations beyond Kafka's bound");
        assert!(refused(b"r=abcd,s=,i=4096"), "an empty salt");
        assert!(refused(b"e=unknown-user"), "the server's error");
        assert!(refused(b"m=ext,r=abcd,s=c2FsdA==,i=4096"), "a mandatory extension");
        let mut c = ScramClient::new(Mechanism::Sha256, "u", "pw");
        assert!(c.client_first("a,b").is_err(), "a nonce with ','");
        assert!(!format!("{c:?}").contains("pw"), "Debug shows no password");
    }

    #[test]
    fn saslnames_decode_as_rfc_5802_says() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("a=2").as_deref(), None);
        assert_eq!(decode_saslname("a=2D").as_deref(), None);
        assert_eq!(decode_saslname("").as_deref(), None);
        assert_eq!(decode_saslname("ünï").as_deref(), Some("ünï"));
    }
}

//! The client side of Kafka's security protocols: TLS (rustls, through the caller's
//! connector) and SASL (SaslHandshake v1, then SaslAuthenticate) with PLAIN, SCRAM-SHA-256
//! and SCRAM-SHA-512. A broker uses it to reach its cell's inter-broker listener.
//!
//! Deliberately not here: re-authentication on the same connection (KIP-368). A server that
//! limits sessions says so in SaslAuthenticate; the connection tells its owner
//! ([`Connection::session_lifetime_ms`]) and the owner reconnects before the session ends.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kora_auth::scram::{Mechanism, ScramClient};
use kora_common::{Entropy, OsEntropy};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::{ClientError, Connection};

/// The SASL mechanisms this client logs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

/// A SASL login: mechanism, user name and password.
#[derive(Clone)]
pub struct SaslLogin {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How a connection is secured: TLS when `tls` is set (SSL, SASL_SSL), SASL when `sasl` is
/// (SASL_PLAINTEXT, SASL_SSL). The default is PLAINTEXT.
#[derive(Clone)]
pub struct ClientSecurity {
    /// The connector (trusted CAs, and a client certificate for mTLS); the server's
    /// certificate is checked against the host of the address dialled.
    pub tls: Option<TlsConnector>,
    pub sasl: Option<SaslLogin>,
    /// Where SCRAM's client nonces come from.
    pub entropy: Arc<dyn Entropy>,
}

impl Default for ClientSecurity {
    fn default() -> Self {
        Self { tls: None, sasl: None, entropy: Arc::new(OsEntropy) }
    }
}

impl fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecurity").field("tls", &self.tls.is_some()).field("sasl", &self.sasl).finish()
    }
}

/// Characters of a SCRAM client nonce.
const NONCE_CHARS: usize = 32;

impl ClientSecurity {
    /// The TLS handshake, if this connection has TLS.
    pub(crate) async fn wrap(
        &self,
        addr: &str,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<Stream, ClientError> {
        let Some(connector) = &self.tls else { return Ok(Stream::Plain(tcp)) };
        let tls_error = |message: String| ClientError::Tls { addr: addr.to_string(), message };
        let host = match addr.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
            None => addr,
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| tls_error(format!("'{host}' is not a name to check a certificate against: {e}")))?;
        let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.into(), what: "TLS handshake".into(), timeout })?
            .map_err(|e| tls_error(e.to_string()))?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// SaslHandshake v1, then the mechanism's SaslAuthenticate exchange.
pub(crate) async fn authenticate(
    c: &mut Connection,
    login: &SaslLogin,
    entropy: &dyn Entropy,
) -> Result<(), ClientError> {
    let failed =
        |c: &Connection, message: String| ClientError::Authentication { addr: c.addr.clone(), message };
    let req = SaslHandshakeRequest::default().with_mechanism(login.mechanism.name().to_string().into());
    let (_, resp) = c.send(&req, 1).await?;
    if resp.error_code != 0 {
        let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(failed(
            c,
            format!(
                "the listener does not serve {} (error {}; it serves {})",
                login.mechanism.name(),
                resp.error_code,
                offered.join(", ")
            ),
        ));
    }
    match login.mechanism {
        SaslMechanism::Plain => {
            let token = format!("\0{}\0{}", login.username, login.password);
            step(c, token.into_bytes()).await?;
        }
        SaslMechanism::Scram(m) => {
            let mut scram = ScramClient::new(m, &login.username, &login.password);
            let nonce = entropy.string(kora_common::entropy::ALPHANUMERIC, NONCE_CHARS);
            let first = scram.client_first(&nonce).map_err(|e| failed(c, e.to_string()))?;
            let server_first = step(c, first).await?;
            let last = scram.client_final(&server_first).map_err(|e| failed(c, e.to_string()))?;
            let server_final = step(c, last).await?;
            scram.server_final(&server_final).map_err(|e| failed(c, e.to_string()))?;
        }
    }
    Ok(())
}

/// One SaslAuthenticate round: the server's token, or its refusal.
async fn step(c: &mut Connection, token: Vec<u8>) -> Result<Bytes, ClientError> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let (_, resp) = c.send(&req, 2).await?;
    if resp.error_code != 0 {
        let message = resp.error_message.map(|m| m.to_string()).unwrap_or_default();
        return Err(ClientError::Authentication {
            addr: c.addr.clone(),
            message: format!("error {}: {message}", resp.error_code),
        });
    }
    c.session_lifetime_ms = resp.session_lifetime_ms;
    Ok(resp.auth_bytes)
}

/// A connection's byte stream: TCP, or TLS over TCP.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

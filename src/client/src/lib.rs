//! A small Kafka protocol client for Kora's own tools (`kora groups`, later `kora cell
//! status`): one connection per broker, requests answered in order, versions negotiated with
//! ApiVersions. It speaks to any Kafka-compatible broker.
//!
//! Deliberately not here: producing, consuming, retries and metadata caching. Tools that need
//! those use a real client (librdkafka); this one asks admin questions.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod admin;
mod security;
pub use admin::{Admin, BrokerInfo, ClusterDescription, PartitionInfo, Reassignment};
pub use kora_auth::scram::Mechanism as ScramMechanism;
use security::Stream;
pub use security::{ClientSecurity, SaslLogin, SaslMechanism};

/// Largest response accepted (a describe of a huge cluster stays far below).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{addr}: {what} timed out after {timeout:?}")]
    Timeout { addr: String, what: String, timeout: Duration },
    #[error("{addr}: I/O error: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr}: protocol error: {message}")]
    Protocol { addr: String, message: String },
    #[error("group '{0}' does not exist")]
    GroupNotFound(String),
    #[error("{addr} does not support {api:?} v{want} (it serves v{min}..=v{max})")]
    Unsupported { addr: String, api: ApiKey, want: i16, min: i16, max: i16 },
    #[error("{addr}: TLS: {message}")]
    Tls { addr: String, message: String },
    #[error("{addr}: SASL authentication failed: {message}")]
    Authentication { addr: String, message: String },
}

/// One connection to one broker.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: Stream,
    correlation_id: i32,
    client_id: StrBytes,
    timeout: Duration,
    versions: HashMap<i16, (i16, i16)>,
    /// What SaslAuthenticate said (KIP-368): the session ends this long after it (0: never).
    session_lifetime_ms: i64,
}

impl Connection {
    /// Connects to a PLAINTEXT listener and learns the broker's API versions.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::connect_with(addr, client_id, timeout, &ClientSecurity::default()).await
    }

    /// Connects with `security` (TLS, then SASL, as the listener's protocol says), learns the
    /// broker's API versions and, on a SASL listener, authenticates.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &ClientSecurity,
    ) -> Result<Self, ClientError> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.into(), what: "connect".into(), timeout })?
            .map_err(|source| ClientError::Connect { addr: addr.into(), source })?;
        let _ = tcp.set_nodelay(true);
        let stream = security.wrap(addr, tcp, timeout).await?;
        let mut c = Connection {
            addr: addr.to_string(),
            stream,
            correlation_id: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
            timeout,
            versions: HashMap::new(),
            session_lifetime_ms: 0,
        };
        let resp: ApiVersionsResponse = c.send_at(&ApiVersionsRequest::default(), 0).await?;
        if resp.error_code != 0 {
            return Err(c.protocol(format!("ApiVersions failed with error {}", resp.error_code)));
        }
        c.versions = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        if let Some(login) = &security.sasl {
            security::authenticate(&mut c, login, &*security.entropy).await?;
        }
        Ok(c)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How long after authenticating the server ends this connection's SASL session unless it
    /// re-authenticates (KIP-368); 0: never. Owners reconnect before then.
    pub fn session_lifetime_ms(&self) -> i64 {
        self.session_lifetime_ms
    }

    fn protocol(&self, message: String) -> ClientError {
        ClientError::Protocol { addr: self.addr.clone(), message }
    }

    /// The highest version both sides speak, at most `want`.
    pub fn version_for(&self, api: ApiKey, want: i16) -> Result<i16, ClientError> {
        let (min, max) = self.versions.get(&(api as i16)).copied().unwrap_or((0, -1));
        let v = want.min(max);
        if v < min || max < 0 {
            return Err(ClientError::Unsupported { addr: self.addr.clone(), api, want, min, max });
        }
        Ok(v)
    }

    /// Sends `req` at the highest version both sides speak, capped at `max_version`.
    pub async fn send<R>(&mut self, req: &R, max_version: i16) -> Result<(i16, R::Response), ClientError>
    where
        R: Request + Encodable,
        R::Response: Decodable,
    {
        let api =
            ApiKey::try_from(R::KEY).map_err(|_| self.protocol(format!("unknown api key {}", R::KEY)))?;
        let v = self.version_for(api, max_version.min(R::VERSIONS.max))?;
        Ok((v, self.send_at(req, v).await?))
    }

    async fn send_at<R>(&mut self, req: &R, version: i16) -> Result<R::Response, ClientError>
    where
        R: Request + Encodable,
        R::Response: Decodable,
    {
        let api =
            ApiKey::try_from(R::KEY).map_err(|_| self.protocol(format!("unknown api key {}", R::KEY)))?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()))
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| self.protocol(format!("encoding {api:?} header: {e}")))?;
        req.encode(&mut buf, version)
            .map_err(|e| self.protocol(format!("encoding {api:?} v{version}: {e}")))?;
        let size = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&size.to_be_bytes());
        let (addr, timeout) = (self.addr.clone(), self.timeout);
        let io = |source| ClientError::Io { addr: addr.clone(), source };
        let exchange = async {
            self.stream.write_all(&buf).await.map_err(io)?;
            let len = self.stream.read_i32().await.map_err(io)?;
            if len < 4 || len as usize > MAX_RESPONSE_BYTES {
                return Err(ClientError::Protocol {
                    addr: addr.clone(),
                    message: format!("response size {len}"),
                });
            }
            // Read into uninitialised capacity: a fetch response of tens of megabytes is not
            // zeroed first only to be overwritten.
            let mut body = BytesMut::with_capacity(len as usize);
            while body.len() < len as usize {
                let mut limited = (&mut self.stream).take((len as usize - body.len()) as u64);
                if limited.read_buf(&mut body).await.map_err(io)? == 0 {
                    return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Ok(body.freeze())
        };
        let mut body = tokio::time::timeout(timeout, exchange).await.map_err(|_| {
            ClientError::Timeout { addr: self.addr.clone(), what: format!("{api:?}"), timeout }
        })??;
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| self.protocol(format!("decoding {api:?} response header: {e}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(self.protocol(format!(
                "correlation id {} does not match request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        let resp = R::Response::decode(&mut body, version)
            .map_err(|e| self.protocol(format!("decoding {api:?} v{version} response: {e}")))?;
        if body.has_remaining() {
            return Err(
                self.protocol(format!("{} bytes left after {api:?} v{version} response", body.remaining()))
            );
        }
        Ok(resp)
    }
}

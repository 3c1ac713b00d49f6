//! The Kafka listener: one task per connection, requests handled in arrival order.
//!
//! Protocol of a connection: read a 4-byte big-endian size; refuse sizes outside
//! [8, socket.request.max.bytes] before allocating; read the frame; decode the header and
//! body with kafka-protocol; run the handler; queue the encoded response for the writer task.
//! Kafka clients may pipeline; answering strictly in request order is what the protocol
//! requires, and handling one request at a time per connection gives that for free while
//! bounding a connection's memory to one request plus a bounded queue of responses.
//! Frames that cannot be understood close the connection with one log line, as Kafka does.
//!
//! On an SSL or SASL_SSL listener the connection first completes a TLS handshake with the
//! listener's current acceptor (within `TLS_HANDSHAKE_TIMEOUT`), then runs the same loop over
//! the TLS stream. On SSL the client certificate gives the principal; on SASL_SSL, SASL does,
//! inside TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;
use kora_common::Clock;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::broker::Broker;
use crate::edge::ConnectionContext;
use crate::handlers::{self, api_versions_unsupported, supported_range};
use crate::metrics::ApiLabels;

/// Smallest legal request: api key, version, correlation id.
const MIN_FRAME_BYTES: usize = 8;
/// After a failed authentication's answer, how long the connection stays open for the client
/// to read it and close first (Kafka waits connection.failed.authentication.delay.ms, 100 ms,
/// before it answers).
const FAILED_AUTH_CLOSE_DELAY: Duration = Duration::from_millis(100);
/// Encoded responses queued per connection before the handler waits for the socket.
const RESPONSE_QUEUE_DEPTH: usize = 16;
/// Longest a client may take to complete the TLS handshake of an SSL or SASL_SSL listener.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do after a request.
pub enum Outcome {
    Respond(Bytes),
    /// A response in parts, written with vectored writes (record bytes straight from the
    /// log's buffers; see `zero_copy`).
    RespondParts(Vec<Bytes>),
    /// acks=0 produce: no response.
    Silent,
    /// Answer, then close the connection (a failed authentication); the reason is logged.
    RespondThenClose(Bytes, String),
    /// Close the connection; the reason is logged once.
    Close(String),
}

/// What the connection loop asks of a server: handle one request frame. The broker and the
/// benchmark sink implement it; both share the framing, limits and ordering below.
pub trait FrameHandler: Send + Sync + 'static {
    /// Handles one request of the connection `ctx` describes (requests of a connection arrive
    /// one at a time, so a handler may update the context, as authentication will).
    fn handle(
        &self,
        frame: Bytes,
        ctx: &mut ConnectionContext,
    ) -> impl std::future::Future<Output = Outcome> + Send;
    fn max_frame_bytes(&self) -> usize;
    fn stopping(&self) -> bool;
    /// The clock the connection loop waits on (the back-off after a failed accept).
    fn clock(&self) -> &dyn Clock;
    fn connection_opened(&self) {}
    fn connection_closed(&self) {}
    /// How long a response of `bytes` ready at `now` waits before it is sent (an injected slow
    /// network); None: not at all.
    fn send_delay(&self, _bytes: usize, _now: Instant) -> Option<Duration> {
        None
    }
    /// A response of `bytes` left for the client `waited` after it was ready (queued behind
    /// the connection's earlier answers and the socket's buffer); `conn`: the connection's
    /// tally.
    fn response_sent(
        &self,
        _bytes: usize,
        _waited: Duration,
        _conn: &mut crate::quota_sync::ConnectionSends,
    ) {
    }
}

impl FrameHandler for Broker {
    fn handle(
        &self,
        frame: Bytes,
        ctx: &mut ConnectionContext,
    ) -> impl std::future::Future<Output = Outcome> + Send {
        handle_frame(self, frame, ctx)
    }
    fn max_frame_bytes(&self) -> usize {
        self.config.socket_request_max_bytes
    }
    fn stopping(&self) -> bool {
        self.is_shutting_down()
    }
    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
    fn connection_opened(&self) {
        self.metrics.connections.inc();
    }
    fn connection_closed(&self) {
        self.metrics.connections.dec();
    }
    fn send_delay(&self, bytes: usize, now: Instant) -> Option<Duration> {
        self.faults.delay(crate::faults::Device::Link, bytes, now)
    }
    fn response_sent(&self, bytes: usize, waited: Duration, conn: &mut crate::quota_sync::ConnectionSends) {
        let slow_after = self.quotas.config.send_ms.map(Duration::from_millis);
        self.usage.response_sent(bytes, waited, slow_after, conn);
    }
}

/// What a listener's connections start as: its name, security protocol and, on SSL and
/// SASL_SSL, the TLS acceptor.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub protocol: crate::listeners::SecurityProtocol,
    /// Required when `protocol` is SSL or SASL_SSL (a TLS listener without it refuses every
    /// connection); ignored otherwise.
    pub tls: Option<crate::listeners::ListenerTls>,
}

impl Listener {
    pub fn plaintext() -> Self {
        Listener {
            name: "PLAINTEXT".into(),
            protocol: crate::listeners::SecurityProtocol::Plaintext,
            tls: None,
        }
    }

    /// The listener a configured one serves.
    pub fn of(config: &crate::listeners::ListenerConfig) -> Self {
        Listener { name: config.name.clone(), protocol: config.protocol, tls: config.tls.clone() }
    }
}

/// Accepts connections until `shutdown` changes, each holding one of `slots` (max.connections,
/// shared by every listener of a broker).
pub async fn serve<H: FrameHandler>(
    listener: TcpListener,
    kind: Listener,
    handler: Arc<H>,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let kind = Arc::new(kind);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        handler.clock().sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, listener = %kind.name, "max.connections reached; refusing connection");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let h = handler.clone();
                let kind = kind.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if kind.protocol.tls() {
                        tls_connection(h, stream, peer, kind).await;
                    } else {
                        let (rd, wr) = stream.into_split();
                        let ctx = ConnectionContext::new(&kind.name, kind.protocol, peer);
                        connection(h, rd, wr, ctx).await;
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// The TLS handshake of a connection to an SSL or SASL_SSL listener, then its request loop
/// over the TLS stream. A handshake that fails or takes too long is logged in one line and the
/// connection closed.
async fn tls_connection<H: FrameHandler>(
    h: Arc<H>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
) {
    let Some(tls) = &listener.tls else {
        let name = &listener.name;
        tracing::error!(%peer, listener = %name, "TLS listener without TLS settings; closing connection");
        return;
    };
    let acceptor = tls.server.acceptor();
    let stream = match kora_common::timeout(h.clock(), TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let name = &listener.name;
            tracing::info!(%peer, listener = %name, error = %e, "TLS handshake failed; closing connection");
            return;
        }
        Err(_) => {
            tracing::info!(
                %peer,
                listener = %listener.name,
                timeout_ms = TLS_HANDSHAKE_TIMEOUT.as_millis() as u64,
                "TLS handshake timed out; closing connection"
            );
            return;
        }
    };
    let mut ctx = ConnectionContext::new(&listener.name, listener.protocol, peer);
    if !listener.protocol.sasl() {
        // SSL: the client certificate is the identity (Kafka's SslPrincipalMapper); a client
        // no rule maps is refused, as Kafka refuses it.
        match tls.server.principal(stream.get_ref().1) {
            Ok(name) => ctx.set_ssl_principal(name),
            Err(e) => {
                tracing::info!(
                    %peer,
                    listener = %listener.name,
                    error = %e,
                    "no principal for the client certificate; closing connection"
                );
                return;
            }
        }
    }
    let (rd, wr) = tokio::io::split(stream);
    connection(h, rd, wr, ctx).await;
}

/// The request loop of one connection, over its read and write halves (a TCP stream's, or a
/// TLS stream's).
async fn connection<H, R, W>(h: Arc<H>, rd: R, mut wr: W, mut ctx: ConnectionContext)
where
    H: FrameHandler,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    h.connection_opened();
    let peer = ctx.peer;
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    // Responses in order, each with when it was ready.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<Bytes>)>(RESPONSE_QUEUE_DEPTH);
    let hw = h.clone();
    let writer = tokio::spawn(async move {
        let mut sends = crate::quota_sync::ConnectionSends::default();
        while let Some((ready, parts)) = rx.recv().await {
            let bytes = parts.iter().map(Bytes::len).sum();
            if let Some(wait) = hw.send_delay(bytes, hw.clock().now()) {
                hw.clock().sleep(wait).await;
            }
            if crate::zero_copy::write_parts(&mut wr, &parts).await.is_err() {
                break;
            }
            hw.response_sent(bytes, hw.clock().elapsed(ready), &mut sends);
        }
        let _ = wr.shutdown().await;
    });
    let max = h.max_frame_bytes();
    // EOF or a reset ends the loop: the client went away.
    while let Ok(len) = rd.read_i32().await {
        if len < MIN_FRAME_BYTES as i32 || len as usize > max {
            tracing::warn!(%peer, size = len, max, "request size outside [8, socket.request.max.bytes]; closing connection");
            break;
        }
        let mut buf = BytesMut::zeroed(len as usize);
        if rd.read_exact(&mut buf).await.is_err() {
            break;
        }
        match h.handle(buf.freeze(), &mut ctx).await {
            Outcome::Respond(bytes) => {
                if tx.send((h.clock().now(), vec![bytes])).await.is_err() {
                    break;
                }
            }
            Outcome::RespondParts(parts) => {
                if tx.send((h.clock().now(), parts)).await.is_err() {
                    break;
                }
            }
            Outcome::Silent => {}
            Outcome::RespondThenClose(bytes, reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                let _ = tx.send((h.clock().now(), vec![bytes])).await;
                // Give the client the answer before the close: some (kafka-python) drop data
                // that arrives with the connection's end. What it sends meanwhile is ignored.
                let drain = async {
                    let mut sink = [0u8; 1024];
                    while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
                };
                let _ = kora_common::timeout(h.clock(), FAILED_AUTH_CLOSE_DELAY, drain).await;
                break;
            }
            Outcome::Close(reason) => {
                tracing::warn!(%peer, %reason, "closing connection");
                break;
            }
        }
        if h.stopping() {
            break;
        }
        // A throttled connection is muted (KIP-219): its answer is on its way, and its next
        // request is read once the throttle time is over.
        if let Some(until) = ctx.mute_until.take() {
            h.clock().sleep_until(until).await;
        }
    }
    drop(tx);
    let _ = writer.await;
    h.connection_closed();
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

/// A request frame decoded and checked against our supported versions.
#[derive(Debug)]
pub enum Decoded {
    Request {
        api_key: ApiKey,
        version: i16,
        header: Box<RequestHeader>,
        body: Box<RequestKind>,
    },
    /// An ApiVersions request at a version we do not know: answer v0 with our ranges.
    UnsupportedApiVersions {
        correlation_id: i32,
    },
}

/// Decodes one request frame (the bytes after the size prefix). Pure: no I/O, no state; the
/// fuzz target drives it. `Err` carries the reason to log before closing the connection.
pub fn decode_frame(frame: Bytes) -> Result<Decoded, String> {
    if frame.len() < MIN_FRAME_BYTES {
        return Err(format!("frame of {} bytes is shorter than a request header", frame.len()));
    }
    let raw_key = be_i16(&frame[0..2]);
    let version = be_i16(&frame[2..4]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Err(format!("unknown API key {raw_key}"));
    };
    let Some(range) = supported_range(api_key) else {
        return Err(format!("API {api_key:?} is not supported"));
    };
    if version < range.0 || version > range.1 {
        if api_key == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        return Err(format!("{api_key:?} v{version} is outside our range {}..={}", range.0, range.1));
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version))
        .map_err(|e| format!("malformed {api_key:?} v{version} request header: {e}"))?;
    let request = RequestKind::decode(api_key, &mut body, version)
        .map_err(|e| format!("malformed {api_key:?} v{version} request: {e}"))?;
    Ok(Decoded::Request { api_key, version, header: Box::new(header), body: Box::new(request) })
}

/// Decodes, handles and encodes one request frame.
pub(crate) async fn handle_frame(b: &Broker, frame: Bytes, ctx: &mut ConnectionContext) -> Outcome {
    if ctx.expects_raw_token() {
        // After SaslHandshake v0 the client's tokens are bare frames; so are our answers.
        return match handlers::sasl::raw_token(&b.security(), ctx, &frame).await {
            Ok(token) => {
                let mut out = BytesMut::with_capacity(4 + token.len());
                out.extend_from_slice(&(token.len() as u32).to_be_bytes());
                out.extend_from_slice(&token);
                Outcome::Respond(out.freeze())
            }
            Err(reason) => Outcome::Close(format!("SASL authentication failed: {reason}")),
        };
    }
    let outcome = handle_request(b, frame, ctx).await;
    // A failed authentication is answered, then the connection closes.
    match (&ctx.authentication, outcome) {
        (crate::edge::Authentication::Failed(reason), Outcome::Respond(bytes)) => {
            Outcome::RespondThenClose(bytes, reason.clone())
        }
        (_, outcome) => outcome,
    }
}

async fn handle_request(b: &Broker, frame: Bytes, ctx: &mut ConnectionContext) -> Outcome {
    let request_bytes = frame.len() + 4;
    let (api_key, version, header, request) = match decode_frame(frame) {
        Ok(Decoded::Request { api_key, version, header, body }) => (api_key, version, *header, *body),
        // Answer with v0 so any client can read our ranges and retry (KIP-511).
        Ok(Decoded::UnsupportedApiVersions { correlation_id }) => {
            return encode(correlation_id, ApiKey::ApiVersions, 0, api_versions_unsupported().into())
        }
        Err(reason) => return Outcome::Close(reason),
    };
    let correlation_id = header.correlation_id;
    let started = b.clock.now();
    let response = handlers::dispatch(b, ctx, &header, request, request_bytes).await;
    let labels = ApiLabels { api: api_name(api_key) };
    b.metrics.request_latency.get_or_create(&labels).observe(b.clock.elapsed(started).as_secs_f64());
    b.metrics.requests.get_or_create(&labels).inc();
    match response {
        Ok(Some(ResponseKind::Fetch(resp))) => {
            match crate::zero_copy::encode_fetch(correlation_id, version, resp) {
                Ok(parts) => Outcome::RespondParts(parts),
                Err(reason) => Outcome::Close(reason),
            }
        }
        Ok(Some(resp)) => encode(correlation_id, api_key, version, resp),
        Ok(None) => Outcome::Silent,
        Err(reason) => Outcome::Close(reason),
    }
}

/// Frames a response: size, header for `api_key`/`version`, body.
pub fn encode(correlation_id: i32, api_key: ApiKey, version: i16, resp: ResponseKind) -> Outcome {
    match crate::zero_copy::encode_bytes(correlation_id, api_key, version, resp) {
        Ok(b) => Outcome::Respond(b),
        Err(reason) => Outcome::Close(reason),
    }
}

pub(crate) fn api_name(k: ApiKey) -> &'static str {
    match k {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    //! TLS listeners over loopback with rcgen certificates: the SSL principal, SASL_SSL leaving
    //! it to SASL, the handshake bound, and a response in parts (the vectored writer) over TLS.

    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use bytes::BufMut;
    use kora_common::{ManualClock, SystemClock};
    use kora_tls::{server_name, ClientTls, ServerTls, TlsSettings};
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair};

    use super::*;
    use crate::listeners::{ListenerTls, SecurityProtocol};

    const FILLER: usize = 100_000;

    /// Answers every frame with the connection's principal, then `FILLER` bytes in their own
    /// part: `[u32 size][u16 n][principal: n bytes][filler]`.
    struct Who {
        clock: Arc<dyn Clock>,
    }

    impl FrameHandler for Who {
        fn handle(
            &self,
            _frame: Bytes,
            ctx: &mut ConnectionContext,
        ) -> impl std::future::Future<Output = Outcome> + Send {
            let who = ctx.principal.to_string();
            async move {
                let mut head = BytesMut::new();
                head.put_u32((2 + who.len() + FILLER) as u32);
                head.put_u16(who.len() as u16);
                head.extend_from_slice(who.as_bytes());
                Outcome::RespondParts(vec![head.freeze(), Bytes::from(vec![7u8; FILLER])])
            }
        }
        fn max_frame_bytes(&self) -> usize {
            1 << 20
        }
        fn stopping(&self) -> bool {
            false
        }
        fn clock(&self) -> &dyn Clock {
            &*self.clock
        }
    }

    struct Pki {
        ca_pem: String,
        server: (String, String),
        client: (String, String),
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name.push(DnType::CommonName, "Test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |sans: Vec<String>, dn: &[(DnType, &str)]| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name = DistinguishedName::new();
            for (ty, v) in dn {
                params.distinguished_name.push(ty.clone(), *v);
            }
            (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
        };
        let server = leaf(vec!["127.0.0.1".into()], &[(DnType::CommonName, "kora")]);
        let client = leaf(
            vec![],
            &[
                (DnType::CountryName, "US"),
                (DnType::OrganizationName, "Acme"),
                (DnType::OrganizationalUnitName, "eng"),
                (DnType::CommonName, "alice"),
            ],
        );
        Pki { ca_pem, server, client }
    }

    fn settings(pairs: &[(&str, &str)]) -> TlsSettings {
        let map: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TlsSettings::from_map(&map).unwrap()
    }

    /// Serves a TLS listener (client certificates requested) with `Who`; its address.
    async fn listen(pki: &Pki, protocol: SecurityProtocol, rules: &str, clock: Arc<dyn Clock>) -> SocketAddr {
        let mut pairs = vec![
            ("ssl.keystore.certificate.chain", pki.server.0.as_str()),
            ("ssl.keystore.key", pki.server.1.as_str()),
            ("ssl.truststore.certificates", pki.ca_pem.as_str()),
            ("ssl.client.auth", "requested"),
        ];
        if !rules.is_empty() {
            pairs.push(("ssl.principal.mapping.rules", rules));
        }
        let server = Arc::new(ServerTls::new(settings(&pairs)).unwrap());
        let kind = Listener {
            name: protocol.name().into(),
            protocol,
            tls: Some(ListenerTls { server, reload_interval: None }),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            serve(listener, kind, Arc::new(Who { clock }), Arc::new(Semaphore::new(16)), rx).await;
            drop(tx);
        });
        addr
    }

    /// Connects with TLS (with the client certificate if `mtls`), sends one request frame and
    /// returns the principal the server answered with; Err when the connection failed.
    async fn who(pki: &Pki, addr: SocketAddr, mtls: bool) -> Result<String, String> {
        let mut pairs = vec![("ssl.truststore.certificates", pki.ca_pem.as_str())];
        if mtls {
            pairs.push(("ssl.keystore.certificate.chain", pki.client.0.as_str()));
            pairs.push(("ssl.keystore.key", pki.client.1.as_str()));
        }
        let connector = ClientTls::new(settings(&pairs)).unwrap().connector();
        let talk = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let mut tls =
                connector.connect(server_name("127.0.0.1").unwrap(), tcp).await.map_err(|e| e.to_string())?;
            tls.write_all(&[0, 0, 0, 8, 0, 18, 0, 0, 0, 0, 0, 1]).await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            let size = tls.read_u32().await.map_err(|e| e.to_string())? as usize;
            let mut body = vec![0u8; size];
            tls.read_exact(&mut body).await.map_err(|e| e.to_string())?;
            let n = u16::from_be_bytes([body[0], body[1]]) as usize;
            assert_eq!(size, 2 + n + FILLER);
            assert!(body[2 + n..].iter().all(|b| *b == 7), "the filler part arrives intact");
            Ok(String::from_utf8(body[2..2 + n].to_vec()).unwrap())
        };
        tokio::time::timeout(Duration::from_secs(10), talk).await.expect("client timed out")
    }

    #[tokio::test]
    async fn an_ssl_connection_is_its_certificates_principal() {
        let pki = pki();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ssl = listen(&pki, SecurityProtocol::Ssl, "", clock.clone()).await;
        assert_eq!(who(&pki, ssl, true).await.unwrap(), "User:CN=alice,OU=eng,O=Acme,C=US");
        assert_eq!(who(&pki, ssl, false).await.unwrap(), "User:ANONYMOUS");
        // ssl.principal.mapping.rules rewrite it; a subject no rule maps is refused.
        let mapped = listen(&pki, SecurityProtocol::Ssl, "RULE:^CN=(.*?),OU=.*$/$1/L", clock.clone()).await;
        assert_eq!(who(&pki, mapped, true).await.unwrap(), "User:alice");
        let unmapped = listen(&pki, SecurityProtocol::Ssl, "RULE:^CN=bob,.*$/bob/", clock.clone()).await;
        assert!(who(&pki, unmapped, true).await.is_err());
        // On SASL_SSL the certificate is not the identity: SASL gives it, inside TLS.
        let sasl_ssl = listen(&pki, SecurityProtocol::SaslSsl, "", clock).await;
        assert_eq!(who(&pki, sasl_ssl, true).await.unwrap(), "User:ANONYMOUS");
    }

    #[tokio::test]
    async fn a_stalled_or_plaintext_handshake_closes_the_connection() {
        let pki = pki();
        let manual = Arc::new(ManualClock::new(0));
        let addr = listen(&pki, SecurityProtocol::Ssl, "", manual.clone()).await;
        // A Kafka request in plaintext is no TLS ClientHello: closed at once (after an alert).
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(&[0, 0, 0, 8, 0, 18, 0, 0, 0, 0, 0, 1]).await.unwrap();
        let mut buf = [0u8; 64];
        let drained = async { while matches!(plain.read(&mut buf).await, Ok(n) if n > 0) {} };
        tokio::time::timeout(Duration::from_secs(5), drained).await.expect("closed at once");
        // A client that never sends its ClientHello is closed once the handshake timeout passes
        // on the listener's clock, not before.
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        let mut advanced = Duration::ZERO;
        let closed = loop {
            match tokio::time::timeout(Duration::from_millis(20), stalled.read(&mut buf)).await {
                Ok(r) => break r,
                Err(_) => {
                    assert!(advanced < Duration::from_secs(60), "still open after 60 s of clock time");
                    manual.advance_ms(500);
                    advanced += Duration::from_millis(500);
                }
            }
        };
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        assert!(advanced >= TLS_HANDSHAKE_TIMEOUT, "closed after {advanced:?}");
        // The listener carries on.
        assert_eq!(who(&pki, addr, true).await.unwrap(), "User:CN=alice,OU=eng,O=Acme,C=US");
    }

    /// `Who` behind a slow link: every response waits `delay` to be sent; the waits reported.
    struct SlowWho {
        who: Who,
        delay: Duration,
        sent: parking_lot::Mutex<Vec<Duration>>,
    }

    impl FrameHandler for SlowWho {
        fn handle(
            &self,
            frame: Bytes,
            ctx: &mut ConnectionContext,
        ) -> impl std::future::Future<Output = Outcome> + Send {
            self.who.handle(frame, ctx)
        }
        fn max_frame_bytes(&self) -> usize {
            self.who.max_frame_bytes()
        }
        fn stopping(&self) -> bool {
            false
        }
        fn clock(&self) -> &dyn Clock {
            self.who.clock()
        }
        fn send_delay(&self, _bytes: usize, _now: Instant) -> Option<Duration> {
            Some(self.delay)
        }
        fn response_sent(
            &self,
            _bytes: usize,
            waited: Duration,
            _conn: &mut crate::quota_sync::ConnectionSends,
        ) {
            self.sent.lock().push(waited);
        }
    }

    #[tokio::test]
    async fn responses_wait_for_the_link_and_report_how_long_they_took_to_leave() {
        let h = Arc::new(SlowWho {
            who: Who { clock: Arc::new(SystemClock) },
            delay: Duration::from_millis(100),
            sent: Default::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(serve(listener, Listener::plaintext(), h.clone(), Arc::new(Semaphore::new(4)), rx));
        let mut c = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        // Two requests at once: the second answer queues behind the first one's wait.
        for _ in 0..2 {
            c.write_all(&[0, 0, 0, 8, 0, 18, 0, 0, 0, 0, 0, 1]).await.unwrap();
        }
        for _ in 0..2 {
            let size = c.read_u32().await.unwrap() as usize;
            let mut body = vec![0u8; size];
            c.read_exact(&mut body).await.unwrap();
        }
        assert!(started.elapsed() >= Duration::from_millis(200), "each answer waited for the link");
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.sent.lock().len() < 2 {
            assert!(Instant::now() < deadline, "both responses reported");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sent = h.sent.lock().clone();
        assert!(sent[0] >= Duration::from_millis(100), "{sent:?}");
        assert!(sent[1] >= Duration::from_millis(150), "the second waited behind the first: {sent:?}");
    }
}

//! The Kafka listener: one task per connection, requests handled in arrival order.
//!
//! Protocol of a connection: read a 4-byte big-endian size; refuse sizes outside
//! [8, socket.request.max.bytes] before allocating; read the frame; decode the header and
//! body with kafka-protocol; run the handler; queue the encoded response for the writer task.
//! Kafka clients may pipeline; answering strictly in request order is what the protocol
//! requires, and handling one request at a time per connection gives that for free while
//! bounding a connection's memory to one request plus a bounded queue of responses.
//! Frames that cannot be understood close the connection with one log line, as Kafka does.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;
use kora_common::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
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
const FAILED_AUTH_CLOSE_DELAY: std::time::Duration = std::time::Duration::from_millis(100);
/// Encoded responses queued per connection before the handler waits for the socket.
const RESPONSE_QUEUE_DEPTH: usize = 16;

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
}

/// What a listener's connections start as: its name and security protocol.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub protocol: crate::listeners::SecurityProtocol,
}

impl Listener {
    pub fn plaintext() -> Self {
        Listener { name: "PLAINTEXT".into(), protocol: crate::listeners::SecurityProtocol::Plaintext }
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
                        handler.clock().sleep(std::time::Duration::from_millis(10)).await;
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
                    connection(h, stream, peer, kind).await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection<H: FrameHandler>(
    h: Arc<H>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
) {
    h.connection_opened();
    let mut ctx = ConnectionContext::new(&listener.name, listener.protocol, peer);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(RESPONSE_QUEUE_DEPTH);
    let writer = tokio::spawn(async move {
        while let Some(parts) = rx.recv().await {
            if crate::zero_copy::write_parts(&mut wr, &parts).await.is_err() {
                break;
            }
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
                if tx.send(vec![bytes]).await.is_err() {
                    break;
                }
            }
            Outcome::RespondParts(parts) => {
                if tx.send(parts).await.is_err() {
                    break;
                }
            }
            Outcome::Silent => {}
            Outcome::RespondThenClose(bytes, reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                let _ = tx.send(vec![bytes]).await;
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
    let response = handlers::dispatch(b, ctx, &header, request).await;
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

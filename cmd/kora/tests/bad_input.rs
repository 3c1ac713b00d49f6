//! Malformed and hostile input over raw TCP: the broker answers with the right Kafka error code
//! or closes that one connection, and keeps serving everyone else.

mod common;

use common::raw::{batch, connect, fetch_partition0, produce, read_frame, request, send_frame};

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use common::Kora;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    ProduceRequest, ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

fn assert_closed(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection to close, read {n} bytes"),
    }
}

fn assert_alive(k: &Kora) {
    let mut s = connect(k);
    let r: ApiVersionsResponse =
        request(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).expect("alive");
    assert_eq!(r.error_code, 0);
}

fn produce_error(resp: &ProduceResponse) -> i16 {
    resp.responses[0].partition_responses[0].error_code
}

fn create(s: &mut TcpStream, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let t = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let r: CreateTopicsResponse = request(
        s,
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(5000),
    )
    .expect("create response");
    r.topics[0].error_code
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let k = Kora::start(&["--set", "socket.request.max.bytes=1048576"]);
    // Oversized: refused before allocating.
    let mut s = connect(&k);
    s.write_all(&i32::MAX.to_be_bytes()).expect("write");
    assert_closed(&mut s);
    // Negative and too-small sizes.
    for size in [-5i32, 3] {
        let mut s = connect(&k);
        s.write_all(&size.to_be_bytes()).expect("write");
        assert_closed(&mut s);
    }
    // Unknown API key.
    let mut s = connect(&k);
    send_frame(&mut s, &[0x7f, 0x00, 0, 1, 0, 0, 0, 1, 0xff, 0xff]);
    assert_closed(&mut s);
    // A Metadata request claiming 2^31-1 topics in a 20-byte frame must not allocate for them.
    let mut s = connect(&k);
    let mut body = vec![0, 3, 0, 1, 0, 0, 0, 9, 0xff, 0xff];
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    send_frame(&mut s, &body);
    assert_closed(&mut s);
    // Truncated frame then hang-up.
    let mut s = connect(&k);
    s.write_all(&100i32.to_be_bytes()).expect("write");
    s.write_all(&[0u8; 10]).expect("write");
    drop(s);
    // Garbage body for a known API.
    let mut s = connect(&k);
    send_frame(&mut s, &[0, 0, 0, 9, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    assert_closed(&mut s);
    assert_alive(&k);
}

#[test]
fn api_versions_from_the_future_gets_our_ranges() {
    let k = Kora::start(&[]);
    let mut s = connect(&k);
    let mut buf = BytesMut::new();
    // ApiVersions v99: header v1 (no tagged fields) as a client from the future would send.
    buf.extend_from_slice(&[0, 18, 0, 99, 0, 0, 0, 5, 0, 1, b'x']);
    send_frame(&mut s, &buf);
    let mut resp = read_frame(&mut s).expect("a v0 answer");
    let h = ResponseHeader::decode(&mut resp, 0).expect("header v0");
    assert_eq!(h.correlation_id, 5);
    let r = ApiVersionsResponse::decode(&mut resp, 0).expect("v0 body");
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    let produce = r.api_keys.iter().find(|a| a.api_key == 0).expect("Produce listed");
    assert_eq!((produce.min_version, produce.max_version), (3, 13));
}

#[test]
fn bad_produce_and_admin_requests_get_kafka_error_codes() {
    let k = Kora::start(&["--set", "auto.create.topics.enable=false"]);
    let mut s = connect(&k);
    assert_eq!(create(&mut s, "good", 1, &[("max.message.bytes", "2000")]), 0);
    assert_eq!(create(&mut s, "good", 1, &[]), 36, "TOPIC_ALREADY_EXISTS");
    assert_eq!(create(&mut s, "bad/name", 1, &[]), 17, "INVALID_TOPIC_EXCEPTION");
    assert_eq!(create(&mut s, &"x".repeat(250), 1, &[]), 17, "name too long");
    assert_eq!(create(&mut s, "cfg", 1, &[("retention.ms", "soon")]), 40, "INVALID_CONFIG");
    assert_eq!(create(&mut s, "cfg", 1, &[("no.such.config", "1")]), 40, "unknown config");
    assert_eq!(create(&mut s, "parts", 0, &[]), 37, "INVALID_PARTITIONS");

    let good = batch(3, 10);
    assert_eq!(produce_error(&produce(&mut s, "good", -1, good.clone())), 0);
    assert_eq!(produce_error(&produce(&mut s, "missing", -1, good.clone())), 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(produce_error(&produce(&mut s, "good", 5, good.clone())), 21, "INVALID_REQUIRED_ACKS");
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    assert_eq!(produce_error(&produce(&mut s, "good", -1, Bytes::from(corrupt))), 2, "CORRUPT_MESSAGE");
    let mut magic1 = good.to_vec();
    magic1[16] = 1;
    assert_eq!(produce_error(&produce(&mut s, "good", -1, Bytes::from(magic1))), 87, "INVALID_RECORD");
    assert_eq!(
        produce_error(&produce(&mut s, "good", -1, good.slice(..good.len() - 4))),
        2,
        "truncated batch"
    );
    let two = [good.clone(), good.clone()].concat();
    assert_eq!(produce_error(&produce(&mut s, "good", -1, Bytes::from(two))), 87, "one batch per partition");
    assert_eq!(produce_error(&produce(&mut s, "good", -1, batch(1, 5000))), 10, "MESSAGE_TOO_LARGE");

    // Only the first good batch landed.
    assert_eq!(fetch_partition0(&mut s, "good", 0), (0, 3));
    assert_eq!(fetch_partition0(&mut s, "good", 99).0, 1, "OFFSET_OUT_OF_RANGE");
    // acks=0 with an error: no response, the connection closes so the client notices.
    let req = ProduceRequest::default().with_acks(0).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("missing")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(good))]),
    ]);
    assert!(request::<_, ProduceResponse>(&mut s, ApiKey::Produce, 9, &req).is_none());
    assert_alive(&k);
}

#[test]
fn max_connections_is_enforced() {
    let k = Kora::start(&["--set", "max.connections=2"]);
    let mut a = connect(&k);
    let mut b = connect(&k);
    let r: ApiVersionsResponse =
        request(&mut a, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).expect("a");
    assert_eq!(r.error_code, 0);
    let r: ApiVersionsResponse =
        request(&mut b, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).expect("b");
    assert_eq!(r.error_code, 0);
    // The third is accepted by the kernel and closed by the broker at once.
    let mut c = connect(&k);
    assert!(request::<_, ApiVersionsResponse>(
        &mut c,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
    )
    .is_none());
    // A slot frees when a connection closes.
    drop(a);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut d = connect(&k);
    assert!(request::<_, ApiVersionsResponse>(
        &mut d,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
    )
    .is_some());
}

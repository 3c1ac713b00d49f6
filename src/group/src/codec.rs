//! Byte layouts: the records of the internal offsets log and the consumer protocol's
//! subscription and assignment blobs.
//!
//! Offset commits and classic group metadata use Kafka's own layouts (OffsetCommitKey v1 /
//! OffsetCommitValue v3, GroupMetadataKey v2 / GroupMetadataValue v3), so tools that read
//! `__consumer_offsets` understand them. KIP-848 groups use Kora's layouts under Kafka's key
//! versions 3 (group epoch) and 5 (member, including its assignment). A record with a null
//! value is a tombstone for its key. Decoding never trusts a length: every read is bounded by
//! the bytes that remain.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::GroupError;

pub(crate) type Partitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// The key of an internal-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset { group: String, topic: String, partition: i32 },
    ClassicGroup { group: String },
    ConsumerGroup { group: String },
    ConsumerMember { group: String, member_id: String },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::ClassicGroup { group }
            | RecordKey::ConsumerGroup { group }
            | RecordKey::ConsumerMember { group, .. } => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicGroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<ClassicMemberValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupValue {
    pub epoch: i32,
    pub assignor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerMemberValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub assigned: Partitions,
    pub pending_revocation: Partitions,
}

/// A decoded record value; `None` in [`decode_record`] is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    Offset(OffsetValue),
    ClassicGroup(ClassicGroupValue),
    ConsumerGroup(ConsumerGroupValue),
    ConsumerMember(Box<ConsumerMemberValue>),
}

// ---- writing -------------------------------------------------------------------------------

fn put_str(b: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= i16::MAX as usize);
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn put_partitions(b: &mut BytesMut, p: &Partitions) {
    b.put_i32(p.len() as i32);
    for (topic, parts) in p {
        b.put_slice(topic.as_bytes());
        b.put_i32(parts.len() as i32);
        for &x in parts {
            b.put_i32(x);
        }
    }
}

pub fn encode_key(k: &RecordKey) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    match k {
        RecordKey::Offset { group, topic, partition } => {
            b.put_i16(1);
            put_str(&mut b, group);
            put_str(&mut b, topic);
            b.put_i32(*partition);
        }
        RecordKey::ClassicGroup { group } => {
            b.put_i16(2);
            put_str(&mut b, group);
        }
        RecordKey::ConsumerGroup { group } => {
            b.put_i16(3);
            put_str(&mut b, group);
        }
        RecordKey::ConsumerMember { group, member_id } => {
            b.put_i16(5);
            put_str(&mut b, group);
            put_str(&mut b, member_id);
        }
    }
    b.freeze()
}

pub fn encode_value(v: &RecordValue) -> Bytes {
    let mut b = BytesMut::with_capacity(128);
    match v {
        RecordValue::Offset(o) => {
            b.put_i16(3);
            b.put_i64(o.offset);
            b.put_i32(o.leader_epoch);
            put_str(&mut b, &o.metadata);
            b.put_i64(o.commit_timestamp_ms);
        }
        RecordValue::ClassicGroup(g) => {
            b.put_i16(3);
            put_str(&mut b, &g.protocol_type);
            b.put_i32(g.generation);
            put_opt_str(&mut b, g.protocol.as_deref());
            put_opt_str(&mut b, g.leader.as_deref());
            b.put_i64(g.state_timestamp_ms);
            b.put_i32(g.members.len() as i32);
            for m in &g.members {
                put_str(&mut b, &m.member_id);
                put_opt_str(&mut b, m.instance_id.as_deref());
                put_str(&mut b, &m.client_id);
                put_str(&mut b, &m.client_host);
                b.put_i32(m.rebalance_timeout_ms);
                b.put_i32(m.session_timeout_ms);
                put_bytes(&mut b, &m.subscription);
                put_bytes(&mut b, &m.assignment);
            }
        }
        RecordValue::ConsumerGroup(g) => {
            b.put_i16(0);
            b.put_i32(g.epoch);
            put_str(&mut b, &g.assignor);
        }
        RecordValue::ConsumerMember(m) => {
            b.put_i16(0);
            put_opt_str(&mut b, m.instance_id.as_deref());
            put_opt_str(&mut b, m.rack_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.subscribed_topic_names.len() as i32);
            for t in &m.subscribed_topic_names {
                put_str(&mut b, t);
            }
            put_opt_str(&mut b, m.subscribed_topic_regex.as_deref());
            put_opt_str(&mut b, m.server_assignor.as_deref());
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.member_epoch);
            b.put_i32(m.previous_member_epoch);
            put_partitions(&mut b, &m.assigned);
            put_partitions(&mut b, &m.pending_revocation);
        }
    }
    b.freeze()
}

// ---- reading -------------------------------------------------------------------------------

/// A bounds-checked reader over Kafka's big-endian primitives.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

fn short(what: &str) -> GroupError {
    GroupError::Corrupt(format!("truncated {what}"))
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self { b }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GroupError> {
        if self.b.len() < n {
            return Err(short(what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(crate) fn i16(&mut self) -> Result<i16, GroupError> {
        let s = self.take(2, "int16")?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, GroupError> {
        let s = self.take(4, "int32")?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self) -> Result<i64, GroupError> {
        let s = self.take(8, "int64")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(i64::from_be_bytes(a))
    }
    fn uuid(&mut self) -> Result<Uuid, GroupError> {
        let s = self.take(16, "uuid")?;
        Uuid::from_slice(s).map_err(|_| short("uuid"))
    }
    pub(crate) fn opt_str(&mut self) -> Result<Option<String>, GroupError> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let s = self.take(n as usize, "string")?;
        String::from_utf8(s.to_vec()).map(Some).map_err(|_| GroupError::Corrupt("string is not UTF-8".into()))
    }
    pub(crate) fn str(&mut self) -> Result<String, GroupError> {
        self.opt_str()?.ok_or_else(|| GroupError::Corrupt("null string".into()))
    }
    /// Nullable bytes; null reads as empty.
    pub(crate) fn bytes(&mut self) -> Result<Bytes, GroupError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(n as usize, "bytes")?))
    }
    /// An array length, bounded by the bytes left (each element takes at least `min_elem`).
    pub(crate) fn len(&mut self, min_elem: usize) -> Result<usize, GroupError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(0);
        }
        let n = n as usize;
        if n.saturating_mul(min_elem.max(1)) > self.b.len() {
            return Err(short("array"));
        }
        Ok(n)
    }
    fn partitions(&mut self) -> Result<Partitions, GroupError> {
        let n = self.len(20)?;
        let mut out = Partitions::new();
        for _ in 0..n {
            let topic = self.uuid()?;
            let k = self.len(4)?;
            let mut set = BTreeSet::new();
            for _ in 0..k {
                set.insert(self.i32()?);
            }
            out.insert(topic, set);
        }
        Ok(out)
    }
}

pub fn decode_key(k: &[u8]) -> Result<RecordKey, GroupError> {
    let mut r = Reader::new(k);
    match r.i16()? {
        0 | 1 => Ok(RecordKey::Offset { group: r.str()?, topic: r.str()?, partition: r.i32()? }),
        2 => Ok(RecordKey::ClassicGroup { group: r.str()? }),
        3 => Ok(RecordKey::ConsumerGroup { group: r.str()? }),
        5 => Ok(RecordKey::ConsumerMember { group: r.str()?, member_id: r.str()? }),
        v => Err(GroupError::Corrupt(format!("unknown record key version {v}"))),
    }
}

pub fn decode_value(key: &RecordKey, v: &[u8]) -> Result<RecordValue, GroupError> {
    let mut r = Reader::new(v);
    let version = r.i16()?;
    Ok(match key {
        RecordKey::Offset { .. } => {
            let offset = r.i64()?;
            let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
            let metadata = r.str()?;
            let commit_timestamp_ms = r.i64()?;
            RecordValue::Offset(OffsetValue { offset, leader_epoch, metadata, commit_timestamp_ms })
        }
        RecordKey::ClassicGroup { .. } => {
            if !(0..=3).contains(&version) {
                return Err(GroupError::Corrupt(format!("group metadata value version {version}")));
            }
            let protocol_type = r.str()?;
            let generation = r.i32()?;
            let protocol = r.opt_str()?;
            let leader = r.opt_str()?;
            let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
            let n = r.len(16)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                let member_id = r.str()?;
                let instance_id = if version >= 3 { r.opt_str()? } else { None };
                let client_id = r.str()?;
                let client_host = r.str()?;
                let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
                let session_timeout_ms = r.i32()?;
                let subscription = r.bytes()?;
                let assignment = r.bytes()?;
                members.push(ClassicMemberValue {
                    member_id,
                    instance_id,
                    client_id,
                    client_host,
                    rebalance_timeout_ms,
                    session_timeout_ms,
                    subscription,
                    assignment,
                });
            }
            RecordValue::ClassicGroup(ClassicGroupValue {
                protocol_type,
                generation,
                protocol,
                leader,
                state_timestamp_ms,
                members,
            })
        }
        RecordKey::ConsumerGroup { .. } => {
            RecordValue::ConsumerGroup(ConsumerGroupValue { epoch: r.i32()?, assignor: r.str()? })
        }
        RecordKey::ConsumerMember { .. } => {
            let instance_id = r.opt_str()?;
            let rack_id = r.opt_str()?;
            let client_id = r.str()?;
            let client_host = r.str()?;
            let n = r.len(2)?;
            let mut subscribed_topic_names = Vec::with_capacity(n);
            for _ in 0..n {
                subscribed_topic_names.push(r.str()?);
            }
            RecordValue::ConsumerMember(Box::new(ConsumerMemberValue {
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed_topic_names,
                subscribed_topic_regex: r.opt_str()?,
                server_assignor: r.opt_str()?,
                rebalance_timeout_ms: r.i32()?,
                member_epoch: r.i32()?,
                previous_member_epoch: r.i32()?,
                assigned: r.partitions()?,
                pending_revocation: r.partitions()?,
            }))
        }
    })
}

// ---- the consumer protocol (what Java/librdkafka put in JoinGroup metadata) -----------------
//
// These blobs are kafka-protocol's ConsumerProtocolSubscription / ConsumerProtocolAssignment,
// prefixed with their version as Kafka writes them.

fn versioned<T: kafka_protocol::protocol::Decodable>(blob: &[u8], max: i16) -> Option<T> {
    let mut b = Bytes::copy_from_slice(blob);
    if b.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = b.split_to(2);
    T::decode(&mut b, version.clamp(0, max)).ok()
}

fn with_version(version: i16, body: &impl kafka_protocol::protocol::Encodable) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(version);
    // Encoding a message we built ourselves at a version that has its fields cannot fail.
    if body.encode(&mut b, version).is_err() {
        return Bytes::new();
    }
    b.freeze()
}

/// The topics of a ConsumerProtocolSubscription. `None` if the bytes are not one.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let s: ConsumerProtocolSubscription = versioned(metadata, 3)?;
    Some(s.topics.iter().map(|t| t.to_string()).collect())
}

/// The partitions of a ConsumerProtocolAssignment: (topic, partitions).
pub fn assignment_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let a: ConsumerProtocolAssignment = versioned(assignment, 3)?;
    Some(a.assigned_partitions.into_iter().map(|tp| (tp.topic.to_string(), tp.partitions)).collect())
}

/// A ConsumerProtocolSubscription v0, for describing KIP-848 members to classic tools.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let s = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| StrBytes::from_string(t.clone())).collect());
    with_version(0, &s)
}

/// A ConsumerProtocolAssignment v0.
pub fn encode_assignment(parts: &[(String, Vec<i32>)]) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        parts
            .iter()
            .map(|(t, ps)| {
                kafka_protocol::messages::consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    with_version(0, &a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(k: RecordKey, v: RecordValue) {
        let kb = encode_key(&k);
        let vb = encode_value(&v);
        let k2 = decode_key(&kb).expect("key");
        assert_eq!(k2, k);
        assert_eq!(decode_value(&k2, &vb).expect("value"), v);
        // Every truncation is an error, never a panic.
        for n in 0..vb.len() {
            let _ = decode_value(&k2, &vb[..n]);
        }
        for n in 0..kb.len() {
            assert!(decode_key(&kb[..n]).is_err());
        }
    }

    #[test]
    fn records_round_trip() {
        round_trip(
            RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 7 },
            RecordValue::Offset(OffsetValue {
                offset: 42,
                leader_epoch: 3,
                metadata: "meta".into(),
                commit_timestamp_ms: 1_700_000_000_000,
            }),
        );
        round_trip(
            RecordKey::ClassicGroup { group: "g".into() },
            RecordValue::ClassicGroup(ClassicGroupValue {
                protocol_type: "consumer".into(),
                generation: 5,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                state_timestamp_ms: 9,
                members: vec![ClassicMemberValue {
                    member_id: "m1".into(),
                    instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        );
        let mut assigned = Partitions::new();
        assigned.insert(Uuid::from_u128(7), [0, 1, 5].into_iter().collect());
        round_trip(
            RecordKey::ConsumerMember { group: "g".into(), member_id: "m".into() },
            RecordValue::ConsumerMember(Box::new(ConsumerMemberValue {
                instance_id: None,
                rack_id: Some("z1".into()),
                client_id: "c".into(),
                client_host: "h".into(),
                subscribed_topic_names: vec!["a".into(), "b".into()],
                subscribed_topic_regex: Some("^x.*".into()),
                server_assignor: Some("range".into()),
                rebalance_timeout_ms: 1000,
                member_epoch: 4,
                previous_member_epoch: 3,
                assigned,
                pending_revocation: Partitions::new(),
            })),
        );
        round_trip(
            RecordKey::ConsumerGroup { group: "g".into() },
            RecordValue::ConsumerGroup(ConsumerGroupValue { epoch: 9, assignor: "uniform".into() }),
        );
    }

    #[test]
    fn consumer_protocol_blobs() {
        let s = encode_subscription(&["a".into(), "bb".into()]);
        assert_eq!(subscription_topics(&s), Some(vec!["a".to_string(), "bb".to_string()]));
        let a = encode_assignment(&[("a".into(), vec![0, 2])]);
        assert_eq!(assignment_partitions(&a), Some(vec![("a".to_string(), vec![0, 2])]));
        assert_eq!(subscription_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
    }
}

//! Fetch responses without copying record bytes.
//!
//! A fetch reads record batches from the log into buffers (`Bytes`). kafka-protocol's encoder
//! would copy every one of them into the response buffer before the socket copies it again;
//! this module keeps them out of the encoder and hands the socket a list of slices instead
//! (one vectored write), so record bytes go from the log's buffer to the socket directly.
//!
//! How: each partition's records are swapped for a 16-byte marker (a per-process random tag
//! and the record set's index), the response is encoded as usual (now only headers), and the
//! encoded bytes are cut at each marker, whose length prefix is rewritten for the real records
//! (`i32` before Fetch v12, an unsigned varint of length + 1 from v12 on). The encoded headers
//! hold no record bytes, only names and numbers; the one thing in them a client chose (topic
//! names echoed back) cannot imitate a marker, whose 64-bit tag is random per process and never
//! leaves it. Each marker is also checked to sit behind the length prefix its encoding implies. Record sets below `COPY_BELOW_BYTES` are copied into the header chunk (a slice per
//! tiny record set would cost more in the kernel than the copy).
//!
//! Implementing kafka-protocol's `ByteBufMut` instead would need `unsafe` (bytes' `BufMut` is
//! an unsafe trait), which the workspace denies.

use std::io::IoSlice;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Record sets smaller than this are copied into the surrounding header bytes.
pub const COPY_BELOW_BYTES: usize = 16 * 1024;
const MARKER_BYTES: usize = 16;
/// Slices per `writev` call (Linux allows 1024).
const MAX_SLICES: usize = 64;

fn tag() -> [u8; 8] {
    static TAG: OnceLock<[u8; 8]> = OnceLock::new();
    *TAG.get_or_init(rand::random)
}

fn marker(index: usize) -> [u8; MARKER_BYTES] {
    let mut m = [0u8; MARKER_BYTES];
    m[..8].copy_from_slice(&tag());
    m[8..].copy_from_slice(&(index as u64).to_be_bytes());
    m
}

/// The length prefix of a (non-null) records field of `len` bytes at `version`.
fn prefix(len: usize, version: i16, out: &mut BytesMut) {
    if version >= 12 {
        let mut v = len as u64 + 1;
        while v >= 0x80 {
            out.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.put_u8(v as u8);
    } else {
        out.put_i32(len as i32);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Encodes a Fetch response as the frame's parts: header chunks and the log's record buffers.
/// Their concatenation is byte for byte what `encode_bytes` produces.
pub fn encode_fetch(
    correlation_id: i32,
    version: i16,
    mut resp: FetchResponse,
) -> Result<Vec<Bytes>, String> {
    let mut taken: Vec<Bytes> = Vec::new();
    for t in resp.responses.iter_mut() {
        for p in t.partitions.iter_mut() {
            if let Some(records) = p.records.as_mut().filter(|r| !r.is_empty()) {
                let m = Bytes::copy_from_slice(&marker(taken.len()));
                taken.push(std::mem::replace(records, m));
            }
        }
    }
    let headers = encode_bytes(correlation_id, ApiKey::Fetch, version, resp.into())?;
    if taken.is_empty() {
        return Ok(vec![headers]);
    }
    let mut p16 = BytesMut::new();
    prefix(MARKER_BYTES, version, &mut p16);
    // Each marker and its prefix give way to the records and theirs.
    let real: usize = taken
        .iter()
        .map(|r| {
            let mut p = BytesMut::new();
            prefix(r.len(), version, &mut p);
            p.len() + r.len()
        })
        .sum();
    let total = headers.len() - 4 + real - taken.len() * (p16.len() + MARKER_BYTES);
    let size = i32::try_from(total).map_err(|_| format!("fetch response of {total} bytes"))?;
    let mut parts = Vec::with_capacity(2 * taken.len() + 1);
    let mut cur = BytesMut::with_capacity(headers.len());
    cur.put_i32(size);
    let mut from = 4;
    for (i, records) in taken.into_iter().enumerate() {
        let at = find(&headers[from..], &marker(i))
            .map(|x| x + from)
            .filter(|at| *at >= from + p16.len() && headers[at - p16.len()..*at] == p16[..])
            .ok_or_else(|| format!("fetch v{version}: record set {i} not where its encoding puts it"))?;
        cur.extend_from_slice(&headers[from..at - p16.len()]);
        prefix(records.len(), version, &mut cur);
        if records.len() < COPY_BELOW_BYTES {
            cur.extend_from_slice(&records);
        } else {
            parts.push(cur.split().freeze());
            parts.push(records);
        }
        from = at + MARKER_BYTES;
    }
    cur.extend_from_slice(&headers[from..]);
    parts.push(cur.freeze());
    debug_assert_eq!(parts.iter().map(Bytes::len).sum::<usize>(), total + 4);
    Ok(parts)
}

/// Writes every part, in order, with as few `writev` calls as the socket allows.
pub async fn write_parts<W: AsyncWrite + Unpin>(w: &mut W, parts: &[Bytes]) -> std::io::Result<()> {
    let (mut i, mut off) = (0usize, 0usize);
    loop {
        while i < parts.len() && off == parts[i].len() {
            i += 1;
            off = 0;
        }
        if i == parts.len() {
            return Ok(());
        }
        let mut slices = Vec::with_capacity(MAX_SLICES.min(parts.len() - i));
        slices.push(IoSlice::new(&parts[i][off..]));
        slices.extend(parts[i + 1..].iter().take(MAX_SLICES - 1).map(|p| IoSlice::new(p)));
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let left = parts[i].len() - off;
            if n >= left {
                n -= left;
                i += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
}

/// The framed response as one buffer; Err says why it could not be encoded.
pub fn encode_bytes(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    resp: kafka_protocol::messages::ResponseKind,
) -> Result<Bytes, String> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    let header = kafka_protocol::messages::ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(|e| format!("encoding {api_key:?} response header failed: {e}"))?;
    resp.encode(&mut out, version)
        .map_err(|e| format!("encoding {api_key:?} v{version} response failed: {e}"))?;
    let size =
        i32::try_from(out.len() - 4).map_err(|_| format!("{api_key:?} response of {} bytes", out.len()))?;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn records(len: usize, seed: u8) -> Option<Bytes> {
        Some(Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>()))
    }

    fn response(version: i16) -> FetchResponse {
        let sizes = [Some(100_000), Some(10), None, Some(0), Some(COPY_BELOW_BYTES), Some(300), Some(70_000)];
        let mut topics = Vec::new();
        for (t, chunk) in sizes.chunks(3).enumerate() {
            let partitions = chunk
                .iter()
                .enumerate()
                .map(|(p, size)| {
                    let mut d = PartitionData::default()
                        .with_partition_index(p as i32)
                        .with_high_watermark(1_000 + p as i64)
                        .with_log_start_offset(7)
                        .with_records(size.and_then(|n| records(n, (t * 3 + p) as u8)));
                    if version >= 12 && p == 1 {
                        d = d
                            .with_diverging_epoch(EpochEndOffset::default().with_epoch(3).with_end_offset(99))
                            .with_current_leader(
                                LeaderIdAndEpoch::default().with_leader_id(BrokerId(2)).with_leader_epoch(4),
                            );
                    }
                    d
                })
                .collect();
            let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
            if version >= 13 {
                topic = topic.with_topic_id(uuid::Uuid::from_u128(0x1234_5678 + t as u128));
            } else {
                topic = topic.with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))));
            }
            topics.push(topic);
        }
        FetchResponse::default().with_session_id(42).with_responses(topics)
    }

    #[test]
    fn parts_are_byte_for_byte_the_encoded_response_at_every_version() {
        for version in 4..=17 {
            let whole = encode_bytes(9, ApiKey::Fetch, version, response(version).into()).expect("encode");
            let parts = encode_fetch(9, version, response(version)).expect("parts");
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(joined, whole.to_vec(), "Fetch v{version}");
            // The large record sets are their own parts (not copied); small ones are not.
            let big = parts.iter().filter(|p| p.len() >= COPY_BELOW_BYTES).count();
            assert_eq!(
                big,
                3,
                "Fetch v{version}: parts {:?}",
                parts.iter().map(Bytes::len).collect::<Vec<_>>()
            );
        }
    }

    #[tokio::test]
    async fn vectored_writes_deliver_every_part_in_order() {
        let parts: Vec<Bytes> =
            (0..200).map(|i| records(i * 37 % 5000, i as u8).unwrap_or_default()).collect();
        let want: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        // A small pipe forces short writes in the middle of parts.
        let (mut a, mut b) = tokio::io::duplex(1000);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got).await.expect("read");
            got
        });
        write_parts(&mut a, &parts).await.expect("write");
        drop(a);
        assert_eq!(reader.await.expect("reader"), want);
    }
}

//! RecordBatch v2 headers: parsing, validation and the re-headering done on append.
//!
//! Layout (big-endian), as Kafka defines it:
//! ```text
//! 0  baseOffset i64 | 8  batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32        | 21 attributes i16  | 23 lastOffsetDelta i32      | 27 baseTimestamp i64
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32
//! 57 recordsCount i32 | 61 records...
//! ```
//! The CRC32C covers bytes 21..end, so assigning offsets (bytes 0..8) and leader epochs
//! (12..16) needs no new checksum; stamping LogAppendTime (attributes, maxTimestamp) does, and
//! is done incrementally over the new header and the unchanged body. Records are never decoded
//! on the append path.

use bytes::Bytes;

use crate::LogError;

/// Bytes before the first record.
pub const HEADER_LEN: usize = 61;
/// Bytes of the header that precede and include `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const COMPRESSION_MASK: i16 = 0x07;

/// The fixed fields of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `b`. Checks only that the bytes are there and the
    /// magic is 2; [`validate_batch`] checks the rest.
    pub fn parse(b: &[u8]) -> Result<Self, LogError> {
        if b.len() < HEADER_LEN {
            return Err(LogError::CorruptBatch(format!("{} bytes is shorter than a batch header", b.len())));
        }
        let h = BatchHeader {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            partition_leader_epoch: be_i32(b, 12),
            magic: b[16] as i8,
            crc: be_i32(b, 17) as u32,
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            records_count: be_i32(b, 57),
        };
        if h.magic != 2 {
            return Err(LogError::InvalidRecord(format!(
                "record batch magic {} is not supported (only v2)",
                h.magic
            )));
        }
        Ok(h)
    }

    /// Size of the whole batch on disk and on the wire.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// Sequence of the last record, wrapping at i32::MAX as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Reads just `baseOffset` and `batchLength` (the first 12 bytes), enough to walk a log.
pub fn peek_offset_and_len(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(b, 8);
    if len < 0 {
        return None;
    }
    Some((be_i64(b, 0), LOG_OVERHEAD + len as usize))
}

/// Full validation of one batch held in `b` (which must be exactly the batch): structure,
/// lengths, magic, CRC32C, record count and compression codec.
pub fn validate_batch(b: &[u8]) -> Result<BatchHeader, LogError> {
    validate(b, true)
}

/// [`validate_batch`] for batches read back from a segment: a compacted batch may hold fewer
/// records than its offset span (the cleaner removed some).
pub(crate) fn validate_stored_batch(b: &[u8]) -> Result<BatchHeader, LogError> {
    validate(b, false)
}

fn validate(b: &[u8], exact_count: bool) -> Result<BatchHeader, LogError> {
    let h = BatchHeader::parse(b)?;
    if (h.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
        return Err(LogError::CorruptBatch(format!(
            "batch length {} is below the header size",
            h.batch_length
        )));
    }
    if h.total_len() != b.len() {
        return Err(LogError::CorruptBatch(format!(
            "batch length {} does not match the {} bytes present",
            h.total_len(),
            b.len()
        )));
    }
    let crc = crc32c::crc32c(&b[CRC_START..]);
    if crc != h.crc {
        return Err(LogError::CorruptBatch(format!(
            "CRC32C mismatch: stored {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    let count_ok = if exact_count {
        h.last_offset_delta == h.records_count - 1
    } else {
        h.last_offset_delta >= h.records_count - 1
    };
    if h.records_count <= 0 || !count_ok {
        return Err(LogError::InvalidRecord(format!(
            "records count {} does not match last offset delta {}",
            h.records_count, h.last_offset_delta
        )));
    }
    if h.compression() > 4 {
        return Err(LogError::UnsupportedCompression(h.compression()));
    }
    Ok(h)
}

/// Splits a produce payload into its batches, validating each.
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, LogError> {
    split(records, true)
}

/// Splits batches a leader sent to a follower: stored batches (a compacted one may hold fewer
/// records than its offset span), each CRC-checked. A partial last batch is dropped, as Kafka
/// clients drop one at the end of a fetch response.
pub fn split_stored_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, LogError> {
    let whole = whole_batches_len(records);
    split(&records.slice(..whole), false)
}

/// Bytes of the complete batches at the start of `records`.
pub fn whole_batches_len(records: &[u8]) -> usize {
    let mut pos = 0usize;
    while let Some((_, len)) = peek_offset_and_len(&records[pos..]) {
        if len < HEADER_LEN || pos + len > records.len() {
            break;
        }
        pos += len;
    }
    pos
}

fn split(records: &Bytes, exact_count: bool) -> Result<Vec<(BatchHeader, Bytes)>, LogError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        let (_, len) = peek_offset_and_len(rest)
            .ok_or_else(|| LogError::CorruptBatch("truncated batch header".into()))?;
        if len > rest.len() {
            return Err(LogError::CorruptBatch(format!(
                "batch of {len} bytes truncated at {} bytes",
                rest.len()
            )));
        }
        let bytes = records.slice(pos..pos + len);
        let h = validate(&bytes, exact_count)?;
        out.push((h, bytes));
        pos += len;
    }
    Ok(out)
}

/// A batch ready to be written: a rewritten header and the untouched body (bytes 61..).
#[derive(Debug, Clone)]
pub struct RewrittenBatch {
    pub header: [u8; HEADER_LEN],
    pub body: Bytes,
}

impl RewrittenBatch {
    pub fn len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Assigns `base_offset` and `leader_epoch`, and when `log_append_time_ms` is given stamps the
/// batch as LogAppendTime (attributes bit 3, maxTimestamp) and recomputes the CRC.
pub fn rewrite_header(
    batch: &Bytes,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time_ms: Option<i64>,
) -> RewrittenBatch {
    debug_assert!(batch.len() >= HEADER_LEN);
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&batch[..HEADER_LEN]);
    header[0..8].copy_from_slice(&base_offset.to_be_bytes());
    header[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    let body = batch.slice(HEADER_LEN..);
    if let Some(ts) = log_append_time_ms {
        let attrs = be_i16(&header, 21) | TIMESTAMP_TYPE_BIT;
        header[21..23].copy_from_slice(&attrs.to_be_bytes());
        header[35..43].copy_from_slice(&ts.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[CRC_START..]), &body);
        header[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    RewrittenBatch { header, body }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a valid uncompressed batch of `n` empty-ish records for tests of pure logic.
    pub(crate) fn make_batch(n: i32, ts: i64, pid: i64, epoch: i16, seq: i32) -> Bytes {
        let mut records = Vec::new();
        for i in 0..n {
            // record: length varint, attributes, tsDelta, offsetDelta, keyLen -1, valueLen 1, 'x', headers 0
            let body = [0u8, 0, (i as u8) << 1, 1, 2, b'x', 0];
            records.push((body.len() as u8) << 1);
            records.extend_from_slice(&body);
        }
        let mut b = Vec::with_capacity(HEADER_LEN + records.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(n - 1).to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }

    #[test]
    fn validates_and_rejects() {
        let b = make_batch(3, 1000, -1, -1, -1);
        let h = validate_batch(&b).expect("valid");
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        let mut bad = b.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(validate_batch(&bad), Err(LogError::CorruptBatch(_))));
        let mut magic = b.to_vec();
        magic[16] = 1;
        assert!(matches!(validate_batch(&magic), Err(LogError::InvalidRecord(_))));
        assert!(split_batches(&b.slice(..b.len() - 1)).is_err());
        assert!(split_batches(&b.slice(..5)).is_err());
    }

    #[test]
    fn rewrite_keeps_crc_valid() {
        let b = make_batch(2, 1000, 7, 0, 0);
        for lat in [None, Some(123456)] {
            let r = rewrite_header(&b, 42, 3, lat);
            let mut whole = r.header.to_vec();
            whole.extend_from_slice(&r.body);
            let h = validate_batch(&whole).expect("still valid");
            assert_eq!(h.base_offset, 42);
            assert_eq!(h.partition_leader_epoch, 3);
            if let Some(ts) = lat {
                assert!(h.is_log_append_time());
                assert_eq!(h.max_timestamp, ts);
            }
        }
    }

    #[test]
    fn sequences_wrap() {
        let mut h = BatchHeader::parse(&make_batch(3, 0, 1, 0, i32::MAX - 1)).expect("parse");
        assert_eq!(h.last_sequence(), 0);
        h.base_sequence = 5;
        assert_eq!(h.last_sequence(), 7);
    }
}

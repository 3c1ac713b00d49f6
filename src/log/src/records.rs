//! Record-level lookups inside one batch. Only ListOffsets needs them (the first record at or
//! after a timestamp, the record holding the max timestamp); the append and fetch paths never
//! decode records.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::batch::BatchHeader;
use crate::LogError;

fn decode(batch: &Bytes) -> Result<Vec<(i64, i64)>, LogError> {
    let mut b = batch.clone();
    let set = RecordBatchDecoder::decode(&mut b)
        .map_err(|e| LogError::CorruptBatch(format!("decode records: {e}")))?;
    Ok(set.records.iter().map(|r| (r.offset, r.timestamp)).collect())
}

/// The first record with timestamp >= `ts` in the batch: (offset, timestamp).
pub(crate) fn first_at_or_after(
    h: &BatchHeader,
    batch: &Bytes,
    ts: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    if h.is_log_append_time() {
        return Ok((h.max_timestamp >= ts).then_some((h.base_offset, h.max_timestamp)));
    }
    Ok(decode(batch)?.into_iter().find(|&(_, t)| t >= ts))
}

/// The record carrying the batch's max timestamp: (offset, timestamp).
pub(crate) fn max_timestamp_record(h: &BatchHeader, batch: &Bytes) -> Result<Option<(i64, i64)>, LogError> {
    if h.is_log_append_time() {
        return Ok(Some((h.base_offset, h.max_timestamp)));
    }
    let mut best: Option<(i64, i64)> = None;
    for (o, t) in decode(batch)? {
        if best.is_none_or(|(_, bt)| t > bt) {
            best = Some((o, t));
        }
    }
    Ok(best)
}

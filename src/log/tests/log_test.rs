//! Partition log behaviour on real files: append/read, roll, restart, torn tails, retention,
//! DeleteRecords, producer state, timestamp lookups.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as KTs,
};
use kora_common::{ManualClock, TopicConfig};
use kora_log::batch::{split_batches, BatchHeader};
use kora_log::{LogError, PartitionLog};

fn batch(n: usize, ts: i64, pid: i64, epoch: i16, seq: i32, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: KTs::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch only while sequences advance.
            sequence: seq.max(0) + i as i32,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'v'; 100])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression })
        .expect("encode");
    buf.freeze()
}

fn cfg(kv: &[(&str, &str)]) -> TopicConfig {
    let m: BTreeMap<String, String> = kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TopicConfig::resolve(&BTreeMap::new(), &m).expect("config")
}

fn append(log: &PartitionLog, b: &Bytes) -> Result<kora_log::AppendResult, LogError> {
    let mut v = split_batches(b)?;
    assert_eq!(v.len(), 1);
    let (h, bytes) = v.remove(0);
    log.append(&h, &bytes)
}

fn offsets_in(records: &Bytes) -> Vec<i64> {
    let mut out = Vec::new();
    for (h, _) in split_batches(records).expect("stored batches are valid") {
        out.extend(h.base_offset..=h.last_offset());
    }
    out
}

const NOW: i64 = 1_700_000_000_000;

#[test]
fn append_read_roll_and_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let c = cfg(&[("segment.bytes", "4000"), ("index.interval.bytes", "500")]);
    let log = PartitionLog::open(dir.path(), c.clone(), clock.clone(), false).expect("open");
    for i in 0..100 {
        let r = append(&log, &batch(5, NOW, -1, -1, -1, Compression::None)).expect("append");
        assert_eq!(r.base_offset, i * 5);
    }
    let o = log.offsets();
    assert_eq!(o.high_watermark, 500);
    assert!(o.segments > 10, "segments: {}", o.segments);
    // Reads from any offset start at the batch holding it and return whole batches in order.
    let mut next = 0;
    while next < 500 {
        let r = log.read(next, 3000).expect("read");
        let offs = offsets_in(&r.records);
        assert!(!offs.is_empty());
        assert!(offs[0] <= next && *offs.last().expect("some") >= next);
        next = offs.last().expect("some") + 1;
    }
    assert!(log.read(37, 1).expect("read").records.len() > 1, "first batch is returned whole");
    assert!(matches!(log.read(501, 100), Err(LogError::OffsetOutOfRange { .. })));
    log.close().expect("close");
    drop(log);
    let log = PartitionLog::open(dir.path(), c, clock, true).expect("reopen");
    assert_eq!(log.offsets().high_watermark, 500);
    assert_eq!(offsets_in(&log.read(250, 600).expect("read").records)[0], 250);
}

#[test]
fn torn_tail_is_truncated_after_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let log = PartitionLog::open(dir.path(), cfg(&[]), clock.clone(), false).expect("open");
    for _ in 0..10 {
        append(&log, &batch(3, NOW, -1, -1, -1, Compression::None)).expect("append");
    }
    drop(log); // no close: a crash
    let seg = dir.path().join(format!("{:020}.log", 0));
    let good_len = std::fs::metadata(&seg).expect("stat").len();
    // A torn write: half a batch, then garbage.
    let half = batch(3, NOW, -1, -1, -1, Compression::None);
    let mut f = OpenOptions::new().append(true).open(&seg).expect("open seg");
    f.write_all(&half[..half.len() / 2]).expect("write");
    drop(f);
    let log = PartitionLog::open(dir.path(), cfg(&[]), clock.clone(), false).expect("recover");
    assert_eq!(log.offsets().high_watermark, 30);
    assert_eq!(std::fs::metadata(&seg).expect("stat").len(), good_len);
    // A corrupted byte inside the last batch: recovery drops that batch.
    drop(log);
    let mut bytes = std::fs::read(&seg).expect("read");
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&seg, &bytes).expect("write");
    let log = PartitionLog::open(dir.path(), cfg(&[]), clock, false).expect("recover");
    assert_eq!(log.offsets().high_watermark, 27);
    let r = append(&log, &batch(1, NOW, -1, -1, -1, Compression::None)).expect("append after");
    assert_eq!(r.base_offset, 27);
}

#[test]
fn producer_state_survives_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let c = cfg(&[("segment.bytes", "2000")]);
    let log = PartitionLog::open(dir.path(), c.clone(), clock.clone(), false).expect("open");
    let mut seq = 0;
    for _ in 0..20 {
        append(&log, &batch(4, NOW, 77, 0, seq, Compression::None)).expect("append");
        seq += 4;
    }
    log.flush().expect("flush"); // writes snapshots for rolled segments
    append(&log, &batch(4, NOW, 77, 0, seq, Compression::None)).expect("append");
    drop(log); // crash
    let log = PartitionLog::open(dir.path(), c, clock, false).expect("reopen");
    // The last batch is recognised as a duplicate with its original offsets.
    let r = append(&log, &batch(4, NOW, 77, 0, seq, Compression::None)).expect("dup");
    assert!(r.duplicate);
    assert_eq!(r.base_offset, 80);
    assert!(matches!(
        append(&log, &batch(1, NOW, 77, 0, seq + 10, Compression::None)),
        Err(LogError::OutOfOrderSequence(_))
    ));
    let r = append(&log, &batch(1, NOW, 77, 0, seq + 4, Compression::None)).expect("next");
    assert_eq!(r.base_offset, 84);
}

#[test]
fn retention_and_delete_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let c = cfg(&[("segment.bytes", "1500"), ("retention.bytes", "5000")]);
    let log = PartitionLog::open(dir.path(), c, clock.clone(), false).expect("open");
    for _ in 0..50 {
        append(&log, &batch(2, NOW, -1, -1, -1, Compression::None)).expect("append");
    }
    let before = log.offsets();
    let deleted = log.apply_retention().expect("retention");
    let after = log.offsets();
    assert!(deleted > 0);
    assert!(after.size_bytes <= 5000 + 1500, "size {}", after.size_bytes);
    assert!(after.log_start_offset > 0);
    assert_eq!(after.high_watermark, before.high_watermark);
    assert!(matches!(log.read(0, 100), Err(LogError::OffsetOutOfRange { .. })));
    // DeleteRecords moves the start mid-segment.
    let start = log.delete_records_before(after.log_start_offset + 3).expect("delete");
    assert_eq!(start, after.log_start_offset + 3);
    assert_eq!(log.offsets().log_start_offset, start);
    assert!(matches!(log.delete_records_before(1_000_000), Err(LogError::OffsetOutOfRange { .. })));
    // Time retention: everything old goes, the log keeps its end offset.
    log.set_config(cfg(&[("segment.bytes", "1500"), ("retention.ms", "1000")]));
    clock.advance_ms(10_000);
    log.apply_retention().expect("retention");
    let o = log.offsets();
    assert_eq!(o.log_start_offset, 100);
    assert_eq!(o.high_watermark, 100);
    assert_eq!(o.size_bytes, 0);
}

/// Two threads moving the log start at once (the tier manager and DeleteRecords, say) both
/// persist partition.state: neither fails, and the state on disk is the newest.
#[test]
fn concurrent_state_writers_never_fail_or_go_backwards() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let log = Arc::new(PartitionLog::open(dir.path(), cfg(&[]), clock.clone(), false).expect("open"));
    for _ in 0..500 {
        append(&log, &batch(2, NOW, -1, -1, -1, Compression::None)).expect("append");
    }
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..250i64 {
                    log.delete_records_before(i * 4 + t).expect("a concurrent state write failed");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let start = log.offsets().log_start_offset;
    assert_eq!(start, 997);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg(&[]), clock, true).expect("reopen");
    assert_eq!(log.offsets().log_start_offset, start, "the newest state is the one on disk");
}

#[test]
fn timestamps_and_validation() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let log = PartitionLog::open(dir.path(), cfg(&[("index.interval.bytes", "100")]), clock.clone(), false)
        .expect("open");
    for i in 0..20 {
        append(&log, &batch(5, NOW - 100_000 + i * 1000, -1, -1, -1, Compression::Gzip)).expect("append");
    }
    // Record timestamps are NOW-100000 + i*1000 + j for j in 0..5.
    let (o, t) = log.offset_for_timestamp(NOW - 100_000 + 7 * 1000 + 2).expect("ok").expect("found");
    assert_eq!((o, t), (37, NOW - 100_000 + 7002));
    assert_eq!(log.offset_for_timestamp(NOW).expect("ok"), None);
    let (o, _) = log.max_timestamp_offset().expect("ok").expect("some");
    assert_eq!(o, 99);
    // Timestamps too far in the future are refused.
    assert!(matches!(
        append(&log, &batch(1, NOW + 2 * 3_600_000, -1, -1, -1, Compression::None)),
        Err(LogError::InvalidTimestamp { .. })
    ));
    // max.message.bytes
    log.set_config(cfg(&[("max.message.bytes", "100")]));
    assert!(matches!(
        append(&log, &batch(3, NOW, -1, -1, -1, Compression::None)),
        Err(LogError::MessageTooLarge { .. })
    ));
    // LogAppendTime stamps the broker clock and keeps the CRC valid.
    log.set_config(cfg(&[("message.timestamp.type", "LogAppendTime")]));
    let r = append(&log, &batch(2, 5, -1, -1, -1, Compression::None)).expect("append");
    assert_eq!(r.log_append_time_ms, NOW);
    let read = log.read(r.base_offset, 10_000).expect("read");
    let (h, _): (BatchHeader, Bytes) = split_batches(&read.records).expect("valid").remove(0);
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, NOW);
}

#[test]
fn missing_or_corrupt_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let c = cfg(&[("segment.bytes", "3000"), ("index.interval.bytes", "200")]);
    let log = PartitionLog::open(dir.path(), c.clone(), clock.clone(), false).expect("open");
    for _ in 0..60 {
        append(&log, &batch(3, NOW, -1, -1, -1, Compression::None)).expect("append");
    }
    log.close().expect("close");
    drop(log);
    let mut damaged = 0;
    for e in std::fs::read_dir(dir.path()).expect("ls").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".index") {
            match damaged % 3 {
                0 => std::fs::remove_file(e.path()).expect("rm"),
                1 => std::fs::write(e.path(), b"\xff\xff\xff\xff\x00\x00\x00\x01garbage").expect("write"),
                // Well-formed but wrong: the last entry points 7 bytes into its batch.
                _ => {
                    let mut idx = std::fs::read(e.path()).expect("read index");
                    let n = idx.len();
                    assert!(n >= 16, "segment has several index entries");
                    let pos = u32::from_be_bytes([idx[n - 4], idx[n - 3], idx[n - 2], idx[n - 1]]) + 7;
                    idx[n - 4..].copy_from_slice(&pos.to_be_bytes());
                    std::fs::write(e.path(), idx).expect("write");
                }
            }
            damaged += 1;
        }
    }
    assert!(damaged > 3);
    let log = PartitionLog::open(dir.path(), c, clock, true).expect("reopen");
    assert_eq!(log.offsets().high_watermark, 180);
    for offset in [0, 1, 59, 100, 179] {
        let r = log.read(offset, 500).expect("read");
        let offs = offsets_in(&r.records);
        assert!(
            offs.first().is_some_and(|&o| o <= offset) && offs.contains(&offset),
            "offset {offset}: {offs:?}"
        );
    }
    assert_eq!(log.offset_for_timestamp(NOW + 1).expect("ok").map(|(o, _)| o), Some(1));
}

#[test]
fn corruption_in_an_old_segment_never_deletes_later_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let c = cfg(&[("segment.bytes", "3000")]);
    let log = PartitionLog::open(dir.path(), c.clone(), clock.clone(), false).expect("open");
    let mut last_batch_pos = 0u64;
    let mut seg0_size = 0u64;
    for _ in 0..60 {
        let r = append(&log, &batch(3, NOW, -1, -1, -1, Compression::None)).expect("append");
        if r.base_offset == 0 || log.offsets().segments == 1 {
            last_batch_pos = seg0_size;
            seg0_size = std::fs::metadata(dir.path().join(format!("{:020}.log", 0))).expect("stat").len();
        }
    }
    log.close().expect("close");
    drop(log);
    // Break the magic byte of segment 0's last batch (past its last index entry).
    let seg0 = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg0).expect("read");
    bytes[last_batch_pos as usize + 16] = 9;
    std::fs::write(&seg0, &bytes).expect("write");
    let log = PartitionLog::open(dir.path(), c, clock, true).expect("reopen");
    assert_eq!(log.offsets().high_watermark, 180, "later segments are kept");
    assert_eq!(std::fs::metadata(&seg0).expect("stat").len(), bytes.len() as u64, "nothing truncated");
    let r = log.read(170, 10_000).expect("read the tail");
    assert!(offsets_in(&r.records).contains(&170));
}

/// A batch of keyed records (`None` value: tombstone), gzip-compressed when asked.
fn keyed(records: &[(&str, Option<&str>)], ts: i64, compression: Compression) -> Bytes {
    let rs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KTs::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: ts,
            key: Some(Bytes::from(k.to_string())),
            value: v.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &rs, &RecordEncodeOptions { version: 2, compression })
        .expect("encode");
    buf.freeze()
}

/// Every (offset, key, value) readable from `from`.
fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let r = log.read(next, 1 << 20).expect("read");
        if r.records.is_empty() {
            return out;
        }
        let mut at = 0;
        while let Some((_, len)) = kora_log::batch::peek_offset_and_len(&r.records[at..]) {
            let b = r.records.slice(at..at + len);
            at += len;
            let h = BatchHeader::parse(&b).expect("header");
            let mut bb = b.clone();
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bb).expect("decode");
            for rec in set.records {
                if rec.offset >= next {
                    out.push((
                        rec.offset,
                        String::from_utf8_lossy(rec.key.as_deref().unwrap_or_default()).into_owned(),
                        rec.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    ));
                }
            }
            next = h.next_offset();
        }
    }
}

#[test]
fn compaction_keeps_the_latest_value_per_key_and_drops_old_tombstones() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(NOW));
    let c = cfg(&[
        ("cleanup.policy", "compact"),
        ("segment.bytes", "600"),
        ("delete.retention.ms", "1000"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ]);
    let log = PartitionLog::open(dir.path(), c.clone(), clock.clone(), false).expect("open");
    // A record without a key is refused.
    let mut bad = kafka_protocol::records::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: KTs::Creation,
        offset: 0,
        sequence: -1,
        timestamp: NOW,
        key: None,
        value: Some(Bytes::from_static(b"x")),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::slice::from_ref(&bad),
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .expect("encode");
    assert!(matches!(append(&log, &buf.freeze()), Err(LogError::InvalidRecord(_))));
    bad.key = Some(Bytes::from_static(b"k"));

    // 10 keys, each updated 20 times, a tombstone for k3 and k7 at the end; mixed codecs.
    let mut expected: BTreeMap<String, Option<String>> = BTreeMap::new();
    for round in 0..20 {
        let codec = if round % 2 == 0 { Compression::None } else { Compression::Gzip };
        let recs: Vec<(String, Option<String>)> =
            (0..10).map(|k| (format!("k{k}"), Some(format!("v{round}-{k}")))).collect();
        let view: Vec<(&str, Option<&str>)> = recs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        append(&log, &keyed(&view, NOW, codec)).expect("append");
        for (k, v) in recs {
            expected.insert(k, v);
        }
    }
    append(&log, &keyed(&[("k3", None), ("k7", None)], NOW, Compression::None)).expect("tombstones");
    expected.insert("k3".into(), None);
    expected.insert("k7".into(), None);
    // Something after, so the tombstones' segment is closed.
    for i in 0..5 {
        append(&log, &keyed(&[("k0", Some(&format!("late{i}")))], NOW, Compression::None)).expect("append");
    }
    expected.insert("k0".into(), Some("late4".into()));
    let end = log.offsets().high_watermark;
    let before = read_all(&log, 0);
    assert_eq!(before.len() as i64, end);

    // Rolled segments are cleanable once their roll is fsynced (the broker's flush loop).
    log.flush().expect("flush");
    let stats = log.compact(1_000_000).expect("compact").expect("a pass ran");
    assert!(stats.records_removed > 150, "{stats:?}");
    let after = read_all(&log, 0);
    // Offsets only grow and every surviving record is one that was written at that offset.
    assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
    for r in &after {
        assert!(before.contains(r), "{r:?} was never written");
    }
    // Below the cleaned point each key appears once, with its latest value; tombstones stay
    // readable for delete.retention.ms.
    let cleaned: Vec<_> = after.iter().filter(|r| r.0 < stats.cleaned_up_to).collect();
    let mut keys: Vec<&String> = cleaned.iter().map(|r| &r.1).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), cleaned.len(), "a key twice in the cleaned part: {cleaned:?}");
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (_, k, v) in &after {
        seen.insert(k.clone(), v.clone());
    }
    assert_eq!(seen, expected);
    assert!(after.iter().any(|r| r.1 == "k3" && r.2.is_none()), "tombstone kept within delete.retention.ms");

    // Later, the tombstones go too; the log survives a restart as compacted.
    clock.advance_ms(5_000);
    append(&log, &keyed(&[("k1", Some("fresh"))], NOW + 5_000, Compression::None)).expect("append");
    expected.insert("k1".into(), Some("fresh".into()));
    // Roll so the previous tail is cleanable.
    for i in 0..5 {
        append(&log, &keyed(&[("k2", Some(&format!("x{i}")))], NOW + 5_000, Compression::None))
            .expect("append");
    }
    expected.insert("k2".into(), Some("x4".into()));
    log.flush().expect("flush");
    log.compact(1_000_000).expect("compact");
    let after = read_all(&log, 0);
    assert!(!after.iter().any(|r| r.2.is_none() && r.0 < 200), "old tombstones removed: {after:?}");
    log.close().expect("close");
    drop(log);
    let log = PartitionLog::open(dir.path(), c, clock.clone(), false).expect("reopen");
    let again = read_all(&log, 0);
    assert_eq!(again, after);
    assert_eq!(log.offsets().high_watermark, after.last().map(|r| r.0 + 1).unwrap_or(0).max(end));
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (_, k, v) in again {
        latest.insert(k, v);
    }
    expected.retain(|_, v| v.is_some());
    latest.retain(|_, v| v.is_some());
    assert_eq!(latest, expected);
}

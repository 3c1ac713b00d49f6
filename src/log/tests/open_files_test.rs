//! Many partitions with few open files: segment files are closed past the process limit and
//! reopened on use, and nothing reads or writes the wrong file.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use kora_common::{ManualClock, TopicConfig};
use kora_log::batch::split_batches;
use kora_log::PartitionLog;

fn batch(tag: &str, n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from(format!("{tag}-{i}-{}", "x".repeat(100)))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .expect("encode");
    buf.freeze()
}

#[test]
fn partitions_beyond_the_open_file_limit_read_and_write_their_own_files() {
    kora_log::files::set_max_open_files(16);
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(1_000));
    let mut m = BTreeMap::new();
    m.insert("segment.bytes".to_string(), "1024".to_string());
    let cfg = TopicConfig::resolve(&BTreeMap::new(), &m).expect("config");
    let open =
        |i: usize| PartitionLog::open(&dir.path().join(format!("p-{i}")), cfg.clone(), clock.clone(), true);
    let logs: Vec<PartitionLog> = (0..60).map(|i| open(i).expect("open")).collect();
    // Several segments each, written round robin: every append may need a reopened file.
    for round in 0..8 {
        for (i, log) in logs.iter().enumerate() {
            let b = batch(&format!("p{i}r{round}"), 5);
            let (h, bytes) = split_batches(&b).expect("split").remove(0);
            log.append(&h, &bytes).expect("append");
        }
    }
    let (open_now, reopened) = kora_log::files::open_files_stats();
    assert!(open_now <= 16, "{open_now} files open with a limit of 16");
    assert!(reopened > 0, "files were closed and opened again");
    for (i, log) in logs.iter().enumerate() {
        log.flush().expect("flush");
        assert!(log.offsets().segments > 1, "rolled segments");
        let mut offset = 0;
        let mut seen = Vec::new();
        loop {
            let r = log.read(offset, 1 << 20).expect("read");
            if r.records.is_empty() {
                break;
            }
            for (h, b) in split_batches(&r.records).expect("stored") {
                offset = h.next_offset();
                let tag = format!("p{i}r");
                assert!(b.windows(tag.len()).any(|w| w == tag.as_bytes()), "partition {i} read its own data");
                seen.push(h.base_offset);
            }
        }
        assert_eq!(seen.len(), 8, "partition {i}: every batch");
    }
    // Closed and opened again after a restart, still under the limit.
    for log in &logs {
        log.close().expect("close");
    }
    drop(logs);
    let logs: Vec<PartitionLog> = (0..60).map(|i| open(i).expect("reopen")).collect();
    assert!(logs.iter().all(|l| l.log_end_offset() == 40));
    assert!(kora_log::files::open_files_stats().0 <= 16);
}

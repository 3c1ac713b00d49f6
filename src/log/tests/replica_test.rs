//! Replication support on real files: leader epochs, the high watermark as the consumers'
//! bound, follower appends and truncation of a diverged tail, across restarts.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use kora_common::{ManualClock, TopicConfig};
use kora_log::batch::split_batches;
use kora_log::{LogError, PartitionLog};

fn batch(n: usize, pid: i64, seq: i32) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: 1_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'v'; 50])),
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

fn cfg() -> TopicConfig {
    let mut m = BTreeMap::new();
    // Small segments, so truncation crosses segment boundaries.
    m.insert("segment.bytes".to_string(), "2000".to_string());
    TopicConfig::resolve(&BTreeMap::new(), &m).expect("config")
}

fn open(dir: &std::path::Path) -> PartitionLog {
    let clock = Arc::new(ManualClock::new(1_000));
    PartitionLog::open(dir, cfg(), clock, true).expect("open")
}

fn produce(log: &PartitionLog, n: usize, pid: i64, seq: i32) -> kora_log::AppendResult {
    let b = batch(n, pid, seq);
    let (h, bytes) = split_batches(&b).expect("split").remove(0);
    log.append(&h, &bytes).expect("append")
}

/// Everything `log` holds from `from`, as a leader sends it to a follower.
fn replicate(leader: &PartitionLog, follower: &PartitionLog) -> i64 {
    loop {
        let from = follower.log_end_offset();
        let r = leader.read_replica(from, 1500).expect("read");
        if r.records.is_empty() {
            return from;
        }
        follower.append_replicated(&r.records).expect("follower append");
    }
}

#[test]
fn high_watermark_bounds_consumers_and_epochs_mark_leaders() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.set_replicated(true);
    log.become_leader(3).expect("leader");
    produce(&log, 5, 1, 0);
    produce(&log, 5, 1, 5);
    assert_eq!((log.log_end_offset(), log.high_watermark()), (10, 0));
    assert!(log.read(0, 1 << 20).expect("read").records.is_empty(), "nothing is committed yet");
    assert!(!log.read_replica(0, 1 << 20).expect("read").records.is_empty(), "followers see it all");
    log.advance_high_watermark(5);
    let r = log.read(0, 1 << 20).expect("read");
    let (h, _) = split_batches(&r.records).expect("split").remove(0);
    assert_eq!((h.base_offset, h.partition_leader_epoch), (0, 3), "batches carry the leader's epoch");
    assert_eq!(split_batches(&r.records).expect("split").len(), 1, "only batches below the HW");
    assert_eq!(log.advance_high_watermark(50), 10, "never past the log end");
    assert_eq!(log.advance_high_watermark(2), 10, "never back");
    log.become_leader(7).expect("leader");
    produce(&log, 2, 1, 10);
    assert_eq!(log.epochs(), vec![(3, 0), (7, 10)]);
    assert_eq!(log.end_offset_for_epoch(3), (3, 10));
    assert_eq!(log.end_offset_for_epoch(7), (7, 12));
    assert!(matches!(log.read(13, 100), Err(LogError::OffsetOutOfRange { .. })));
    log.checkpoint_high_watermark().expect("checkpoint");
    log.close().expect("close");
    drop(log);
    let log = open(dir.path());
    log.set_replicated(true);
    assert_eq!(log.epochs(), vec![(3, 0), (7, 10)], "epochs survive a restart");
    assert_eq!(log.high_watermark(), 10, "the checkpointed high watermark survives a restart");
}

#[test]
fn follower_copies_the_leader_and_truncates_a_diverged_tail() {
    let (ld, fd) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let leader = open(ld.path());
    let follower = open(fd.path());
    leader.set_replicated(true);
    follower.set_replicated(true);
    leader.become_leader(1).expect("leader");
    let mut seq = 0;
    for _ in 0..20 {
        produce(&leader, 4, 9, seq);
        seq += 4;
    }
    assert_eq!(replicate(&leader, &follower), 80);
    assert_eq!(follower.epochs(), vec![(1, 0)]);
    assert_eq!(
        leader.read_replica(0, 1 << 20).expect("read").records,
        follower.read_replica(0, 1 << 20).expect("read").records,
        "byte for byte"
    );
    // The old leader writes a tail nobody copies, then the follower leads at epoch 2.
    produce(&leader, 4, 9, seq);
    produce(&leader, 4, 9, seq + 4);
    follower.become_leader(2).expect("new leader");
    for i in 0..3 {
        produce(&follower, 3, 10, i * 3);
    }
    // The old leader, now a follower, learns where epoch 1 ended and cuts its tail there.
    let (epoch, end) = follower.end_offset_for_epoch(leader.latest_epoch());
    assert_eq!((epoch, end), (1, 80));
    let mine = leader.end_offset_for_epoch(epoch).1;
    assert_eq!(leader.truncate_to(end.min(mine)).expect("truncate"), 80);
    assert_eq!(leader.epochs(), vec![(1, 0)]);
    assert_eq!(replicate(&follower, &leader), 89);
    assert_eq!(leader.epochs(), vec![(1, 0), (2, 80)]);
    assert_eq!(
        leader.read_replica(0, 1 << 20).expect("read").records,
        follower.read_replica(0, 1 << 20).expect("read").records
    );
    // Producer state was rebuilt: a retry of producer 10's last batch is a duplicate on both.
    for log in [&leader, &follower] {
        log.become_leader(3).expect("leader");
        let r = produce(log, 3, 10, 6);
        assert!(r.duplicate, "idempotence survives truncation and replication");
        assert_eq!(r.base_offset, 86);
    }
    // A restart keeps the truncated log whole.
    drop(leader);
    let leader = open(ld.path());
    assert_eq!(leader.log_end_offset(), 89);
    assert_eq!(leader.epochs(), vec![(1, 0), (2, 80)]);
}

#[test]
fn an_empty_leadership_is_forgotten_when_the_leader_says_it_diverged() {
    let (ad, bd) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let (a, b) = (open(ad.path()), open(bd.path()));
    a.set_replicated(true);
    b.set_replicated(true);
    a.become_leader(0).expect("leader");
    produce(&a, 5, 1, 0);
    assert_eq!(replicate(&a, &b), 5);
    // b leads epoch 1 for a moment and takes no write; then a leads again at epoch 2.
    b.become_leader(1).expect("leader");
    a.become_leader(2).expect("leader");
    produce(&a, 5, 1, 5);
    // b fetches with its last epoch, 1; a never saw it: epoch 0 ended at 5.
    let (epoch, end) = a.end_offset_for_epoch(b.latest_epoch());
    assert_eq!((epoch, end), (0, 5));
    let mine = b.end_offset_for_epoch(epoch).1;
    assert_eq!(b.truncate_to(end.min(mine)).expect("truncate"), 5, "no batch to cut");
    assert_eq!(b.epochs(), vec![(0, 0)], "the empty epoch is gone");
    // So the next fetch (last epoch 0, offset 5) no longer diverges, and b catches up.
    let (epoch, end) = a.end_offset_for_epoch(b.latest_epoch());
    assert!(epoch == 0 && end >= b.log_end_offset(), "no divergence left: ({epoch}, {end})");
    assert_eq!(replicate(&a, &b), 10);
    assert_eq!(b.epochs(), vec![(0, 0), (2, 5)]);
}

#[test]
fn a_batch_from_an_older_epoch_cannot_land_inside_a_newer_one() {
    let (ad, bd) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let (old_leader, b) = (open(ad.path()), open(bd.path()));
    old_leader.set_replicated(true);
    b.set_replicated(true);
    old_leader.become_leader(1).expect("leader");
    produce(&old_leader, 5, 1, 0);
    assert_eq!(replicate(&old_leader, &b), 5);
    produce(&old_leader, 1, 1, 5);
    // b becomes leader at epoch 2 at offset 5; then the old leader's answer to a fetch that
    // was in flight arrives.
    b.become_leader(2).expect("leader");
    let late = old_leader.read_replica(5, 1 << 20).expect("read").records;
    let err = b.append_replicated(&late).expect_err("stale epoch refused");
    assert!(matches!(err, LogError::StaleLeaderEpoch { offset: 5, batch_epoch: 1, latest: 2 }), "{err:?}");
    assert_eq!(b.log_end_offset(), 5);
    assert_eq!(b.epochs(), vec![(1, 0), (2, 5)]);
}

#[test]
fn truncation_inside_a_batch_and_below_everything() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.set_replicated(true);
    produce(&log, 10, -1, 0);
    produce(&log, 10, -1, 0);
    // Offset 15 is inside the second batch: the whole batch goes.
    assert_eq!(log.truncate_to(15).expect("truncate"), 10);
    assert_eq!(log.truncate_to(0).expect("truncate"), 0);
    assert!(log.epochs().is_empty());
    produce(&log, 2, -1, 0);
    assert_eq!(log.log_end_offset(), 2);
    log.truncate_fully_and_start_at(500).expect("restart at");
    assert_eq!((log.offsets().log_start_offset, log.log_end_offset()), (500, 500));
    produce(&log, 1, -1, 0);
    assert_eq!(log.log_end_offset(), 501);
    drop(log);
    let log = open(dir.path());
    assert_eq!((log.offsets().log_start_offset, log.log_end_offset()), (500, 501));
}

//! A full disk: produce gets KAFKA_STORAGE_ERROR, nothing acknowledged is lost, the broker keeps
//! serving, and it restarts (after kill -9) on the still-full disk. Needs a small filesystem of
//! its own: the test mounts a 4 MiB tmpfs, which requires root (CI runs as root); elsewhere it
//! says so and returns.

mod common;

use std::process::Command;

use common::raw::{batch, connect, fetch_partition0, produce, request};
use common::Kora;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_refuses_writes_and_keeps_acknowledged_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP full_disk: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _mount = Mount(dir.path().to_path_buf());
    let data = dir.path().join("data");
    let mut k = Kora::start_in(&data, &[]);
    let mut s = connect(&k);
    let t = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("full")))
        .with_num_partitions(1)
        .with_replication_factor(1);
    let r: CreateTopicsResponse =
        request(&mut s, ApiKey::CreateTopics, 7, &CreateTopicsRequest::default().with_topics(vec![t]))
            .expect("create");
    assert_eq!(r.topics[0].error_code, 0);
    let mut acked = 0i64;
    let mut refused = 0;
    for _ in 0..800 {
        let resp = produce(&mut s, "full", -1, batch(10, 1000));
        match resp.responses[0].partition_responses[0].error_code {
            0 => acked += 10,
            56 => refused += 1, // KAFKA_STORAGE_ERROR
            other => panic!("unexpected error code {other}"),
        }
    }
    assert!(acked > 0 && refused > 0, "acked {acked}, refused {refused}: the disk should have filled");
    assert_eq!(fetch_partition0(&mut s, "full", 0), (0, acked), "every acknowledged record, nothing else");
    k.kill9();
    k.restart();
    let mut s = connect(&k);
    assert_eq!(fetch_partition0(&mut s, "full", 0), (0, acked), "after kill -9 on a full disk");
}

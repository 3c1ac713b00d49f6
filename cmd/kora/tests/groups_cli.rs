//! `kora groups list|describe` and the lag metrics, against a group with known lag.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Kora;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn kora(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kora")).args(args).output().expect("run kora");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn groups_cli_and_lag_metrics() {
    let k = Kora::start(&[]);
    let p: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &k.bootstrap).create().expect("producer");
    // Auto-created with one partition, then 100 records.
    for i in 0..100 {
        let v = format!("v{i}");
        p.send(BaseRecord::<(), _>::to("lagging").payload(&v)).expect("send");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(20)).expect("flush");

    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &k.bootstrap)
        .set("group.id", "reporting")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "30000")
        .create()
        .expect("consumer");
    c.subscribe(&["lagging"]).expect("subscribe");
    let start = Instant::now();
    while c.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "no assignment");
        let _ = c.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("lagging", 0, Offset::Offset(30)).expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit");

    let (ok, out, err) = kora(&["--output", "json", "groups", "list", "--bootstrap", &k.bootstrap]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let g = v.as_array().expect("array").iter().find(|g| g["group"] == "reporting").expect("listed");
    assert_eq!(g["state"], "Stable");
    assert_eq!(g["group_type"], "classic");

    let (ok, out, err) =
        kora(&["--output", "json", "groups", "describe", "reporting", "--bootstrap", &k.bootstrap]);
    assert!(ok, "{err}");
    let d: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(d["total_lag"], 70);
    assert_eq!(d["members"].as_array().map(Vec::len), Some(1));
    let part = &d["partitions"][0];
    assert_eq!((part["committed_offset"].as_i64(), part["log_end_offset"].as_i64()), (Some(30), Some(100)));
    assert_eq!(d["members"][0]["assignment"]["lagging"][0], 0);

    let (ok, out, _) = kora(&["groups", "describe", "reporting", "--bootstrap", &k.bootstrap]);
    assert!(ok);
    assert!(out.contains("total lag 70"), "{out}");

    let (ok, _, err) = kora(&["groups", "describe", "no-such-group", "--bootstrap", &k.bootstrap]);
    assert!(!ok);
    assert!(err.contains("group 'no-such-group' does not exist"), "{err}");

    let metrics = k.admin_get("/metrics");
    assert!(
        metrics.contains(r#"kora_group_lag{group="reporting",topic="lagging",partition="0"} 70"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"kora_group_members{group="reporting",state="Stable"} 1"#));
}

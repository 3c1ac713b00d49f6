//! `kora bench` as a user runs it: the null sink, produce against the sink and a broker, consume.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{free_port, Kora};

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(["--output", "json", "bench"])
        .args(args)
        .output()
        .expect("run kora bench");
    assert!(out.status.success(), "kora bench {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim().lines().last().expect("a report line")).expect("JSON report")
}

struct Sink(std::process::Child);
impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn produce_to_sink_and_broker_then_consume() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(["--output", "json", "bench", "sink", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sink");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("sink line");
    let _sink = Sink(child);
    let sink_addr = serde_json::from_str::<serde_json::Value>(&line).expect("json")["bootstrap"]
        .as_str()
        .expect("bootstrap")
        .to_string();

    let r = bench(&["produce", "--bootstrap", &sink_addr, "--messages", "20000", "--message-bytes", "100"]);
    assert_eq!(r["messages"], 20000);
    assert_eq!(r["bytes"], 2_000_000);
    assert_eq!(r["errors"], 0);
    assert!(r["latency"]["p99_ms"].as_f64().expect("p99") > 0.0);

    let kora = Kora::start(&[]);
    let r = bench(&[
        "produce",
        "--bootstrap",
        &kora.bootstrap,
        "--topic",
        "b",
        "--messages",
        "20000",
        "--message-bytes",
        "100",
        "--partitions",
        "4",
        "--producers",
        "2",
        "--compression",
        "lz4",
    ]);
    assert_eq!((r["messages"].as_u64(), r["errors"].as_u64()), (Some(20000), Some(0)));
    // Open loop: the offered rate is reported and roughly achieved.
    let r = bench(&[
        "produce",
        "--bootstrap",
        &kora.bootstrap,
        "--topic",
        "b",
        "--rate",
        "5000",
        "--duration-s",
        "1",
        "--message-bytes",
        "100",
    ]);
    assert_eq!(r["offered_msgs_per_s"], 5000.0);
    let n = r["messages"].as_u64().expect("count");
    assert!((4000..=5200).contains(&n), "open loop sent {n} in 1 s at 5000/s");
    let c = bench(&["consume", "--bootstrap", &kora.bootstrap, "--topic", "b"]);
    assert_eq!(c["messages"].as_u64(), Some(20000 + n), "consume reads everything produced");
    assert_eq!(c["bytes"].as_u64(), Some((20000 + n) * 100));
    // The batch reader counts the same records and payload bytes (lz4 batches decoded, the
    // open-loop ones walked in place), with its partitions split over two connections.
    let c = bench(&[
        "consume",
        "--bootstrap",
        &kora.bootstrap,
        "--topic",
        "b",
        "--client",
        "batches",
        "--consumers",
        "2",
    ]);
    assert_eq!(c["messages"].as_u64(), Some(20000 + n), "batch reader reads everything produced");
    assert_eq!(c["bytes"].as_u64(), Some((20000 + n) * 100));
    let c = bench(&[
        "consume",
        "--bootstrap",
        &kora.bootstrap,
        "--topic",
        "b",
        "--client",
        "batches",
        "--messages",
        "1000",
    ]);
    let read = c["messages"].as_u64().expect("count");
    assert!(
        (1000..=20000 + n).contains(&read),
        "--messages 1000 stops after the fetch that reaches it: {read}"
    );
    // End to end: every stamped message is consumed, with a latency.
    let e = bench(&[
        "e2e",
        "--bootstrap",
        &kora.bootstrap,
        "--topic",
        "e",
        "--rate",
        "2000",
        "--duration-s",
        "1",
        "--message-bytes",
        "64",
        "--linger-ms",
        "1",
    ]);
    let got = e["messages"].as_u64().expect("count");
    assert!((1500..=2100).contains(&got), "e2e consumed {got}");
    assert_eq!(e["errors"].as_u64(), Some(0), "every produced message was consumed");
    assert!(e["latency"]["p50_ms"].as_f64().expect("p50") > 0.0);
}

#[test]
fn rebalance_bench_reports_both_phases() {
    let k = Kora::start(&[]);
    for protocol in ["classic", "consumer"] {
        let r = bench(&[
            "rebalance",
            "--bootstrap",
            &k.bootstrap,
            "--topic",
            &format!("rb-{protocol}"),
            "--partitions",
            "12",
            "--members",
            "3",
            "--rounds",
            "1",
            "--protocol",
            protocol,
            "--set",
            // Classic members learn of a rebalance on their next heartbeat; KIP-848 members
            // take the interval from the broker (500 ms under kora dev).
            if protocol == "classic" { "heartbeat.interval.ms=500" } else { "client.id=rebalance-bench" },
        ]);
        assert_eq!(r["protocol"], protocol);
        assert_eq!(r["members"], 3);
        for phase in ["formation_ms", "join_ms"] {
            let v = r[phase][0].as_f64().expect(phase);
            assert!(v > 0.0 && v < 30_000.0, "{protocol} {phase} {v}");
        }
    }
}

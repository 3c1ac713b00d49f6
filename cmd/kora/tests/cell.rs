//! A whole cell with real processes: `kora cell up` (3 voters, 3 brokers on 127.0.0.1),
//! librdkafka clients, `kora cell status`, kill -9 of brokers and of the Raft leader.
//!
//! Topics with one replica show what fencing does alone (a dead broker's partitions are
//! offline until it returns); RF=3 topics show replication (a new leader takes over, nothing
//! acknowledged is lost).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

struct Cell {
    child: Child,
    info: serde_json::Value,
    dir: tempfile::TempDir,
}

impl Cell {
    fn up(extra: &[&str]) -> Cell {
        let dir = tempfile::tempdir().expect("tmp");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kora"))
            .args(["cell", "up", "--brokers", "3", "--voters", "3", "--output", "json", "--data-dir"])
            .arg(dir.path().join("cell"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("cell-up.err")).expect("stderr file"))
            .spawn()
            .expect("kora cell up");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("first line");
        let info: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            // Say why: cell up's own error, then the end of every process's log.
            let mut why = std::fs::read_to_string(dir.path().join("cell-up.err")).unwrap_or_default();
            if let Ok(logs) = std::fs::read_dir(dir.path().join("cell").join("logs")) {
                for f in logs.flatten() {
                    let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    why.push_str(&format!("\n--- {}\n", f.path().display()));
                    why.extend(tail.into_iter().rev().map(|l| format!("{l}\n")));
                }
            }
            panic!("kora cell up printed {line:?} ({e}):\n{why}")
        });
        Cell { child, info, dir }
    }

    fn bootstrap(&self) -> String {
        self.info["bootstrap"].as_str().expect("bootstrap").to_string()
    }

    fn broker_pid(&self, id: u64) -> u32 {
        self.info["brokers"].as_array().expect("brokers").iter().find(|b| b["id"] == id).expect("broker")
            ["pid"]
            .as_u64()
            .expect("pid") as u32
    }

    fn voter_pid(&self, id: u64) -> u32 {
        self.info["voters"].as_array().expect("voters").iter().find(|b| b["id"] == id).expect("voter")["pid"]
            .as_u64()
            .expect("pid") as u32
    }

    fn status(&self) -> serde_json::Value {
        self.status_from(&self.bootstrap())
    }

    /// The status as the brokers of `bootstrap` see it.
    fn status_from(&self, bootstrap: &str) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_kora"))
            .args(["cell", "status", "--bootstrap", bootstrap, "--output", "json"])
            .output()
            .expect("kora cell status");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// Restarts broker `id` from the config file `kora cell up` wrote (kill -9 leaves it).
    /// The process is killed when the handle drops, also when the test fails.
    fn restart_broker(&self, id: u64) -> Restarted {
        let cfg = self.dir.path().join("cell").join(format!("broker-{id}.toml"));
        let log =
            std::fs::File::create(self.dir.path().join(format!("broker-{id}-restarted.log"))).expect("log");
        Command::new(env!("CARGO_BIN_EXE_kora"))
            .args(["broker", "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Restarted)
            .expect("kora broker")
    }
}

/// A broker started by a test rather than by `kora cell up`.
struct Restarted(Child);

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("KORA_TEST_KEEP_CELL").is_some() {
            // Keep the cell's data and logs for whoever reads the failure.
            if let Ok(fresh) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, fresh).keep();
                eprintln!("cell data and logs kept in {}", kept.display());
            }
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

fn kill9(pid: u32) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
}

async fn create(bootstrap: &str, name: &str, partitions: i32) {
    create_rf(bootstrap, name, partitions, 1, &[]).await
}

async fn create_rf(bootstrap: &str, name: &str, partitions: i32, rf: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let start = Instant::now();
    loop {
        let r = admin.create_topics([&t], &AdminOptions::new()).await.expect("create");
        match &r[0] {
            Ok(_) => return,
            Err((_, e)) => {
                assert!(start.elapsed() < Duration::from_secs(30), "create {name}: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// Every record of `topic` (partitions 0..n), by partition, values in offset order.
fn read_all(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<Vec<String>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cell-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = vec![Vec::new(); partitions as usize];
    let mut n = 0;
    let start = Instant::now();
    let mut last = Instant::now();
    // Until the expected count and a quiet second (a write that timed out may also be in the
    // log, as in Kafka), or 60 s.
    while (n < expected || last.elapsed() < Duration::from_secs(1))
        && start.elapsed() < Duration::from_secs(60)
    {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out[m.partition() as usize]
                .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            n += 1;
            last = Instant::now();
        }
    }
    out
}

fn leaders(status: &serde_json::Value, topic: &str) -> Vec<i64> {
    status["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["topic"] == topic)
        .map(|p| p["leader"].as_i64().expect("leader"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_spreads_partitions_fences_a_dead_broker_and_takes_it_back() {
    let cell = Cell::up(&["--broker-session-timeout-ms", "3000"]);
    let bs = cell.bootstrap();
    assert_eq!(bs.split(',').count(), 3);
    create(&bs, "orders", 6).await;
    let status = cell.status();
    let racks: Vec<&str> = status["brokers"]
        .as_array()
        .expect("brokers")
        .iter()
        .map(|b| b["rack"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(racks, vec!["zone-a", "zone-b", "zone-c"]);
    let before = leaders(&status, "orders");
    for b in 1..=3 {
        assert_eq!(before.iter().filter(|l| **l == b).count(), 2, "two leaders each: {before:?}");
    }

    // KIP-951: a broker that does not lead a partition says so, and names the leader and its
    // listener, in Produce and Fetch answers.
    {
        let brokers: Vec<(i64, String)> = status["brokers"]
            .as_array()
            .expect("brokers")
            .iter()
            .map(|b| (b["id"].as_i64().expect("id"), b["address"].as_str().expect("address").to_string()))
            .collect();
        let leader = before[0];
        let (other, addr) = brokers.iter().find(|(id, _)| *id != leader).expect("another broker");
        let leader_addr = &brokers.iter().find(|(id, _)| *id == leader).expect("leader").1;
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(common::raw::batch(1, 10)))]),
        ]);
        let r: ProduceResponse = common::raw::request(&mut conn, ApiKey::Produce, 11, &req).expect("produce");
        let p0 = &r.responses[0].partition_responses[0];
        assert_eq!(p0.error_code, 6, "NOT_LEADER_OR_FOLLOWER from broker {other}");
        assert_eq!(p0.current_leader.leader_id.0 as i64, leader);
        assert_eq!(r.node_endpoints.len(), 1);
        let ep = &r.node_endpoints[0];
        assert_eq!(format!("{}:{}", ep.host, ep.port), *leader_addr);
        assert!(ep.rack.is_some());
        let req = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("orders"))).with_partitions(
                vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)],
            ),
        ]);
        let r: FetchResponse = common::raw::request(&mut conn, ApiKey::Fetch, 12, &req).expect("fetch");
        let p0 = &r.responses[0].partitions[0];
        assert_eq!(p0.error_code, 6);
        assert_eq!(p0.current_leader.leader_id.0 as i64, leader);
    }

    // Acknowledged, idempotent writes to every partition, spread over the three brokers.
    let p = producer(&bs);
    for i in 0..600 {
        let v = format!("v{i}");
        let part = i % 6;
        p.send(FutureRecord::<(), _>::to("orders").partition(part).payload(&v), Duration::from_secs(30))
            .await
            .expect("acknowledged");
    }

    // kill -9 broker 2: its partitions go offline once its lease lapses (one replica each:
    // no other replica may lead), the others keep serving.
    kill9(cell.broker_pid(2));
    let start = Instant::now();
    loop {
        let s = cell.status();
        let l = leaders(&s, "orders");
        let ids: Vec<u64> =
            s["brokers"].as_array().expect("b").iter().map(|b| b["id"].as_u64().unwrap_or(0)).collect();
        if !ids.contains(&2) && l.iter().filter(|x| **x == -1).count() == 2 {
            assert_eq!(s["offline"].as_u64(), Some(2));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "broker 2 never fenced: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("broker 2 fenced {:?} after kill -9", start.elapsed());
    // Partitions on live brokers still take writes.
    let live: Vec<i32> = (0..6).filter(|p| before[*p as usize] != 2).collect();
    for (k, part) in live.iter().enumerate() {
        let v = format!("w{k}");
        p.send(FutureRecord::<(), _>::to("orders").partition(*part).payload(&v), Duration::from_secs(30))
            .await
            .expect("live partition acknowledged");
    }

    // Broker 2 comes back (a new incarnation): it leads its partitions again at a new epoch,
    // with everything it had acknowledged.
    let back = cell.restart_broker(2);
    let start = Instant::now();
    loop {
        let s = cell.status();
        if leaders(&s, "orders") == before {
            let epochs: Vec<i64> = s["partitions"]
                .as_array()
                .expect("p")
                .iter()
                .filter(|p| p["topic"] == "orders" && p["leader"] == 2)
                .map(|p| p["leader_epoch"].as_i64().expect("epoch"))
                .collect();
            assert!(epochs.iter().all(|e| *e >= 2), "a new epoch after fencing and return: {epochs:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "broker 2 never led again: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let bs2 = bs.clone();
    let got = tokio::task::spawn_blocking(move || read_all(&bs2, "orders", 6, 600 + live.len()))
        .await
        .expect("read");
    for (part, values) in got.iter().enumerate() {
        let mut want: Vec<String> = (0..600).filter(|i| i % 6 == part).map(|i| format!("v{i}")).collect();
        if let Some(k) = (0..6).filter(|p| before[*p as usize] != 2).position(|p| p as usize == part) {
            want.push(format!("w{k}"));
        }
        assert_eq!(values, &want, "partition {part}: every acknowledged record, once, in order");
    }
    drop(back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_changes_continue_after_the_raft_leader_is_killed() {
    let cell = Cell::up(&[]);
    let bs = cell.bootstrap();
    create(&bs, "before", 3).await;
    // Find the Raft leader among the voters and kill it.
    let voter = cell.info["voters"][0]["address"].as_str().expect("voter").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(["meta", "status", "--voter", &voter, "--output", "json"])
        .output()
        .expect("status");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let leader = s["leader"].as_u64().expect("leader");
    kill9(cell.voter_pid(leader));
    // Topic creation (through a broker, forwarded to the new active controller) carries on.
    let start = Instant::now();
    create(&bs, "after", 3).await;
    eprintln!("topic created {:?} after the leader voter was killed", start.elapsed());
    let status = cell.status();
    assert_eq!(leaders(&status, "after").len(), 3);
    assert!(leaders(&status, "after").iter().all(|l| *l > 0));
    // And the new topic takes writes.
    let p = producer(&bs);
    for part in 0..3 {
        p.send(FutureRecord::<(), _>::to("after").partition(part).payload("x"), Duration::from_secs(30))
            .await
            .expect("acknowledged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_cleanly_leaves_the_cell_at_once() {
    // Kafka's 9 s session: only controlled shutdown can make the change show in time.
    let cell = Cell::up(&["--broker-session-timeout-ms", "9000"]);
    let bs = cell.bootstrap();
    create(&bs, "clean", 3).await;
    let before = leaders(&cell.status(), "clean");
    assert!(before.contains(&3), "broker 3 leads a partition: {before:?}");
    let stopped = Instant::now();
    let _ = Command::new("kill").arg("-TERM").arg(cell.broker_pid(3).to_string()).status();
    loop {
        let s = cell.status();
        let ids: Vec<u64> =
            s["brokers"].as_array().expect("b").iter().map(|b| b["id"].as_u64().unwrap_or(0)).collect();
        if !ids.contains(&3) && !leaders(&s, "clean").contains(&3) {
            break;
        }
        assert!(stopped.elapsed() < Duration::from_secs(5), "broker 3 still routed to after SIGTERM: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("broker 3 out of the cell {:?} after SIGTERM", stopped.elapsed());
}

/// Waits until every partition of `topic` has its full ISR; returns the status.
fn wait_fully_replicated(cell: &Cell, topic: &str, within: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let s = cell.status();
        let parts: Vec<&serde_json::Value> =
            s["partitions"].as_array().expect("p").iter().filter(|p| p["topic"] == topic).collect();
        let full = !parts.is_empty()
            && parts.iter().all(|p| {
                p["leader"].as_i64().unwrap_or(-1) >= 0
                    && p["isr"].as_array().map(|a| a.len()) == p["replicas"].as_array().map(|a| a.len())
            });
        if full {
            return s;
        }
        assert!(start.elapsed() < within, "{topic} never fully replicated: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Per partition, each value sent in order with its outcome (the offset, or the error).
type Sent = Vec<Vec<(String, Result<i64, String>)>>;

/// A steady idempotent acks=all producer: one record every `every` to partitions 0..n in turn
/// until `stop` is set. Returns, per partition, the values in send order with their outcome.
fn steady_load(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Sent> {
    let p = producer(bootstrap);
    let topic = topic.to_string();
    tokio::spawn(async move {
        let mut pending = Vec::new();
        let mut i = 0usize;
        let mut tick = tokio::time::interval(every);
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            tick.tick().await;
            let part = (i % partitions as usize) as i32;
            let v = format!("m{i}");
            let rec = FutureRecord::<(), _>::to(&topic).partition(part).payload(&v);
            let fut = p.send_result(rec).expect("queue");
            pending.push((part, v, fut));
            i += 1;
        }
        let mut out = vec![Vec::new(); partitions as usize];
        for (part, v, fut) in pending {
            let r = match fut.await {
                Ok(Ok(d)) => Ok(d.offset),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            out[part as usize].push((v, r));
        }
        out
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf3_loses_nothing_when_the_leader_is_killed_under_load() {
    let cell = Cell::up(&[]);
    let bs = cell.bootstrap();
    create_rf(&bs, "pay", 3, 3, &[("min.insync.replicas", "2")]).await;
    let status = wait_fully_replicated(&cell, "pay", Duration::from_secs(30));
    let leader = leaders(&status, "pay")[0];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(&bs, "pay", 3, Duration::from_millis(5), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 the leader of partition 0 and time the first write acknowledged after it.
    kill9(cell.broker_pid(leader as u64));
    let killed = Instant::now();
    {
        // When the cell itself moved the partition (the client may take longer to notice).
        let bs = bs.clone();
        std::thread::spawn(move || loop {
            let out = Command::new(env!("CARGO_BIN_EXE_kora"))
                .args(["cell", "status", "--bootstrap", &bs, "--output", "json"])
                .output();
            if let Ok(out) = out {
                if let Ok(s) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    let l = leaders(&s, "pay");
                    if l.first().is_some_and(|l| *l != leader && *l > 0) {
                        eprintln!("partition 0: new leader {:?} after kill -9", killed.elapsed());
                        return;
                    }
                }
            }
            if killed.elapsed() > Duration::from_secs(20) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
    }
    let probe = producer(&bs);
    let mut n = 0;
    let failover = loop {
        let v = format!("probe{n}");
        n += 1;
        let r = probe
            .send(FutureRecord::<(), _>::to("pay").partition(0).payload(&v), Duration::from_secs(0))
            .await;
        if r.is_ok() {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no new leader for partition 0");
    };
    eprintln!("partition 0: first acknowledged write {failover:?} after kill -9 of its leader");
    assert!(failover < Duration::from_secs(10), "a new leader serves within 10 s: {failover:?}");
    let s = cell.status();
    let now = leaders(&s, "pay");
    assert!(now.iter().all(|l| *l != leader && *l > 0), "leadership moved off broker {leader}: {now:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let sent = load.await.expect("load");
    let total: usize = sent.iter().map(Vec::len).sum();
    for (part, values) in sent.iter().enumerate() {
        for (v, r) in values {
            assert!(r.is_ok(), "partition {part}: {v} not acknowledged: {r:?}");
        }
    }
    let probes = n;
    let bs2 = bs.clone();
    let got =
        tokio::task::spawn_blocking(move || read_all(&bs2, "pay", 3, total + probes)).await.expect("read");
    for (part, values) in got.iter().enumerate() {
        let acked: Vec<&String> = sent[part].iter().map(|(v, _)| v).collect();
        let mine: Vec<&String> = values.iter().filter(|v| v.starts_with('m')).collect();
        assert_eq!(mine, acked, "partition {part}: every acknowledged record once, in send order");
    }
    eprintln!("{total} records acknowledged across the failover, all read back once and in order");

    // The new leader reports the partition under-replicated while the old one is away.
    let new_leader = leaders(&cell.status(), "pay")[0] as u64;
    let urp = |id: u64| gauge(&admin_of(&cell, id), "kora_under_replicated_partitions");
    assert!(urp(new_leader) >= 1.0, "under-replicated while broker {leader} is down");
    // The killed broker returns, catches up and rejoins every ISR.
    let back = cell.restart_broker(leader as u64);
    let t = Instant::now();
    wait_fully_replicated(&cell, "pay", Duration::from_secs(60));
    eprintln!("broker {leader} back in every ISR {:?} after restart", t.elapsed());
    assert_eq!(urp(new_leader), 0.0, "fully replicated again");
    drop(back);
}

/// Whether process `pid` has exited (gone, or a zombie its parent has not reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn check_all_acknowledged_once_in_order(bs: &str, topic: &str, sent: &Sent) {
    let total: usize = sent.iter().map(Vec::len).sum();
    let got = read_all(bs, topic, sent.len() as i32, total);
    for (part, values) in got.iter().enumerate() {
        let acked: Vec<&String> = sent[part].iter().map(|(v, _)| v).collect();
        let mine: Vec<&String> = values.iter().filter(|v| v.starts_with('m')).collect();
        assert_eq!(mine, acked, "partition {part}: every acknowledged record once, in send order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_with_controlled_shutdown_fails_no_produce_request() {
    let cell = Cell::up(&["--leader-imbalance-check-interval-seconds", "1"]);
    let bs = cell.bootstrap();
    create_rf(&bs, "roll", 6, 3, &[("min.insync.replicas", "2")]).await;
    wait_fully_replicated(&cell, "roll", Duration::from_secs(30));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(&bs, "roll", 6, Duration::from_millis(5), stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut restarted = Vec::new();
    for id in 1..=3u64 {
        let pid = cell.broker_pid(id);
        let t = Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        while !exited(pid) {
            assert!(t.elapsed() < Duration::from_secs(30), "broker {id} did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("broker {id} stopped {:?} after SIGTERM", t.elapsed());
        restarted.push(cell.restart_broker(id));
        // As an operator would: the next broker goes only once nothing is under-replicated
        // and leadership is back on the preferred replicas.
        let t = Instant::now();
        let c = &cell;
        tokio::task::block_in_place(|| loop {
            let s = wait_fully_replicated(c, "roll", Duration::from_secs(60));
            let balanced = s["partitions"]
                .as_array()
                .expect("p")
                .iter()
                .filter(|p| p["topic"] == "roll")
                .all(|p| p["leader"] == p["replicas"][0]);
            if balanced {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "preferred leaders not restored: {s}");
            std::thread::sleep(Duration::from_millis(200));
        });
        eprintln!("broker {id} back in every ISR and leading again {:?} after restart", t.elapsed());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let sent = load.await.expect("load");
    let failed: Vec<&(String, Result<i64, String>)> =
        sent.iter().flatten().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "failed produce requests during the rolling restart: {failed:?}");
    let total: usize = sent.iter().map(Vec::len).sum();
    let bs2 = bs.clone();
    tokio::task::spawn_blocking(move || check_all_acknowledged_once_in_order(&bs2, "roll", &sent))
        .await
        .expect("check");
    eprintln!("{total} records acknowledged through a rolling restart of every broker");
    for mut c in restarted {
        let _ = Command::new("kill").arg("-TERM").arg(c.0.id().to_string()).status();
        let _ = c.0.wait();
    }
}

fn admin_of(cell: &Cell, id: u64) -> String {
    let b = cell.info["brokers"].as_array().expect("brokers").iter().find(|b| b["id"] == id).expect("broker");
    let a = b["admin"].as_str().unwrap_or_else(|| panic!("no admin address in {b}"));
    a.trim_start_matches("http://").to_string()
}

/// Fault injection through the broker's admin API, with the cell's operator token.
fn isolate(cell: &Cell, admin: &str, on: bool) {
    let method = if on { "POST" } else { "DELETE" };
    let token_file = cell.info["token_file"].as_str().expect("token_file");
    let token = std::fs::read_to_string(token_file).expect("token");
    let out = Command::new("curl")
        .args(["-sf", "-X", method, &format!("http://{admin}/v1/faults/isolate")])
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .output()
        .expect("curl");
    assert!(out.status.success(), "fault injection at {admin}: {}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_cut_off_from_its_peers_leaves_the_isr_and_catches_up() {
    let cell =
        Cell::up(&["--set", "fault.injection.enable=true", "--leader-imbalance-check-interval-seconds", "0"]);
    let bs = cell.bootstrap();
    create_rf(&bs, "cut", 3, 3, &[("min.insync.replicas", "2")]).await;
    let status = wait_fully_replicated(&cell, "cut", Duration::from_secs(30));
    // The worst case: cut off a leader. Its clients can still reach it.
    let victim = leaders(&status, "cut")[0] as u64;
    let admin = admin_of(&cell, victim);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(&bs, "cut", 3, Duration::from_millis(10), stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    isolate(&cell, &admin, true);
    let t = Instant::now();
    // A write the cut-off leader takes but cannot replicate: never acknowledged, and a tail
    // its log must lose when it returns.
    let victim_addr =
        cell.info["brokers"].as_array().expect("b").iter().find(|b| b["id"] == victim).expect("v")["address"]
            .as_str()
            .expect("address")
            .to_string();
    let code = tokio::task::block_in_place(|| {
        let mut conn = std::net::TcpStream::connect(&victim_addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        common::raw::produce(&mut conn, "cut", -1, common::raw::batch(5, 10)).responses[0].partition_responses
            [0]
        .error_code
    });
    assert_eq!(code, 7, "REQUEST_TIMED_OUT: the ISR never got the write");
    // The cell fences it, moves its leadership and drops it from every ISR; it keeps serving.
    // Asked of the other brokers: the cut-off one still believes its old metadata.
    let others: String = cell.info["brokers"]
        .as_array()
        .expect("b")
        .iter()
        .filter(|b| b["id"] != victim)
        .map(|b| b["address"].as_str().expect("address").to_string())
        .collect::<Vec<_>>()
        .join(",");
    let c = &cell;
    tokio::task::block_in_place(|| loop {
        let s = c.status_from(&others);
        let parts: Vec<&serde_json::Value> =
            s["partitions"].as_array().expect("p").iter().filter(|p| p["topic"] == "cut").collect();
        let out = parts.iter().all(|p| {
            p["leader"].as_u64() != Some(victim)
                && p["leader"].as_i64().unwrap_or(-1) > 0
                && !p["isr"].as_array().expect("isr").iter().any(|r| r.as_u64() == Some(victim))
        });
        if out {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "broker {victim} still in the cell: {s}");
        std::thread::sleep(Duration::from_millis(200));
    });
    eprintln!("isolated broker {victim} out of every ISR {:?} after the cut", t.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    isolate(&cell, &admin, false);
    let t = Instant::now();
    tokio::task::block_in_place(|| wait_fully_replicated(&cell, "cut", Duration::from_secs(60)));
    eprintln!("broker {victim} caught up and back in every ISR {:?} after healing", t.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let sent = load.await.expect("load");
    let failed: Vec<&(String, Result<i64, String>)> =
        sent.iter().flatten().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "writes failed: {failed:?}");
    let bs2 = bs.clone();
    tokio::task::spawn_blocking(move || check_all_acknowledged_once_in_order(&bs2, "cut", &sent))
        .await
        .expect("check");
    let metrics =
        Command::new("curl").args(["-sf", &format!("http://{admin}/metrics")]).output().expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    let truncations: f64 = metrics
        .lines()
        .find(|l| l.starts_with("kora_replica_truncations_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(truncations >= 1.0, "the unacknowledged tail was cut: {truncations}");
    // The returned broker holds the same log as the others: read each partition from it alone
    // as a follower (KIP-392 reads from any replica) and compare.
    let s = cell.status();
    let addr = s["brokers"].as_array().expect("b").iter().find(|b| b["id"] == victim).expect("victim")
        ["address"]
        .as_str()
        .expect("address")
        .to_string();
    for part in 0..3 {
        let leader_addr = {
            let l = leaders(&s, "cut")[part as usize];
            s["brokers"].as_array().expect("b").iter().find(|b| b["id"] == l).expect("leader")["address"]
                .as_str()
                .expect("address")
                .to_string()
        };
        let mine = read_partition_raw(&addr, "cut", part);
        let theirs = read_partition_raw(&leader_addr, "cut", part);
        assert_eq!(mine.len(), theirs.len(), "partition {part}: same records on the returned broker");
        assert_eq!(mine, theirs, "partition {part}: byte for byte");
    }
}

/// Every record batch of a partition as one broker serves it (Fetch v12, up to its high
/// watermark).
fn read_partition_raw(addr: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let req = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)]),
        ]);
        let r: FetchResponse = common::raw::request(&mut conn, ApiKey::Fetch, 12, &req).expect("fetch");
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch {topic}-{partition} from {addr}");
        let recs = p.records.clone().unwrap_or_default();
        if recs.is_empty() {
            return out;
        }
        // Advance past the last batch: base offset + last offset delta + 1.
        let mut pos = 0usize;
        while pos + 61 <= recs.len() {
            let base = i64::from_be_bytes(recs[pos..pos + 8].try_into().expect("8"));
            let len = i32::from_be_bytes(recs[pos + 8..pos + 12].try_into().expect("4")) as usize + 12;
            let delta = i32::from_be_bytes(recs[pos + 23..pos + 27].try_into().expect("4")) as i64;
            offset = base + delta + 1;
            pos += len;
        }
        out.extend_from_slice(&recs);
    }
}

/// An ongoing move as ListPartitionReassignments reports it: topic, partition, replicas,
/// adding, removing.
type Ongoing = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

fn reassignments(addr: &str) -> Vec<Ongoing> {
    use kafka_protocol::messages::{ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let r: ListPartitionReassignmentsResponse = common::raw::request(
        &mut conn,
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(5000),
    )
    .expect("list");
    assert_eq!(r.error_code, 0);
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    ids(&p.replicas),
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_between_brokers_under_load_within_the_throttle() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    };
    // 256 KiB/s for replicas a move adds: 2 MB take several seconds to copy.
    let cell = Cell::up(&[
        "--set",
        "follower.replication.throttled.rate=262144",
        "--leader-imbalance-check-interval-seconds",
        "1",
    ]);
    let bs = cell.bootstrap();
    create_rf(&bs, "move", 1, 2, &[("min.insync.replicas", "1")]).await;
    let s = wait_fully_replicated(&cell, "move", Duration::from_secs(30));
    let p0 =
        s["partitions"].as_array().expect("p").iter().find(|p| p["topic"] == "move").expect("move").clone();
    let before: Vec<i32> =
        p0["replicas"].as_array().expect("r").iter().map(|r| r.as_i64().expect("id") as i32).collect();
    let newcomer = (1..=3).find(|b| !before.contains(b)).expect("a broker without the partition");
    // The first replica (the leader) leaves; the newcomer becomes the preferred leader.
    let target = vec![newcomer, before[1]];
    let p = producer(&bs);
    let payload = vec![b'x'; 1000];
    // All in flight at once, then every acknowledgement awaited.
    let sends: Vec<_> = (0..2000)
        .map(|_| {
            p.send_result(FutureRecord::<(), _>::to("move").partition(0).payload(&payload)).expect("queue")
        })
        .collect();
    for d in sends {
        assert!(matches!(d.await, Ok(Ok(_))), "acknowledged");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(&bs, "move", 1, Duration::from_millis(10), stop.clone());
    let addr = bs.split(',').next().expect("a broker").to_string();
    let req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        ReassignableTopic::default().with_name(TopicName(StrBytes::from_static_str("move"))).with_partitions(
            vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(target.iter().map(|b| BrokerId(*b)).collect()))],
        ),
    ]);
    eprintln!("preloaded 2 MB");
    let started = Instant::now();
    let r: AlterPartitionReassignmentsResponse = tokio::task::block_in_place(|| {
        let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        common::raw::request(&mut conn, ApiKey::AlterPartitionReassignments, 0, &req).expect("alter")
    });
    assert_eq!(
        r.responses[0].partitions[0].error_code, 0,
        "{:?}",
        r.responses[0].partitions[0].error_message
    );
    let ongoing = tokio::task::block_in_place(|| reassignments(&addr));
    assert_eq!(ongoing.len(), 1, "listed while it runs: {ongoing:?}");
    assert_eq!((ongoing[0].3.clone(), ongoing[0].4.clone()), (vec![newcomer], vec![before[0]]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        tokio::task::block_in_place(|| reassignments(&addr)).len(),
        1,
        "2 MB at 256 KiB/s is still copying after 2 s: the throttle holds"
    );
    loop {
        if tokio::task::block_in_place(|| reassignments(&addr)).is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the move never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("partition moved from {before:?} to {target:?} in {:?} (throttled)", started.elapsed());
    let s = tokio::task::block_in_place(|| wait_fully_replicated(&cell, "move", Duration::from_secs(30)));
    let p0 =
        s["partitions"].as_array().expect("p").iter().find(|p| p["topic"] == "move").expect("move").clone();
    let after: Vec<i32> =
        p0["replicas"].as_array().expect("r").iter().map(|r| r.as_i64().expect("id") as i32).collect();
    assert_eq!(after, target);
    assert!(target.contains(&(p0["leader"].as_i64().expect("leader") as i32)));
    // The replica that left deleted its copy.
    let gone = cell.dir.path().join("cell").join(format!("broker-{}", before[0])).join("logs").join("move-0");
    let t = Instant::now();
    while gone.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "{} still exists", gone.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The operator commands: nothing under way now, and cancelling nothing says so.
    let kora = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_kora")).args(args).output().expect("kora");
    let out = kora(&["cell", "reassignments", "--bootstrap", &bs, "--output", "json"]);
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed["reassignments"], serde_json::json!([]));
    let out =
        kora(&["cell", "reassign", "--bootstrap", &bs, "--topic", "move", "--partition", "0", "--cancel"]);
    assert!(!out.status.success(), "cancelling no move fails");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error 85"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And moving it back with the CLI, waiting for it: the broker that deleted its copy
    // fetches it all again.
    let back = format!("{},{}", before[0], before[1]);
    let out = kora(&[
        "cell",
        "reassign",
        "--bootstrap",
        &bs,
        "--topic",
        "move",
        "--partition",
        "0",
        "--replicas",
        &back,
        "--wait",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(done["state"], "completed");
    let s = tokio::task::block_in_place(|| wait_fully_replicated(&cell, "move", Duration::from_secs(30)));
    let p0 =
        s["partitions"].as_array().expect("p").iter().find(|p| p["topic"] == "move").expect("move").clone();
    assert_eq!(p0["replicas"], serde_json::json!([before[0], before[1]]));
    stop.store(true, std::sync::atomic::Ordering::Release);
    let sent = load.await.expect("load");
    let failed: Vec<&(String, Result<i64, String>)> =
        sent.iter().flatten().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "writes failed during the move: {failed:?}");
    let bs2 = bs.clone();
    tokio::task::spawn_blocking(move || check_all_acknowledged_once_in_order(&bs2, "move", &sent))
        .await
        .expect("check");
}

/// An unlabelled metric of the broker whose admin endpoint is `admin`.
fn gauge(admin: &str, name: &str) -> f64 {
    let out = Command::new("curl").args(["-sf", &format!("http://{admin}/metrics")]).output().expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} at {admin}"))
}

/// `kora_topic_bytes_out_total` for `topic` on the broker whose admin endpoint is `admin`.
fn bytes_out(admin: &str, topic: &str) -> f64 {
    let out = Command::new("curl").args(["-sf", &format!("http://{admin}/metrics")]).output().expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("kora_topic_bytes_out_total") && l.contains(&format!("topic=\"{topic}\"")))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reads_from_the_replica_in_its_zone() {
    let cell = Cell::up(&[]);
    let bs = cell.bootstrap();
    create_rf(&bs, "near", 1, 3, &[]).await;
    let s = wait_fully_replicated(&cell, "near", Duration::from_secs(30));
    let leader = leaders(&s, "near")[0];
    let rack_of = |id: i64| -> String {
        s["brokers"].as_array().expect("b").iter().find(|b| b["id"] == id).expect("broker")["rack"]
            .as_str()
            .expect("rack")
            .to_string()
    };
    let follower = (1..=3i64).find(|b| *b != leader).expect("a follower");
    let zone = rack_of(follower);
    let p = producer(&bs);
    let values: Vec<String> = (0..200).map(|i| format!("n{i}")).collect();
    let sends: Vec<_> = values
        .iter()
        .map(|v| p.send_result(FutureRecord::<(), _>::to("near").partition(0).payload(v)).expect("queue"))
        .collect();
    for d in sends {
        assert!(matches!(d.await, Ok(Ok(_))), "acknowledged");
    }
    let (bs2, zone2) = (bs.clone(), zone.clone());
    let got = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bs2)
            .set("group.id", "near-reader")
            .set("client.rack", &zone2)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("near", 0, Offset::Beginning).expect("tpl");
        c.assign(&tpl).expect("assign");
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < 200 && start.elapsed() < Duration::from_secs(60) {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            }
        }
        got
    })
    .await
    .expect("consume");
    let want: Vec<String> = (0..200).map(|i| format!("n{i}")).collect();
    assert_eq!(got, want, "every record, in order, from the replica in {zone}");
    let from_follower = bytes_out(&admin_of(&cell, follower as u64), "near");
    let from_leader = bytes_out(&admin_of(&cell, leader as u64), "near");
    eprintln!("bytes served: follower {follower} ({zone}) {from_follower}, leader {leader} {from_leader}");
    assert!(from_follower > 0.0, "the replica in the consumer's zone served the records");
    assert_eq!(from_leader, 0.0, "the leader only pointed the consumer at its zone's replica");
}

/// The group's coordinator as `kora groups describe` reports it (None while none answers).
fn coordinator_of(bootstrap: &str, group: &str) -> Option<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(["groups", "describe", group, "--bootstrap", bootstrap, "--output", "json"])
        .output()
        .expect("kora groups describe");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()?["coordinator"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_the_loss_of_the_group_coordinator() {
    let cell = Cell::up(&[]);
    let bs = cell.bootstrap();
    create_rf(&bs, "offs", 3, 3, &[("min.insync.replicas", "2")]).await;
    let p = producer(&bs);
    for part in 0..3 {
        for i in 0..10 {
            p.send(
                FutureRecord::<(), _>::to("offs").partition(part).payload(&format!("v{i}")),
                Duration::from_secs(30),
            )
            .await
            .expect("acknowledged");
        }
    }
    let group = "movers";
    let consumer = || -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &bs)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    };
    let mut want = TopicPartitionList::new();
    for part in 0..3 {
        want.add_partition_offset("offs", part, Offset::Offset(4 + part as i64)).expect("tpl");
    }
    want.find_partition("offs", 1).expect("p1").set_metadata("checkpoint-7");
    let c = &cell;
    let coordinator = tokio::task::block_in_place(|| {
        let first = consumer();
        // Answered once the offsets partition's ISR has the commit.
        first.commit(&want, rdkafka::consumer::CommitMode::Sync).expect("commit");
        drop(first);
        wait_fully_replicated(c, "__consumer_offsets", Duration::from_secs(30));
        coordinator_of(&bs, group).expect("a coordinator")
    });
    kill9(cell.broker_pid(coordinator));
    let t = Instant::now();
    // A new member of the group reads the commits back from the coordinator that took over.
    let committed = tokio::task::block_in_place(|| {
        let next = consumer();
        let mut ask = TopicPartitionList::new();
        for part in 0..3 {
            ask.add_partition("offs", part);
        }
        loop {
            if let Ok(got) = next.committed_offsets(ask.clone(), Duration::from_secs(5)) {
                if got.elements().iter().all(|e| e.offset() != Offset::Invalid) {
                    return got;
                }
            }
            assert!(t.elapsed() < Duration::from_secs(60), "no committed offsets after the coordinator died");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    eprintln!("committed offsets served again {:?} after the coordinator was killed", t.elapsed());
    for part in 0..3 {
        let e = committed.find_partition("offs", part).expect("partition");
        assert_eq!(e.offset(), Offset::Offset(4 + part as i64), "partition {part}");
    }
    assert_eq!(committed.find_partition("offs", 1).expect("p1").metadata(), "checkpoint-7");
    let now = tokio::task::block_in_place(|| coordinator_of(&bs, group));
    assert!(now.is_some_and(|n| n != coordinator), "the coordinator moved off the dead broker: {now:?}");
}

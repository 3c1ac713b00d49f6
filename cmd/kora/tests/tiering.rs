//! Tiered storage with real parts: a real S3-compatible server (s3s-fs), Azure's storage
//! emulator (Azurite), both installed by scripts/setup-test-deps.sh, and the local-directory
//! store; real `kora` processes, librdkafka.
//!
//! Sizes: `KORA_TIER_TEST_MB` (default 2048) megabytes are produced in the S3 and local
//! round-trip tests, `KORA_TIER_AZURE_MB` (default 512) in the Azure one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, Kora};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const BUCKET: &str = "kora-bucket";
const VALUE_BYTES: usize = 1000;

/// A running s3s-fs serving `root` (one directory per bucket).
struct S3 {
    child: Option<Child>,
    port: u16,
    root: PathBuf,
}

impl S3 {
    fn start(root: &Path, port: u16) -> S3 {
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket dir");
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "kora-test", "--secret-key", "kora-test-secret"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs (installed by scripts/setup-test-deps.sh)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3 { child: Some(child), port, root: root.to_path_buf() }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A `kora dev` whose object store is this server.
    fn kora(&self) -> Kora {
        self.kora_with(&[])
    }

    /// Like `kora`, with extra command-line arguments.
    fn kora_with(&self, extra: &[&str]) -> Kora {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let url = format!("s3://{BUCKET}/tier");
        let mut args = vec!["--object-store", &url, "--set", "remote.log.manager.task.interval.ms=200"];
        args.extend_from_slice(extra);
        Kora::start_with_env(&args, &env)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT".into(), format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), "kora-test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "kora-test-secret".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Azurite's blob service on `port`, data under `root`, with one container.
struct Azurite {
    child: Child,
    port: u16,
}

/// Azurite's well-known development account (public, in Azure's documentation).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    fn start(root: &Path, container: &str) -> Azurite {
        let port = free_port();
        let child = Command::new("azurite-blob")
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent"])
            .args(["--skipApiVersionCheck", "--location"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob (installed by scripts/setup-test-deps.sh)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "azurite did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = Azurite { child, port };
        a.create_container(container);
        a
    }

    /// Create Container, signed with Shared Key (object_store, like Kafka's tiered storage,
    /// expects the container to exist).
    fn create_container(&self, container: &str) {
        use base64::Engine;
        use std::io::{Read, Write};
        let b64 = base64::engine::general_purpose::STANDARD;
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{a}/{a}/{container}\nrestype:container",
            a = AZURITE_ACCOUNT
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b64.decode(AZURITE_KEY).expect("key"));
        let sig = b64.encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect azurite");
        write!(
            conn,
            "PUT /{a}/{container}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {a}:{sig}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            a = AZURITE_ACCOUNT,
            p = self.port
        )
        .expect("send");
        let mut reply = String::new();
        conn.read_to_string(&mut reply).expect("reply");
        assert!(reply.starts_with("HTTP/1.1 201"), "create container: {reply}");
    }

    fn kora(&self, container: &str) -> Kora {
        let url = format!("az://{container}/tier");
        let blob_url = format!("http://127.0.0.1:{}", self.port);
        Kora::start_with_env(
            &["--object-store", &url, "--set", "remote.log.manager.task.interval.ms=200"],
            &[("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", &blob_url)],
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of record `i`: its index, then bytes that depend on it.
fn value(i: u64) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.extend((0..VALUE_BYTES - 8).map(|j| (i as usize * 31 + j) as u8));
    v
}

async fn create_tiered(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("remote.storage.enable", "true")
        .set("segment.bytes", "8388608")
        .set("local.retention.bytes", "1");
    for r in admin.create_topics([&t], &AdminOptions::new()).await.expect("create") {
        r.expect("created");
    }
}

fn produce(bootstrap: &str, topic: &str, from: u64, n: u64) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .expect("producer");
    for i in from..from + n {
        let key = i.to_string();
        let v = value(i);
        let mut rec = BaseRecord::to(topic).key(&key).payload(&v);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

/// Reads every partition from offset 0 and checks each record against `value`; returns how
/// many records were read. Each partition must be contiguous from 0 to its end.
fn verify_all(bootstrap: &str, topic: &str, partitions: i32, expected: u64) -> u64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tier-verifier")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(0)).expect("tpl");
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        assert_eq!(lo, 0, "partition {p} starts at 0");
        ends.insert(p, hi);
    }
    assert_eq!(ends.values().sum::<i64>() as u64, expected);
    c.assign(&tpl).expect("assign");
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let mut seen = BTreeSet::new();
    let mut n = 0u64;
    let mut last_progress = Instant::now();
    while n < expected {
        assert!(
            last_progress.elapsed() < Duration::from_secs(60),
            "reading stalled at {n} of {expected}: {next:?}"
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("message");
        let p = m.partition();
        assert_eq!(m.offset(), next[&p], "partition {p} is contiguous");
        next.insert(p, m.offset() + 1);
        let i: u64 = std::str::from_utf8(m.key().expect("key")).expect("utf8").parse().expect("index");
        assert_eq!(m.payload().expect("value"), value(i).as_slice(), "record {i} byte-exact");
        assert!(seen.insert(i), "record {i} twice");
        n += 1;
        last_progress = Instant::now();
    }
    n
}

/// ListOffsets by timestamp answered from the object store: the timestamp of record 1000 of
/// partition 0 maps back to an offset at or before 1000 whose record is not older.
fn timestamp_lookup_in_remote_data(bootstrap: &str, topic: &str) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tier-ts")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let record_at = |offset: i64| -> i64 {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(offset)).expect("tpl");
        c.assign(&tpl).expect("assign");
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(30), "no record at {offset}");
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                assert_eq!(m.offset(), offset);
                return m.timestamp().to_millis().expect("timestamp");
            }
        }
    };
    let ts = record_at(1000);
    let mut want = TopicPartitionList::new();
    want.add_partition_offset(topic, 0, Offset::Offset(ts)).expect("tpl");
    let got = c.offsets_for_times(want, Duration::from_secs(10)).expect("offsets_for_times");
    let Offset::Offset(o) = got.elements()[0].offset() else { panic!("no offset for {ts}: {got:?}") };
    assert!(o <= 1000, "first record at or after {ts} is at {o}");
    assert!(record_at(o) >= ts);
    if o > 0 {
        assert!(record_at(o - 1) < ts, "{o} is the first such record");
    }
}

fn topic_json(k: &Kora, topic: &str) -> serde_json::Value {
    let raw = k.admin_get(&format!("/v1/topics/{topic}"));
    let body = raw.split("\r\n\r\n").nth(1).expect("http body");
    serde_json::from_str(body.trim()).expect("topic json")
}

fn metric(k: &Kora, name: &str) -> f64 {
    k.admin_get("/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Waits until every partition keeps little locally and all closed segments are uploaded.
fn wait_uploaded(k: &Kora, topic: &str) {
    let start = Instant::now();
    loop {
        let v = topic_json(k, topic);
        let done = v["partitions"].as_array().expect("partitions").iter().all(|p| {
            // Local: the active segment plus at most one closed segment still being trimmed.
            p["local_bytes"].as_u64().unwrap_or(u64::MAX) <= 2 * 8_388_608 + 1_100_000
                && p["remote_segments"].as_array().is_some_and(|s| !s.is_empty())
        });
        let lag = k
            .admin_get("/metrics")
            .lines()
            .filter(|l| l.starts_with("kora_remote_upload_lag_bytes{"))
            .all(|l| l.ends_with(" 0"));
        if done && lag {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "uploads did not finish: {v}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

async fn round_trip(k: &mut Kora) {
    let mb: u64 = std::env::var("KORA_TIER_TEST_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(2048);
    round_trip_mb(k, mb).await
}

async fn round_trip_mb(k: &mut Kora, mb: u64) {
    let n = mb * 1_000_000 / VALUE_BYTES as u64;
    create_tiered(&k.bootstrap, "history", 4).await;
    let bs = k.bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&bs, "history", 0, n)).await.expect("produce");
    wait_uploaded(k, "history");
    let v = topic_json(k, "history");
    let (local, remote): (u64, u64) =
        v["partitions"].as_array().expect("partitions").iter().fold((0, 0), |acc, p| {
            (acc.0 + p["local_bytes"].as_u64().unwrap_or(0), acc.1 + p["remote_bytes"].as_u64().unwrap_or(0))
        });
    if mb >= 256 {
        // Each partition keeps its active segment (up to 8 MiB) locally.
        assert!(remote > 3 * local, "mostly remote: local {local} remote {remote}");
    }
    let local_start = v["partitions"][0]["local_start_offset"].as_i64().expect("local start");
    assert!(local_start > 1000, "offset 1000 is only in the object store (local start {local_start})");
    let bs = k.bootstrap.clone();
    tokio::task::spawn_blocking(move || timestamp_lookup_in_remote_data(&bs, "history"))
        .await
        .expect("lookup");
    let bs = k.bootstrap.clone();
    let read = tokio::task::spawn_blocking(move || verify_all(&bs, "history", 4, n)).await.expect("verify");
    assert_eq!(read, n);
    assert!(metric(k, "kora_remote_cache_misses") > 0.0, "reads went to the object store");
    k.stop();
    k.restart();
    let bs = k.bootstrap.clone();
    let read = tokio::task::spawn_blocking(move || verify_all(&bs, "history", 4, n)).await.expect("verify");
    assert_eq!(read, n);
    // The read cache's disk level (remote.log.reader.cache.bytes, 1 GiB) outlives the restart:
    // a log that fits is read back from local disk without touching the store.
    let (disk_hits, misses) =
        (metric(k, "kora_remote_cache_disk_hits"), metric(k, "kora_remote_cache_misses"));
    if mb < 900 {
        assert!(disk_hits > 0.0 && misses == 0.0, "disk hits {disk_hits}, store reads {misses}");
    } else {
        assert!(misses > 0.0, "a log larger than the cache is read from the store again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_s3() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s3 = S3::start(tmp.path(), free_port());
    let mut k = s3.kora();
    round_trip(&mut k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_azure_blob_storage() {
    let tmp = tempfile::tempdir().expect("tmp");
    let az = Azurite::start(tmp.path(), "kora");
    let mut k = az.kora("kora");
    let mb: u64 = std::env::var("KORA_TIER_AZURE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    round_trip_mb(&mut k, mb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_a_local_directory() {
    // kora dev's default store: <data dir>/objects.
    let mut k = Kora::start(&["--set", "remote.log.manager.task.interval.ms=200"]);
    round_trip(&mut k).await;
    assert!(k.data_dir.join("objects").read_dir().expect("objects dir").count() > 0);
}

#[test]
fn a_store_that_cannot_be_used_stops_start_up_with_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let port = free_port(); // nothing listens there
    let out = Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(["dev", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--object-store", "s3://nope/x"])
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "a")
        .env("AWS_SECRET_ACCESS_KEY", "b")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run kora");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("object store s3://nope/x is not usable"), "{err}");
}

/// Every object under the topic's prefix in the s3s-fs root, as keys.
fn objects_on_disk(root: &Path, topic_dir_prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let base = root.join(BUCKET);
    let mut stack = vec![base.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(&base) {
                let key = rel.to_string_lossy().into_owned();
                if key.starts_with(topic_dir_prefix) {
                    out.insert(key);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_delays_uploads_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("s3");
    let port = free_port();
    let mut s3 = S3::start(&root, port);
    let mut k = s3.kora();
    create_tiered(&k.bootstrap, "events", 2).await;

    // A steady producer for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let (bs, stop2, produced2) = (k.bootstrap.clone(), stop.clone(), produced.clone());
    let producer = std::thread::spawn(move || {
        let mut i = 0;
        while !stop2.load(Ordering::Acquire) {
            produce(&bs, "events", i, 5_000);
            i += 5_000;
            produced2.store(i, Ordering::Release);
        }
    });
    let start = Instant::now();
    while metric(&k, "kora_remote_bytes_uploaded_total") == 0.0 {
        assert!(start.elapsed() < Duration::from_secs(60), "nothing uploaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The store goes away mid-stream: produce and fetch of recent data carry on.
    s3.stop();
    let before = produced.load(Ordering::Acquire);
    let start = Instant::now();
    while produced.load(Ordering::Acquire) < before + 20_000 {
        assert!(start.elapsed() < Duration::from_secs(60), "produce stalled during the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = Instant::now();
    while metric(&k, "kora_remote_upload_errors_total") == 0.0 {
        assert!(start.elapsed() < Duration::from_secs(30), "no upload attempt failed during the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The store comes back: uploads resume and catch up.
    let s3b = S3::start(&root, port);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Release);
    producer.join().expect("producer");
    let total = produced.load(Ordering::Acquire);
    wait_uploaded(&k, "events");
    let bs = k.bootstrap.clone();
    let read =
        tokio::task::spawn_blocking(move || verify_all(&bs, "events", 2, total)).await.expect("verify");
    assert_eq!(read, total);

    // After a restart (whose sweep removes any unreferenced object), the store holds exactly
    // what the manifest names.
    // (An upload cut short by the stop leaves objects no manifest names; the start-up sweep
    // removes them, so the check waits for it.)
    k.stop();
    k.restart();
    let bs = k.bootstrap.clone();
    let read =
        tokio::task::spawn_blocking(move || verify_all(&bs, "events", 2, total)).await.expect("verify");
    assert_eq!(read, total);
    let start = Instant::now();
    loop {
        let v = topic_json(&k, "events");
        let id = v["topic_id"].as_str().expect("id").to_string();
        let mut manifest = BTreeSet::new();
        for p in v["partitions"].as_array().expect("partitions") {
            for s in p["remote_segments"].as_array().expect("segments") {
                for key in s["keys"].as_array().expect("keys") {
                    manifest.insert(key.as_str().expect("key").to_string());
                }
            }
        }
        let on_disk = objects_on_disk(&s3b.root, &format!("tier/events-{id}"));
        if on_disk == manifest {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "orphans stay visible: {:?}; missing: {:?}",
            on_disk.difference(&manifest).collect::<Vec<_>>(),
            manifest.difference(&on_disk).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bounds_the_log_across_both_tiers() {
    let k = Kora::start(&["--set", "remote.log.manager.task.interval.ms=200"]);
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &k.bootstrap).create().expect("admin");
    // Eight 8 MiB segments of 1 KB records; retention keeps about three of them in total.
    let t = NewTopic::new("bounded", 1, TopicReplication::Fixed(1))
        .set("remote.storage.enable", "true")
        .set("segment.bytes", "8388608")
        .set("local.retention.bytes", "1")
        .set("retention.bytes", "25165824");
    for r in admin.create_topics([&t], &AdminOptions::new()).await.expect("create") {
        r.expect("created");
    }
    let n = 70_000;
    let bs = k.bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&bs, "bounded", 0, n)).await.expect("produce");
    // Steady state: uploads done, retention applied, and (deleted segments' objects gone) only
    // the manifest's objects on disk.
    let start = Instant::now();
    let v = loop {
        let v = topic_json(&k, "bounded");
        let p = &v["partitions"][0];
        let remote = p["remote_bytes"].as_u64().unwrap_or(0);
        let local = p["local_bytes"].as_u64().unwrap_or(0);
        let id = v["topic_id"].as_str().expect("id");
        let dir = k.data_dir.join("objects").join(format!("bounded-{id}")).join("0");
        let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        let keys: usize = p["remote_segments"]
            .as_array()
            .expect("segments")
            .iter()
            .map(|s| s["keys"].as_array().map_or(0, Vec::len))
            .sum();
        let lag_done = k
            .admin_get("/metrics")
            .lines()
            .filter(|l| l.starts_with("kora_remote_upload_lag_bytes{") && l.contains("bounded"))
            .all(|l| l.ends_with(" 0"));
        if p["log_start_offset"].as_i64().unwrap_or(0) > 0
            && remote + local <= 25_165_824 + 8_388_608
            && lag_done
            && files == keys
        {
            break v;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let names: Vec<String> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let warnings: Vec<String> = std::fs::read_to_string(k.log_path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .map(str::to_string)
                .collect();
            panic!("no steady state: {files} files {names:?}, {keys} keys: {v}\nwarnings: {warnings:#?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let p = &v["partitions"][0];
    let log_start = p["log_start_offset"].as_i64().expect("log start");
    let first_remote = p["remote_segments"][0]["base_offset"].as_i64().expect("a remote segment");
    assert_eq!(first_remote, log_start, "the log starts where the manifest starts");
    assert!(
        p["remote_segments"]
            .as_array()
            .expect("segments")
            .iter()
            .any(|s| s["keys"].as_array().map_or(0, Vec::len) == 4),
        "segments carry their producer snapshot"
    );
    // Consumers see the log from its new start, contiguous, every record intact.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &k.bootstrap)
        .set("group.id", "bounded-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (lo, hi) = c.fetch_watermarks("bounded", 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!((lo, hi), (log_start, n as i64));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("bounded", 0, Offset::Beginning).expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut next = lo;
    let start = Instant::now();
    while next < hi {
        assert!(start.elapsed() < Duration::from_secs(60), "stalled at {next}");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            assert_eq!(m.offset(), next);
            let i: u64 = std::str::from_utf8(m.key().expect("key")).expect("utf8").parse().expect("index");
            assert_eq!(m.payload().expect("value"), value(i).as_slice());
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_store_does_not_hold_up_local_partitions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut s3 = S3::start(tmp.path(), free_port());
    // Remote reads may wait long; the hot partition must not wait with them.
    let k = s3.kora_with(&["--set", "remote.fetch.max.wait.ms=10000"]);
    create_tiered(&k.bootstrap, "mixed", 2).await;
    // Partition 0 gets enough to tier; partition 1 stays local.
    let bs = k.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bs)
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        for i in 0..20_000u64 {
            let v = value(i);
            let key = i.to_string();
            let mut rec = BaseRecord::to("mixed").partition(0).key(&key).payload(&v);
            while let Err((_, r)) = p.send(rec) {
                rec = r;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        p.flush(Duration::from_secs(60)).expect("flush");
    })
    .await
    .expect("produce");
    let start = Instant::now();
    while topic_json(&k, "mixed")["partitions"][0]["local_start_offset"].as_i64().unwrap_or(0) == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "partition 0 never tiered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The store now hangs: its port accepts connections and never answers.
    s3.stop();
    let black_hole = std::net::TcpListener::bind(("127.0.0.1", s3.port)).expect("bind the store's port");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in black_hole.incoming().flatten() {
            held.push(c);
        }
    });
    // 100 records for the hot partition, sent while a consumer's fetch is waiting on the
    // hanging store: it reads partition 1 (so it is in every fetch), then takes on partition 0
    // from offset 0 (only in the store), so its fetches hold a remote read that never ends.
    let bs = k.bootstrap.clone();
    let produce_hot = move || {
        let p: ThreadedProducer<DefaultProducerContext> =
            ClientConfig::new().set("bootstrap.servers", &bs).create().expect("producer");
        for i in 0..100u64 {
            let v = value(i);
            p.send(BaseRecord::<str, [u8]>::to("mixed").partition(1).payload(&v)).expect("send");
        }
        p.flush(Duration::from_secs(30)).expect("flush");
    };
    let bs = k.bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bs)
            .set("group.id", "mixed-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let hot = |c: &BaseConsumer, want: usize| {
            let start = Instant::now();
            let mut n = 0;
            while n < want && start.elapsed() < Duration::from_secs(30) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    if m.partition() == 1 {
                        n += 1;
                    }
                }
            }
            (n, start.elapsed())
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("mixed", 1, Offset::Offset(0)).expect("tpl");
        c.assign(&tpl).expect("assign");
        produce_hot();
        assert_eq!(hot(&c, 100).0, 100, "the hot partition alone");
        let mut cold = TopicPartitionList::new();
        cold.add_partition_offset("mixed", 0, Offset::Offset(0)).expect("tpl");
        c.incremental_assign(&cold).expect("incremental assign");
        // Polled so partition 0 joins the fetches, which now wait on the store.
        let idle = Instant::now();
        while idle.elapsed() < Duration::from_secs(2) {
            assert!(
                c.poll(Duration::from_millis(100)).is_none_or(|m| m.is_err()),
                "a record from the hung store"
            );
        }
        produce_hot();
        hot(&c, 100)
    })
    .await
    .expect("consume");
    // Not after remote.fetch.max.wait.ms (10 s): an append to the hot partition ends the wait.
    assert_eq!(got.0, 100, "local partition starved by the unreachable store");
    assert!(got.1 < Duration::from_secs(5), "hot records waited for the remote read: {:?}", got.1);
    let unfinished =
        metric(&k, "kora_remote_read_timeouts_total") + metric(&k, "kora_remote_read_deferred_total");
    assert!(unfinished > 0.0);
}

//! `kora bench`: a load generator for any Kafka-compatible broker, built on librdkafka.
//!
//! Produce runs open loop when given a rate: message i of a producer is *due* at
//! `start + i / rate`, is sent as soon as it is due (or late, if the client is behind), and its
//! latency is measured from when it was due to when it was acknowledged. A slow broker therefore
//! shows as latency instead of silently lowering the offered load (no coordinated omission).
//! Without a rate it runs closed loop, as fast as the client's queue allows.
//!
//! Latencies go into HDR histograms (microsecond resolution); throughput counts payload bytes.
//! Progress is exposed through atomics so the CLI can draw a bar without this crate knowing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

pub mod batches;
mod rebalance;
pub use rebalance::{rebalance, RebalanceOptions, RebalanceReport};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Setup(String),
}

/// Counters the caller can watch while a run goes.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub errors: AtomicU64,
    /// Messages the run aims at (0 when it runs for a duration).
    pub target: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub bootstrap: String,
    pub topic: String,
    /// Partitions to create the topic with when it does not exist; messages go round-robin.
    pub partitions: i32,
    pub message_bytes: usize,
    pub messages: u64,
    /// Run for this long instead of a message count.
    pub duration: Option<Duration>,
    pub acks: String,
    pub linger_ms: u32,
    pub batch_bytes: usize,
    pub compression: String,
    /// Producer instances, one connection each.
    pub producers: usize,
    /// Offered load in messages per second over all producers (open loop); None: closed loop.
    pub rate: Option<f64>,
    /// Further librdkafka settings.
    pub extra: Vec<(String, String)>,
    /// Write the send time (Unix nanoseconds, big-endian u64) into each payload's first 8
    /// bytes, for end-to-end latency.
    pub stamp: bool,
}

#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub bootstrap: String,
    pub topic: String,
    /// Stop after this many messages; 0: everything up to the high watermarks at start.
    pub messages: u64,
    pub duration: Option<Duration>,
    /// Consumer instances (threads, one connection each); partitions are split between them.
    pub consumers: usize,
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub msgs_per_s: f64,
    pub offered_msgs_per_s: Option<f64>,
    pub latency: Option<Latency>,
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| Histogram::new(3).expect("hdr"))
}

fn latency_of(h: &Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Some(Latency {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    })
}

fn report(
    mode: &'static str,
    messages: u64,
    bytes: u64,
    errors: u64,
    elapsed: Duration,
    offered: Option<f64>,
    h: Option<&Histogram<u64>>,
) -> Report {
    let s = elapsed.as_secs_f64().max(1e-9);
    Report {
        mode,
        messages,
        bytes,
        errors,
        seconds: s,
        mb_per_s: bytes as f64 / s / 1e6,
        msgs_per_s: messages as f64 / s,
        offered_msgs_per_s: offered,
        latency: h.and_then(latency_of),
    }
}

/// Delivery callbacks: latency from when each message was due, counted into a histogram.
struct Deliveries {
    start: Instant,
    hist: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    bytes: AtomicU64,
    progress: Arc<Progress>,
}

impl ClientContext for Deliveries {}
impl ProducerContext for Deliveries {
    /// Nanoseconds after `start` at which the message was due.
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, due_ns: usize) {
        match r {
            Ok(m) => {
                let due = self.start + Duration::from_nanos(due_ns as u64);
                let us = Instant::now().saturating_duration_since(due).as_micros() as u64;
                if let Ok(mut h) = self.hist.lock() {
                    let _ = h.record(us.max(1));
                }
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(m.payload_len() as u64, Ordering::Relaxed);
                self.progress.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn client_config(bootstrap: &str, extra: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in extra {
        c.set(k.as_str(), v.as_str());
    }
    c
}

/// The settings of `extra` that say how to reach and log in to the brokers (`security.*`,
/// `sasl.*`, `ssl.*`, `socket.*`, `broker.address.*`): what the admin connection needs too.
fn connection_settings(extra: &[(String, String)]) -> Vec<(String, String)> {
    const PREFIXES: [&str; 5] = ["security.", "sasl.", "ssl.", "socket.", "broker.address."];
    extra.iter().filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p))).cloned().collect()
}

/// Creates the topic unless it exists; returns its partition count (an existing topic keeps
/// its own). `extra`: the run's librdkafka settings, of which the connection's are used (a
/// tenant's SASL login, for one).
pub fn ensure_topic(
    bootstrap: &str,
    extra: &[(String, String)],
    topic: &str,
    partitions: i32,
) -> Result<i32, BenchError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap, &connection_settings(extra)).create()?;
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let res = futures::executor::block_on(admin.create_topics([&t], &AdminOptions::new()))?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(BenchError::Setup(format!("creating topic {name}: {code}"))),
        }
    }
    // CreateTopics can answer before every broker's metadata has the topic (Apache Kafka's
    // brokers learn it from the controller a moment later): ask again for up to 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let md = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let n = md.topics().first().map_or(0, |t| t.partitions().len() as i32);
        if n > 0 {
            return Ok(n);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Setup(format!("topic {topic} has no partitions")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn produce(o: &ProduceOptions, progress: Arc<Progress>) -> Result<Report, BenchError> {
    if o.producers == 0 || o.partitions < 1 || o.message_bytes == 0 {
        return Err(BenchError::Setup("producers, partitions and message size must be positive".into()));
    }
    let partitions = ensure_topic(&o.bootstrap, &o.extra, &o.topic, o.partitions)?;
    let total = if o.duration.is_some() { u64::MAX } else { o.messages };
    progress.target.store(if o.duration.is_some() { 0 } else { o.messages }, Ordering::Relaxed);
    let payload: Vec<u8> = (0..o.message_bytes).map(|i| (i * 7 + 13) as u8).collect();
    let start = Instant::now();
    let mut threads = Vec::new();
    for n in 0..o.producers {
        let mut cfg = client_config(&o.bootstrap, &o.extra);
        cfg.set("acks", o.acks.as_str())
            .set("linger.ms", o.linger_ms.to_string())
            .set("batch.size", o.batch_bytes.to_string())
            .set("compression.codec", o.compression.as_str())
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        let ctx = Deliveries {
            start,
            hist: Mutex::new(new_histogram()),
            acked: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            progress: progress.clone(),
        };
        let producer: ThreadedProducer<Deliveries> = cfg.create_with_context(ctx)?;
        let (topic, mut payload) = (o.topic.clone(), payload.clone());
        let stamp = o.stamp && payload.len() >= 8;
        let share = if total == u64::MAX {
            u64::MAX
        } else {
            total / o.producers as u64 + u64::from((n as u64) < total % o.producers as u64)
        };
        let period_ns = o.rate.map(|r| 1e9 / (r / o.producers as f64));
        let deadline = o.duration.map(|d| start + d);
        threads.push(std::thread::spawn(move || -> Result<ThreadedProducer<Deliveries>, BenchError> {
            let mut i: u64 = 0;
            while i < share {
                let due_ns = match period_ns {
                    Some(p) => {
                        let due = (i as f64 * p) as u64;
                        let due_at = start + Duration::from_nanos(due);
                        let now = Instant::now();
                        if due_at > now {
                            std::thread::sleep(due_at - now);
                        }
                        due
                    }
                    None => start.elapsed().as_nanos() as u64,
                };
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                // Round-robin, each producer starting at its own partition.
                let part = ((i as usize + n) % partitions as usize) as i32;
                if stamp {
                    payload[..8].copy_from_slice(&(unix_nanos() as u64).to_be_bytes());
                }
                let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, due_ns as usize)
                    .payload(&payload[..])
                    .partition(part);
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            rec = r;
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        Err((e, _)) => return Err(e.into()),
                    }
                }
                i += 1;
            }
            producer.flush(Duration::from_secs(120))?;
            Ok(producer)
        }));
    }
    let mut hist = new_histogram();
    let (mut acked, mut bytes) = (0u64, 0u64);
    let mut producers = Vec::new();
    for t in threads {
        let p = t.join().map_err(|_| BenchError::Setup("producer thread panicked".into()))??;
        producers.push(p);
    }
    let elapsed = start.elapsed();
    for p in &producers {
        let ctx = p.context();
        acked += ctx.acked.load(Ordering::Relaxed);
        bytes += ctx.bytes.load(Ordering::Relaxed);
        if let Ok(h) = ctx.hist.lock() {
            let _ = hist.add(&*h);
        }
    }
    Ok(report("produce", acked, bytes, progress.errors.load(Ordering::Relaxed), elapsed, o.rate, Some(&hist)))
}

fn consumer_config(o: &ConsumeOptions) -> ClientConfig {
    let mut cfg = client_config(&o.bootstrap, &o.extra);
    cfg.set("group.id", "kora-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    cfg
}

pub fn consume(o: &ConsumeOptions, progress: Arc<Progress>) -> Result<Report, BenchError> {
    if o.consumers == 0 {
        return Err(BenchError::Setup("consumers must be positive".into()));
    }
    let probe: BaseConsumer = consumer_config(o).create()?;
    let md = probe.fetch_metadata(Some(&o.topic), Duration::from_secs(10))?;
    let parts = md
        .topics()
        .first()
        .map(|t| t.partitions().len() as i32)
        .filter(|&n| n > 0)
        .ok_or_else(|| BenchError::Setup(format!("topic {} not found", o.topic)))?;
    // What each partition holds now: the run reads it all (or `messages`, or for `duration`).
    let mut per_partition = Vec::with_capacity(parts as usize);
    for p in 0..parts {
        let (lo, hi) = probe.fetch_watermarks(&o.topic, p, Duration::from_secs(10))?;
        per_partition.push((hi - lo).max(0) as u64);
    }
    drop(probe);
    let everything: u64 = per_partition.iter().sum();
    let target = if o.messages > 0 { o.messages.min(everything) } else { everything };
    progress.target.store(if o.duration.is_some() { 0 } else { target }, Ordering::Relaxed);
    let n_consumers = o.consumers.min(parts as usize);
    let start = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for k in 0..n_consumers {
        let mine: Vec<i32> = (0..parts).filter(|p| *p as usize % n_consumers == k).collect();
        let c: BaseConsumer = consumer_config(o).create()?;
        let mut tpl = TopicPartitionList::new();
        for &p in &mine {
            tpl.add_partition_offset(&o.topic, p, Offset::Beginning)?;
        }
        c.assign(&tpl)?;
        let (duration, progress, done) = (o.duration, progress.clone(), done.clone());
        threads.push(std::thread::spawn(move || -> Result<(u64, u64), BenchError> {
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut last_data = Instant::now();
            loop {
                let all = done.load(Ordering::Relaxed);
                if duration.map_or(all >= target, |d| start.elapsed() >= d) {
                    return Ok((n, bytes));
                }
                if last_data.elapsed() > Duration::from_secs(10) {
                    return Err(BenchError::Setup(format!(
                        "no data for 10 s after {all} of {target} messages"
                    )));
                }
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        n += 1;
                        bytes += m.payload_len() as u64;
                        last_data = Instant::now();
                        let all = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if all % 1024 == 0 {
                            progress.done.store(all, Ordering::Relaxed);
                        }
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => {}
                }
            }
        }));
    }
    let (mut n, mut bytes) = (0u64, 0u64);
    for t in threads {
        let (a, b) = t.join().map_err(|_| BenchError::Setup("consumer thread panicked".into()))??;
        n += a;
        bytes += b;
    }
    progress.done.store(n, Ordering::Relaxed);
    Ok(report("consume", n, bytes, 0, start.elapsed(), None, None))
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// End to end: a consumer reads from the log end while `produce` runs with stamped payloads;
/// latency is from the stamp (send time) to when the consumer holds the record.
pub fn e2e(o: &ProduceOptions, progress: Arc<Progress>) -> Result<Report, BenchError> {
    if o.message_bytes < 8 {
        return Err(BenchError::Setup("e2e needs messages of at least 8 bytes (the send stamp)".into()));
    }
    let partitions = ensure_topic(&o.bootstrap, &o.extra, &o.topic, o.partitions)?;
    let mut cfg = client_config(&o.bootstrap, &o.extra);
    cfg.set("group.id", "kora-bench-e2e")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1");
    let c: BaseConsumer = cfg.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, hi) = c.fetch_watermarks(&o.topic, p, Duration::from_secs(10))?;
        tpl.add_partition_offset(&o.topic, p, Offset::Offset(hi))?;
    }
    c.assign(&tpl)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = std::thread::spawn(move || -> Result<(u64, u64, Histogram<u64>), BenchError> {
        let mut h = new_histogram();
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut idle_since: Option<Instant> = None;
        loop {
            match c.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    idle_since = None;
                    if let Some(p) = m.payload().filter(|p| p.len() >= 8) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&p[..8]);
                        let sent = u64::from_be_bytes(b) as u128;
                        let us = unix_nanos().saturating_sub(sent) / 1000;
                        let _ = h.record((us as u64).max(1));
                        n += 1;
                        bytes += p.len() as u64;
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => {
                    if stop2.load(Ordering::Acquire) {
                        // The producer is done: drain until quiet for a second.
                        let t = *idle_since.get_or_insert_with(Instant::now);
                        if t.elapsed() > Duration::from_secs(1) {
                            return Ok((n, bytes, h));
                        }
                    }
                }
            }
        }
    });
    let mut po = o.clone();
    po.stamp = true;
    let produced = produce(&po, progress);
    stop.store(true, Ordering::Release);
    let (n, bytes, h) = reader.join().map_err(|_| BenchError::Setup("consumer thread panicked".into()))??;
    let produced = produced?;
    let mut r = report(
        "e2e",
        n,
        bytes,
        produced.messages.saturating_sub(n),
        Duration::from_secs_f64(produced.seconds),
        o.rate,
        Some(&h),
    );
    r.errors += produced.errors;
    Ok(r)
}

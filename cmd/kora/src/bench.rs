//! `kora bench`: command-line front of the kora-bench load generator and the null sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kora_bench::{ConsumeOptions, ProduceOptions, Progress, Report};
use kora_broker::config::Advertised;
use kora_broker::sink::Sink;

use crate::Output;

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Produce load and report MB/s, msgs/s and latency percentiles.
    Produce(ProduceArgs),
    /// Produce and consume at once; report produce-to-consume latency (payloads carry send stamps).
    E2e(ProduceArgs),
    /// Read a topic from the start and report MB/s and msgs/s.
    Consume(ConsumeArgs),
    /// Run the null sink: a server that answers Produce at once and stores nothing (the limit).
    Sink(SinkArgs),
    /// Time for a consumer group to assign every partition: formation, then one more member.
    Rebalance(RebalanceArgs),
}

#[derive(Args, Debug)]
pub(crate) struct RebalanceArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "kora-bench-rebalance")]
    topic: String,
    #[arg(long, default_value_t = 100)]
    partitions: i32,
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// classic or consumer (KIP-848).
    #[arg(long, default_value = "classic")]
    protocol: String,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds a phase may take before the run fails.
    #[arg(long, default_value_t = 60.0)]
    timeout_s: f64,
    /// Extra consumer settings, librdkafka names (e.g. heartbeat.interval.ms=500).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct ProduceArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "kora-bench")]
    topic: String,
    /// Partitions to create the topic with if it does not exist.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    #[arg(long, default_value_t = 1024)]
    message_bytes: usize,
    /// Messages to send (ignored with --duration).
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Run for this many seconds instead of a message count.
    #[arg(long)]
    duration_s: Option<f64>,
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    #[arg(long, default_value_t = 1_048_576)]
    batch_bytes: usize,
    #[arg(long, default_value = "none")]
    compression: String,
    /// Producer instances (one connection each).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Offered load in messages/s (open loop). Without it: as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Offered load in MB/s (open loop), converted with --message-bytes.
    #[arg(long, conflicts_with = "rate")]
    rate_mb: Option<f64>,
    /// Extra librdkafka settings, KEY=VALUE.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct ConsumeArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "kora-bench")]
    topic: String,
    /// Messages to read; 0 reads up to the high watermarks seen at start.
    #[arg(long, default_value_t = 0)]
    messages: u64,
    #[arg(long)]
    duration_s: Option<f64>,
    /// Consumer instances (threads); partitions are split between them.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// librdkafka (one message per poll, as applications read), or batches (whole record
    /// batches per fetch through Kora's protocol client: the broker's fetch path, not the
    /// client, sets the figure).
    #[arg(long, value_enum, default_value = "librdkafka")]
    client: ConsumeClient,
    /// Extra librdkafka settings, KEY=VALUE (--client librdkafka).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConsumeClient {
    Librdkafka,
    Batches,
}

#[derive(Args, Debug)]
pub(crate) struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:9900")]
    listen: SocketAddr,
    /// Partitions every topic appears to have.
    #[arg(long, default_value_t = 64)]
    partitions: i32,
}

/// Runs `work` on a thread while drawing a progress bar from `progress` (text output only).
fn with_progress<T: Send + 'static>(
    output: Output,
    progress: Arc<Progress>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let handle = std::thread::spawn(work);
    let bar = if output == Output::Text {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} msgs ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    while !handle.is_finished() {
        if let Some(b) = &bar {
            b.set_length(progress.target.load(std::sync::atomic::Ordering::Relaxed));
            b.set_position(progress.done.load(std::sync::atomic::Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    handle.join().map_err(|_| anyhow::anyhow!("benchmark thread panicked"))
}

fn print_report(output: Output, r: &Report) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string(r)?),
        Output::Text => {
            println!(
                "{}: {} messages, {:.1} MB in {:.2} s: {:.1} MB/s, {:.0} msgs/s{}",
                r.mode,
                r.messages,
                r.bytes as f64 / 1e6,
                r.seconds,
                r.mb_per_s,
                r.msgs_per_s,
                if r.errors > 0 { format!(", {} errors", r.errors) } else { String::new() }
            );
            if let Some(o) = r.offered_msgs_per_s {
                println!("  offered load: {o:.0} msgs/s (open loop)");
            }
            if let Some(l) = &r.latency {
                println!(
                    "  latency ms: p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}  mean {:.2}",
                    l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
                );
            }
        }
    }
    Ok(())
}

fn produce_options(a: ProduceArgs) -> Result<ProduceOptions> {
    let rate = a.rate.or(a.rate_mb.map(|mb| mb * 1e6 / a.message_bytes as f64));
    Ok(ProduceOptions {
        bootstrap: a.bootstrap,
        topic: a.topic,
        partitions: a.partitions,
        message_bytes: a.message_bytes,
        messages: a.messages,
        duration: a.duration_s.map(Duration::from_secs_f64),
        acks: a.acks,
        linger_ms: a.linger_ms,
        batch_bytes: a.batch_bytes,
        compression: a.compression,
        producers: a.producers,
        rate,
        extra: crate::key_values(&a.set)?,
        stamp: false,
    })
}

/// Runs one benchmark with a progress bar and prints its report.
fn measure(
    output: Output,
    what: &str,
    work: impl FnOnce(Arc<Progress>) -> Result<Report, kora_bench::BenchError> + Send + 'static,
) -> Result<()> {
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let r = with_progress(output, progress, move || work(p))?.with_context(|| format!("{what} benchmark"))?;
    print_report(output, &r)
}

pub(crate) fn run(cmd: BenchCommand, output: Output) -> Result<()> {
    match cmd {
        BenchCommand::E2e(a) => {
            let opts = produce_options(a)?;
            measure(output, "e2e", move |p| kora_bench::e2e(&opts, p))
        }
        BenchCommand::Produce(a) => {
            let opts = produce_options(a)?;
            measure(output, "produce", move |p| kora_bench::produce(&opts, p))
        }
        BenchCommand::Consume(a) => {
            let opts = ConsumeOptions {
                bootstrap: a.bootstrap,
                topic: a.topic,
                messages: a.messages,
                duration: a.duration_s.map(Duration::from_secs_f64),
                consumers: a.consumers,
                extra: crate::key_values(&a.set)?,
            };
            match a.client {
                ConsumeClient::Librdkafka => {
                    measure(output, "consume", move |p| kora_bench::consume(&opts, p))
                }
                ConsumeClient::Batches => {
                    if !opts.extra.is_empty() {
                        anyhow::bail!("--set configures librdkafka; --client batches takes none");
                    }
                    measure(output, "consume", move |p| kora_bench::batches::consume(&opts, p))
                }
            }
        }
        BenchCommand::Rebalance(a) => {
            if !matches!(a.protocol.as_str(), "classic" | "consumer") {
                anyhow::bail!("--protocol must be classic or consumer");
            }
            let opts = kora_bench::RebalanceOptions {
                bootstrap: a.bootstrap,
                topic: a.topic,
                partitions: a.partitions,
                members: a.members,
                protocol: a.protocol,
                rounds: a.rounds.max(1),
                timeout: Duration::from_secs_f64(a.timeout_s.clamp(1.0, 3600.0)),
                extra: crate::key_values(&a.set)?,
            };
            let progress = Arc::new(Progress::default());
            let p = progress.clone();
            let r = with_progress(output, progress, move || kora_bench::rebalance(&opts, p))?
                .context("rebalance benchmark")?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&r)?),
                Output::Text => {
                    let f: Vec<String> = r.formation_ms.iter().map(|x| format!("{x:.0}")).collect();
                    let j: Vec<String> = r.join_ms.iter().map(|x| format!("{x:.0}")).collect();
                    println!(
                        "rebalance ({}): {} members, {} partitions: formation median {:.0} ms [{}], one more member median {:.0} ms [{}]",
                        r.protocol,
                        r.members,
                        r.partitions,
                        r.formation_median_ms,
                        f.join(", "),
                        r.join_median_ms,
                        j.join(", ")
                    );
                }
            }
            Ok(())
        }
        BenchCommand::Sink(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(a.listen)
                    .await
                    .with_context(|| format!("listen on {}", a.listen))?;
                let addr = listener.local_addr()?;
                let ip = addr.ip();
                let host = if ip.is_unspecified() { "127.0.0.1".to_string() } else { ip.to_string() };
                let sink = Arc::new(Sink::new(
                    a.partitions,
                    Advertised { host: host.clone(), port: addr.port() },
                    104_857_600,
                ));
                match output {
                    Output::Json => {
                        println!("{}", serde_json::json!({"bootstrap": format!("{host}:{}", addr.port())}))
                    }
                    Output::Text => println!(
                        "null sink on {host}:{} (answers Produce, stores nothing); Ctrl-C stops",
                        addr.port()
                    ),
                }
                let (tx, rx) = tokio::sync::watch::channel(false);
                let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(10_000));
                let plain = kora_broker::server::Listener::plaintext();
                let server = tokio::spawn(kora_broker::server::serve(listener, plain, sink, slots, rx));
                let _ = tokio::signal::ctrl_c().await;
                let _ = tx.send(true);
                let _ = server.await;
                Ok(())
            })
        }
    }
}

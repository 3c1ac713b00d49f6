//! `kora meta`: run a metadata voter of a cell, and manage the quorum (status, add and remove
//! voters, create topics) through any voter's HTTP API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kora_meta::controller::ControllerConfig;
use kora_meta::Controller;
use kora_quorum::api::{AddVoter, ApiState, CreateTopic};
use kora_quorum::{Node, NodeId, Quorum, QuorumConfig, QuorumStatus, RaftLog};

use crate::Output;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct MetaArgs {
    #[command(subcommand)]
    command: Option<MetaCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum MetaCommand {
    /// A voter's view of the quorum: leader, term, voters, log and applied indexes.
    Status(VoterArg),
    /// Add a voter (started with `kora meta --node-id N` and no --voters): it joins as a
    /// learner, catches up, then votes.
    AddVoter {
        #[command(flatten)]
        voter: VoterArg,
        /// Node id of the new voter.
        #[arg(long)]
        id: NodeId,
        /// Its listener (host:port).
        #[arg(long)]
        address: String,
    },
    /// Remove a voter from the quorum.
    RemoveVoter {
        #[command(flatten)]
        voter: VoterArg,
        #[arg(long)]
        id: NodeId,
    },
    /// Create a topic through the quorum (any voter; it is forwarded to the leader).
    CreateTopic {
        #[command(flatten)]
        voter: VoterArg,
        name: String,
        #[arg(long, default_value_t = -1)]
        partitions: i32,
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
    },
}

#[derive(Args, Debug)]
struct VoterArg {
    /// Any voter's listener (host:port); several, comma-separated, are tried in turn.
    #[arg(long)]
    voter: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// This voter's id (unique in the cell).
    #[arg(long)]
    node_id: Option<NodeId>,
    /// HTTP listener for Raft and the admin API (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:9093")]
    listen: SocketAddr,
    /// Address other voters use (default: the listener's).
    #[arg(long)]
    advertised: Option<String>,
    /// Where the Raft log and the metadata state live.
    #[arg(long, default_value = "./kora-meta")]
    data_dir: PathBuf,
    /// The cell's first voters, `id@host:port` comma-separated (this one included). Omit it on
    /// a voter that will be added to a running quorum with `kora meta add-voter`.
    #[arg(long)]
    voters: Option<String>,
    /// Raft heartbeat interval.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Raft election timeout (a random value between this and twice it).
    #[arg(long, default_value_t = 500)]
    election_timeout_ms: u64,
    /// A broker whose heartbeats stop for this long is fenced (broker.session.timeout.ms).
    #[arg(long, default_value_t = 3_000)]
    broker_session_timeout_ms: u64,
    /// How often the active controller moves leadership back to preferred replicas that are
    /// in sync again (leader.imbalance.check.interval.seconds; 0 turns it off).
    #[arg(long, default_value_t = 30)]
    leader_imbalance_check_interval_seconds: u64,
    /// Entries between snapshots; the log before a snapshot is purged, but for the last
    /// min(this, 1000) entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_entries: u64,
}

impl MetaArgs {
    /// `kora meta` without a subcommand runs a voter (a server).
    pub(crate) fn runs_voter(&self) -> bool {
        self.command.is_none()
    }
}

pub(crate) fn parse_voters(s: &str) -> Result<BTreeMap<NodeId, Node>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) =
            part.split_once('@').with_context(|| format!("voter '{part}': expected id@host:port"))?;
        let id: NodeId = id.parse().with_context(|| format!("voter '{part}': bad id"))?;
        if !addr.contains(':') {
            bail!("voter '{part}': expected id@host:port");
        }
        if out.insert(id, Node { addr: addr.to_string() }).is_some() {
            bail!("voter id {id} appears twice");
        }
    }
    if out.is_empty() {
        bail!("--voters names no voter");
    }
    Ok(out)
}

pub(crate) fn run(args: MetaArgs, output: Output) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    match args.command {
        None => runtime.block_on(run_voter(args.run, output)),
        Some(cmd) => runtime.block_on(admin(cmd, output)),
    }
}

async fn run_voter(a: RunArgs, output: Output) -> Result<()> {
    let node_id = a.node_id.context("--node-id is required to run a voter")?;
    let voters = a.voters.as_deref().map(parse_voters).transpose()?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let local = listener.local_addr().context("listener address")?;
    let advertised = match (&a.advertised, &voters) {
        (Some(adv), _) => adv.clone(),
        (None, Some(v)) => v.get(&node_id).map(|n| n.addr.clone()).unwrap_or_else(|| local.to_string()),
        (None, None) => local.to_string(),
    };
    let mut config = QuorumConfig::new(node_id, advertised.clone(), a.data_dir.clone());
    config.heartbeat_interval_ms = a.heartbeat_ms;
    config.election_timeout_min_ms = a.election_timeout_ms;
    config.election_timeout_max_ms = a.election_timeout_ms * 2;
    config.snapshot_after_entries = a.snapshot_entries;
    // Entries kept behind a snapshot for followers that lag a little (they need no snapshot).
    config.max_in_snapshot_log_to_keep = a.snapshot_entries.min(1_000);
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .context("http client")?;
    let quorum = Quorum::open(config, http.clone()).await.context("cannot start the voter")?;
    let controller = Arc::new(Controller::with_log(
        Arc::new(RaftLog::new(quorum.clone(), tokio::runtime::Handle::current())),
        ControllerConfig {
            default_partitions: 1,
            default_replication_factor: 1,
            // Replicas go to the registered, unfenced brokers.
            broker_count: 0,
            topic_defaults: BTreeMap::new(),
            max_partitions_per_topic: 100_000,
        },
    ));
    let app =
        kora_quorum::api::router(ApiState { quorum: quorum.clone(), controller: controller.clone(), http });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    if let Some(v) = voters {
        quorum.bootstrap(v).await.context("cannot bootstrap the quorum")?;
    }
    // The first leader of a new cell gives it its cluster id.
    let (q, c) = (quorum.clone(), controller.clone());
    tokio::spawn(async move {
        let mut rx = q.raft.metrics();
        loop {
            if q.is_leader() && q.image().cluster_id.is_empty() {
                let c = c.clone();
                match tokio::task::spawn_blocking(move || c.ensure_cluster_id()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot commit the cluster id yet"),
                    Err(e) => tracing::warn!(error = %e, "cluster id task"),
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    // The leader fences brokers whose heartbeats stopped.
    // It also restores preferred leaders (auto.leader.rebalance.enable).
    let (q, c, timeout_ms) = (quorum.clone(), controller.clone(), a.broker_session_timeout_ms);
    let rebalance_every = Duration::from_secs(a.leader_imbalance_check_interval_seconds);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_rebalance = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            if !q.is_leader() {
                continue;
            }
            let rebalance = !rebalance_every.is_zero() && last_rebalance.elapsed() >= rebalance_every;
            if rebalance {
                last_rebalance = tokio::time::Instant::now();
            }
            let c = c.clone();
            let work = move || -> Result<(), kora_meta::MetaError> {
                c.fence_expired(timeout_ms)?;
                if rebalance {
                    c.elect_preferred_leaders()?;
                }
                Ok(())
            };
            match tokio::task::spawn_blocking(work).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "fencing brokers or restoring leaders failed"),
                Err(e) => tracing::warn!(error = %e, "fencing task"),
            }
        }
    });
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "node_id": node_id,
                "listener": local.to_string(),
                "advertised": advertised,
                "data_dir": a.data_dir.display().to_string(),
            })
        ),
        Output::Text => {
            println!("kora meta voter {node_id} listening on {local} (advertised {advertised})");
            println!("  data in {}", a.data_dir.display());
            println!("  status: kora meta status --voter {advertised}");
        }
    }
    tokio::select! {
        _ = crate::wait_for_signal() => {}
        r = server => {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "listener failed"),
                Err(e) => tracing::error!(error = %e, "listener task failed"),
            }
        }
    }
    tracing::info!("voter shutting down");
    quorum.shutdown().await;
    Ok(())
}

/// Sends a request to the first voter that answers.
async fn call(
    voters: &str,
    f: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, serde_json::Value)> {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(60)).build().context("http client")?;
    let mut last = None;
    for v in voters.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        match f(&client, v).send().await {
            Ok(r) => {
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
                return Ok((status, body));
            }
            Err(e) => last = Some(format!("{v}: {e}")),
        }
    }
    bail!("no voter answered ({})", last.unwrap_or_else(|| "no voter given".into()))
}

fn print_status(s: &QuorumStatus, output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string(s)?),
        Output::Text => {
            println!(
                "voter {}  state {}  term {}  leader {}",
                s.node_id,
                s.state,
                s.term,
                s.leader.map_or("none".to_string(), |l| format!(
                    "{l} ({})",
                    s.leader_address.as_deref().unwrap_or("?")
                ))
            );
            println!(
                "log: last {}  applied {}  snapshot {}  purged {}   records {}  topics {}  cluster {}",
                opt(s.last_log_index),
                opt(s.last_applied_index),
                opt(s.snapshot_index),
                opt(s.purged_index),
                s.record_index,
                s.topics,
                s.cluster_id
            );
            println!("{:<8} {:<8} ADDRESS", "ID", "ROLE");
            for (id, addr) in &s.voters {
                println!("{id:<8} {:<8} {addr}", if Some(*id) == s.leader { "leader" } else { "voter" });
            }
            for (id, addr) in &s.learners {
                println!("{id:<8} {:<8} {addr}", "learner");
            }
        }
    }
    Ok(())
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn check(status: reqwest::StatusCode, body: &serde_json::Value) -> Result<()> {
    if !status.is_success() {
        bail!("{} ({status})", body["error"].as_str().unwrap_or("request failed"));
    }
    Ok(())
}

async fn admin(cmd: MetaCommand, output: Output) -> Result<()> {
    match cmd {
        MetaCommand::Status(v) => {
            let (status, body) = call(&v.voter, |c, addr| c.get(format!("http://{addr}/v1/quorum"))).await?;
            check(status, &body)?;
            print_status(&serde_json::from_value(body)?, output)
        }
        MetaCommand::AddVoter { voter, id, address } => {
            let req = AddVoter { id, address };
            let (status, body) =
                call(&voter.voter, |c, addr| c.post(format!("http://{addr}/v1/quorum/voters")).json(&req))
                    .await?;
            check(status, &body)?;
            print_status(&serde_json::from_value(body)?, output)
        }
        MetaCommand::RemoveVoter { voter, id } => {
            let (status, body) =
                call(&voter.voter, |c, addr| c.delete(format!("http://{addr}/v1/quorum/voters/{id}")))
                    .await?;
            check(status, &body)?;
            print_status(&serde_json::from_value(body)?, output)
        }
        MetaCommand::CreateTopic { voter, name, partitions, replication_factor } => {
            let req = CreateTopic { name, partitions, replication_factor, configs: BTreeMap::new() };
            let (status, body) =
                call(&voter.voter, |c, addr| c.post(format!("http://{addr}/v1/topics")).json(&req)).await?;
            check(status, &body)?;
            match output {
                Output::Json => println!("{body}"),
                Output::Text => println!(
                    "created topic {} ({} partitions, id {})",
                    body["name"].as_str().unwrap_or(""),
                    body["partitions"],
                    body["topic_id"].as_str().unwrap_or("")
                ),
            }
            Ok(())
        }
    }
}

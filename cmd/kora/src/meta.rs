//! `kora meta`: run a metadata voter of a cell, and manage the quorum (status, add and remove
//! voters, create topics) through any voter's HTTP API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kora_api::client::first_answer;
use kora_api::{AddVoter, Client, CreateTopic, QuorumStatus, Token};
use kora_meta::controller::ControllerConfig;
use kora_quorum::{Duties, Node, NodeId, QuorumConfig, Voter, VoterOptions};

use crate::access::Access;
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

pub(crate) fn run(args: MetaArgs, output: Output, access: &Access) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    match args.command {
        None => runtime.block_on(run_voter(args.run, output, access)),
        Some(cmd) => runtime.block_on(admin(cmd, output, access)),
    }
}

/// Runs a voter. `--token-file` names the cell's token (one line, at least 16 characters):
/// required of every call that changes state, and presented to the other members. `kora cell
/// up` writes one.
async fn run_voter(a: RunArgs, output: Output, access: &Access) -> Result<()> {
    let node_id = a.node_id.context("--node-id is required to run a voter")?;
    let token_file = access.token_file.as_deref().context(
        "--token-file is required to run a voter: the cell's token, which its members and operators present",
    )?;
    let token = Arc::new(Token::load(token_file)?);
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
    config.token = Some(token);
    let voter = Voter::start(VoterOptions {
        quorum: config,
        listener,
        bootstrap: voters,
        controller: ControllerConfig {
            default_partitions: 1,
            default_replication_factor: 1,
            // Replicas go to the registered, unfenced brokers.
            broker_count: 0,
            topic_defaults: BTreeMap::new(),
            max_partitions_per_topic: 100_000,
        },
        duties: Duties {
            broker_session_timeout_ms: a.broker_session_timeout_ms,
            leader_imbalance_check_interval: Duration::from_secs(a.leader_imbalance_check_interval_seconds),
        },
    })
    .await
    .context("cannot start the voter")?;
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
    let mut voter = voter;
    tokio::select! {
        _ = crate::wait_for_signal() => {}
        r = &mut voter.server => {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "listener failed"),
                Err(e) => tracing::error!(error = %e, "listener task failed"),
            }
        }
    }
    tracing::info!("voter shutting down");
    voter.shutdown().await;
    Ok(())
}

/// A client per voter named in `--voter` (comma-separated), each with the operator token.
fn voters(list: &str, access: &Access) -> Result<Vec<Client>> {
    let clients = list
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| access.client(v, Duration::from_secs(60)))
        .collect::<Result<Vec<_>>>()?;
    if clients.is_empty() {
        bail!("--voter names no voter");
    }
    Ok(clients)
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

/// A failed call, said for a person: which voter could not be reached, or what to do about a
/// refusal.
fn failed(e: kora_api::ApiError, access: &Access) -> anyhow::Error {
    if e.is_unreachable() {
        return anyhow::Error::new(e).context("no voter answered");
    }
    access.explain(e)
}

async fn admin(cmd: MetaCommand, output: Output, access: &Access) -> Result<()> {
    let status = match cmd {
        MetaCommand::Status(v) => {
            first_answer(&voters(&v.voter, access)?, |c| async move { c.quorum_status().await }).await
        }
        MetaCommand::AddVoter { voter, id, address } => {
            let req = AddVoter { id, address };
            first_answer(&voters(&voter.voter, access)?, |c| {
                let req = req.clone();
                async move { c.add_voter(&req).await }
            })
            .await
        }
        MetaCommand::RemoveVoter { voter, id } => {
            first_answer(&voters(&voter.voter, access)?, |c| async move { c.remove_voter(id).await }).await
        }
        MetaCommand::CreateTopic { voter, name, partitions, replication_factor } => {
            let req = CreateTopic { name, partitions, replication_factor, configs: BTreeMap::new() };
            let t = first_answer(&voters(&voter.voter, access)?, |c| {
                let req = req.clone();
                async move { c.create_topic(&req).await }
            })
            .await
            .map_err(|e| failed(e, access))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&t)?),
                Output::Text => {
                    println!("created topic {} ({} partitions, id {})", t.name, t.partitions, t.topic_id)
                }
            }
            return Ok(());
        }
    };
    print_status(&status.map_err(|e| failed(e, access))?, output)
}

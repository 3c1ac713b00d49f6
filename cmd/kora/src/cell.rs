//! `kora cell up`: a whole cell on 127.0.0.1 (each voter and broker its own `kora` process),
//! and `kora cell status`: brokers, partition leaders, ISR, under-replicated partitions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::access::Access;
use crate::Output;

#[derive(Subcommand, Debug)]
pub(crate) enum CellCommand {
    /// Start a cell on 127.0.0.1 and run it in the foreground until interrupted. The first
    /// line printed is the bootstrap list. Run again on the same --data-dir to restart it
    /// with the same ids and ports.
    Up(UpArgs),
    /// Brokers, partition leaders, ISR and under-replicated partitions of a running cell.
    Status(StatusArgs),
    /// Move a partition to other brokers (AlterPartitionReassignments), or cancel a move.
    Reassign(ReassignArgs),
    /// Partition moves under way (ListPartitionReassignments).
    Reassignments(StatusArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ReassignArgs {
    /// Any broker(s) of the cell, host:port comma-separated.
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: i32,
    /// The new replicas, broker ids comma-separated, preferred leader first.
    #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
    replicas: Vec<i32>,
    /// Cancel the partition's ongoing move instead.
    #[arg(long, conflicts_with = "replicas")]
    cancel: bool,
    /// Wait until the move completes.
    #[arg(long)]
    wait: bool,
}

impl CellCommand {
    /// `kora cell up` supervises a running cell (a server).
    pub(crate) fn runs_cell(&self) -> bool {
        matches!(self, CellCommand::Up(_))
    }
}

#[derive(Args, Debug)]
pub(crate) struct UpArgs {
    /// Brokers (ids 1..N, zones zone-a, zone-b, zone-c in turn).
    #[arg(long, default_value_t = 3)]
    brokers: u32,
    /// Metadata voters (1, 3 or 5; ids 1001..).
    #[arg(long, default_value_t = 3)]
    voters: u32,
    #[arg(long, default_value = "./kora-cell")]
    data_dir: PathBuf,
    /// Voters fence a broker whose heartbeats stop for this long.
    #[arg(long, default_value_t = 3_000)]
    broker_session_timeout_ms: u64,
    /// How often voters move leadership back to preferred replicas (0: never).
    #[arg(long, default_value_t = 30)]
    leader_imbalance_check_interval_seconds: u64,
    /// Extra broker settings (Kafka names), for every broker; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Clients must authenticate (SASL PLAIN, SCRAM-SHA-256/512, as tenants' API keys or
    /// SCRAM users): each broker gets a SASL_PLAINTEXT listener CLIENT for them, and brokers
    /// reach each other on their PLAINTEXT listener BROKER.
    #[arg(long)]
    auth: bool,
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Any broker(s) of the cell, host:port comma-separated.
    #[arg(long)]
    bootstrap: String,
}

/// The cell's layout, kept in `<data dir>/cell.json` so a restart reuses ids and ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Layout {
    voters: Vec<Member>,
    brokers: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Member {
    id: u64,
    /// Kafka listener (brokers) or HTTP listener (voters).
    address: String,
    /// Brokers: admin HTTP and metadata listeners.
    #[serde(default)]
    admin: String,
    #[serde(default)]
    metadata: String,
    #[serde(default)]
    zone: String,
    /// Brokers of a cell with `--auth`: the SASL listener clients use.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    client: String,
}

/// Ports handed to the cell's processes come from below Linux's default ephemeral range
/// (32768-60999). A port from `bind(0)` is an ephemeral one: between our check and the child's
/// bind, any process's outgoing connection (a client, a follower fetch, a Raft RPC) may take it
/// as its source port, and the child then fails to listen. Nothing takes these ports on its own.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// Picks ports in `PORT_RANGE` that are free now: random, so cells started side by side rarely
/// try the same one, never the same one twice, and each checked by binding it.
struct Ports {
    state: u64,
    picked: std::collections::BTreeSet<u16>,
}

impl Ports {
    fn new() -> Self {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Ports { state: (seed as u64) ^ ((std::process::id() as u64) << 32) | 1, picked: Default::default() }
    }

    fn addr(&mut self) -> Result<String> {
        let span = (PORT_RANGE.end - PORT_RANGE.start) as u64;
        for _ in 0..1_000 {
            // xorshift64: cheap, and spreads picks over the range.
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let port = PORT_RANGE.start + (self.state % span) as u16;
            if !self.picked.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                self.picked.insert(port);
                return Ok(format!("127.0.0.1:{port}"));
            }
        }
        bail!("no free port in {PORT_RANGE:?} on 127.0.0.1")
    }
}

fn layout(a: &UpArgs) -> Result<Layout> {
    let path = a.data_dir.join("cell.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let l: Layout = serde_json::from_str(&text).with_context(|| format!("bad {}", path.display()))?;
        if l.voters.len() != a.voters as usize || l.brokers.len() != a.brokers as usize {
            bail!(
                "{} holds a cell of {} voters and {} brokers; use another --data-dir for a different shape",
                a.data_dir.display(),
                l.voters.len(),
                l.brokers.len()
            );
        }
        return Ok(l);
    }
    if !matches!(a.voters, 1 | 3 | 5) {
        bail!("--voters must be 1, 3 or 5 (a majority must survive a failure)");
    }
    if a.brokers == 0 || a.brokers > 64 {
        bail!("--brokers must be between 1 and 64");
    }
    const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
    let mut ports = Ports::new();
    let voters = (1..=a.voters as u64)
        .map(|i| {
            Ok(Member {
                id: 1000 + i,
                address: ports.addr()?,
                admin: String::new(),
                metadata: String::new(),
                zone: String::new(),
                client: String::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let brokers = (1..=a.brokers as u64)
        .map(|i| {
            Ok(Member {
                id: i,
                address: ports.addr()?,
                admin: ports.addr()?,
                metadata: ports.addr()?,
                zone: ZONES[(i as usize - 1) % ZONES.len()].to_string(),
                client: if a.auth { ports.addr()? } else { String::new() },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let l = Layout { voters, brokers };
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
    std::fs::write(&path, serde_json::to_vec_pretty(&l)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(l)
}

struct Proc {
    name: String,
    child: Child,
}

fn spawn(name: &str, args: &[String], log: &Path) -> Result<Proc> {
    let out = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    let exe = std::env::current_exe().context("own executable")?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Proc { name: name.to_string(), child })
}

fn wait_port(address: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(address).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub(crate) fn run(cmd: CellCommand, output: Output, access: &Access) -> Result<()> {
    match cmd {
        CellCommand::Up(a) => up(a, output, access),
        CellCommand::Status(s) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(status(s, output))
        }
        CellCommand::Reassign(r) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(reassign(r, output))
        }
        CellCommand::Reassignments(s) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(reassignments(s, output))
        }
    }
}

/// The principal brokers of an `--auth` cell log in to each other as.
const INTER_BROKER_USER: &str = "broker";

/// A broker's config file: Kafka names, values from the layout, then `--set` overrides.
fn broker_config(
    a: &UpArgs,
    b: &Member,
    voter_list: &str,
    token_file: &Path,
    inter_broker_secret: Option<&str>,
    extra: &[(String, String)],
) -> Result<String> {
    let dir = a.data_dir.join(format!("broker-{}", b.id));
    let mut t = toml::Table::new();
    let mut set = |k: &str, v: toml::Value| {
        t.insert(k.to_string(), v);
    };
    set("node.id", toml::Value::Integer(b.id as i64));
    set("data.dir", toml::Value::String(dir.display().to_string()));
    if a.auth {
        if b.client.is_empty() {
            bail!("{} was laid out without --auth; use another --data-dir", a.data_dir.display());
        }
        let Some(secret) = inter_broker_secret else { bail!("--auth without an inter-broker secret") };
        set("listeners", toml::Value::String(format!("BROKER://{},CLIENT://{}", b.address, b.client)));
        set(
            "listener.security.protocol.map",
            toml::Value::String("BROKER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT".into()),
        );
        set("inter.broker.listener.name", toml::Value::String("BROKER".into()));
        // Brokers log in to each other with SCRAM-SHA-512 as the listener-local user `broker`
        // (the secret never crosses the wire), which may do anything in the default namespace.
        set("sasl.mechanism.inter.broker.protocol", toml::Value::String("SCRAM-SHA-512".into()));
        set(
            "listener.name.broker.scram-sha-512.sasl.jaas.config",
            toml::Value::String(format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{INTER_BROKER_USER}\" password=\"{secret}\" user_{INTER_BROKER_USER}=\"{secret}\";"
            )),
        );
        set("super.users", toml::Value::String(format!("User:{INTER_BROKER_USER}")));
    } else {
        set("listeners", toml::Value::String(b.address.clone()));
    }
    set("admin.listeners", toml::Value::String(b.admin.clone()));
    set("admin.token.file", toml::Value::String(token_file.display().to_string()));
    set("controller.quorum.voters", toml::Value::String(voter_list.to_string()));
    set("broker.rack", toml::Value::String(b.zone.clone()));
    set("metadata.listener", toml::Value::String(b.metadata.clone()));
    for (k, v) in extra {
        set(k, toml::Value::String(v.clone()));
    }
    Ok(toml::to_string(&t)?)
}

/// Writes a file only its owner may read (a broker's config may hold its inter-broker password).
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn up(a: UpArgs, output: Output, access: &Access) -> Result<()> {
    let mut a = a;
    // Child processes run with other working directories in mind: every path is absolute.
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
    a.data_dir = std::fs::canonicalize(&a.data_dir)
        .with_context(|| format!("cannot resolve {}", a.data_dir.display()))?;
    let l = layout(&a)?;
    let extra = crate::key_values(&a.set)?;
    let logs = a.data_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    // The cell's token: voters and brokers present it to each other, operators to any of them.
    let token_file = match &access.token_file {
        Some(f) => std::fs::canonicalize(f).with_context(|| format!("cannot resolve {}", f.display()))?,
        None => {
            let f = a.data_dir.join("admin.token");
            kora_api::Token::load_or_create(&f, &mut rand::rng())?;
            f
        }
    };
    // --auth: the password of the brokers' inter-broker login, made once per cell.
    let inter_broker_secret = match a.auth {
        true => {
            Some(kora_api::Token::load_or_create(&a.data_dir.join("inter-broker.secret"), &mut rand::rng())?)
        }
        false => None,
    };
    let voter_list = l.voters.iter().map(|v| format!("{}@{}", v.id, v.address)).collect::<Vec<_>>().join(",");
    let mut procs = Vec::new();
    for v in &l.voters {
        let args: Vec<String> = vec![
            "meta".into(),
            "--node-id".into(),
            v.id.to_string(),
            "--listen".into(),
            v.address.clone(),
            "--data-dir".into(),
            a.data_dir.join(format!("voter-{}", v.id)).display().to_string(),
            "--voters".into(),
            voter_list.clone(),
            "--broker-session-timeout-ms".into(),
            a.broker_session_timeout_ms.to_string(),
            "--leader-imbalance-check-interval-seconds".into(),
            a.leader_imbalance_check_interval_seconds.to_string(),
            "--token-file".into(),
            token_file.display().to_string(),
        ];
        procs.push(spawn(&format!("voter {}", v.id), &args, &logs.join(format!("voter-{}.log", v.id)))?);
    }
    for b in &l.brokers {
        let cfg = broker_config(
            &a,
            b,
            &voter_list,
            &token_file,
            inter_broker_secret.as_ref().map(|t| t.secret()),
            &extra,
        )?;
        let path = a.data_dir.join(format!("broker-{}.toml", b.id));
        write_private(&path, &cfg)?;
        let args: Vec<String> = vec!["broker".into(), "--config".into(), path.display().to_string()];
        procs.push(spawn(&format!("broker {}", b.id), &args, &logs.join(format!("broker-{}.log", b.id)))?);
    }
    let bootstrap = l.brokers.iter().map(|b| b.address.clone()).collect::<Vec<_>>().join(",");
    for b in &l.brokers {
        if !wait_port(&b.address, Duration::from_secs(60)) {
            for p in procs.iter_mut() {
                let _ = p.child.kill();
            }
            bail!(
                "broker {} did not start; see {}",
                b.id,
                logs.join(format!("broker-{}.log", b.id)).display()
            );
        }
    }
    // Serving means registered: every broker is in the cell's metadata.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let want = l.brokers.len();
    // With --auth every listener needs a login: the brokers' own.
    let security = kora_client::ClientSecurity {
        sasl: inter_broker_secret.as_ref().map(|t| kora_client::SaslLogin {
            mechanism: kora_client::SaslMechanism::Scram(kora_client::ScramMechanism::Sha512),
            username: INTER_BROKER_USER.into(),
            password: t.secret().into(),
        }),
        ..Default::default()
    };
    let registered = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut admin) =
                kora_client::Admin::connect_with(&bootstrap, Duration::from_secs(2), security.clone()).await
            {
                if admin.describe_cluster().await.is_ok_and(|d| d.brokers.len() == want) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    if !registered {
        for p in procs.iter_mut() {
            let _ = p.child.kill();
        }
        bail!("not every broker registered with the cell in time; see the logs in {}", logs.display());
    }
    let mut servers: Vec<String> = l.brokers.iter().map(|b| b.admin.clone()).collect();
    servers.extend(l.voters.iter().map(|v| v.address.clone()));
    if let Err(e) = crate::access::remember(&servers, &token_file) {
        tracing::warn!(error = %e, "cannot record the operator token for the CLI");
    }
    let pid_of = |name: &str| procs.iter().find(|p| p.name == name).map(|p| p.child.id());
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "bootstrap": bootstrap,
                "brokers": l.brokers.iter().map(|b| serde_json::json!({
                    "id": b.id, "pid": pid_of(&format!("broker {}", b.id)), "address": b.address,
                    "admin": format!("http://{}", b.admin), "zone": b.zone,
                })).collect::<Vec<_>>(),
                "voters": l.voters.iter().map(|v| serde_json::json!({
                    "id": v.id, "pid": pid_of(&format!("voter {}", v.id)), "address": v.address,
                })).collect::<Vec<_>>(),
                "data_dir": a.data_dir.display().to_string(),
                "token_file": token_file.display().to_string(),
                "sasl_bootstrap": a.auth.then(|| l.brokers.iter().map(|b| b.client.clone()).collect::<Vec<_>>().join(",")),
            })
        ),
        Output::Text => {
            println!("{bootstrap}");
            if a.auth {
                let sasl = l.brokers.iter().map(|b| b.client.clone()).collect::<Vec<_>>().join(",");
                println!(
                    "  SASL clients   {sasl}  (kora tenant create NAME --admin http://{})",
                    l.brokers[0].admin
                );
            }
            println!("  operator token {}", token_file.display());
            for b in &l.brokers {
                println!(
                    "  broker {}  {}  {}  pid {}",
                    b.id,
                    b.address,
                    b.zone,
                    pid_of(&format!("broker {}", b.id)).unwrap_or(0)
                );
            }
            for v in &l.voters {
                println!(
                    "  voter  {}  {}  pid {}",
                    v.id,
                    v.address,
                    pid_of(&format!("voter {}", v.id)).unwrap_or(0)
                );
            }
            println!(
                "Logs in {}. Status: kora cell status --bootstrap {bootstrap}. Stop with Ctrl-C.",
                logs.display()
            );
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut reported: BTreeMap<String, bool> = BTreeMap::new();
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let stop = crate::wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {
                    for p in procs.iter_mut() {
                        if let Ok(Some(status)) = p.child.try_wait() {
                            if !reported.contains_key(&p.name) {
                                eprintln!("{} exited ({status})", p.name);
                                reported.insert(p.name.clone(), true);
                            }
                        }
                    }
                }
            }
        }
    });
    // Brokers first (their controlled shutdown needs the quorum), then voters.
    let (mut brokers, mut voters): (Vec<Proc>, Vec<Proc>) =
        procs.into_iter().partition(|p| p.name.starts_with("broker"));
    stop_all(&mut brokers);
    stop_all(&mut voters);
    Ok(())
}

/// SIGTERM to every process (each shuts down cleanly), then waits; kill after 20 s.
fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter() {
        let _ = Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).status();
    }
    for p in procs.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() >= deadline => {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

async fn reassign(r: ReassignArgs, output: Output) -> Result<()> {
    let mut admin = kora_client::Admin::connect(&r.bootstrap, Duration::from_secs(10))
        .await
        .with_context(|| format!("cannot reach {}", r.bootstrap))?;
    let target = (!r.cancel).then(|| r.replicas.clone());
    if let Err(e) = admin.reassign(&r.topic, r.partition, target.clone()).await? {
        anyhow::bail!("{}-{}: {e}", r.topic, r.partition);
    }
    let started = Instant::now();
    if r.wait {
        while admin.reassignments().await?.iter().any(|m| m.topic == r.topic && m.partition == r.partition) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let what = if r.cancel {
        "cancelled"
    } else if r.wait {
        "completed"
    } else {
        "started"
    };
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "topic": r.topic,
                "partition": r.partition,
                "replicas": target,
                "state": what,
                "elapsed_ms": started.elapsed().as_millis() as u64,
            })
        ),
        Output::Text => match target {
            Some(t) => println!("{}-{}: move to {t:?} {what}", r.topic, r.partition),
            None => println!("{}-{}: move {what}", r.topic, r.partition),
        },
    }
    Ok(())
}

async fn reassignments(s: StatusArgs, output: Output) -> Result<()> {
    let mut admin = kora_client::Admin::connect(&s.bootstrap, Duration::from_secs(10))
        .await
        .with_context(|| format!("cannot reach {}", s.bootstrap))?;
    let moves = admin.reassignments().await?;
    match output {
        Output::Json => println!("{}", serde_json::json!({ "reassignments": moves })),
        Output::Text => {
            println!("{:<32} {:>9} {:<16} {:<12} REMOVING", "TOPIC", "PARTITION", "REPLICAS", "ADDING");
            for m in &moves {
                println!(
                    "{:<32} {:>9} {:<16} {:<12} {:?}",
                    m.topic,
                    m.partition,
                    format!("{:?}", m.replicas),
                    format!("{:?}", m.adding),
                    m.removing
                );
            }
        }
    }
    Ok(())
}

async fn status(s: StatusArgs, output: Output) -> Result<()> {
    let mut admin = kora_client::Admin::connect(&s.bootstrap, Duration::from_secs(10))
        .await
        .with_context(|| format!("cannot reach {}", s.bootstrap))?;
    let d = admin.describe_cluster().await?;
    let urp: Vec<&kora_client::PartitionInfo> =
        d.partitions.iter().filter(|p| p.under_replicated()).collect();
    let offline: Vec<&kora_client::PartitionInfo> = d.partitions.iter().filter(|p| p.leader < 0).collect();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "cluster_id": d.cluster_id,
                "brokers": d.brokers,
                "partitions": d.partitions,
                "under_replicated": urp.len(),
                "offline": offline.len(),
            })
        ),
        Output::Text => {
            println!("cluster {}", d.cluster_id.as_deref().unwrap_or("?"));
            println!("{:<8} {:<24} RACK", "BROKER", "ADDRESS");
            for b in &d.brokers {
                println!("{:<8} {:<24} {}", b.id, b.address, b.rack.as_deref().unwrap_or("-"));
            }
            let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
            for p in &d.partitions {
                *leaders.entry(p.leader).or_default() += 1;
            }
            println!(
                "partitions {}  under-replicated {}  offline {}  leaders per broker {:?}",
                d.partitions.len(),
                urp.len(),
                offline.len(),
                leaders
            );
            println!(
                "{:<32} {:>9} {:>7} {:>6} {:<16} ISR",
                "TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS"
            );
            for p in &d.partitions {
                println!(
                    "{:<32} {:>9} {:>7} {:>6} {:<16} {:?}{}",
                    p.topic,
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    format!("{:?}", p.replicas),
                    p.isr,
                    if p.leader < 0 {
                        "  OFFLINE"
                    } else if p.under_replicated() {
                        "  under-replicated"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

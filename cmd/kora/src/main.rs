//! The `kora` binary: command-line parsing, logging set-up and process lifecycle. All broker
//! behaviour lives in the library crates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kora_broker::{Broker, BrokerConfig};
use kora_common::SystemClock;

mod access;
mod bench;
mod cell;
mod groups;
mod meta;
mod tenant;
mod topics;

/// mimalloc keeps freed pages for reuse: the fetch path allocates megabyte buffers per request,
/// which with the system allocator were mapped, faulted in and unmapped every time. Built with
/// `no_thp`: with transparent huge pages each process held its arenas' first 16 MiB resident
/// however little it used (a cell is six processes); docs/benchmarks.md has the figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "kora", version, about = "Kora: a cloud-native engine for the Kafka protocol")]
struct Cli {
    /// Output format for what commands print.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Log format (RUST_LOG sets the filter; default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The operator token for admin calls that change state (default: the one `kora dev` or
    /// `kora cell up` recorded for the address). A voter (`kora meta`) takes it as the cell's.
    #[arg(long, global = true, env = "KORA_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a complete single-node cluster in this process (metadata + broker), for development.
    Dev(DevArgs),
    /// Run a broker from a config file (see docs/configuration.md).
    Broker(BrokerArgs),
    /// Load generator for any Kafka-compatible broker, and the null sink (docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Consumer groups: list them, or describe one with its members and lag.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Topics: describe one with its local and remote (object store) sizes.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Run a metadata voter of a cell (`kora meta --node-id 1 --voters ...`), or manage the
    /// quorum (`kora meta status|add-voter|remove-voter|create-topic --voter ADDR`).
    Meta(meta::MetaArgs),
    /// Tenants of a cell: logical clusters with their own topics, groups and credentials.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// A tenant's API keys (SASL PLAIN / SCRAM logins).
    #[command(subcommand)]
    Apikey(tenant::ApiKeyCommand),
    /// A tenant's ACLs (Kafka's semantics; its clients' names).
    #[command(subcommand)]
    Acl(tenant::AclCommand),
    /// A cell on this machine: `kora cell up` starts voters and brokers as processes;
    /// `kora cell status` shows brokers, leaders, ISR and under-replicated partitions.
    #[command(subcommand)]
    Cell(cell::CellCommand),
}

#[derive(Args, Debug)]
struct Overrides {
    /// Set a config key (Kafka names, e.g. --set log.segment.bytes=1048576); repeatable;
    /// wins over the config file.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args, Debug)]
struct DevArgs {
    /// Where logs and metadata live.
    #[arg(long, default_value = "./kora-data")]
    data_dir: PathBuf,
    /// Kafka listener address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Admin HTTP address for /metrics and /health.
    #[arg(long, default_value = "127.0.0.1:9644")]
    admin_listen: SocketAddr,
    /// Object store for tiered storage (file:///dir, s3://bucket/prefix, gs://..., az://...).
    /// Default: a directory `objects` in the data dir. S3 settings come from AWS_* variables.
    #[arg(long)]
    object_store: Option<String>,
    /// Require SASL (PLAIN, SCRAM-SHA-256/512) on the Kafka listener, with a tenant `dev`
    /// whose first API key is printed at start.
    #[arg(long)]
    auth: bool,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args, Debug)]
struct BrokerArgs {
    /// The broker config file (TOML with Kafka config names).
    #[arg(long, short)]
    config: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL at start, before any other thread
    // exists; no handler runs Rust code.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses repeated `--set KEY=VALUE` arguments.
pub(crate) fn key_values(set: &[String]) -> Result<Vec<(String, String)>> {
    set.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => bail!("--set expects KEY=VALUE, got '{kv}'"),
        })
        .collect()
}

fn parse_overrides(o: &Overrides) -> Result<BTreeMap<String, String>> {
    Ok(key_values(&o.set)?.into_iter().collect())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Commands that print and exit behave like other Unix tools in a pipeline (`kora meta status
    // | head`): a closed stdout ends them quietly instead of a panic in println!. Servers keep
    // Rust's default (SIGPIPE ignored), so a client closing its socket never kills them.
    let server = match &cli.command {
        Command::Dev(_) | Command::Broker(_) => true,
        Command::Meta(m) => m.runs_voter(),
        Command::Cell(c) => c.runs_cell(),
        _ => false,
    };
    if !server {
        restore_default_sigpipe();
    }
    init_logging(cli.log_format);
    // One TLS crypto provider for every HTTPS client in the process (object stores, admin HTTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dev = matches!(cli.command, Command::Dev(_));
    let dev_auth = matches!(&cli.command, Command::Dev(a) if a.auth);
    let access = access::Access { token_file: cli.token_file.clone() };
    let config = match cli.command {
        Command::Bench(b) => return bench::run(b, cli.output),
        Command::Groups(g) => return groups::run(g, cli.output),
        Command::Topics(t) => return topics::run(t, cli.output, &access),
        Command::Tenant(t) => return tenant::run_tenant(t, cli.output, &access),
        Command::Apikey(k) => return tenant::run_apikey(k, cli.output, &access),
        Command::Acl(k) => return tenant::run_acl(k, cli.output, &access),
        Command::Meta(m) => return meta::run(m, cli.output, &access),
        Command::Cell(c) => return cell::run(c, cli.output, &access),
        Command::Dev(a) => {
            let mut flat = parse_overrides(&a.overrides)?;
            flat.entry("data.dir".into()).or_insert(a.data_dir.display().to_string());
            let listener =
                if a.auth { format!("SASL_PLAINTEXT://{}", a.listen) } else { a.listen.to_string() };
            flat.entry("listeners".into()).or_insert(listener);
            flat.entry("admin.listeners".into()).or_insert(a.admin_listen.to_string());
            let objects = match a.object_store {
                Some(url) => url,
                None => {
                    std::fs::create_dir_all(&a.data_dir)
                        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
                    let abs = std::fs::canonicalize(&a.data_dir)
                        .with_context(|| format!("cannot resolve {}", a.data_dir.display()))?;
                    format!("file://{}", abs.join("objects").display())
                }
            };
            flat.entry("object_store.url".into()).or_insert(objects);
            // The operator token: the one given, else one kept in the data dir.
            if !flat.contains_key("admin.token.file") {
                let path = match &cli.token_file {
                    Some(p) => p.clone(),
                    None => {
                        std::fs::create_dir_all(&a.data_dir)
                            .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
                        let p = a.data_dir.join("admin.token");
                        kora_api::Token::load_or_create(&p, &mut rand::rng())?;
                        p
                    }
                };
                flat.insert("admin.token.file".into(), path.display().to_string());
            }
            // As Kafka's own development config does: no wait before a new group's first
            // rebalance, so a single consumer starts at once. KIP-848 members heartbeat every
            // 500 ms instead of 5 s, so a group settles in about half a second.
            flat.entry("group.initial.rebalance.delay.ms".into()).or_insert("0".into());
            flat.entry("group.consumer.heartbeat.interval.ms".into()).or_insert("500".into());
            BrokerConfig::from_map(&flat).context("invalid configuration")?
        }
        Command::Broker(a) => {
            let text = std::fs::read_to_string(&a.config)
                .with_context(|| format!("cannot read config file {}", a.config.display()))?;
            let extra = parse_overrides(&a.overrides)?;
            BrokerConfig::from_toml_with_overrides(&text, &a.config.display().to_string(), &extra)?
        }
    };
    let mut config = config;
    if let Some(t) = config.tiering.as_mut() {
        // Object-store credentials and endpoints come from the usual environment variables;
        // the libraries take them as explicit options.
        t.options = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_"))
            .collect();
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    let result = runtime.block_on(run(config, cli.output, dev, dev_auth));
    // The logs are closed by now; a blocking call still waiting on the network (a controller
    // request to a cell that is stopping too) must not hold the process up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn run(config: BrokerConfig, output: Output, dev: bool, dev_auth: bool) -> Result<()> {
    let data_dir = config.data_dir.clone();
    let handle = Broker::start(config, Arc::new(SystemClock)).await.context("broker failed to start")?;
    let dev_key = if dev_auth { Some(dev_tenant(&handle, &data_dir).await?) } else { None };
    let cluster_id = handle.broker.controller.image().cluster_id.clone();
    let object_store = handle.broker.tiering.as_ref().map(|t| t.store.url.clone());
    let bootstrap =
        format!("{}:{}", handle.broker.config.advertised.host, handle.broker.config.advertised.port);
    let token_file = handle.broker.config.admin_token_file.clone();
    if let Some(f) = &token_file {
        // Later commands against this admin address find the token without --token-file.
        if let Err(e) = access::remember(&[handle.admin_addr.to_string()], f) {
            tracing::warn!(error = %e, "cannot record the operator token for the CLI");
        }
    }
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "bootstrap": bootstrap,
                "kafka_listener": handle.kafka_addr.to_string(),
                "admin": format!("http://{}", handle.admin_addr),
                "cluster_id": cluster_id,
                "node_id": handle.broker.config.node_id,
                "data_dir": data_dir.display().to_string(),
                "object_store": object_store,
                "token_file": token_file.as_ref().map(|f| f.display().to_string()),
                "security_protocol": handle.broker.config.listeners[0].protocol.name(),
                "api_key": dev_key,
            })
        ),
        Output::Text => {
            match &handle.broker.config.cell {
                Some(cell) => println!(
                    "Kora broker {} is up in cell {} (rack {}, data in {})",
                    handle.broker.config.node_id,
                    cell.name,
                    cell.rack.as_deref().unwrap_or("-"),
                    data_dir.display()
                ),
                None => println!(
                    "{} is up (node {}, data in {})",
                    if dev { "Kora dev cluster" } else { "Kora broker" },
                    handle.broker.config.node_id,
                    data_dir.display()
                ),
            }
            println!("  bootstrap servers: {bootstrap}");
            println!("  admin:             http://{}  (/metrics, /health)", handle.admin_addr);
            println!("  cluster id:        {cluster_id}");
            if let Some(f) = &token_file {
                println!("  operator token:    {}  (admin calls that change state need it)", f.display());
            }
            if let Some(url) = &object_store {
                println!("  object store:      {url}  (topics with remote.storage.enable=true tier there)");
            }
            match &dev_key {
                Some(k) => {
                    println!("  SASL required:     tenant {} (dev); clients log in with PLAIN or SCRAM-SHA-256/512", k.tenant);
                    tenant::print_key(k);
                    let protocol = handle.broker.config.listeners[0].protocol.name();
                    println!(
                        "Try: kcat -b {bootstrap} -X security.protocol={protocol} -X sasl.mechanisms=PLAIN -X sasl.username={} -X sasl.password={} -L",
                        k.key, k.secret
                    );
                }
                None => println!("Try: kcat -b {bootstrap} -L    Stop with Ctrl-C."),
            }
        }
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await.context("clean shutdown failed")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `kora dev --auth`: the tenant `dev` and its first API key. The key is kept in the data
/// dir (owner-only, like the operator token) so a restart prints the same one.
async fn dev_tenant(
    handle: &kora_broker::BrokerHandle,
    data_dir: &std::path::Path,
) -> Result<kora_api::ApiKeyCreated> {
    let path = data_dir.join("dev-api-key.json");
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(k) = serde_json::from_slice::<kora_api::ApiKeyCreated>(&bytes) {
            if handle.broker.controller.image().credentials.contains_key(&k.key) {
                return Ok(k);
            }
        }
    }
    let admin = handle.broker.tenant_admin();
    let req = kora_api::CreateTenant {
        name: "dev".into(),
        id: None,
        max_topics: None,
        max_partitions: None,
        api_key: false,
        managed_by: None,
    };
    let (_, created) = admin
        .create_tenant(&req)
        .await
        .map_err(|r| anyhow::anyhow!("cannot create the dev tenant (HTTP {})", r.status()))?;
    let key = admin
        .create_key(
            &created.tenant.id,
            &kora_api::CreateApiKey { description: "kora dev --auth".into(), admin: true },
        )
        .await
        .map_err(|r| anyhow::anyhow!("cannot create the dev API key (HTTP {})", r.status()))?;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(&serde_json::to_vec(&key)?).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

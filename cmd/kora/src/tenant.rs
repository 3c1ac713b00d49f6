//! `kora tenant` and `kora apikey`: a cell's tenants, their API keys, quotas and usage,
//! through a broker's admin endpoint (`/v1/tenants`, operator token required).

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kora_api::{ApiKeyCreated, CreateApiKey, CreateTenant, TenantInfo};

use crate::access::Access;
use crate::Output;

#[derive(Args, Debug)]
pub(crate) struct Target {
    /// A broker's admin address (admin.listeners) in the cell.
    #[arg(long, default_value = "http://127.0.0.1:9644")]
    admin: String,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TenantCommand {
    /// Create a tenant (a logical cluster) and its first API key, shown once.
    Create {
        name: String,
        /// Its id (lkc-...); chosen by the cell when absent.
        #[arg(long)]
        id: Option<String>,
        /// Most topics it may create.
        #[arg(long)]
        max_topics: Option<u32>,
        /// Most partitions over all its topics.
        #[arg(long)]
        max_partitions: Option<u32>,
        /// Do not create a first API key.
        #[arg(long)]
        no_api_key: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List the cell's tenants.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// A tenant's topics, partitions, keys and bootstrap servers.
    Describe {
        /// Its id or name.
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a tenant with its topics, groups, keys and credentials.
    Delete {
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
    /// A tenant's quotas (cell-wide; each broker enforces a share): set, remove, show.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// A tenant's use over the cell and per broker in the last quota window: bytes in and
    /// out per second, request time, connections, storage, throttling.
    Usage {
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Quota values: rates per second and byte counts take K/M/G (1000s) and Ki/Mi/Gi (1024s)
/// suffixes, with or without a trailing B (`10MiB`, `500k`).
#[derive(Args, Debug, Default)]
pub(crate) struct QuotaValues {
    /// Produce bytes per second (Kafka's producer_byte_rate).
    #[arg(long, value_parser = parse_quantity)]
    producer_byte_rate: Option<f64>,
    /// Bytes per second fetched by consumers (consumer_byte_rate).
    #[arg(long, value_parser = parse_quantity)]
    consumer_byte_rate: Option<f64>,
    /// Request handling time, percent of one broker thread (request_percentage).
    #[arg(long, value_parser = parse_quantity)]
    request_percentage: Option<f64>,
    /// Partitions created or deleted per second (controller_mutation_rate, KIP-599).
    #[arg(long, value_parser = parse_quantity)]
    controller_mutation_rate: Option<f64>,
    /// Open connections.
    #[arg(long, value_parser = parse_quantity)]
    max_connections: Option<f64>,
    /// New connections per second (connection_creation_rate).
    #[arg(long, value_parser = parse_quantity)]
    connection_creation_rate: Option<f64>,
    /// Partitions over all its topics.
    #[arg(long, value_parser = parse_quantity)]
    max_partitions: Option<f64>,
    /// Topics.
    #[arg(long, value_parser = parse_quantity)]
    max_topics: Option<f64>,
    /// Bytes stored over all its partitions (one copy); over it, produce is refused.
    #[arg(long, value_parser = parse_quantity)]
    storage_bytes: Option<f64>,
}

impl QuotaValues {
    fn set(&self) -> std::collections::BTreeMap<String, f64> {
        [
            ("producer_byte_rate", self.producer_byte_rate),
            ("consumer_byte_rate", self.consumer_byte_rate),
            ("request_percentage", self.request_percentage),
            ("controller_mutation_rate", self.controller_mutation_rate),
            ("max_connections", self.max_connections),
            ("connection_creation_rate", self.connection_creation_rate),
            ("max_partitions", self.max_partitions),
            ("max_topics", self.max_topics),
            ("storage_bytes", self.storage_bytes),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
    }
}

/// `12`, `1.5k`, `10MiB`, `2G`: a number with an optional SI or binary multiplier.
pub(crate) fn parse_quantity(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let (digits, factor) = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("k", 1e3),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ]
    .iter()
    .find_map(|(suffix, f)| t.strip_suffix(suffix).map(|d| (d, *f)))
    .unwrap_or((t, 1.0));
    let n: f64 =
        digits.trim().parse().map_err(|_| format!("'{s}' is not a number (like 500, 1.5k or 10MiB)"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("'{s}' must be positive"));
    }
    Ok(n * factor)
}

#[derive(Subcommand, Debug)]
pub(crate) enum QuotaCommand {
    /// Set quotas of a tenant (the others stay as they are).
    Set {
        tenant: String,
        #[command(flatten)]
        values: QuotaValues,
        /// Check the values without applying them.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove quotas of a tenant by name (producer_byte_rate, max_connections, ...).
    Remove {
        tenant: String,
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// A tenant's quotas.
    Show {
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
}

fn print_quotas(q: &kora_api::TenantQuotas) {
    println!("tenant {}  name {}", q.tenant, q.name);
    if q.quotas.is_empty() {
        println!("  no quotas: the cell's limits only");
    }
    for (k, v) in &q.quotas {
        println!("  {k:<26} {}", human(k, *v));
    }
}

/// A value as operators read it: bytes with binary units, rates per second.
fn human(key: &str, v: f64) -> String {
    let bytes = key.ends_with("byte_rate") || key == "storage_bytes";
    let per = if key.ends_with("_rate") { "/s" } else { "" };
    if !bytes {
        return if key == "request_percentage" { format!("{v}%") } else { format!("{v}{per}") };
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v;
    let mut i = 0;
    while x >= 1024.0 && i + 1 < units.len() {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v} B{per}")
    } else {
        format!("{x:.2} {}{per} ({v})", units[i])
    }
}

fn print_usage(u: &kora_api::TenantUsage) {
    println!("tenant {}  name {}", u.tenant, u.name);
    let quota = |k: &str| u.quotas.get(k).map_or_else(|| "-".to_string(), |v| human(k, *v));
    let c = &u.cell;
    println!(
        "  produce   {:>14}  quota {}",
        human("producer_byte_rate", c.produce_bytes_per_second),
        quota("producer_byte_rate")
    );
    println!(
        "  fetch     {:>14}  quota {}",
        human("consumer_byte_rate", c.fetch_bytes_per_second),
        quota("consumer_byte_rate")
    );
    println!("  requests  {:>13.1}%  quota {}", c.request_percent, quota("request_percentage"));
    println!("  connections {:>12}  quota {}", c.connections, quota("max_connections"));
    println!(
        "  storage   {:>14}  quota {}",
        human("storage_bytes", c.storage_bytes as f64),
        quota("storage_bytes")
    );
    println!(
        "  throttled {} requests, {} ms in all; {} bytes in, {} bytes out since the brokers started",
        c.throttled_requests_total, c.throttle_ms_total, c.bytes_in_total, c.bytes_out_total
    );
    println!(
        "  {:<7} {:>14} {:>14} {:>9} {:>6} {:>10}",
        "BROKER", "PRODUCE B/s", "FETCH B/s", "REQ %", "CONNS", "THROTTLED"
    );
    for b in &u.brokers {
        let f = &b.usage;
        let throttled: Vec<&str> = [
            (f.produce_throttled, "produce"),
            (f.fetch_throttled, "fetch"),
            (f.request_throttled, "requests"),
        ]
        .into_iter()
        .filter_map(|(t, n)| t.then_some(n))
        .collect();
        println!(
            "  {:<7} {:>14.0} {:>14.0} {:>9.1} {:>6} {:>10}",
            b.broker_id,
            f.produce_bytes_per_second,
            f.fetch_bytes_per_second,
            f.request_percent,
            f.connections,
            if throttled.is_empty() { "-".to_string() } else { throttled.join(",") }
        );
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum ApiKeyCommand {
    /// Create an API key for a tenant; its secret is shown once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A key limited by the tenant's ACLs instead of its admin.
        #[arg(long)]
        no_admin: bool,
        #[command(flatten)]
        target: Target,
    },
    /// A tenant's API keys (never their secrets).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete an API key: its connections close at their next request.
    Delete {
        key: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn print_tenant(t: &TenantInfo) {
    println!("tenant {}  name {}", t.id, t.name);
    println!(
        "  topics {}  partitions {}  api keys {}  scram users {}",
        t.topics, t.partitions, t.api_keys, t.scram_users
    );
    let limit = |l: Option<u32>| l.map_or_else(|| "-".to_string(), |v| v.to_string());
    println!("  limits: topics {}  partitions {}", limit(t.max_topics), limit(t.max_partitions));
    for b in &t.bootstrap {
        println!("  bootstrap ({}): {}", b.security_protocol, b.address);
    }
}

pub(crate) fn print_key(k: &ApiKeyCreated) {
    println!("API key:    {}", k.key);
    println!("API secret: {}", k.secret);
    println!("  (the secret is shown only now; clients log in with SASL PLAIN or SCRAM-SHA-256/512,");
    println!("   username = the key, password = the secret)");
}

pub(crate) fn run_tenant(cmd: TenantCommand, output: Output, access: &Access) -> Result<()> {
    let rt = runtime()?;
    match cmd {
        TenantCommand::Create { name, id, max_topics, max_partitions, no_api_key, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let req =
                CreateTenant { name, id, max_topics, max_partitions, api_key: !no_api_key, managed_by: None };
            let created = rt.block_on(client.create_tenant(&req)).map_err(|e| access.explain(e))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&created)?),
                Output::Text => {
                    print_tenant(&created.tenant);
                    match &created.api_key {
                        Some(k) => print_key(k),
                        None if !no_api_key => {
                            println!(
                                "(the tenant already existed: no new key; kora apikey create --tenant {})",
                                created.tenant.id
                            )
                        }
                        None => {}
                    }
                }
            }
        }
        TenantCommand::List { target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let list = rt.block_on(client.tenants()).map_err(|e| access.explain(e))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&list)?),
                Output::Text => {
                    println!(
                        "{:<22} {:<24} {:>7} {:>11} {:>5}",
                        "ID", "NAME", "TOPICS", "PARTITIONS", "KEYS"
                    );
                    for t in &list {
                        println!(
                            "{:<22} {:<24} {:>7} {:>11} {:>5}",
                            t.id, t.name, t.topics, t.partitions, t.api_keys
                        );
                    }
                }
            }
        }
        TenantCommand::Describe { tenant, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let t = rt.block_on(client.tenant(&tenant)).map_err(|e| access.explain(e))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&t)?),
                Output::Text => print_tenant(&t),
            }
        }
        TenantCommand::Quota(q) => run_quota(q, output, access, &rt)?,
        TenantCommand::Usage { tenant, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let u = rt.block_on(client.tenant_usage(&tenant)).map_err(|e| access.explain(e))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&u)?),
                Output::Text => print_usage(&u),
            }
        }
        TenantCommand::Delete { tenant, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let t = rt.block_on(client.delete_tenant(&tenant)).map_err(|e| access.explain(e))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&t)?),
                Output::Text => println!("deleted tenant {} ({}) with {} topics", t.id, t.name, t.topics),
            }
        }
    }
    Ok(())
}

fn run_quota(cmd: QuotaCommand, output: Output, access: &Access, rt: &tokio::runtime::Runtime) -> Result<()> {
    let (client, answer) = match cmd {
        QuotaCommand::Set { tenant, values, dry_run, target } => {
            let set = values.set();
            anyhow::ensure!(!set.is_empty(), "name at least one quota to set (kora tenant quota set --help)");
            let client = access.client(&target.admin, TIMEOUT)?;
            let req = kora_api::AlterTenantQuotas { set, remove: Vec::new(), validate_only: dry_run };
            let a = rt.block_on(client.alter_tenant_quotas(&tenant, &req));
            (client, a)
        }
        QuotaCommand::Remove { tenant, names, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let req =
                kora_api::AlterTenantQuotas { set: Default::default(), remove: names, validate_only: false };
            let a = rt.block_on(client.alter_tenant_quotas(&tenant, &req));
            (client, a)
        }
        QuotaCommand::Show { tenant, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let a = rt.block_on(client.tenant_quotas(&tenant));
            (client, a)
        }
    };
    drop(client);
    let q = answer.map_err(|e| access.explain(e))?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&q)?),
        Output::Text => print_quotas(&q),
    }
    Ok(())
}

pub(crate) fn run_apikey(cmd: ApiKeyCommand, output: Output, access: &Access) -> Result<()> {
    let rt = runtime()?;
    match cmd {
        ApiKeyCommand::Create { tenant, description, no_admin, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let req = CreateApiKey { description, admin: !no_admin };
            let k = rt.block_on(client.create_api_key(&tenant, &req)).map_err(|e| access.explain(e))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&k)?),
                Output::Text => print_key(&k),
            }
        }
        ApiKeyCommand::List { tenant, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let keys = rt.block_on(client.api_keys(&tenant)).map_err(|e| access.explain(e))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&keys)?),
                Output::Text => {
                    println!("{:<18} {:<22} {:<6} DESCRIPTION", "KEY", "TENANT", "ADMIN");
                    for k in &keys {
                        println!("{:<18} {:<22} {:<6} {}", k.key, k.tenant, k.admin, k.description);
                    }
                }
            }
        }
        ApiKeyCommand::Delete { key, tenant, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            let k = rt.block_on(client.delete_api_key(&tenant, &key)).map_err(|e| access.explain(e))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&k)?),
                Output::Text => println!("deleted API key {} of {}", k.key, k.tenant),
            }
        }
    }
    Ok(())
}

/// The resource an ACL command names.
#[derive(Args, Debug)]
pub(crate) struct Resource {
    #[arg(long, group = "resource")]
    topic: Option<String>,
    #[arg(long, group = "resource")]
    group: Option<String>,
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    /// The tenant's cluster (for CREATE, ALTER, DESCRIBE of the cluster).
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The name is a prefix (PREFIXED), not an exact name (LITERAL).
    #[arg(long)]
    prefixed: bool,
}

impl Resource {
    fn named(&self) -> Option<(&'static str, String)> {
        if let Some(t) = &self.topic {
            return Some(("TOPIC", t.clone()));
        }
        if let Some(g) = &self.group {
            return Some(("GROUP", g.clone()));
        }
        if let Some(t) = &self.transactional_id {
            return Some(("TRANSACTIONAL_ID", t.clone()));
        }
        self.cluster.then(|| ("CLUSTER", "kafka-cluster".to_string()))
    }

    fn pattern(&self) -> &'static str {
        if self.prefixed {
            "PREFIXED"
        } else {
            "LITERAL"
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum AclCommand {
    /// Allow (or with --deny, deny) a principal of a tenant an operation on a resource.
    Create {
        #[arg(long)]
        tenant: String,
        /// User:<API key id> or User:<SCRAM user>.
        #[arg(long)]
        principal: String,
        /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS,
        /// IDEMPOTENT_WRITE or ALL; repeatable.
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        #[command(flatten)]
        resource: Resource,
        #[arg(long, default_value = "*")]
        host: String,
        #[arg(long)]
        deny: bool,
        #[command(flatten)]
        target: Target,
    },
    /// A tenant's ACLs.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a tenant's ACLs matching the filter (what is not given matches anything).
    Delete {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        operation: Option<String>,
        #[command(flatten)]
        resource: Resource,
        #[command(flatten)]
        target: Target,
    },
}

fn print_acls(acls: &[kora_api::AclEntry]) {
    println!(
        "{:<17} {:<24} {:<9} {:<24} {:<10} {:<16} HOST",
        "RESOURCE", "NAME", "PATTERN", "PRINCIPAL", "PERMISSION", "OPERATION"
    );
    for a in acls {
        println!(
            "{:<17} {:<24} {:<9} {:<24} {:<10} {:<16} {}",
            a.resource_type, a.resource_name, a.pattern_type, a.principal, a.permission, a.operation, a.host
        );
    }
}

pub(crate) fn run_acl(cmd: AclCommand, output: Output, access: &Access) -> Result<()> {
    let rt = runtime()?;
    let acls = match cmd {
        AclCommand::Create { tenant, principal, operations, resource, host, deny, target } => {
            let Some((resource_type, resource_name)) = resource.named() else {
                anyhow::bail!("name the resource: --topic, --group, --transactional-id or --cluster");
            };
            let entries: Vec<kora_api::AclEntry> = operations
                .iter()
                .map(|op| kora_api::AclEntry {
                    resource_type: resource_type.into(),
                    resource_name: resource_name.clone(),
                    pattern_type: resource.pattern().into(),
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: op.clone(),
                    permission: if deny { "DENY" } else { "ALLOW" }.into(),
                })
                .collect();
            let client = access.client(&target.admin, TIMEOUT)?;
            rt.block_on(client.create_acls(&tenant, &entries)).map_err(|e| access.explain(e))?
        }
        AclCommand::List { tenant, target } => {
            let client = access.client(&target.admin, TIMEOUT)?;
            rt.block_on(client.acls(&tenant)).map_err(|e| access.explain(e))?
        }
        AclCommand::Delete { tenant, principal, operation, resource, target } => {
            let named = resource.named();
            let filter = kora_api::AclEntryFilter {
                resource_type: named.as_ref().map(|(t, _)| t.to_string()),
                resource_name: named.map(|(_, n)| n),
                pattern_type: Some(if resource.prefixed { "PREFIXED" } else { "ANY" }.to_string()),
                principal,
                host: None,
                operation,
                permission: None,
            };
            let client = access.client(&target.admin, TIMEOUT)?;
            rt.block_on(client.delete_acls(&tenant, &filter)).map_err(|e| access.explain(e))?
        }
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string(&acls)?),
        Output::Text => print_acls(&acls),
    }
    Ok(())
}

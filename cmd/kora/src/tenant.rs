//! `kora tenant` and `kora apikey`: a cell's tenants and their API keys, through a broker's
//! admin endpoint (`/v1/tenants`, operator token required).

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
            let req = CreateTenant { name, id, max_topics, max_partitions, api_key: !no_api_key };
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

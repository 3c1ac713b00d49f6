//! `kora topics describe`: a topic's partitions with offsets and local and remote sizes, from
//! a broker's admin endpoint (`/v1/topics/{name}`).

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::access::Access;
use crate::Output;

#[derive(Subcommand, Debug)]
pub(crate) enum TopicsCommand {
    /// Offsets, local and remote sizes per partition.
    Describe(DescribeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct DescribeArgs {
    topic: String,
    /// The broker's admin address (admin.listeners).
    #[arg(long, default_value = "http://127.0.0.1:9644")]
    admin: String,
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map(|b| format!("{:.1}", b as f64 / 1e6)).unwrap_or_else(|| "-".into())
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

pub(crate) fn run(cmd: TopicsCommand, output: Output, access: &Access) -> Result<()> {
    let TopicsCommand::Describe(a) = cmd;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let client = access.client(&a.admin, Duration::from_secs(10))?;
    let t = rt.block_on(client.broker_topic(&a.topic)).map_err(|e| access.explain(e))?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&t)?),
        Output::Text => {
            println!(
                "topic {}  id {}  remote storage {}  cleanup {}",
                t.topic, t.topic_id, t.remote_storage_enable, t.cleanup_policy
            );
            println!(
                "{:>9} {:>14} {:>14} {:>14} {:>12} {:>12} {:>8}",
                "PARTITION", "LOG-START", "LOCAL-START", "END", "LOCAL-MB", "REMOTE-MB", "REMOTE#"
            );
            for p in &t.partitions {
                println!(
                    "{:>9} {:>14} {:>14} {:>14} {:>12} {:>12} {:>8}",
                    p.partition,
                    opt(p.log_start_offset),
                    p.local_start_offset,
                    opt(p.high_watermark),
                    mb(p.local_bytes),
                    mb(Some(p.remote_bytes)),
                    p.remote_segments.len()
                );
            }
        }
    }
    Ok(())
}

//! `kora topics describe`: a topic's partitions with offsets and local and remote sizes, from
//! a broker's admin endpoint (`/v1/topics/{name}`).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

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

fn mb(v: &serde_json::Value) -> String {
    v.as_u64().map(|b| format!("{:.1}", b as f64 / 1e6)).unwrap_or_else(|| "-".into())
}

pub(crate) fn run(cmd: TopicsCommand, output: Output) -> Result<()> {
    let TopicsCommand::Describe(a) = cmd;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let base = if a.admin.starts_with("http") { a.admin.clone() } else { format!("http://{}", a.admin) };
    let url = format!("{}/v1/topics/{}", base.trim_end_matches('/'), a.topic);
    let (status, body) = rt
        .block_on(async {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
            let resp = client.get(&url).send().await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.text().await?))
        })
        .with_context(|| format!("GET {url}"))?;
    if !status.is_success() {
        bail!("{url}: {status}: {}", body.trim());
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("{url} returned no JSON"))?;
    match output {
        Output::Json => println!("{}", v),
        Output::Text => {
            println!(
                "topic {}  id {}  remote storage {}  cleanup {}",
                v["topic"].as_str().unwrap_or("?"),
                v["topic_id"].as_str().unwrap_or("?"),
                v["remote_storage_enable"],
                v["cleanup_policy"].as_str().unwrap_or("?")
            );
            println!(
                "{:>9} {:>14} {:>14} {:>14} {:>12} {:>12} {:>8}",
                "PARTITION", "LOG-START", "LOCAL-START", "END", "LOCAL-MB", "REMOTE-MB", "REMOTE#"
            );
            for p in v["partitions"].as_array().into_iter().flatten() {
                println!(
                    "{:>9} {:>14} {:>14} {:>14} {:>12} {:>12} {:>8}",
                    p["partition"],
                    p["log_start_offset"],
                    p["local_start_offset"],
                    p["high_watermark"],
                    mb(&p["local_bytes"]),
                    mb(&p["remote_bytes"]),
                    p["remote_segments"].as_array().map_or(0, Vec::len)
                );
            }
        }
    }
    Ok(())
}

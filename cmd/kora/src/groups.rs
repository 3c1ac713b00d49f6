//! `kora groups list|describe`: consumer groups, their members and lag, from any
//! Kafka-compatible cluster.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kora_client::Admin;

use crate::Output;

#[derive(Subcommand, Debug)]
pub(crate) enum GroupsCommand {
    /// Every group with its state and type.
    List(ListArgs),
    /// One group: state, members and their partitions, committed offsets and lag.
    Describe(DescribeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Seconds to wait for each broker.
    #[arg(long, default_value_t = 10.0)]
    timeout_s: f64,
}

#[derive(Args, Debug)]
pub(crate) struct DescribeArgs {
    /// The group id.
    group: String,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value_t = 10.0)]
    timeout_s: f64,
}

fn timeout(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.1, 3600.0))
}

pub(crate) fn run(cmd: GroupsCommand, output: Output) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async move {
        match cmd {
            GroupsCommand::List(a) => {
                let mut admin = Admin::connect(&a.bootstrap, timeout(a.timeout_s)).await?;
                let groups = admin.list_groups().await?;
                match output {
                    Output::Json => println!("{}", serde_json::to_string(&groups)?),
                    Output::Text => {
                        println!("{:<40} {:<20} {:<10} PROTOCOL-TYPE", "GROUP", "STATE", "TYPE");
                        for g in groups {
                            println!(
                                "{:<40} {:<20} {:<10} {}",
                                g.group, g.state, g.group_type, g.protocol_type
                            );
                        }
                    }
                }
            }
            GroupsCommand::Describe(a) => {
                let mut admin = Admin::connect(&a.bootstrap, timeout(a.timeout_s)).await?;
                let d = admin.describe_group(&a.group).await?;
                match output {
                    Output::Json => println!("{}", serde_json::to_string(&d)?),
                    Output::Text => {
                        println!(
                            "group {}  state {}  protocol {}/{}  coordinator {}  members {}  total lag {}",
                            d.group,
                            d.state,
                            d.protocol_type,
                            d.protocol,
                            d.coordinator,
                            d.members.len(),
                            d.total_lag
                        );
                        println!();
                        println!(
                            "{:<30} {:>9} {:>16} {:>16} {:>10}  MEMBER",
                            "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"
                        );
                        for p in &d.partitions {
                            let committed = if p.committed_offset < 0 {
                                "-".to_string()
                            } else {
                                p.committed_offset.to_string()
                            };
                            println!(
                                "{:<30} {:>9} {:>16} {:>16} {:>10}  {}",
                                p.topic,
                                p.partition,
                                committed,
                                p.log_end_offset,
                                p.lag,
                                p.member_id.as_deref().unwrap_or("-")
                            );
                        }
                        if !d.members.is_empty() {
                            println!();
                            println!("{:<50} {:<20} {:<16} ASSIGNMENT", "MEMBER", "CLIENT-ID", "HOST");
                            for m in &d.members {
                                let asg: Vec<String> =
                                    m.assignment.iter().map(|(t, ps)| format!("{t}{ps:?}")).collect();
                                println!(
                                    "{:<50} {:<20} {:<16} {}",
                                    m.member_id,
                                    m.client_id,
                                    m.client_host,
                                    asg.join(" ")
                                );
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    })
}

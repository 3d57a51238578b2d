//! `arka bench`: drives a running cluster and reports medians over runs, each level as a ratio
//! against the first (the baseline), all measured side by side in one invocation.

mod failover;
mod report;
mod server_cpu;
mod streams;
mod tier_lag;
mod write_load;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Pipelined writes: writes/s, MB/s and ack latency at each durability level.
    Write(write_load::WriteArgs),
    /// Open many idle DoExchange streams and report the node's OS threads and RSS.
    Streams(streams::StreamsArgs),
    /// Start a cluster, kill -9 its leader repeatedly under load, and report the time to the
    /// next REPLICATED ack and gossip's detection time.
    Failover(failover::FailoverArgs),
    /// A steady write load followed to COMMITTED: time from REPLICATED to OBJECT_STORAGE and
    /// to COMMITTED per write, and the tiering lag over the run.
    Tier(tier_lag::TierArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.mode {
        Mode::Write(a) => write_load::run(a).await,
        Mode::Streams(a) => streams::run(a).await,
        Mode::Failover(a) => failover::run(a).await,
        Mode::Tier(a) => tier_lag::run(a).await,
    }
}

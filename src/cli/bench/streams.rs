//! Idle stream load: open `count` DoExchange write streams (a schema, then nothing) spread
//! over `connections`, then read the node's OS thread count and RSS from /proc (the node
//! must run on this machine; its pid comes from its status).

use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::{FlightData, FlightDescriptor};
use clap::Args;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::Client;
use crate::wire::BatchEncoder;

#[derive(Debug, Args)]
pub struct StreamsArgs {
    /// The node to load (a leader: followers refuse write streams).
    #[arg(long, default_value = "grpc://127.0.0.1:8815")]
    addr: String,
    /// Idle write streams to open.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// HTTP/2 connections to spread them over.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Seconds to hold the streams open after the last one opened, before measuring.
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
}

/// Reads `Threads` and `VmRSS` (KiB) of a process.
fn proc_usage(pid: u64) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
        anyhow::anyhow!("cannot read /proc/{pid}/status (is the node on this machine?): {e}")
    })?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("Threads:"), field("VmRSS:")))
}

pub async fn run(args: StreamsArgs) -> anyhow::Result<()> {
    let probe = Client::connect(&args.addr).await?;
    let status: Value = probe.action("status", &Value::Null).await?;
    let pid = status["pid"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("status has no pid"))?;
    let (threads_before, rss_before) = proc_usage(pid)?;

    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(Client::connect(&args.addr).await?.flight());
    }
    let schema = Schema::new(vec![Field::new("x", DataType::Int64, false)]);
    let first =
        BatchEncoder::default()
            .schema(&schema)
            .with_descriptor(FlightDescriptor::new_path(vec![
                "streaming_write".into(),
                "bench_idle".into(),
            ]));
    let started = Instant::now();
    let mut held = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let (tx, rx) = mpsc::channel::<FlightData>(1);
        tx.send(first.clone()).await?;
        let mut client = clients[i % clients.len()].clone();
        let response = client.do_exchange(ReceiverStream::new(rx)).await?;
        held.push((tx, response.into_inner()));
        if (i + 1) % 1000 == 0 {
            eprint!(
                "\r  opened {:>6} streams in {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!();
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let (threads, rss) = proc_usage(pid)?;
    println!(
        "\narka bench streams: {} idle DoExchange streams over {} connections on {}",
        args.count,
        clients.len(),
        args.addr
    );
    println!(
        "{:<22} {:>12} {:>12}",
        format!("node (pid {pid})"),
        "before",
        "with streams"
    );
    println!(
        "{:<22} {:>12} {:>12}",
        "OS threads", threads_before, threads
    );
    println!(
        "{:<22} {:>12.1} {:>12.1}",
        "RSS MiB",
        rss_before as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    println!(
        "{:<22} {:>12} {:>12.1}",
        "KiB per stream",
        "",
        (rss.saturating_sub(rss_before)) as f64 / args.count.max(1) as f64
    );
    drop(held);
    Ok(())
}

//! `arka bench failover`: starts its own cluster (child `arka server` processes, as `arka
//! dev` does), keeps a producer writing, and repeatedly stops the leader: kill -9 (a crash)
//! or, with `--signal term`, SIGTERM (a clean stop, which hands leadership over). For every
//! stop it measures the time until the next write sent after it is acked REPLICATED, and how
//! long gossip on a survivor takes to report the stopped node suspect and dead. The killed node is restarted
//! and caught up before the next kill. The baseline is the REPLICATED ack latency of the same
//! producer between kills.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use clap::Args;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::cli::dev::{dev_nodes, server_args, DevNode, DevShared};
use crate::client::{Client, ClusterClient, ProducerConfig, WriteHandle};

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Nodes of the cluster the benchmark starts.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Leader stops to measure.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// How the leader is stopped: `kill` (kill -9, a crash) or `term` (SIGTERM, a clean stop).
    #[arg(long, value_enum, default_value_t = StopSignal::Kill)]
    signal: StopSignal,
    /// Writes per second the producer offers.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Flight port of node 1 (Raft on +100, gossip on +200).
    #[arg(long, default_value_t = 18815)]
    base_port: u16,
    /// Data directory of the benchmark's cluster (emptied first).
    #[arg(long, default_value = "arka-bench-failover")]
    data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StopSignal {
    Kill,
    Term,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            StopSignal::Kill => "kill -9",
            StopSignal::Term => "SIGTERM",
        }
    }
}

/// A bound on every wait of the benchmark, so that a broken cluster ends it with an error.
const WAIT_MAX: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);

struct Nodes {
    exe: PathBuf,
    nodes: Vec<DevNode>,
    data_dir: PathBuf,
    tiering: DevShared,
    children: Vec<Option<Child>>,
}

impl Nodes {
    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let argv = server_args(
            &self.nodes[index],
            &self.nodes,
            &self.data_dir,
            &self.tiering,
        );
        let log = std::fs::File::create(self.data_dir.join(format!("node-{}.log", index + 1)))?;
        let child = Command::new(&self.exe)
            .args(&argv)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.children[index] = Some(child);
        Ok(())
    }

    /// Sends `signal` to node `index`; [`Nodes::wait_stopped`] waits for it to exit.
    fn stop(&mut self, index: usize, signal: StopSignal) -> anyhow::Result<()> {
        let Some(child) = self.children[index].as_mut() else {
            return Ok(());
        };
        match signal {
            StopSignal::Kill => child.start_kill()?,
            StopSignal::Term => {
                let pid = child.id().context("the node has exited")?;
                // SAFETY: kill(2) on our own child process has no memory effects.
                if unsafe { libc::kill(pid as i32, libc::SIGTERM) } != 0 {
                    anyhow::bail!(
                        "SIGTERM to node {}: {}",
                        index + 1,
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
        Ok(())
    }

    async fn wait_stopped(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.children[index].take() {
            tokio::time::timeout(WAIT_MAX, child.wait())
                .await
                .context("the stopped node did not exit")??;
        }
        Ok(())
    }

    async fn kill9(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.children[index].take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    fn location(&self, index: usize) -> String {
        format!("grpc://{}", self.nodes[index].flight)
    }
}

async fn cluster_status(addr: &str) -> Option<Value> {
    let ask = async {
        let client = Client::connect(addr).await.ok()?;
        client.action("cluster_status", &Value::Null).await.ok()
    };
    tokio::time::timeout(Duration::from_millis(500), ask)
        .await
        .ok()
        .flatten()
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + WAIT_MAX;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > end {
            anyhow::bail!("bench failover: gave up after {WAIT_MAX:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every member alive, a leader, and every member less than a second behind (gossip reports
/// applied LSNs a few hundred milliseconds late, so a count of entries would never settle
/// under load): returns the leader's id.
fn settled(report: &Value, nodes: usize) -> Option<u64> {
    let members = report["members"].as_array()?;
    let ok = members.len() == nodes
        && members.iter().all(|m| {
            m["liveness"] == "alive" && m["lag_seconds"].as_f64().is_some_and(|s| s < 1.0)
        });
    (ok && report["healthy"] == true).then(|| report["leader_id"].as_u64())?
}

fn liveness_of(report: &Value, node: u64) -> Option<String> {
    let members = report["members"].as_array()?;
    let m = members.iter().find(|m| m["node_id"] == node)?;
    m["liveness"].as_str().map(str::to_string)
}

/// When each write was sent and acked REPLICATED, in send order.
#[derive(Default)]
struct AckLog {
    sent_acked: Vec<(Instant, Instant)>,
}

fn batch(n: i64) -> anyhow::Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![n]))],
    )?)
}

/// Writes at `rate` until dropped; logs each REPLICATED ack.
async fn produce(cluster: ClusterClient, rate: u64, log: Arc<Mutex<AckLog>>) -> anyhow::Result<()> {
    let producer = cluster
        .producer("failover", ProducerConfig::new("bench-failover"))
        .await?;
    let (handles, mut waiting) = tokio::sync::mpsc::channel::<(Instant, WriteHandle)>(4096);
    let recorder = tokio::spawn(async move {
        while let Some((sent, handle)) = waiting.recv().await {
            if handle.lsn().await.is_ok() {
                let now = Instant::now();
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.sent_acked.push((sent, now));
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0.. {
        tick.tick().await;
        let handle = producer.send(batch(n)?).await?;
        if handles.send((Instant::now(), handle)).await.is_err() {
            break;
        }
    }
    recorder.abort();
    Ok(())
}

fn quantile(values: &mut [Duration], q: f64) -> Duration {
    values.sort_unstable();
    if values.is_empty() {
        return Duration::ZERO;
    }
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(args: FailoverArgs) -> anyhow::Result<()> {
    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)?;
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let nodes = dev_nodes(args.nodes, args.base_port);
    let count = nodes.len();
    let mut cluster = Nodes {
        exe: std::env::current_exe()?,
        children: (0..count).map(|_| None).collect(),
        nodes,
        data_dir: args.data_dir.clone(),
        tiering: DevShared::under(&args.data_dir, None, 2000)?,
    };
    for i in 0..count {
        cluster.spawn(i)?;
    }
    let seeds: Vec<String> = (0..count).map(|i| cluster.location(i)).collect();
    wait_for("the cluster to settle", || async {
        settled(&cluster_status(&seeds[0]).await?, count)
    })
    .await?;
    let client = ClusterClient::connect(&seeds).await?;
    let log = Arc::new(Mutex::new(AckLog::default()));
    let producer = tokio::spawn(produce(client, args.rate, log.clone()));

    let (mut failover, mut suspect, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    let mut elected = Vec::new();
    for kill in 1..=args.kills {
        let settled_leader = wait_for("a settled cluster with a leader", || async {
            for seed in &seeds {
                if let Some(report) = cluster_status(seed).await {
                    return settled(&report, count);
                }
            }
            None
        })
        .await;
        let leader = match settled_leader {
            Ok(leader) => leader,
            Err(e) => {
                for seed in &seeds {
                    eprintln!("{seed}: {}", cluster_status(seed).await.unwrap_or_default());
                }
                return Err(e);
            }
        };
        let acks_before = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sent_acked
            .len();
        wait_for("writes flowing", || async {
            let n = log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sent_acked
                .len();
            (n > acks_before + 50).then_some(())
        })
        .await?;
        let index = (leader - 1) as usize;
        let survivor = seeds[(index + 1) % count].clone();
        let killed_at = Instant::now();
        cluster.stop(index, args.signal)?;

        let (mut seen_suspect, mut seen_dead, mut seen_ack) = (None, None, None);
        let mut seen_leader = None;
        let give_up = Instant::now() + WAIT_MAX;
        while seen_ack.is_none() || seen_dead.is_none() {
            if Instant::now() > give_up {
                anyhow::bail!(
                    "bench failover: no ack or no gossip verdict {WAIT_MAX:?} after kill {kill}"
                );
            }
            if seen_ack.is_none() {
                // The first write sent after the kill: acks already on their way from the old
                // leader do not count.
                let log = log.lock().unwrap_or_else(|e| e.into_inner());
                seen_ack = log
                    .sent_acked
                    .iter()
                    .find(|(sent, _)| *sent > killed_at)
                    .map(|(_, acked)| *acked);
            }
            if seen_dead.is_none() {
                let report = cluster_status(&survivor).await;
                let now = Instant::now();
                let new_leader = report
                    .as_ref()
                    .and_then(|r| r["leader_id"].as_u64())
                    .filter(|id| *id != leader);
                if new_leader.is_some() {
                    seen_leader.get_or_insert(now);
                }
                match report.and_then(|r| liveness_of(&r, leader)).as_deref() {
                    Some("suspect") => {
                        seen_suspect.get_or_insert(now);
                    }
                    Some("dead") => {
                        seen_suspect.get_or_insert(now);
                        seen_dead = Some(now);
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(POLL).await;
        }
        let gap = seen_ack.map(|t| t - killed_at).unwrap_or_default();
        let to_suspect = seen_suspect.map(|t| t - killed_at).unwrap_or_default();
        let to_dead = seen_dead.map(|t| t - killed_at).unwrap_or_default();
        let to_leader = seen_leader.map(|t| t - killed_at).unwrap_or_default();
        println!(
            "{} {kill}: leader {leader}: new leader after {}, next REPLICATED ack after {}, suspect after {}, dead after {}",
            args.signal.name(),
            ms(to_leader),
            ms(gap),
            ms(to_suspect),
            ms(to_dead)
        );
        elected.push(to_leader);
        failover.push(gap);
        suspect.push(to_suspect);
        dead.push(to_dead);
        cluster.wait_stopped(index).await?;
        cluster.spawn(index)?;
    }
    producer.abort();
    let mut latency: Vec<Duration> = log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sent_acked
        .iter()
        .map(|(sent, acked)| *acked - *sent)
        .collect();
    let base_p50 = quantile(&mut latency, 0.5);
    let base_p99 = quantile(&mut latency, 0.99);
    println!();
    println!(
        "| measure ({} × {} of the leader, {} nodes, {} writes/s) | p50 | p99 | max |",
        args.kills,
        args.signal.name(),
        count,
        args.rate
    );
    println!("|---|---|---|---|");
    for (name, values) in [
        ("→ a survivor names a new leader", &mut elected),
        ("→ next write acked REPLICATED", &mut failover),
        ("→ gossip on a survivor reports suspect", &mut suspect),
        ("→ gossip on a survivor reports dead", &mut dead),
    ] {
        let p50 = quantile(values, 0.5);
        let p99 = quantile(values, 0.99);
        let max = values.last().copied().unwrap_or_default();
        println!("| {name} | {} | {} | {} |", ms(p50), ms(p99), ms(max));
    }
    println!(
        "| baseline: REPLICATED ack latency of the same producer ({} writes) | {} | {} | |",
        latency.len(),
        ms(base_p50),
        ms(base_p99)
    );
    let p99_gap = quantile(&mut failover, 0.99);
    println!(
        "failover p99 / baseline p99 = {:.1}x",
        p99_gap.as_secs_f64() / base_p99.as_secs_f64().max(1e-9)
    );
    for i in 0..count {
        cluster.kill9(i).await?;
    }
    Ok(())
}

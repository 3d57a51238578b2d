//! `arka bench tier`: a steady write load at a fixed rate, each write followed to COMMITTED.
//! Reports, per write, the time from its REPLICATED ack to its OBJECT_STORAGE and COMMITTED
//! acks (p50/p99), beside the baseline submit → REPLICATED latency, and samples the leader's
//! tiering lag over the run, so a lag that grows shows.

use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::task::JoinSet;

use super::write_load::make_batch;
use crate::client::{Client, ClientError, ClusterClient, Producer, ProducerConfig, WriteHandle};
use crate::durability::Level;

#[derive(Debug, Clone, Args)]
pub struct TierArgs {
    /// Flight address of any node (comma-separated for several); the leader is found there.
    #[arg(long, default_value = "grpc://127.0.0.1:8815")]
    addr: String,
    /// Ingest rate, MB/s of batch data.
    #[arg(long, default_value_t = 50.0)]
    mb_per_sec: f64,
    /// Approximate bytes of data per batch.
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_bytes: usize,
    /// Length of the run.
    #[arg(long, default_value_t = 300)]
    duration_secs: u64,
    /// How often the leader's tiering lag is sampled.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Table to write to.
    #[arg(long, default_value = "bench_tier")]
    table: String,
}

/// Writes not yet COMMITTED: at 50 writes/s and a 2 s commit interval a few hundred wait
/// at any time. A full window holds the sender back, so a cluster that cannot keep up
/// shows as a lower rate sent rather than an unbounded queue in the client.
const WINDOW: usize = 512;

/// Latency histograms, in microseconds.
struct Histograms {
    replicated: Histogram<u64>,
    to_object_storage: Histogram<u64>,
    to_committed: Histogram<u64>,
}

impl Histograms {
    fn new() -> anyhow::Result<Self> {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3);
        Ok(Self {
            replicated: h()?,
            to_object_storage: h()?,
            to_committed: h()?,
        })
    }

    fn record(&mut self, sent: Instant, levels: [Instant; 3]) {
        let [replicated, object_storage, committed] = levels;
        let us = |from: Instant, to: Instant| (to.duration_since(from).as_micros() as u64).max(1);
        let _ = self.replicated.record(us(sent, replicated));
        let _ = self
            .to_object_storage
            .record(us(replicated, object_storage));
        let _ = self.to_committed.record(us(replicated, committed));
    }
}

/// Follows one write through the three levels; the times each was seen.
async fn follow(handle: WriteHandle) -> Result<[Instant; 3], ClientError> {
    handle.wait(Level::Replicated).await?;
    let replicated = Instant::now();
    handle.wait(Level::ObjectStorage).await?;
    let object_storage = Instant::now();
    handle.wait(Level::Committed).await?;
    Ok([replicated, object_storage, Instant::now()])
}

/// One lag sample of the leader: seconds and entries behind REPLICATED.
struct LagSample {
    at: Duration,
    lag_seconds: f64,
    s3_behind: u64,
    committed_behind: u64,
}

async fn sample_lag(client: &Client, started: Instant) -> Option<LagSample> {
    let status: Value = client.action("status", &Value::Null).await.ok()?;
    let replicated = status["replicated_lsn"].as_u64()?;
    Some(LagSample {
        at: started.elapsed(),
        lag_seconds: status["lag_seconds"].as_f64().unwrap_or(0.0),
        s3_behind: replicated.saturating_sub(status["s3_lsn"].as_u64()?),
        committed_behind: replicated.saturating_sub(status["committed_lsn"].as_u64()?),
    })
}

pub async fn run(args: TierArgs) -> anyhow::Result<()> {
    let batch = make_batch(args.batch_bytes)?;
    let seeds: Vec<&str> = args.addr.split(',').collect();
    let cluster = ClusterClient::connect(&seeds).await?;
    let leader = cluster.leader().await?;
    let status_client = Client::connect(leader.addr()).await?;
    let writes_per_sec = args.mb_per_sec * 1_000_000.0 / args.batch_bytes as f64;
    let interval = Duration::from_secs_f64(1.0 / writes_per_sec);
    let duration = Duration::from_secs(args.duration_secs);
    eprintln!(
        "arka bench tier: {:.1} MB/s as {writes_per_sec:.1} writes/s of ~{} B for {duration:?} against {}",
        args.mb_per_sec,
        args.batch_bytes,
        leader.addr()
    );
    // The producer resends across leader changes, so a failover shows up in the figures
    // instead of ending the run.
    let mut config = ProducerConfig::new(format!("bench-tier-{}", std::process::id()));
    config.ack_until = Level::Committed;
    config.window = WINDOW;
    let producer = Producer::start(cluster, &args.table, config).await?;
    let started = Instant::now();
    let sampler = {
        let every = Duration::from_secs(args.sample_secs.max(1));
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while started.elapsed() < duration {
                tokio::time::sleep(every).await;
                if let Some(s) = sample_lag(&status_client, started).await {
                    eprintln!(
                        "  t={:>5.0}s lag {:>6.2} s, OBJECT_STORAGE {:>6} entries behind, COMMITTED {:>6} behind",
                        s.at.as_secs_f64(),
                        s.lag_seconds,
                        s.s3_behind,
                        s.committed_behind
                    );
                    samples.push(s);
                }
            }
            samples
        })
    };
    let mut followers = JoinSet::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    while started.elapsed() < duration {
        tick.tick().await;
        let handle = producer.send(batch.clone()).await?;
        let at = Instant::now();
        followers.spawn(async move { follow(handle).await.map(|levels| (at, levels)) });
        sent += 1;
    }
    let mut histograms = Histograms::new()?;
    while let Some(done) = followers.join_next().await {
        let (at, levels) = done??;
        histograms.record(at, levels);
    }
    producer.close().await?;
    let samples = sampler.await?;
    print_report(&args, sent, duration, &histograms, &samples);
    Ok(())
}

fn print_report(
    args: &TierArgs,
    sent: u64,
    duration: Duration,
    h: &Histograms,
    samples: &[LagSample],
) {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let base = ms(&h.replicated, 0.5).max(0.001);
    println!(
        "arka bench tier: {sent} writes of ~{} B sent over {:.0} s = {:.1} MB/s",
        args.batch_bytes,
        duration.as_secs_f64(),
        sent as f64 * args.batch_bytes as f64 / 1e6 / duration.as_secs_f64()
    );
    println!("| measure | writes | p50 ms | p99 ms | p50 / baseline p50 |");
    println!("|---|---|---|---|---|");
    for (name, hist) in [
        ("baseline: submit → REPLICATED", &h.replicated),
        ("REPLICATED → OBJECT_STORAGE", &h.to_object_storage),
        ("REPLICATED → COMMITTED", &h.to_committed),
    ] {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1}x |",
            hist.len(),
            ms(hist, 0.5),
            ms(hist, 0.99),
            ms(hist, 0.5) / base
        );
    }
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        let max_lag = samples.iter().map(|s| s.lag_seconds).fold(0.0, f64::max);
        println!(
            "tiering lag: first sample {:.2} s ({} entries behind OBJECT_STORAGE), last {:.2} s ({} entries), max {max_lag:.2} s over {} samples",
            first.lag_seconds,
            first.s3_behind,
            last.lag_seconds,
            last.s3_behind,
            samples.len()
        );
    }
}

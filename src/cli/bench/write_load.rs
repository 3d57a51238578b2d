//! Pipelined write load: N streams, each keeping up to `window` writes in flight, each write an
//! idempotent batch of about `batch-bytes`; latency is submit → ack at the chosen level.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{BinaryArray, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

use super::report::{print_table, RunResult};
use super::server_cpu::{term, NodeProcs};
use crate::cli::connect_args::ConnectArgs;
use crate::client::{Client, ClusterClient, RetryPolicy, WriteItem};
use crate::durability::Level;

#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Flight address of any node (comma-separated for several); the leader is found there.
    #[arg(long, default_value = "grpc://127.0.0.1:8815")]
    addr: String,
    /// Levels to measure, in order; the first is the baseline of the ratios.
    #[arg(long, value_delimiter = ',', default_value = "REPLICATED")]
    levels: Vec<Level>,
    /// Approximate bytes of data per batch.
    #[arg(long, default_value_t = 1024)]
    batch_bytes: usize,
    /// Concurrent write streams.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Writes in flight per stream (pipelining depth).
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Writes per second offered over all streams (paced, still bounded by the window);
    /// unset, each stream writes as fast as its window allows. Latency at a given share of
    /// the peak rate is measured with this.
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Runs per level (the table shows medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of the same load written before each level's runs and left out of the
    /// figures, so that they show a cluster in its steady state (a fresh cluster's first
    /// seconds are slower); 0 measures from the first write.
    #[arg(long, default_value_t = 0)]
    warmup_secs: u64,
    /// Table to write to.
    #[arg(long, default_value = "bench")]
    table: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub(super) fn make_batch(bytes: usize) -> anyhow::Result<RecordBatch> {
    let row_bytes = 64usize;
    let rows = (bytes / row_bytes).max(1);
    let payload = vec![0xabu8; row_bytes.saturating_sub(8).min(bytes)];
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("payload", DataType::Binary, false),
    ]));
    let ids = Int64Array::from_iter_values(0..rows as i64);
    let data = BinaryArray::from_iter_values((0..rows).map(|_| payload.as_slice()));
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(ids), Arc::new(data)],
    )?)
}

/// One stream's share of `rate` writes/s as a ticking interval. A tick that is late (the
/// timer's granularity is a millisecond) is made up at once, so the offered rate holds.
fn pacer(rate: Option<u64>, streams: usize) -> Option<tokio::time::Interval> {
    let per_stream = rate? as f64 / streams.max(1) as f64;
    (per_stream > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / per_stream)))
}

struct Shared {
    histogram: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    /// The slowest ack since the progress line last printed: stalls show up as a timeline.
    worst_us: AtomicU64,
    stop: AtomicU64,
}

async fn one_stream(
    client: Client,
    args: WriteArgs,
    level: Level,
    run: usize,
    stream_no: usize,
    batch: RecordBatch,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    // A producer id per run: a repeated (producer_id, seq) would be answered from the
    // idempotency table without being written again.
    let pid = std::process::id();
    let producer = format!("bench-{pid}-{run}-{stream_no}-{}", level.as_str());
    let window = Arc::new(Semaphore::new(args.window));
    let sent: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let (tx, rx) = mpsc::channel(args.window);
    let mut acks = Box::pin(
        client
            .write_stream(&args.table, ReceiverStream::new(rx), level)
            .await?,
    );
    let feeder = {
        let (window, sent, shared) = (window.clone(), sent.clone(), shared.clone());
        let mut pace = pacer(args.rate, args.streams);
        tokio::spawn(async move {
            let mut seq = 0i64;
            while shared.stop.load(Ordering::Relaxed) == 0 {
                if let Some(pace) = pace.as_mut() {
                    pace.tick().await;
                }
                let Ok(permit) = window.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                sent.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(seq, Instant::now());
                if tx
                    .send(WriteItem::idempotent(batch.clone(), &producer, seq))
                    .await
                    .is_err()
                {
                    break;
                }
                seq += 1;
            }
        })
    };
    while let Some(batch) = acks.next().await {
        for ack in batch? {
            if ack.level < level {
                continue;
            }
            let Some(seq) = ack.seq else { continue };
            let started = sent.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
            if let Some(started) = started {
                let us = started.elapsed().as_micros() as u64;
                let _ = shared
                    .histogram
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(us.max(1));
                shared.acked.fetch_add(1, Ordering::Relaxed);
                shared.worst_us.fetch_max(us, Ordering::Relaxed);
                window.add_permits(1);
            }
        }
    }
    feeder.await?;
    Ok(())
}

async fn one_run(
    leader: &Client,
    procs: Option<&NodeProcs>,
    clients: &[Client],
    args: &WriteArgs,
    level: Level,
    run: usize,
    batch: &RecordBatch,
) -> anyhow::Result<RunResult> {
    let shared = Arc::new(Shared {
        histogram: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
        acked: AtomicU64::new(0),
        worst_us: AtomicU64::new(0),
        stop: AtomicU64::new(0),
    });
    let term_before = term(leader).await;
    let cpu_before = procs.and_then(NodeProcs::cpu);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let task = one_stream(
            client.clone(),
            args.clone(),
            level,
            run,
            i,
            batch.clone(),
            shared.clone(),
        );
        tasks.push(tokio::spawn(task));
    }
    let deadline = started + Duration::from_secs(args.duration_secs);
    let mut last = 0;
    // A stream ends early only with an error (a refusal): the run stops at once and reports it.
    while Instant::now() < deadline && !tasks.iter().any(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_secs(1).min(deadline - Instant::now())).await;
        let acked = shared.acked.load(Ordering::Relaxed);
        let p99 = shared
            .histogram
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .value_at_quantile(0.99);
        let worst = shared.worst_us.swap(0, Ordering::Relaxed);
        eprintln!(
            "  {level:<10} t={:>4.1}s acked={acked:>9} last 1s: {:>8} writes, slowest {:.2} ms  p99 so far {:.2} ms",
            started.elapsed().as_secs_f64(),
            acked - last,
            worst as f64 / 1000.0,
            p99 as f64 / 1000.0
        );
        last = acked;
    }
    let elapsed = started.elapsed();
    let histogram = shared
        .histogram
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    shared.stop.store(1, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let cpu_after = procs.and_then(NodeProcs::cpu);
    // MB/s counts each write as the Arrow IPC bytes it is logged as, not the batch's
    // in-memory size (its buffers' capacities, which overstate a large batch).
    let write_bytes = crate::ipc::encode_batch(batch)?.len() as u64;
    let bytes = histogram.len() * write_bytes;
    let mut result = RunResult::from_histogram(&histogram, bytes, elapsed);
    result.server_cpu = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b));
    result.term_changes = term_before
        .zip(term(leader).await)
        .map(|(b, a)| a.saturating_sub(b));
    Ok(result)
}

pub async fn run(args: WriteArgs) -> anyhow::Result<()> {
    let batch = make_batch(args.batch_bytes)?;
    let seeds: Vec<&str> = args.addr.split(',').collect();
    let options = args.connect.options()?;
    let cluster =
        ClusterClient::connect_with_options(&seeds, RetryPolicy::default(), options.clone())
            .await?;
    let leader = cluster.leader().await?;
    // One connection per stream, as independent producers would have.
    let mut clients = Vec::new();
    for _ in 0..args.streams {
        clients.push(Client::connect_with(leader.addr(), &options).await?);
    }
    let procs = NodeProcs::discover(&leader, &options).await;
    if procs.is_none() {
        eprintln!("server CPU is not measured: the nodes do not all run on this machine");
    }
    let mut rows = Vec::new();
    for level in &args.levels {
        if args.warmup_secs > 0 {
            eprintln!("{level} warm-up, {} s (not counted)", args.warmup_secs);
            let warmup = WriteArgs {
                duration_secs: args.warmup_secs,
                ..args.clone()
            };
            one_run(
                &leader,
                procs.as_ref(),
                &clients,
                &warmup,
                *level,
                0,
                &batch,
            )
            .await?;
        }
        let mut runs = Vec::new();
        for run in 1..=args.runs {
            eprintln!("{level} run {run}/{}", args.runs);
            let result = one_run(
                &leader,
                procs.as_ref(),
                &clients,
                &args,
                *level,
                run,
                &batch,
            );
            runs.push(result.await?);
        }
        rows.push((level.to_string(), runs));
    }
    let offered = args.rate.map_or_else(
        || "as fast as acked".to_string(),
        |r| format!("{r} writes/s offered"),
    );
    let title = format!(
        "arka bench write: {} streams x window {}, ~{} B batches, {offered}, {} s runs after {} s of warm-up against {}",
        args.streams,
        args.window,
        args.batch_bytes,
        args.duration_secs,
        args.warmup_secs,
        leader.addr()
    );
    print_table(&title, &rows);
    Ok(())
}

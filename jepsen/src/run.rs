//! One run: a cluster on its own network, the queue workload while the nemesis injects
//! faults, healing, the final reads from every node, and the report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::checker::{self, Verdict};
use crate::cluster::Cluster;
use crate::consumers::{self, Watched};
use crate::history::{Function, OpType};
use crate::nemesis::{self, Rng};
use crate::recorder::Recorder;
use crate::{lake, report, workload};

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The `arka` binary the nodes run.
    pub arka: PathBuf,
    /// The run's folder: node data and logs, the history, the verdict.
    pub out: PathBuf,
    pub time_limit: Duration,
    pub nemesis: String,
    pub seed: u64,
    /// The nodes' WAL skips its fsyncs from the start, as a disk that lies about its
    /// flushes: with power losses, the checker must report lost writes.
    pub skip_fsync: bool,
    pub nodes: usize,
    pub producers: u64,
    pub tables: usize,
}

/// Consumers reading ranges from random nodes (and one `follow` tail per table).
const RANGE_READERS: u64 = 2;
/// The process that asks nodes how durable acked writes are.
const LEVEL_CHECKER: u64 = 700;
/// How long the cluster may take to elect a leader after healing.
const HEAL_WAIT_MAX: Duration = Duration::from_secs(60);

pub async fn run(config: &RunConfig) -> anyhow::Result<Verdict> {
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("create {}", config.out.display()))?;
    let mut nemesis = nemesis::by_name(&config.nemesis, config.skip_fsync)?;
    let remote_lake = nemesis.needs_remote_lake();
    let mut cluster = Cluster::start(&config.arka, &config.out, config.nodes, remote_lake).await?;
    if config.skip_fsync {
        cluster.skip_fsync().await?;
    }
    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let tables: Vec<Watched> = (0..config.tables)
        .map(|t| Watched {
            table: workload::table_name(t),
            acked: Arc::default(),
        })
        .collect();
    let addrs = cluster.flight_addrs();
    let mut clients: Vec<_> = (0..config.producers)
        .map(|p| {
            let table = tables[p as usize % config.tables].clone();
            let (addrs, recorder, stop) = (addrs.clone(), recorder.clone(), stop.clone());
            tokio::spawn(workload::produce(addrs, p, table, recorder, stop))
        })
        .collect();
    for c in 0..RANGE_READERS {
        let (addrs, recorder, stop) = (addrs.clone(), recorder.clone(), stop.clone());
        let read =
            consumers::read_ranges(addrs, 500 + c, tables.clone(), config.seed, recorder, stop);
        clients.push(tokio::spawn(read));
    }
    let levels = consumers::check_levels(
        addrs.clone(),
        LEVEL_CHECKER,
        tables.clone(),
        config.seed,
        recorder.clone(),
        stop.clone(),
    );
    clients.push(tokio::spawn(levels));
    for (t, watched) in tables.iter().enumerate() {
        let (addrs, recorder, stop) = (addrs.clone(), recorder.clone(), stop.clone());
        let tail = consumers::follow(addrs, 600 + t as u64, watched.table.clone(), recorder, stop);
        clients.push(tokio::spawn(tail));
    }
    let mut rng = Rng::new(config.seed);
    let until = Instant::now() + config.time_limit;
    let faults = nemesis::run(nemesis.as_mut(), &mut cluster, &mut rng, &recorder, until).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    faults.with_context(|| format!("nemesis {}", nemesis.name()))?;

    cluster.restart_stopped()?;
    cluster.wait_for_leader(HEAL_WAIT_MAX).await?;
    // The lake first, so that the final reads reach as far as it does and the checker can
    // hold it against them.
    let names: Vec<String> = tables.iter().map(|w| w.table.clone()).collect();
    let (addr, reader_args) = (cluster.flight_addr(1), cluster.lake_reader_args());
    let lake_upto = lake::read_tables(&addr, &reader_args, &names, &recorder).await;
    let ops = recorder.ops();
    let highest = (ops.iter())
        .filter(|op| op.f == Function::Send && op.kind == OpType::Ok)
        .filter_map(|op| op.lsn)
        .max()
        .unwrap_or(0)
        .max(lake_upto);
    for node in 1..=config.nodes {
        for t in 0..config.tables {
            let addr = cluster.flight_addr(node);
            let table = workload::table_name(t);
            workload::final_read(&addr, node as u64, &table, highest, &recorder).await;
        }
    }
    drop(cluster);
    let ops = recorder.ops();
    let verdict = checker::check(&ops);
    report::write_run(&config.out, &ops, &verdict)?;
    Ok(verdict)
}

//! The queue workload's consumers, while producers write and the nemesis strikes: ranged
//! reads with `min_lsn` (the highest LSN acked so far) from random nodes, over plain
//! Flight, and `follow` tails through the Rust client's reader, which moves to another
//! replica when its own fails. Each read, and each stretch of a tail, is recorded with the
//! LSN range it covers, so the checker can tell a write missing from it. A level checker
//! asks random nodes how durable acked writes are, so the checker can tell a level that
//! fell.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arka::durability::Level;
use arka::wire::ReadTicket;
use futures::StreamExt;
use tokio::time::Instant;

use crate::history::{Function, Op, OpType};
use crate::nemesis::Rng;
use crate::recorder::{complete_within, Recorder};
use crate::workload::entries_of;

/// Pause between two ranged reads of one consumer.
const READ_EVERY: Duration = Duration::from_millis(100);
/// How many LSNs below the highest acked one a ranged read starts.
const READ_SPAN: u64 = 1_000;
/// How long a ranged read may take (a node cut off from the leader cannot reach `min_lsn`).
const READ_WAIT_MAX: Duration = Duration::from_secs(5);
/// How long a stretch of a tail runs before it is recorded.
const TAIL_STRETCH: Duration = Duration::from_secs(1);
/// Pause between two level checks.
const LEVEL_EVERY: Duration = Duration::from_millis(200);
/// Pause before a tail that ended is started again.
const TAIL_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A table and the highest LSN acked in it so far.
#[derive(Clone)]
pub struct Watched {
    pub table: String,
    pub acked: Arc<AtomicU64>,
}

/// Consumer `process` reads a random table from a random node every [`READ_EVERY`] until
/// `stop`: the [`READ_SPAN`] LSNs below the highest acked one, once the node applied that.
pub async fn read_ranges(
    addrs: Vec<String>,
    process: u64,
    tables: Vec<Watched>,
    seed: u64,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed ^ process);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(READ_EVERY).await;
        let watched = &tables[rng.below(tables.len() as u64) as usize];
        let node = rng.below(addrs.len() as u64) as usize;
        let upto = watched.acked.load(Ordering::Relaxed);
        if upto == 0 {
            continue;
        }
        let from = upto.saturating_sub(READ_SPAN).max(1);
        let mut invoke = Op::new(process, OpType::Invoke, Function::Read);
        invoke.table = Some(watched.table.clone());
        invoke.node = Some(node as u64 + 1);
        recorder.record(invoke.clone());
        let ticket = ReadTicket {
            table: watched.table.clone(),
            from_lsn: Some(from),
            min_lsn: Some(upto),
            ..Default::default()
        };
        let read = async {
            let client = crate::connect::client(&addrs[node]).await?;
            let (_, batches) = client.read(&ticket).await?;
            entries_of(&batches)
        };
        let (mut done, entries) = complete_within(&invoke, READ_WAIT_MAX, read).await;
        if entries.is_some() {
            done.from = Some(from);
            done.upto = Some(upto);
        }
        done.entries = entries;
        recorder.record(done);
    }
}

/// Consumer `process` follows `table` from its start until `stop`, recording what each
/// [`TAIL_STRETCH`] delivered; a tail that ends is started again after the last LSN it
/// delivered.
pub async fn follow(
    addrs: Vec<String>,
    process: u64,
    table: String,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
) {
    let mut next = 1;
    while !stop.load(Ordering::Relaxed) {
        let Ok(cluster) = crate::connect::cluster(&addrs).await else {
            tokio::time::sleep(TAIL_RETRY_PAUSE).await;
            continue;
        };
        let mut tail = Box::pin(cluster.reader(&table).tail(next));
        let mut ended = false;
        while !ended && !stop.load(Ordering::Relaxed) {
            let mut invoke = Op::new(process, OpType::Invoke, Function::Read);
            invoke.table = Some(table.clone());
            recorder.record(invoke.clone());
            let from = next;
            let mut entries = Vec::new();
            let until = Instant::now() + TAIL_STRETCH;
            let mut error = None;
            while let Ok(item) = tokio::time::timeout_at(until, tail.next()).await {
                match item.map(|r| r.map_err(anyhow::Error::from)) {
                    Some(Ok((lsn, batch))) => match entries_of(&[(lsn, batch)]) {
                        Ok(read) => {
                            entries.extend(read);
                            next = lsn + 1;
                        }
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    },
                    Some(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                    None => {
                        error = Some(anyhow::anyhow!("the tail ended"));
                        break;
                    }
                }
            }
            // What was delivered is a read of `from..next` whether or not the tail goes on.
            let mut done = Op {
                kind: OpType::Ok,
                ..invoke
            };
            done.entries = Some(entries);
            done.from = Some(from);
            done.upto = next.checked_sub(1).filter(|upto| *upto >= from);
            if let Some(e) = error {
                done.error = Some(e.to_string());
                ended = true;
            }
            recorder.record(done);
        }
        if ended {
            tokio::time::sleep(TAIL_RETRY_PAUSE).await;
        }
    }
}

/// Process `process` asks a random node every [`LEVEL_EVERY`] until `stop` how durable the
/// highest acked write of a random table is (`get_durability_status` with
/// `last_known_lsn`: an LSN acked at `REPLICATED` holds that write for good).
pub async fn check_levels(
    addrs: Vec<String>,
    process: u64,
    tables: Vec<Watched>,
    seed: u64,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed ^ process);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(LEVEL_EVERY).await;
        let lsn = tables[rng.below(tables.len() as u64) as usize]
            .acked
            .load(Ordering::Relaxed);
        let node = rng.below(addrs.len() as u64) as usize;
        if lsn == 0 {
            continue;
        }
        let mut invoke = Op::new(process, OpType::Invoke, Function::Level);
        invoke.lsn = Some(lsn);
        invoke.node = Some(node as u64 + 1);
        recorder.record(invoke.clone());
        let ask = async {
            let client = crate::connect::client(&addrs[node]).await?;
            let body = serde_json::json!({ "last_known_lsn": lsn });
            let answer = client.action("get_durability_status", &body).await?;
            Ok::<_, anyhow::Error>(serde_json::from_value::<Option<Level>>(
                answer["level"].clone(),
            )?)
        };
        let (mut done, level) = complete_within(&invoke, READ_WAIT_MAX, ask).await;
        done.level = level.flatten();
        recorder.record(done);
    }
}

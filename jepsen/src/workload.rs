//! The queue workload: producers with producer sessions append unique values to several
//! tables, through the Rust client, each value in a one-row batch, while consumers read
//! (`consumers.rs`); after healing, every table is read from every node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arka::client::ProducerConfig;
use arka::durability::Level;
use arka::wire::ReadTicket;
use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::consumers::Watched;
use crate::history::{Function, Op, OpType};
use crate::recorder::{complete_within, Recorder};

/// How long a send may take before it is recorded as indeterminate.
const SEND_WAIT_MAX: Duration = Duration::from_secs(10);
/// How long a final read may wait for a node to apply the highest acked LSN.
const FINAL_READ_WAIT_MAX: Duration = Duration::from_secs(60);
/// Pause after a failed send before the producer starts a new session.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

pub fn table_name(t: usize) -> String {
    format!("queue{t}")
}

fn batch(value: i64) -> anyhow::Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "value",
        DataType::Int64,
        false,
    )]));
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![value]))],
    )?)
}

/// Producer `process` appends `process * 10^9 + k` for k = 0, 1, … to its table until
/// `stop`, one send at a time, recording each and raising the table's highest acked LSN.
pub async fn produce(
    addrs: Vec<String>,
    process: u64,
    table: Watched,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
) {
    let Watched { table, acked } = table;
    let mut next = process as i64 * 1_000_000_000;
    while !stop.load(Ordering::Relaxed) {
        let producer = async {
            let cluster = crate::connect::cluster(&addrs).await?;
            let config = ProducerConfig::new(format!("jepsen-{process}"));
            cluster.producer(&table, config).await
        };
        let Ok(Ok(producer)) = tokio::time::timeout(SEND_WAIT_MAX, producer).await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            let value = next;
            next += 1;
            let mut invoke = Op::new(process, OpType::Invoke, Function::Send);
            invoke.table = Some(table.clone());
            invoke.value = Some(value);
            recorder.record(invoke);
            let sent = async {
                let handle = producer.send(batch(value)?).await?;
                Ok::<u64, anyhow::Error>(handle.wait(Level::Replicated).await?)
            };
            let outcome = tokio::time::timeout(SEND_WAIT_MAX, sent).await;
            let mut done = Op::new(process, OpType::Ok, Function::Send);
            done.table = Some(table.clone());
            done.value = Some(value);
            match outcome {
                Ok(Ok(lsn)) => {
                    acked.fetch_max(lsn, Ordering::Relaxed);
                    done.lsn = Some(lsn);
                    done.level = Some(Level::Replicated);
                    recorder.record(done);
                }
                other => {
                    // The write may or may not have happened: a resend of its seq by the
                    // next session is answered from the idempotency table, not written
                    // again, but this process moves on to a new value.
                    done.kind = OpType::Info;
                    done.error = Some(match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no ack within {SEND_WAIT_MAX:?}"),
                    });
                    recorder.record(done);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    break;
                }
            }
        }
    }
}

/// Reads `table` from node `node` once it applied `min_lsn`, recording the read.
pub async fn final_read(addr: &str, node: u64, table: &str, min_lsn: u64, recorder: &Recorder) {
    let process = 1_000 + node;
    let mut invoke = Op::new(process, OpType::Invoke, Function::FinalRead);
    invoke.table = Some(table.to_string());
    invoke.node = Some(node);
    recorder.record(invoke.clone());
    let ticket = ReadTicket {
        table: table.to_string(),
        min_lsn: Some(min_lsn),
        ..Default::default()
    };
    let read = async {
        let client = crate::connect::client(addr).await?;
        let (_, batches) = client.read(&ticket).await?;
        entries_of(&batches)
    };
    let (mut done, entries) = complete_within(&invoke, FINAL_READ_WAIT_MAX, read).await;
    if entries.is_some() {
        done.upto = Some(min_lsn);
    }
    done.entries = entries;
    recorder.record(done);
}

/// `(lsn, value)` of every row read.
pub(crate) fn entries_of(batches: &[(u64, RecordBatch)]) -> anyhow::Result<Vec<(u64, i64)>> {
    let mut entries = Vec::new();
    for (lsn, batch) in batches {
        let values = batch
            .column_by_name("value")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| anyhow::anyhow!("the batch at LSN {lsn} has no int64 column value"))?;
        entries.extend((0..values.len()).map(|i| (*lsn, values.value(i))));
    }
    Ok(entries)
}

//! The lake after healing: everything applied is flushed to Iceberg, then each table is
//! read back through PyIceberg (a reader that shares no code with arka) from the catalog
//! and object store the nodes commit to, and recorded with its snapshot's `arka.lsn`.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use serde_json::Value;

use crate::history::{Function, Op, OpType};
use crate::recorder::Recorder;

/// The process that reads the lake.
const LAKE_READER: u64 = 900;
/// How long the flush may take (it follows the tier worker while it moves).
const FLUSH_WAIT_MAX: Duration = Duration::from_secs(90);
/// The PyIceberg reader the test suite uses too.
const ICEBERG_READ: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/python/iceberg_read.py"
);

/// Flushes through the node at `addr` and records each of `tables` as Iceberg has it, read
/// by `iceberg_read.py` with `reader_args` (catalog, warehouse, properties); returns the
/// highest `arka.lsn` read.
pub async fn read_tables(
    addr: &str,
    reader_args: &[String],
    tables: &[String],
    recorder: &Recorder,
) -> u64 {
    let mut highest = 0;
    flush(addr, recorder).await;
    for table in tables {
        let mut invoke = Op::new(LAKE_READER, OpType::Invoke, Function::IcebergRead);
        invoke.table = Some(table.clone());
        recorder.record(invoke.clone());
        let mut done = Op {
            kind: OpType::Ok,
            ..invoke
        };
        match read_table(reader_args, table) {
            Ok((upto, entries)) => {
                highest = highest.max(upto);
                done.upto = Some(upto);
                done.entries = Some(entries);
            }
            Err(e) => {
                done.kind = OpType::Fail;
                done.error = Some(format!("{e:#}"));
            }
        }
        recorder.record(done);
    }
    highest
}

/// Has the node at `addr` flush everything it applied to the lake, and records the answer.
async fn flush(addr: &str, recorder: &Recorder) {
    let invoke = Op::new(LAKE_READER, OpType::Invoke, Function::Flush);
    recorder.record(invoke.clone());
    let flushed = async {
        let client = crate::connect::client(addr).await?;
        let answer = client.action("flush", &Value::Null).await?;
        (answer["flushed_lsn"].as_u64()).context("flush answered without flushed_lsn")
    };
    let mut done = invoke;
    match tokio::time::timeout(FLUSH_WAIT_MAX, flushed).await {
        Ok(Ok(lsn)) => {
            done.kind = OpType::Ok;
            done.lsn = Some(lsn);
        }
        Ok(Err(e)) => {
            done.kind = OpType::Fail;
            done.error = Some(format!("{e:#}"));
        }
        // The reads still check what the lake holds, up to its snapshots.
        Err(_) => {
            done.kind = OpType::Info;
            done.error = Some(format!("no answer within {FLUSH_WAIT_MAX:?}"));
        }
    }
    if let Some(e) = &done.error {
        eprintln!("arka-jepsen: flush before the Iceberg reads: {e}");
    }
    recorder.record(done);
}

/// `(arka.lsn of the current snapshot, (lsn, value) of each row in LSN order)`.
fn read_table(reader_args: &[String], table: &str) -> anyhow::Result<(u64, Vec<(u64, i64)>)> {
    let (lake, properties) = reader_args.split_at(reader_args.len().min(2));
    let mut read = Command::new("python3");
    read.arg(ICEBERG_READ)
        .args(lake)
        .arg(table)
        .args(properties);
    let out = python_output(&mut read, &format!("PyIceberg read of {table}"))?;
    let read: Value = serde_json::from_slice(&out).context("PyIceberg's answer")?;
    let rows = read["rows"].as_array().cloned().unwrap_or_default();
    let entries = rows
        .iter()
        .map(|row| match (row["_lsn"].as_u64(), row["value"].as_i64()) {
            (Some(lsn), Some(value)) => Ok((lsn, value)),
            _ => anyhow::bail!("a row of {table} without _lsn and value: {row}"),
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((read["snapshot_lsn"].as_u64().unwrap_or(0), entries))
}

/// Runs a `python3` command and returns what it printed; a failure says `what` failed and
/// what Python printed on stderr.
pub fn python_output(python: &mut Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = python.output().context("run python3")?;
    anyhow::ensure!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

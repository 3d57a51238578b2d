//! Sealing a range: the applied writes above the OBJECT_STORAGE watermark, read from the
//! WAL and encoded as one Parquet file per table. This is CPU and disk work (WAL reads, IPC
//! decoding, zstd), so the worker runs it on a blocking thread, away from the runtime
//! threads that carry Raft heartbeats and client streams.

use std::collections::BTreeMap;

use arka_cluster::{is_tier_report, write_of, Lsn};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use super::TierError;
use crate::ipc;
use crate::lake::parquet_file;
use crate::state::StateMachine;
use crate::table::TableName;
use crate::wal::LogReader;

/// Log entries read from the WAL per step while a range is collected.
const READ_STEP_ENTRIES: u64 = 256;

/// A range `(from, to]`, ready to upload.
pub struct SealedRange {
    pub to: Lsn,
    /// False when the range holds only the tier worker's own reports.
    pub has_data: bool,
    pub files: Vec<EncodedFile>,
}

/// One table's writes of a range, as a Parquet file.
pub struct EncodedFile {
    pub table: TableName,
    pub bytes: Bytes,
    pub min_lsn: u64,
    pub max_lsn: u64,
    pub rows: u64,
}

/// The writes of one range, per table, in LSN order.
type RangeWrites = BTreeMap<TableName, Vec<(u64, RecordBatch)>>;

/// Seals the range above `from`: up to `applied`, or less where it reaches `bytes_max` of
/// encoded batches.
pub fn seal(
    (state, log): (&StateMachine, &LogReader),
    from: Lsn,
    applied: Lsn,
    bytes_max: u64,
) -> Result<SealedRange, TierError> {
    let (to, writes, has_data) = read((state, log), from.get(), applied.get(), bytes_max)?;
    let files = writes
        .into_iter()
        .map(|(table, rows)| encode(state, table, &rows))
        .collect::<Result<_, _>>()?;
    Ok(SealedRange {
        to: Lsn(to),
        has_data,
        files,
    })
}

fn read(
    (state, log): (&StateMachine, &LogReader),
    from: u64,
    applied: u64,
    bytes_max: u64,
) -> Result<(u64, RangeWrites, bool), TierError> {
    let mut writes = RangeWrites::new();
    let mut has_data = false;
    let mut bytes = 0u64;
    let mut to = from;
    while to < applied && bytes < bytes_max {
        let end = applied.min(to + READ_STEP_ENTRIES) + 1;
        let entries = log
            .entries(Lsn(to + 1), Lsn(end))
            .map_err(|e| TierError::Log(e.to_string()))?;
        if entries.first().is_none_or(|e| e.log_id.index != to + 1) {
            return Err(TierError::Log(format!(
                "this node's WAL starts at {}, but tiering must go on from {}",
                log.first_index(),
                to + 1
            )));
        }
        for entry in entries {
            to = entry.log_id.index;
            has_data |= !is_tier_report(&entry);
            if let Some(write) = write_of(&entry) {
                bytes += write.ipc.len() as u64;
                if let Some((table, batch)) = decode_write(state, to, &write.table, &write.ipc)? {
                    writes.entry(table).or_default().push((to, batch));
                }
            }
            if bytes >= bytes_max {
                break;
            }
        }
    }
    Ok((to, writes, has_data))
}

/// The batch of a write, if its table still exists in the incarnation it was written to.
fn decode_write(
    state: &StateMachine,
    lsn: u64,
    table: &str,
    ipc_bytes: &[u8],
) -> Result<Option<(TableName, RecordBatch)>, TierError> {
    let Ok(name) = TableName::parse(table) else {
        return Ok(None);
    };
    let Some(info) = state.table(&name) else {
        return Ok(None);
    };
    if lsn < info.meta.created_lsn {
        return Ok(None);
    }
    // Writes the state machine refused (a schema that did not fit, a fenced session) are not
    // in the table.
    if !state.holds_write(&name, Lsn(lsn)) {
        return Ok(None);
    }
    let (schema, batches) = ipc::decode_batches(ipc_bytes)
        .map_err(|e| TierError::Log(format!("decode entry {lsn}: {e}")))?;
    let batch = concat_batches(&schema, &batches)
        .map_err(|e| TierError::Log(format!("decode entry {lsn}: {e}")))?;
    Ok(Some((name, batch)))
}

/// Encodes a table's writes under the table's current schema.
fn encode(
    state: &StateMachine,
    table: TableName,
    rows: &[(u64, RecordBatch)],
) -> Result<EncodedFile, TierError> {
    let info = state
        .table(&table)
        .ok_or_else(|| TierError::Log(format!("table {table} was dropped while tiering")))?;
    let min_lsn = rows.first().map(|(l, _)| *l).unwrap_or_default();
    let max_lsn = rows.last().map(|(l, _)| *l).unwrap_or_default();
    let bytes = parquet_file::encode(&info.schema, rows).map_err(|e| TierError::Parquet {
        path: format!("of table {table} for LSNs {min_lsn}..={max_lsn}"),
        reason: e.to_string(),
    })?;
    Ok(EncodedFile {
        table,
        bytes,
        min_lsn,
        max_lsn,
        rows: rows.iter().map(|(_, b)| b.num_rows() as u64).sum(),
    })
}

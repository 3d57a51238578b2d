//! Decoding the ack batches of a write stream.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;

use super::ClientError;
use crate::durability::{Level, LevelError};
use crate::wire::ack;

/// One ack row: a write reached `level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub lsn: u64,
    pub level: Level,
    pub is_update: bool,
    pub table: Option<String>,
    pub rows: Option<i64>,
    pub seq: Option<i64>,
    /// The leader that appended the write at `lsn`, as `(term, leader node id)`: with the LSN
    /// it names the write for `get_durability_status`. `None` on watermark rows and from
    /// servers that do not send it.
    pub appended_by: Option<(u64, u64)>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, ClientError> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| ClientError::Decode(format!("ack batch has no column {name}")))
}

pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Ack>, ClientError> {
    let lsn = column(batch, ack::LSN)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| ClientError::Decode("lsn is not int64".into()))?;
    let level = column(batch, ack::DURABILITY_LEVEL)?
        .as_string_opt::<i32>()
        .ok_or_else(|| ClientError::Decode("durability_level is not utf8".into()))?;
    let update = column(batch, ack::IS_DURABILITY_UPDATE)?
        .as_boolean_opt()
        .ok_or_else(|| ClientError::Decode("is_durability_update is not bool".into()))?;
    let table = column(batch, ack::TABLE)?.as_string_opt::<i32>();
    let rows = column(batch, ack::ROWS)?.as_primitive_opt::<Int64Type>();
    let seq = column(batch, ack::SEQ)?.as_primitive_opt::<Int64Type>();
    let optional = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
    };
    let (term, leader) = (optional(ack::TERM), optional(ack::LEADER_ID));
    (0..batch.num_rows())
        .map(|i| {
            Ok(Ack {
                lsn: lsn.value(i) as u64,
                level: level
                    .value(i)
                    .parse()
                    .map_err(|e: LevelError| ClientError::Decode(e.to_string()))?,
                is_update: update.value(i),
                table: table
                    .filter(|t| t.is_valid(i))
                    .map(|t| t.value(i).to_string()),
                rows: rows.filter(|r| r.is_valid(i)).map(|r| r.value(i)),
                seq: seq.filter(|s| s.is_valid(i)).map(|s| s.value(i)),
                appended_by: match (&term, &leader) {
                    (Some(t), Some(l)) if t.is_valid(i) && l.is_valid(i) => {
                        Some((t.value(i) as u64, l.value(i) as u64))
                    }
                    _ => None,
                },
            })
        })
        .collect()
}

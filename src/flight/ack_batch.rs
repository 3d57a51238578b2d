//! The ack record batches of DoExchange (DESIGN §4).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::durability::Level;
use crate::wire::ack::{ACK_SCHEMA, ACK_SCHEMA_WITH_WATERMARKS};
use crate::write::AckEvent;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// The ack rows of `events`, in the schema with `is_watermark_update` when `watermarks`.
pub fn ack_batch(events: &[AckEvent], watermarks: bool) -> Result<RecordBatch, ArrowError> {
    let now = now_micros();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            events.iter().map(|e| e.lsn as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.level.as_str()),
        )),
        Arc::new(BooleanArray::from_iter(
            events.iter().map(|e| Some(e.is_update)),
        )),
        timestamps(now, events.len()),
        Arc::new(StringArray::from_iter(
            events.iter().map(|e| Some(e.table.as_str())),
        )),
        Arc::new(Int64Array::from_iter(
            events.iter().map(|e| Some(e.rows as i64)),
        )),
        Arc::new(Int64Array::from_iter(events.iter().map(|e| e.seq))),
        Arc::new(Int64Array::from_iter(
            (events.iter()).map(|e| e.appended_by.map(|l| l.term as i64)),
        )),
        Arc::new(Int64Array::from_iter(
            (events.iter()).map(|e| e.appended_by.map(|l| l.node_id.0 as i64)),
        )),
    ];
    if !watermarks {
        return RecordBatch::try_new(ACK_SCHEMA.clone(), columns);
    }
    columns.push(Arc::new(BooleanArray::from(vec![false; events.len()])));
    RecordBatch::try_new(ACK_SCHEMA_WITH_WATERMARKS.clone(), columns)
}

/// Watermark rows: `lsn` = the watermark, `durability_level` = its level, and
/// `is_durability_update` true, so that a client pairing writes with the initial acks
/// (`is_durability_update` false) never takes one for a write's.
pub fn watermark_batch(moved: &[(Level, u64)]) -> Result<RecordBatch, ArrowError> {
    let n = moved.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            moved.iter().map(|(_, lsn)| *lsn as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            moved.iter().map(|(level, _)| level.as_str()),
        )),
        Arc::new(BooleanArray::from(vec![true; n])),
        timestamps(now_micros(), n),
        Arc::new(StringArray::new_null(n)),
        Arc::new(Int64Array::new_null(n)),
        Arc::new(Int64Array::new_null(n)),
        Arc::new(Int64Array::new_null(n)),
        Arc::new(Int64Array::new_null(n)),
        Arc::new(BooleanArray::from(vec![true; n])),
    ];
    RecordBatch::try_new(ACK_SCHEMA_WITH_WATERMARKS.clone(), columns)
}

fn timestamps(now: i64, n: usize) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC"))
}

//! The ack record batches of DoExchange (DESIGN §4).

use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::write::AckEvent;

pub static ACK_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("lsn", DataType::Int64, false),
        Field::new("durability_level", DataType::Utf8, false),
        Field::new("is_durability_update", DataType::Boolean, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("table", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("seq", DataType::Int64, true),
    ]))
});

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

pub fn ack_batch(events: &[AckEvent]) -> Result<RecordBatch, ArrowError> {
    let now = now_micros();
    let columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            events.iter().map(|e| e.lsn as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.level.as_str()),
        )),
        Arc::new(BooleanArray::from_iter(
            events.iter().map(|e| Some(e.is_update)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(|_| now))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter(
            events.iter().map(|e| Some(e.table.as_str())),
        )),
        Arc::new(Int64Array::from_iter(
            events.iter().map(|e| Some(e.rows as i64)),
        )),
        Arc::new(Int64Array::from_iter(events.iter().map(|e| e.seq))),
    ];
    RecordBatch::try_new(ACK_SCHEMA.clone(), columns)
}

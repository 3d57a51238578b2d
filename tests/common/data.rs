//! Test data: small batches whose content names their writer and sequence number.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde_json::{json, Value};

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("writer", DataType::Int64, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, true),
    ]))
}

/// [`schema`] grown by a nullable `note` column, as a later writer sends it.
pub fn evolved_schema() -> SchemaRef {
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("note", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// A batch of `rows` rows for `(writer, seq)`.
pub fn batch(writer: i64, seq: i64, rows: usize) -> RecordBatch {
    let payload: Vec<String> = (0..rows)
        .map(|r| format!("w{writer}-s{seq}-r{r}"))
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(vec![writer; rows])),
            Arc::new(Int64Array::from(vec![seq; rows])),
            Arc::new(StringArray::from(payload)),
        ],
    )
    .expect("batch")
}

/// The `(writer, seq)` of every row of `batches`.
pub fn keys<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for b in batches {
        let w = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("writer");
        let s = b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("seq");
        out.extend((0..b.num_rows()).map(|i| (w.value(i), s.value(i))));
    }
    out
}

/// A batch of two rows under [`evolved_schema`] for `(2, seq)`, one of them all nulls.
pub fn evolved_batch(seq: i64) -> RecordBatch {
    RecordBatch::try_new(
        evolved_schema(),
        vec![
            Arc::new(Int64Array::from(vec![2, 2])),
            Arc::new(Int64Array::from(vec![seq, seq])),
            Arc::new(StringArray::from(vec![Some("a"), None])),
            Arc::new(StringArray::from(vec![Some(format!("note{seq}")), None])),
        ],
    )
    .expect("batch")
}

/// The rows of `batches` as JSON objects (what PyIceberg prints), with `_lsn`; `note` is a
/// column of every row once a batch of [`evolved_schema`] is among them.
pub fn rows_of(batches: &[(u64, RecordBatch)]) -> Vec<Value> {
    let evolved = batches
        .iter()
        .any(|(_, b)| b.column_by_name("note").is_some());
    let mut rows = Vec::new();
    for (lsn, batch) in batches {
        let writer = keys([batch]);
        let payload = batch
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("payload");
        let note = batch
            .column_by_name("note")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        for (i, (w, s)) in writer.iter().enumerate() {
            let note = note
                .as_ref()
                .filter(|n| !n.is_null(i))
                .map(|n| n.value(i).to_string());
            let payload = (!payload.is_null(i)).then(|| payload.value(i).to_string());
            let mut row = json!({"writer": w, "seq": s, "payload": payload, "_lsn": lsn});
            if evolved {
                row["note"] = json!(note);
            }
            rows.push(row);
        }
    }
    rows
}

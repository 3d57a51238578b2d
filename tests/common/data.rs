//! Test data: small batches whose content names their writer and sequence number.

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

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

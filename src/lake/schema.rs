//! The schema a read returns (the table's columns, and `_lsn` when asked), and how a batch
//! written under an older schema is brought to it: the same for batches read from the WAL
//! and from Parquet files.

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

/// The column `with_lsn` adds.
pub const LSN_COLUMN: &str = "_lsn";

/// The schema a read returns: the table's schema, plus `_lsn` when asked.
pub fn output_schema(table: &Schema, with_lsn: bool) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = table.fields().iter().cloned().collect();
    if with_lsn {
        fields.push(Arc::new(Field::new(LSN_COLUMN, DataType::Int64, false)));
    }
    Arc::new(Schema::new_with_metadata(fields, table.metadata().clone()))
}

/// Brings a batch written under an older schema to `schema`: columns added since are null.
pub fn conform(batch: RecordBatch, schema: &SchemaRef, lsn: Option<u64>) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let data_columns = schema.fields().len() - usize::from(lsn.is_some());
    if batch.num_columns() > data_columns {
        return Err(Error::Unavailable(format!(
            "the table's schema gained columns during this read (batch at lsn {}); read again to get the new schema",
            lsn.unwrap_or_default()
        )));
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for field in schema.fields().iter().skip(columns.len()) {
        if field.name() == LSN_COLUMN && lsn.is_some() {
            let value = lsn.unwrap_or_default() as i64;
            columns.push(Arc::new(Int64Array::from(vec![value; rows])));
        } else {
            columns.push(new_null_array(field.data_type(), rows));
        }
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::internal("conform batch", e))
}

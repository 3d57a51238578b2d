//! One tiered file: the writes of one table in one log range, as Parquet with an `_lsn`
//! column, and back. Columns are written in their lake types ([`super::types`]) and a read turns
//! them back into the table's own types, so it gives back exactly the types that were written.

use arrow::array::{Array, Int64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

use super::schema::{conform, output_schema, LSN_COLUMN};
use super::types::{cast_batch, lake_schema, Unfit};

/// Why a tiered file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ParquetFileError {
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// A column or value the lake cannot hold.
    #[error("{0}")]
    Unfit(#[from] Unfit),
    /// A write that does not fit the table's schema.
    #[error("lsn {lsn}: {source}")]
    Conform {
        lsn: u64,
        source: crate::error::Error,
    },
    /// A write's column or value the lake cannot hold.
    #[error("lsn {lsn}: {unfit}")]
    UnfitWrite { lsn: u64, unfit: Unfit },
    /// A file that is not one of arka's range files.
    #[error("{0}")]
    NotTiered(String),
}

/// Rows per batch when a file is read back; writes larger than this are joined again.
const READ_BATCH_ROWS: usize = 8192;

/// Encodes `writes` (in LSN order) under the table's current `schema` plus `_lsn`, each
/// column in its lake type: batches written under an older schema get nulls in the columns
/// added since.
pub fn encode(
    schema: &SchemaRef,
    writes: &[(u64, RecordBatch)],
) -> Result<Bytes, ParquetFileError> {
    let table_schema = output_schema(schema, true);
    let lake = lake_schema(schema)?;
    let file_schema = output_schema(&lake, true);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, file_schema.clone(), Some(props))?;
    for (lsn, batch) in writes {
        let batch = conform(batch.clone(), &table_schema, Some(*lsn))
            .map_err(|source| ParquetFileError::Conform { lsn: *lsn, source })?;
        let batch = cast_batch(&batch, &file_schema)
            .map_err(|unfit| ParquetFileError::UnfitWrite { lsn: *lsn, unfit })?;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(Bytes::from(out))
}

/// Decodes a tiered file of a table whose schema is now `table` into its writes: one batch
/// per LSN, without the `_lsn` column, in the table's types, in LSN order.
pub fn decode(
    bytes: Bytes,
    table: &SchemaRef,
) -> Result<Vec<(u64, RecordBatch)>, ParquetFileError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(READ_BATCH_ROWS)
        .build()?;
    let mut writes: Vec<(u64, Vec<RecordBatch>)> = Vec::new();
    for batch in reader {
        let batch = batch?;
        for (lsn, rows) in split_by_lsn(&batch)? {
            let rows = cast_batch(&rows, table)?;
            match writes.last_mut() {
                Some((last, parts)) if *last == lsn => parts.push(rows),
                _ => writes.push((lsn, vec![rows])),
            }
        }
    }
    writes
        .into_iter()
        .map(|(lsn, parts)| {
            let schema = parts[0].schema();
            let batch = if parts.len() == 1 {
                parts
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| RecordBatch::new_empty(schema))
            } else {
                concat_batches(&schema, &parts)?
            };
            Ok((lsn, batch))
        })
        .collect()
}

/// Cuts a batch into runs of equal `_lsn` and drops that column.
fn split_by_lsn(batch: &RecordBatch) -> Result<Vec<(u64, RecordBatch)>, ParquetFileError> {
    let not_tiered = |why: String| ParquetFileError::NotTiered(why);
    let index = batch
        .schema()
        .index_of(LSN_COLUMN)
        .map_err(|_| not_tiered(format!("no {LSN_COLUMN} column")))?;
    let lsns = batch
        .column(index)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| not_tiered(format!("{LSN_COLUMN} is not int64")))?;
    if lsns.null_count() > 0 {
        return Err(not_tiered(format!("{LSN_COLUMN} has nulls")));
    }
    let mut data = batch.clone();
    data.remove_column(index);
    let mut runs = Vec::new();
    let mut start = 0;
    for row in 1..=lsns.len() {
        if row == lsns.len() || lsns.value(row) != lsns.value(start) {
            let lsn = u64::try_from(lsns.value(start))
                .map_err(|_| not_tiered(format!("negative {LSN_COLUMN} {}", lsns.value(start))))?;
            runs.push((lsn, data.slice(start, row - start)));
            start = row;
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(schema: &SchemaRef, ids: &[i64]) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn writes_round_trip_one_batch_per_lsn() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let big: Vec<i64> = (0..20_000).collect();
        let writes = vec![
            (3, batch(&schema, &[1, 2])),
            (7, batch(&schema, &big)),
            (9, batch(&schema, &[5])),
        ];
        let bytes = encode(&schema, &writes).expect("encode");
        let back = decode(bytes, &schema).expect("decode");
        assert_eq!(back, writes);
    }

    #[test]
    fn older_writes_get_nulls_in_added_columns() {
        let old = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let new = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("extra", DataType::Utf8, true),
        ]));
        let write =
            RecordBatch::try_new(old, vec![Arc::new(Int64Array::from(vec![4]))]).expect("batch");
        let back = decode(encode(&new, &[(2, write)]).expect("encode"), &new).expect("decode");
        assert_eq!(back[0].1.schema(), new);
        assert!(back[0].1.column(1).is_null(0));
    }
}

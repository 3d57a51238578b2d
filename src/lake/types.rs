//! Which Arrow types the lake holds, and as what.
//!
//! A table's columns are tiered to Parquet and committed to Iceberg, so each column's type
//! must have an Iceberg type that keeps every value. Types Iceberg has as they are pass
//! through; types it has only in a wider form (unsigned integers, second and millisecond
//! timestamps, dictionaries, ...) are widened on the way into Parquet and narrowed again when
//! arka reads a tiered file back, so arka's readers always get the table's own types. Types
//! with no lossless Iceberg form (unions, intervals, durations, `time64[ns]`, ...) are refused
//! when a table is created or first written, naming the column and the type: refusing them
//! then is what keeps one table's writes from stalling the tier worker later.
//!
//! The table in docs/api.md ("Column types") says the same; keep the two together.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{can_cast_types, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};

/// Column names starting with this are arka's own (`_lsn` in tiered files).
pub const RESERVED_COLUMN_PREFIX: &str = "_";

/// The timezone timestamps with a zone are stored under: Iceberg's `timestamptz` holds UTC
/// instants only. Arrow stores every zoned timestamp as a UTC instant, so only the zone's
/// name (kept in the arka table's schema) is not in the Iceberg table.
const UTC: &str = "UTC";

/// Iceberg's nanosecond timestamps are new in table format 3, which the tables arka
/// commits (format 2) and today's readers (PyIceberg among them) do not have.
const NANOSECONDS: &str = "Iceberg (table format 2) has no nanosecond timestamps; send timestamp[us] (pyarrow: cast the column; pandas: astype(\"datetime64[us]\"))";

/// Widest decimal Iceberg holds.
const DECIMAL_PRECISION_MAX: u8 = 38;

/// Digits of the largest `uint64`: `decimal(20, 0)` holds every one of them.
const UINT64_DIGITS: u8 = 20;

/// Deepest nesting of structs, lists and maps in a column. Iceberg's metadata JSON nests a
/// few levels per nested type and catalogs parse it with a recursion limit (a struct nested
/// 60 deep is refused by every commit), so deeper columns are refused before they are in the
/// log; 16 is far below that limit and far above what tables use.
pub const NESTING_DEPTH_MAX: usize = 16;

/// The Parquet columns of `fields`: each leaf of a nested column counts. The tier worker
/// keeps a column writer (buffers, statistics, a compressor) for each, whatever the rows.
pub fn leaf_columns(fields: &Fields) -> usize {
    fields.iter().map(|f| leaves(f.data_type())).sum()
}

fn leaves(t: &DataType) -> usize {
    match nested_fields(t) {
        Some(children) => children.iter().map(|f| leaves(f.data_type())).sum(),
        None => 1,
    }
}

/// Levels of nesting in `t`: 0 for a primitive, one more for each struct, list or map.
fn nesting_depth(t: &DataType) -> usize {
    match nested_fields(t) {
        Some(children) => {
            1 + children
                .iter()
                .map(|f| nesting_depth(f.data_type()))
                .max()
                .unwrap_or(0)
        }
        None => 0,
    }
}

/// The fields a nested type holds (a dictionary counts as its values), `None` for others.
fn nested_fields(t: &DataType) -> Option<Vec<FieldRef>> {
    use DataType as D;
    match t {
        D::Struct(fields) => Some(fields.iter().cloned().collect()),
        D::List(item)
        | D::LargeList(item)
        | D::FixedSizeList(item, _)
        | D::ListView(item)
        | D::LargeListView(item)
        | D::Map(item, _) => Some(vec![item.clone()]),
        D::Dictionary(_, values) => nested_fields(values),
        _ => None,
    }
}

/// A column, type or value the lake (Parquet + Iceberg) cannot hold: the message names the
/// column and says what to use instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unfit(String);

impl From<&str> for Unfit {
    fn from(why: &str) -> Self {
        Self(why.to_string())
    }
}

impl From<String> for Unfit {
    fn from(why: String) -> Self {
        Self(why)
    }
}

/// Checks that each of `columns` (a new table's, or those a write adds to its table) can be
/// tiered and that none uses a reserved name. The error names the column and its type and
/// says what to use instead.
pub fn check_columns(columns: &[FieldRef]) -> Result<(), Unfit> {
    for field in columns {
        if field.name().starts_with(RESERVED_COLUMN_PREFIX) {
            return Err(Unfit::from(format!(
                "column {:?}: names starting with {RESERVED_COLUMN_PREFIX:?} are reserved for arka's own columns; rename it",
                field.name()
            )));
        }
        let depth = nesting_depth(field.data_type());
        if depth > NESTING_DEPTH_MAX {
            return Err(Unfit::from(format!(
                "column {:?} is nested {depth} levels deep; the lake (Iceberg) takes at most {NESTING_DEPTH_MAX} levels of structs, lists and maps",
                field.name()
            )));
        }
        lake_field(field).map_err(|why| {
            Unfit::from(format!(
                "column {:?} has type {}, which the lake (Parquet + Iceberg) cannot hold: {why}",
                field.name(),
                field.data_type()
            ))
        })?;
    }
    Ok(())
}

/// The schema tiered files are written in: each column in its lake type.
pub fn lake_schema(schema: &Schema) -> Result<SchemaRef, Unfit> {
    let fields = schema
        .fields()
        .iter()
        .map(|f| lake_field(f).map_err(|why| Unfit::from(format!("column {:?}: {why}", f.name()))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// Casts the columns of `batch` to the types of the same columns in `schema` (its first
/// columns: a batch written before the table gained columns has fewer). The types differ only
/// by the mapping above, either way. Columns already in their type are not copied.
pub fn cast_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, Unfit> {
    let fields = schema.fields().get(..batch.num_columns()).ok_or_else(|| {
        Unfit::from(format!(
            "a batch of {} columns does not fit the schema's {}",
            batch.num_columns(),
            schema.fields().len()
        ))
    })?;
    if batch.schema().fields().iter().eq(fields) {
        return Ok(batch.clone());
    }
    let options = strict();
    let columns = batch
        .columns()
        .iter()
        .zip(fields)
        .map(|(column, field)| -> Result<ArrayRef, Unfit> {
            if column.data_type() == field.data_type() {
                return Ok(column.clone());
            }
            cast_with_options(column, field.data_type(), &options).map_err(|e| {
                Unfit::from(format!(
                    "column {:?}: cannot convert {} to {}: {e}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let target = Schema::new_with_metadata(fields.to_vec(), schema.metadata().clone());
    RecordBatch::try_new(Arc::new(target), columns).map_err(|e| Unfit::from(e.to_string()))
}

/// Checks that every value of `batch` fits its column's lake type. Only second and
/// millisecond timestamps can miss (microseconds reach ±292,000 years, not ±292 million), so
/// only columns holding those are converted to see; the rest cost a look at their type.
pub fn check_values(batch: &RecordBatch) -> Result<(), Unfit> {
    for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
        if !holds_coarse_timestamps(field.data_type()) {
            continue;
        }
        let lake = lake_field(field)?;
        cast_with_options(column, lake.data_type(), &strict()).map_err(|e| {
            Unfit::from(format!(
                "column {:?} holds a value of type {} that is out of the lake's range ({}): {e}",
                field.name(),
                field.data_type(),
                lake.data_type()
            ))
        })?;
    }
    Ok(())
}

fn holds_coarse_timestamps(t: &DataType) -> bool {
    use DataType as D;
    match t {
        D::Timestamp(unit, _) => matches!(unit, TimeUnit::Second | TimeUnit::Millisecond),
        D::Dictionary(_, values) => holds_coarse_timestamps(values),
        D::List(item) | D::LargeList(item) | D::FixedSizeList(item, _) | D::Map(item, _) => {
            holds_coarse_timestamps(item.data_type())
        }
        D::Struct(fields) => fields
            .iter()
            .any(|f| holds_coarse_timestamps(f.data_type())),
        _ => false,
    }
}

/// Casts where a value that does not fit is an error, never a null or a wrapped number.
fn strict() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..CastOptions::default()
    }
}

fn lake_field(field: &FieldRef) -> Result<FieldRef, Unfit> {
    let lake = lake_type(field.data_type())?;
    if &lake == field.data_type() {
        return Ok(field.clone());
    }
    // Both ways: tiering converts into the lake type and reads convert back.
    if !can_cast_types(field.data_type(), &lake) || !can_cast_types(&lake, field.data_type()) {
        return Err(Unfit::from(format!(
            "its values cannot be converted to {lake} and back"
        )));
    }
    Ok(Arc::new(
        Field::new(field.name(), lake, field.is_nullable()).with_metadata(field.metadata().clone()),
    ))
}

/// The Iceberg-holdable Arrow type that keeps every value of `t`, or why there is none.
fn lake_type(t: &DataType) -> Result<DataType, Unfit> {
    use DataType as D;
    Ok(match t {
        D::Boolean
        | D::Int32
        | D::Int64
        | D::Float32
        | D::Float64
        | D::Date32
        | D::Binary
        | D::LargeBinary
        | D::BinaryView
        | D::FixedSizeBinary(_)
        | D::Utf8
        | D::LargeUtf8
        | D::Utf8View => t.clone(),
        D::Int8 | D::Int16 | D::UInt8 | D::UInt16 => D::Int32,
        D::UInt32 => D::Int64,
        D::UInt64 => D::Decimal128(UINT64_DIGITS, 0),
        D::Float16 => D::Float32,
        D::Time32(_) | D::Time64(TimeUnit::Microsecond) => D::Time64(TimeUnit::Microsecond),
        D::Time64(_) => return Err("Iceberg has no nanosecond time of day; use time64[us]".into()),
        D::Timestamp(TimeUnit::Nanosecond, _) => {
            return Err(NANOSECONDS.into());
        }
        D::Timestamp(_, zone) => {
            D::Timestamp(TimeUnit::Microsecond, zone.as_ref().map(|_| UTC.into()))
        }
        D::Decimal32(p, s) | D::Decimal64(p, s) | D::Decimal128(p, s) | D::Decimal256(p, s) => {
            lake_decimal(*p, *s)?
        }
        D::Dictionary(_, values) => lake_type(values)?,
        D::List(item) | D::LargeList(item) | D::FixedSizeList(item, _) => {
            D::List(lake_field(item)?)
        }
        D::Struct(fields) => D::Struct(
            fields
                .iter()
                .map(lake_field)
                .collect::<Result<Fields, _>>()?,
        ),
        D::Map(entries, sorted) => D::Map(lake_field(entries)?, *sorted),
        D::Null => return Err("a column of type null holds no values; give it a type".into()),
        D::Date64 => return Err("use date32 for dates, or a timestamp".into()),
        D::Duration(_) | D::Interval(_) => {
            return Err("Iceberg has no duration or interval type; use an integer column".into())
        }
        D::Union(..) => return Err("Iceberg has no union type; use a struct".into()),
        D::ListView(_) | D::LargeListView(_) => return Err("use a list".into()),
        D::RunEndEncoded(..) => return Err("send the values decoded".into()),
    })
}

fn lake_decimal(precision: u8, scale: i8) -> Result<DataType, Unfit> {
    if scale < 0 {
        return Err("Iceberg decimals have a scale of 0 or more".into());
    }
    if precision > DECIMAL_PRECISION_MAX {
        return Err(Unfit::from(format!(
            "Iceberg decimals have at most {DECIMAL_PRECISION_MAX} digits"
        )));
    }
    Ok(DataType::Decimal128(precision, scale))
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Array, DictionaryArray, Int32Array, StringArray, TimestampMillisecondArray, UInt64Array,
        UInt8Array,
    };
    use arrow::datatypes::{Int32Type, UnionFields, UnionMode};

    use super::*;

    fn schema(fields: Vec<Field>) -> Schema {
        Schema::new(fields)
    }

    #[test]
    fn unsigned_and_coarse_timestamps_are_widened_and_come_back_unchanged() {
        let table = Arc::new(schema(vec![
            Field::new("big", DataType::UInt64, false),
            Field::new("small", DataType::UInt8, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("Europe/Paris".into())),
                false,
            ),
            Field::new(
                "kind",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                false,
            ),
        ]));
        check_columns(table.fields()).unwrap();
        let lake = lake_schema(&table).unwrap();
        let types: Vec<_> = lake
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![
                DataType::Decimal128(20, 0),
                DataType::Int32,
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
                DataType::Utf8,
            ]
        );
        let kinds: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let batch = RecordBatch::try_new(
            table.clone(),
            vec![
                Arc::new(UInt64Array::from(vec![u64::MAX, 0, 7])),
                Arc::new(UInt8Array::from(vec![Some(255), None, Some(1)])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![1, -2, i64::MAX / 1000])
                        .with_timezone("Europe/Paris"),
                ),
                Arc::new(kinds),
            ],
        )
        .unwrap();
        let tiered = cast_batch(&batch, &lake).unwrap();
        let back = cast_batch(&tiered, &table).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn a_value_beyond_the_lake_type_is_an_error_not_a_wrong_value() {
        let table = Arc::new(schema(vec![Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        )]));
        let lake = lake_schema(&table).unwrap();
        let batch = RecordBatch::try_new(
            table,
            vec![Arc::new(TimestampMillisecondArray::from(vec![i64::MAX]))],
        )
        .unwrap();
        let err = cast_batch(&batch, &lake).unwrap_err().to_string();
        assert!(err.contains("column \"at\""), "{err}");
        let err = check_values(&batch).unwrap_err().to_string();
        assert!(
            err.contains("column \"at\"") && err.contains("range"),
            "{err}"
        );
    }

    #[test]
    fn types_without_a_lossless_lake_type_are_refused_by_column() {
        let union = DataType::Union(
            UnionFields::try_new(
                vec![0, 1],
                vec![
                    Field::new("i", DataType::Int32, true),
                    Field::new("s", DataType::Utf8, true),
                ],
            )
            .unwrap(),
            UnionMode::Dense,
        );
        let list_of_durations = DataType::List(Arc::new(Field::new(
            "item",
            DataType::Duration(TimeUnit::Second),
            true,
        )));
        for (t, hint) in [
            (union, "union"),
            (DataType::Time64(TimeUnit::Nanosecond), "time64[us]"),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                "timestamp[us]",
            ),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                "timestamp[us]",
            ),
            (
                DataType::Interval(arrow::datatypes::IntervalUnit::DayTime),
                "interval",
            ),
            (DataType::Null, "null"),
            (DataType::Decimal256(50, 2), "38 digits"),
            (list_of_durations, "duration"),
        ] {
            let s = schema(vec![Field::new("x", t.clone(), true)]);
            let err = check_columns(s.fields()).unwrap_err().to_string();
            assert!(
                err.contains("column \"x\"") && err.contains(&t.to_string()) && err.contains(hint),
                "{t}: {err}"
            );
        }
    }

    #[test]
    fn names_starting_with_an_underscore_are_reserved() {
        let s = schema(vec![Field::new("_lsn", DataType::Int64, false)]);
        let err = check_columns(s.fields()).unwrap_err().to_string();
        assert!(
            err.contains("\"_lsn\"") && err.contains("reserved"),
            "{err}"
        );
        let nested_is_fine = schema(vec![Field::new(
            "s",
            DataType::Struct(vec![Field::new("_inner", DataType::Int32, true)].into()),
            true,
        )]);
        check_columns(nested_is_fine.fields()).unwrap();
    }

    #[test]
    fn types_the_lake_holds_as_they_are_are_not_copied() {
        let table = Arc::new(schema(vec![
            Field::new("n", DataType::Int32, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        assert_eq!(lake_schema(&table).unwrap(), table);
        let batch = RecordBatch::try_new(
            table.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1])),
                Arc::new(StringArray::from(vec![Some("a")])),
            ],
        )
        .unwrap();
        let same = cast_batch(&batch, &table).unwrap();
        assert_eq!(
            same.column(0).to_data().buffers()[0].as_ptr(),
            batch.column(0).to_data().buffers()[0].as_ptr()
        );
    }
}

//! The ack stream of DoExchange and DoPut: one row per write and level reached (DESIGN §4).

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The write's LSN (on a watermark row: the watermark).
pub const LSN: &str = "lsn";
/// The level reached, as `Level::as_str` names it.
pub const DURABILITY_LEVEL: &str = "durability_level";
/// False on a write's first ack, true when a later one reports a higher level.
pub const IS_DURABILITY_UPDATE: &str = "is_durability_update";
pub const TIMESTAMP: &str = "timestamp";
pub const TABLE: &str = "table";
pub const ROWS: &str = "rows";
/// The producer's seq of the write, when it has one.
pub const SEQ: &str = "seq";
/// With `leader_id`: the leader that appended the write.
pub const TERM: &str = "term";
pub const LEADER_ID: &str = "leader_id";
/// Only with `x-arka-watermarks: true`: true on watermark rows.
pub const IS_WATERMARK_UPDATE: &str = "is_watermark_update";

/// The ack stream's schema; with `x-arka-watermarks: true` it is [`ACK_SCHEMA_WITH_WATERMARKS`].
pub static ACK_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::new(ack_fields())));

/// [`ACK_SCHEMA`] and `is_watermark_update`: true on the rows that report a watermark
/// (`lsn` = the watermark, `durability_level` = its level) rather than one write.
pub static ACK_SCHEMA_WITH_WATERMARKS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = ack_fields();
    fields.push(Field::new(IS_WATERMARK_UPDATE, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
});

fn ack_fields() -> Vec<Field> {
    vec![
        Field::new(LSN, DataType::Int64, false),
        Field::new(DURABILITY_LEVEL, DataType::Utf8, false),
        Field::new(IS_DURABILITY_UPDATE, DataType::Boolean, false),
        Field::new(
            TIMESTAMP,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(TABLE, DataType::Utf8, true),
        Field::new(ROWS, DataType::Int64, true),
        Field::new(SEQ, DataType::Int64, true),
        // The leader that appended the write at `lsn` (its term and node): with the LSN it
        // names the write for good, for `get_durability_status`.
        Field::new(TERM, DataType::Int64, true),
        Field::new(LEADER_ID, DataType::Int64, true),
    ]
}

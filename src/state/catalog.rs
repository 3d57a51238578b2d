//! The table catalog: each table's schema and running totals.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A table's definition, as snapshots hold it: set when the table is created or its schema
/// evolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMeta {
    /// The table's current schema as an Arrow IPC stream.
    pub schema_ipc: Bytes,
    pub created_lsn: u64,
}

/// A table's running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    pub rows: u64,
    pub bytes: u64,
    pub batches: u64,
}

/// What readers see of a table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: SchemaRef,
    pub meta: Arc<TableMeta>,
    pub counts: TableCounts,
}

/// One batch of a table: where it is in the log and how big it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub rows: u64,
    pub bytes: u64,
}

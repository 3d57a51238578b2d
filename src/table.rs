//! Table names and the schema rules of tables.

use std::fmt;

use arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

/// Longest table name (DESIGN §4: `[a-z][a-z0-9_]{0,62}`).
pub const TABLE_NAME_BYTES_MAX: usize = 63;

/// Names the Flight paths use for themselves (`["status"]`, `["streaming_write"]`): a table so
/// named could not be addressed by GetFlightInfo or a write descriptor.
pub const RESERVED_TABLE_NAMES: [&str; 2] = ["status", "streaming_write"];

/// A table name or a schema that a table does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("table name {0} is reserved (it names a Flight path); choose another")]
    ReservedName(String),
    #[error("invalid table name {0}: names match [a-z][a-z0-9_]{{0,62}}")]
    InvalidName(String),
    #[error("schema mismatch for table {table}: expected {expected} (or that followed by new nullable columns), got {got}")]
    SchemaMismatch {
        table: TableName,
        expected: String,
        got: String,
    },
}

/// A validated table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TableName(String);

impl TableName {
    pub fn parse(name: &str) -> Result<Self, TableError> {
        let mut chars = name.chars();
        let valid = name.len() <= TABLE_NAME_BYTES_MAX
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid && RESERVED_TABLE_NAMES.contains(&name) {
            Err(TableError::ReservedName(crate::quote::quoted(name)))
        } else if valid {
            Ok(Self(name.to_string()))
        } else {
            Err(TableError::InvalidName(crate::quote::quoted(name)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a write's schema relates to its table's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFit {
    /// Same columns (names, types, nullability) in the same order.
    Same,
    /// The table's columns, then new nullable columns: the table's schema evolves.
    Extends,
}

fn describe(schema: &Schema) -> String {
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let null = if f.is_nullable() { "" } else { " not null" };
            format!("{}: {}{null}", f.name(), f.data_type())
        })
        .collect();
    format!("[{}]", fields.join(", "))
}

/// Checks a write's schema against the table's: the same, or the same followed by nullable
/// columns. Anything else is an error naming what was expected and what was got.
pub fn fit_schema(
    table: &TableName,
    expected: &Schema,
    got: &Schema,
) -> Result<SchemaFit, TableError> {
    let mismatch = || TableError::SchemaMismatch {
        table: table.clone(),
        expected: describe(expected),
        got: describe(got),
    };
    if got.fields().len() < expected.fields().len() {
        return Err(mismatch());
    }
    let prefix_matches = expected.fields().iter().zip(got.fields()).all(|(e, g)| {
        e.name() == g.name() && e.data_type() == g.data_type() && e.is_nullable() == g.is_nullable()
    });
    if !prefix_matches {
        return Err(mismatch());
    }
    let added = &got.fields()[expected.fields().len()..];
    if added.is_empty() {
        return Ok(SchemaFit::Same);
    }
    if added.iter().all(|f| f.is_nullable()) {
        Ok(SchemaFit::Extends)
    } else {
        Err(mismatch())
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn table_names_follow_the_rule() {
        assert!(TableName::parse("events_2").is_ok());
        for bad in ["", "Bad", "9x", "a-b", &"a".repeat(64)] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TableName::parse(&"a".repeat(63)).is_ok());
        let reserved = TableName::parse("status").unwrap_err().to_string();
        assert!(reserved.contains("reserved"), "{reserved}");
    }

    #[test]
    fn schemas_may_only_grow_by_nullable_columns() {
        let t = TableName::parse("t").unwrap();
        let base = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        let grown = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]);
        let bad = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
        ]);
        let retyped = Schema::new(vec![Field::new("a", DataType::Int32, false)]);
        assert_eq!(fit_schema(&t, &base, &base), Ok(SchemaFit::Same));
        assert_eq!(fit_schema(&t, &base, &grown), Ok(SchemaFit::Extends));
        assert!(fit_schema(&t, &base, &bad).is_err());
        assert!(fit_schema(&t, &grown, &base).is_err());
        let err = fit_schema(&t, &base, &retyped).unwrap_err().to_string();
        assert!(
            err.contains("expected [a: Int64 not null") && err.contains("got [a: Int32"),
            "{err}"
        );
    }
}

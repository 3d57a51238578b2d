//! What can go wrong while tiering. Every error names what was being done and to what.

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("{0}")]
    Config(String),
    #[error("object store {op} {url}: {source}")]
    Store {
        op: &'static str,
        url: String,
        source: Box<object_store::Error>,
    },
    #[error("parquet file {path}: {reason}")]
    Parquet { path: String, reason: String },
    #[error("iceberg table {table}: {source}")]
    Iceberg {
        table: String,
        source: Box<iceberg::Error>,
    },
    #[error("table {table}: {reason}")]
    Schema { table: String, reason: String },
    #[error("iceberg catalog: {0}")]
    Catalog(Box<iceberg::Error>),
    #[error("reading the log: {0}")]
    Log(String),
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
    #[error("reporting to the leader: {0}")]
    Report(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl TierError {
    pub fn store(op: &'static str, url: &str, source: object_store::Error) -> Self {
        TierError::Store {
            op,
            url: url.to_string(),
            source: Box::new(source),
        }
    }

    pub fn catalog(source: iceberg::Error) -> Self {
        TierError::Catalog(Box::new(source))
    }

    pub fn iceberg(table: &str, source: iceberg::Error) -> Self {
        TierError::Iceberg {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}

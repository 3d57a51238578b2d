//! A table as the lake holds it: the column types Parquet and Iceberg take ([`types`]), the
//! Parquet file of a table's writes ([`parquet_file`]) and the schema reads return
//! ([`schema`]). Below both the tier worker, which writes the files, and reads, which read
//! them back.

pub mod parquet_file;
pub mod schema;
pub mod types;

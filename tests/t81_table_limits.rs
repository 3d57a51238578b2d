//! What the lake cannot hold, or what would cost the tier worker unbounded memory, is refused
//! when it is written, naming the limit: columns nested deeper than Iceberg takes (a struct
//! nested 60 deep once held back every table's COMMITTED watermark for ever), tables wider
//! than `table-columns-max` (100,000 columns once took 10 GiB of the tier worker's memory),
//! and more tables than `tables-max`. Up to the limits, tables reach COMMITTED; a control
//! table written before reads back the same from every node.

mod common;

use std::sync::Arc;

use arka::client::{Client, WriteItem};
use arka::durability::Level;
use arrow::array::{ArrayRef, Int64Array, StructArray};
use arrow::datatypes::Field;
use arrow::record_batch::RecordBatch;
use common::{data, Cluster};
use serde_json::json;
use tonic::Code;

const COLUMNS_MAX: usize = 40;
const TABLES_MAX: usize = 4;
/// The deepest nesting the lake takes (`NESTING_DEPTH_MAX`, docs/api.md "Limits").
const DEPTH_MAX: usize = 16;

/// One row, one column `n`: an int64 inside `depth` levels of structs.
fn nested(depth: usize) -> RecordBatch {
    let mut column: ArrayRef = Arc::new(Int64Array::from(vec![7]));
    for _ in 0..depth {
        let field = Arc::new(Field::new("n", column.data_type().clone(), false));
        column = Arc::new(StructArray::from(vec![(field, column)]));
    }
    RecordBatch::try_from_iter([("n", column)]).expect("batch")
}

/// One row of `columns` nullable int64 columns (a table grows by nullable columns).
fn wide(columns: usize) -> RecordBatch {
    let column = |i| {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![i as i64]));
        (format!("c{i}"), values, true)
    };
    RecordBatch::try_from_iter_with_nullable((0..columns).map(column)).expect("batch")
}

async fn write(
    client: &Client,
    table: &str,
    batch: RecordBatch,
    level: Level,
) -> Result<(), arka::client::ClientError> {
    let acks = client
        .write_all(table, vec![WriteItem::plain(batch)], level)
        .await?;
    assert!(acks.iter().any(|a| a.level == level), "{acks:?}");
    Ok(())
}

fn expect_refused(result: Result<(), arka::client::ClientError>, code: Code, says: &[&str]) {
    let err = result.expect_err("refused");
    assert_eq!(err.code(), Some(code), "{err}");
    for s in says {
        assert!(err.to_string().contains(s), "{err} should say {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_the_lake_cannot_hold_or_over_the_limits_are_refused_when_written() {
    let config = format!("table-columns-max = {COLUMNS_MAX}\ntables-max = {TABLES_MAX}\n");
    let cluster = Cluster::start_tiered(3, None, 300, &config).await;
    let control = cluster.write_control().await;
    let client = cluster.client(1).await;

    // Nesting: one level past the limit is refused; at the limit it reaches Iceberg.
    let deeper = write(&client, "deep", nested(DEPTH_MAX + 1), Level::Replicated).await;
    expect_refused(
        deeper,
        Code::InvalidArgument,
        &["nested 17 levels deep", "at most 16"],
    );
    write(&client, "deep", nested(DEPTH_MAX), Level::Committed)
        .await
        .expect("a column nested 16 deep reaches COMMITTED");

    // Columns: over the limit is refused, for a new table and for one that grows.
    let wider = write(&client, "wide", wide(COLUMNS_MAX + 1), Level::Replicated).await;
    expect_refused(
        wider,
        Code::InvalidArgument,
        &["41 columns", "table-columns-max of 40"],
    );
    write(&client, "wide", wide(COLUMNS_MAX - 1), Level::Committed)
        .await
        .expect("a table within the limit reaches COMMITTED");
    let grown = write(&client, "wide", wide(COLUMNS_MAX + 1), Level::Replicated).await;
    expect_refused(grown, Code::InvalidArgument, &["table-columns-max"]);
    write(&client, "wide", wide(COLUMNS_MAX), Level::Replicated)
        .await
        .expect("a table may grow up to the limit");
    // Nested fields count: 2 structs of 20 fields are 40 columns, 21 are 42.
    let fields = |n: usize| {
        let inner = wide(n);
        let column: ArrayRef = Arc::new(StructArray::from(inner));
        column
    };
    let nested_wide =
        RecordBatch::try_from_iter([("a", fields(21)), ("b", fields(21))]).expect("batch");
    let refused = write(&client, "nested_wide", nested_wide, Level::Replicated).await;
    expect_refused(
        refused,
        Code::InvalidArgument,
        &["42 columns (nested fields counted)"],
    );

    // Tables: control, deep and wide are 3; one more fits, the next is refused, by a write
    // and by create_table alike, until a table is dropped.
    write(&client, "fourth", data::batch(1, 0, 1), Level::Replicated)
        .await
        .expect("the fourth table");
    let fifth = write(&client, "fifth", data::batch(1, 0, 1), Level::Replicated).await;
    expect_refused(
        fifth,
        Code::ResourceExhausted,
        &["table fifth", "tables-max of 4"],
    );
    let schema = arka::ipc::encode_schema(&data::batch(1, 0, 1).schema()).expect("schema");
    let body = json!({"name": "fifth", "schema": base64_of(&schema)});
    let created = client.action("create_table", &body).await.map(|_| ());
    expect_refused(created, Code::ResourceExhausted, &["tables-max of 4"]);
    client
        .action("drop_table", &json!({"name": "fourth"}))
        .await
        .expect("drop");
    write(&client, "fifth", data::batch(1, 0, 1), Level::Replicated)
        .await
        .expect("room again once a table is dropped");

    cluster.assert_control_everywhere(control).await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

//! Writes batches to an arka cluster with the exactly-once `Producer`.
//!
//! ```text
//! cargo run --example producer -- grpc://127.0.0.1:8815,grpc://127.0.0.1:8816 events 1000
//! ```
//!
//! Arguments: seed addresses (comma-separated), table, number of batches. The producer finds
//! the leader, follows redirects, and after a leader change resends exactly the writes that
//! were not acknowledged; kill the leader while it runs and it still finishes without error.

use std::sync::Arc;

use arka::client::{ClusterClient, ProducerConfig};
use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

fn batch(schema: &Arc<Schema>, n: i64) -> Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![n])),
            Arc::new(StringArray::from(vec![format!("event {n}")])),
        ],
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seeds: Vec<String> = args
        .next()
        .unwrap_or_else(|| "grpc://127.0.0.1:8815".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let table = args.next().unwrap_or_else(|| "events".into());
    let count: i64 = args.next().unwrap_or_else(|| "100".into()).parse()?;

    let cluster = ClusterClient::connect(&seeds).await?;
    // The producer id plus a sequence number per write make resends idempotent. Starting the
    // producer registers a new session of its id: a restarted producer keeps its id, goes on
    // above the last sequence number the cluster applied, and fences the instance before it.
    let producer = cluster
        .producer(&table, ProducerConfig::new("example-producer"))
        .await?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let mut handles = Vec::new();
    for n in 0..count {
        // Waits while the in-flight window is full: backpressure.
        handles.push(producer.send(batch(&schema, n)?).await?);
    }
    producer.close().await?;
    let mut last = 0;
    for handle in handles {
        last = handle.lsn().await?;
    }
    println!("wrote {count} batches to {table}; last lsn {last}");
    Ok(())
}

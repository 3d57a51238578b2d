//! Reads a table from an arka cluster with the `Reader`, which spreads reads over the live
//! replicas, then tails it for new writes.
//!
//! ```text
//! cargo run --example consumer -- grpc://127.0.0.1:8815 events 1000
//! ```
//!
//! Arguments: seed addresses (comma-separated), table, and the LSN the cluster must have
//! applied before the read (read-your-writes on a follower; 0 for none). With `--tail N` it
//! then waits for N more batches.

use arka::client::ClusterClient;
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds: Vec<String> = args
        .first()
        .map(String::as_str)
        .unwrap_or("grpc://127.0.0.1:8815")
        .split(',')
        .map(str::to_string)
        .collect();
    let table = args.get(1).cloned().unwrap_or_else(|| "events".into());
    let min_lsn: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let tail: usize = match args.iter().position(|a| a == "--tail") {
        Some(i) => args.get(i + 1).map(|s| s.parse()).transpose()?.unwrap_or(1),
        None => 0,
    };

    let cluster = ClusterClient::connect(&seeds).await?;
    let reader = cluster.reader(&table);
    let read = reader.read(None, None, Some(min_lsn)).await?;
    let rows: usize = read.batches.iter().map(|(_, b)| b.num_rows()).sum();
    let last = read.batches.last().map(|(lsn, _)| *lsn).unwrap_or(0);
    println!(
        "read {} batches ({rows} rows) of {table} from {}; last lsn {last}",
        read.batches.len(),
        read.node
    );

    if tail > 0 {
        let mut stream = Box::pin(reader.tail(last + 1).take(tail));
        while let Some(item) = stream.next().await {
            let (lsn, batch) = item?;
            println!("tail: lsn {lsn}, {} rows", batch.num_rows());
        }
    }
    Ok(())
}

//! A follower that was down while more was written than one Raft message may carry catches
//! up: replication cuts each AppendEntries at its byte budget instead of sending the whole
//! backlog in one message that the network refuses (and openraft resends) forever.

mod common;

use std::sync::Arc;

use arka::client::WriteItem;
use arka::durability::Level;
use arrow::array::{Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use common::{data, eventually, lsns_at, read_all, Cluster, DEADLINE};

/// One row whose payload is `bytes` long.
fn big_batch(seq: i64, bytes: usize) -> RecordBatch {
    RecordBatch::try_new(
        data::schema(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![seq])),
            Arc::new(StringArray::from(vec![
                format!("{seq:08}").repeat(bytes / 8)
            ])),
        ],
    )
    .expect("batch")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_catches_up_over_a_backlog_larger_than_one_message() {
    let mut cluster = Cluster::start(3).await;
    cluster.kill9(3);
    // 300 writes of 1 MiB: fewer entries than openraft puts in one AppendEntries, more bytes
    // than one gRPC message between nodes may hold (256 MiB). The writes are idempotent, so
    // a chunk is sent again, to whoever leads, if leadership moves under the load.
    let mut written = Vec::new();
    let mut last = 0;
    for chunk in 0..10 {
        let writes: Vec<WriteItem> = (0..30)
            .map(|s| {
                let seq = chunk * 30 + s;
                WriteItem::idempotent(big_batch(seq, 1 << 20), "lagging", seq)
            })
            .collect();
        written.extend(writes.iter().map(|w| w.batch.clone()));
        let acks = eventually("a chunk of writes to be replicated", DEADLINE, || {
            let (cluster, writes) = (&cluster, writes.clone());
            async move {
                let leader = cluster.wait_for_leader_among(&[1, 2]).await;
                let client = cluster.client(leader).await;
                client
                    .write_all("events", writes, Level::Replicated)
                    .await
                    .ok()
            }
        })
        .await;
        last = last.max(
            *lsns_at(&acks, Level::Replicated)
                .iter()
                .max()
                .expect("acked"),
        );
    }
    cluster.spawn(3);
    eventually("node 3 to catch up", DEADLINE * 4, || async {
        let status = cluster.status(3).await?;
        (status["replicated_lsn"].as_u64()? >= last).then_some(())
    })
    .await;
    let (_, batches) = cluster
        .client(3)
        .await
        .read(&read_all("events", last))
        .await
        .expect("read");
    let got: Vec<RecordBatch> = batches.into_iter().map(|(_, b)| b).collect();
    assert_eq!(got.len(), written.len());
    assert!(got == written, "node 3 holds every write as written");
}

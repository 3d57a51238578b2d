//! Power loss: a node that loses power loses every byte it wrote but had not fsynced. Every
//! write acknowledged at REPLICATED was fsynced on a quorum first, so it survives a power
//! loss of every node at once; and the seam that simulates it really drops unsynced bytes,
//! shown by a disk that skips its fsyncs losing acknowledged writes.

mod common;

use std::collections::BTreeMap;

use arka::client::{Ack, WriteItem};
use arka::durability::Level;
use common::{data, Cluster, DEADLINE};
use futures::StreamExt;
use serde_json::json;

const NODES: [u64; 3] = [1, 2, 3];

/// `seq -> lsn` of the writes that reached REPLICATED.
fn replicated_by_seq(acks: &[Ack]) -> BTreeMap<i64, u64> {
    acks.iter()
        .filter(|a| a.level == Level::Replicated)
        .map(|a| (a.seq.expect("seq"), a.lsn))
        .collect()
}

/// Starts every node again and returns what each holds of `table` (`seq -> lsn`), read
/// once it applied `min_lsn`.
async fn restart_and_read(
    cluster: &mut Cluster,
    table: &str,
    min_lsn: u64,
) -> Vec<(u64, BTreeMap<i64, u64>, usize)> {
    for id in NODES {
        cluster.spawn(id);
    }
    cluster.wait_for_leader().await;
    let mut nodes = Vec::new();
    for id in NODES {
        let (_, batches) = cluster
            .client(id)
            .await
            .read(&common::read_all(table, min_lsn))
            .await
            .unwrap_or_else(|e| panic!("read from node {id}: {e}\n{}", cluster.log_tails()));
        let by_seq = batches
            .iter()
            .map(|(lsn, b)| (data::keys([b])[0].1, *lsn))
            .collect();
        nodes.push((id, by_seq, batches.len()));
    }
    nodes
}

#[tokio::test(flavor = "multi_thread")]
async fn replicated_writes_survive_a_power_loss_of_every_node_mid_stream() {
    // Segments of 16 KiB: the log rolls over every few writes, so the power loss finds
    // writes in flight, segments being synced and segments not yet published.
    let mut cluster = Cluster::start_with_config(3, "segment-bytes-max = 16384\n").await;
    let client = cluster.client(1).await;
    let writes: Vec<WriteItem> = (0..3000)
        .map(|s| WriteItem::idempotent(data::batch(4, s, 20), "p4", s))
        .collect();
    let mut acks = Box::pin(
        client
            .write_stream("powered", futures::stream::iter(writes), Level::Replicated)
            .await
            .expect("open stream"),
    );
    let mut before: Vec<Ack> = Vec::new();
    while replicated_by_seq(&before).len() < 500 {
        let batch = tokio::time::timeout(DEADLINE, acks.next())
            .await
            .expect("acks arrive")
            .expect("stream open")
            .expect("acks");
        before.extend(batch);
    }
    cluster.power_loss(&NODES).await;
    drop(acks);
    let acked = replicated_by_seq(&before);
    assert!(acked.len() < 3000, "the power loss came mid-stream");

    let max = *acked.values().max().expect("lsn");
    for (id, got, writes) in restart_and_read(&mut cluster, "powered", max).await {
        assert_eq!(got.len(), writes, "node {id}: no write twice");
        for (seq, lsn) in &acked {
            assert_eq!(
                got.get(seq),
                Some(lsn),
                "node {id}: acked write {seq} is back at its LSN"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_that_skips_its_fsyncs_loses_acknowledged_writes_in_a_power_loss() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client(1).await;
    let write = |from: i64| -> Vec<WriteItem> {
        (from..from + 20)
            .map(|s| WriteItem::idempotent(data::batch(5, s, 2), "p5", s))
            .collect()
    };
    let synced = client
        .write_all("lying", write(0), Level::Replicated)
        .await
        .expect("write before the fault");
    for id in NODES {
        let node = cluster.client(id).await;
        (node
            .action("inject_fault", &json!({ "wal_skip_fsync": true }))
            .await)
            .unwrap_or_else(|e| panic!("inject_fault on node {id}: {e}"));
    }
    let unsynced = client
        .write_all("lying", write(20), Level::Replicated)
        .await
        .expect("write after the fault");
    assert_eq!(replicated_by_seq(&unsynced).len(), 20, "acked all the same");

    cluster.power_loss(&NODES).await;
    let synced = replicated_by_seq(&synced);
    let max = *synced.values().max().expect("lsn");
    for (id, got, _) in restart_and_read(&mut cluster, "lying", max).await {
        assert_eq!(
            got, synced,
            "node {id}: the writes fsynced before the fault are back, those acked without an fsync are lost"
        );
    }
}

//! Power loss: a node that loses power loses every byte it wrote but had not fsynced. Every
//! write acknowledged at REPLICATED was fsynced on a quorum first, so it survives a power
//! loss of every node at once; and the seam that simulates it really drops unsynced bytes,
//! shown by a disk that skips its fsyncs losing acknowledged writes.

mod common;

use arka::client::WriteItem;
use arka::durability::Level;
use common::crash::{acks_until_replicated, replicated_by_seq, restart_all_and_read};
use common::{data, Cluster};
use serde_json::json;

const NODES: [u64; 3] = [1, 2, 3];

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
    let before = acks_until_replicated(&mut acks, 500).await;
    cluster.power_loss(&NODES).await;
    drop(acks);
    let acked = replicated_by_seq(&before);
    assert!(acked.len() < 3000, "the power loss came mid-stream");

    let max = *acked.values().max().expect("lsn");
    for (id, got) in restart_all_and_read(&mut cluster, "powered", max).await {
        assert_eq!(got.by_seq.len(), got.writes, "node {id}: no write twice");
        for (seq, lsn) in &acked {
            assert_eq!(
                got.by_seq.get(seq),
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
    for (id, got) in restart_all_and_read(&mut cluster, "lying", max).await {
        assert_eq!(
            got.by_seq, synced,
            "node {id}: the writes fsynced before the fault are back, those acked without an fsync are lost"
        );
    }
}

//! Each node snapshots on a schedule of its own: the members' snapshots fall at different
//! log positions, so they never all stall on one at the same moment. A cluster killed right
//! after them restarts from those snapshots with every write and every producer's dedup
//! state intact on every node.

mod common;

use arka::client::WriteItem;
use arka::durability::Level;
use arrow::record_batch::RecordBatch;
use common::{data, eventually, lsns_at, read_all, Cluster, DEADLINE};
use serde_json::json;

const EVERY: u64 = 200;
const PRODUCER: &str = "scheduled";

/// Each node's newest snapshot, once it has applied `last` and snapshotted within the
/// period before it.
async fn snapshots_after(cluster: &Cluster, last: u64) -> Vec<u64> {
    let mut at = Vec::new();
    for id in 1..=3 {
        let snapshot = eventually("a snapshot in the last period", DEADLINE, || async {
            let status = cluster.status(id).await?;
            let snapshot = status["snapshot_lsn"].as_u64()?;
            let applied = status["replicated_lsn"].as_u64()?;
            (applied >= last && snapshot + EVERY > last).then_some(snapshot)
        })
        .await;
        at.push(snapshot);
    }
    at
}

#[tokio::test(flavor = "multi_thread")]
async fn members_snapshot_at_their_own_positions_and_restart_from_them() {
    let config = format!("snapshot-every-entries = {EVERY}\n");
    let mut cluster = Cluster::start_with_config(3, &config).await;
    let leader = cluster.client(1).await;
    let mut written: Vec<RecordBatch> = Vec::new();
    let mut lsns = Vec::new();
    // Three periods, in steps small enough that each node snapshots close to its position.
    for step in 0..60 {
        let writes: Vec<WriteItem> = (step * 10..step * 10 + 10)
            .map(|seq| WriteItem::idempotent(data::batch(0, seq, 5), PRODUCER, seq))
            .collect();
        written.extend(writes.iter().map(|w| w.batch.clone()));
        let acks = leader
            .write_all("events", writes, Level::Replicated)
            .await
            .expect("write");
        lsns.extend(lsns_at(&acks, Level::Replicated));
    }
    let last = *lsns.last().expect("acked");
    let before = snapshots_after(&cluster, last).await;
    for (i, a) in before.iter().enumerate() {
        for b in &before[i + 1..] {
            assert!(
                a.abs_diff(*b) >= EVERY / 10,
                "the members snapshot at their own positions: {before:?}"
            );
        }
    }

    cluster.kill9_all_and_restart().await;
    for id in 1..=3 {
        let status = eventually("the node to serve again", DEADLINE, || cluster.status(id)).await;
        assert_eq!(
            status["snapshot_lsn"].as_u64(),
            Some(before[id as usize - 1]),
            "node {id} restarts from its own snapshot"
        );
        let (_, batches) = cluster
            .client(id)
            .await
            .read(&read_all("events", last))
            .await
            .expect("read");
        let read_lsns: Vec<u64> = batches.iter().map(|(l, _)| *l).collect();
        assert_eq!(read_lsns, lsns, "node {id} holds every write at its LSN");
        let got: Vec<RecordBatch> = batches.into_iter().map(|(_, b)| b).collect();
        assert!(got == written, "node {id} reads the table back as written");
        let client = cluster.client(id).await;
        for seq in (0..600).step_by(37) {
            let body = json!({"producer_id": PRODUCER, "seq": seq});
            let answer = client
                .action("get_durability_status", &body)
                .await
                .expect("get_durability_status");
            assert_eq!(
                answer["lsn"].as_u64(),
                Some(lsns[seq as usize]),
                "node {id} remembers seq {seq}: {answer}"
            );
        }
    }
}

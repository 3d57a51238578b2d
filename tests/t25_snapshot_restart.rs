//! A follower that fell behind a purge catches up by installing a snapshot, and must restart
//! cleanly after it, again and again, with every node reading the table back as written.

mod common;

use arka::client::WriteItem;
use arka::durability::Level;
use arrow::record_batch::RecordBatch;
use common::{data, eventually, lsns_at, read_all, Cluster, DEADLINE};
use serde_json::Value;

/// Flushes (retrying while the tier worker moves) until everything up to `lsn` is committed.
async fn flush_until_committed(cluster: &Cluster, lsn: u64) {
    eventually("a flush to commit every write", DEADLINE, || async {
        let flushed = cluster.client(1).await.action("flush", &Value::Null).await;
        let committed = flushed.ok()?["committed_lsn"].as_u64()?;
        (committed >= lsn).then_some(())
    })
    .await;
}

/// Fails at once, with its log, when node 3 refused to start.
fn assert_node3_started(cluster: &Cluster) {
    let log = cluster.log_of(3);
    if let Some(at) = log.find("\narka: ") {
        panic!("node 3 failed to start: {}", &log[at..]);
    }
}

/// Waits until node `id` has purged its WAL past `index`.
async fn wait_for_trim(cluster: &Cluster, id: u64, index: u64) {
    eventually("the WAL to be trimmed", DEADLINE, || async {
        let status = cluster.status(id).await?;
        let first = status["tier"]["wal_first_index"].as_u64()?;
        (first > index).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follower_restarts_after_snapshot_install_three_times() {
    let mut cluster = Cluster::start_trimming(3, 65536, 0).await;
    let leader = cluster.client(1).await;
    let mut written: Vec<RecordBatch> = Vec::new();
    let mut last_lsn = 0;
    for round in 0..3 {
        cluster.kill9(3);
        let leader_end = cluster.status(1).await.expect("status")["memory_lsn"]
            .as_u64()
            .expect("memory_lsn");
        // A few hundred KB: many segments beyond what node 3 holds.
        let writes: Vec<WriteItem> = (0..150)
            .map(|s| WriteItem::plain(data::batch(round, s, 100)))
            .collect();
        written.extend(writes.iter().map(|w| w.batch.clone()));
        let acks = leader
            .write_all("events", writes, Level::Replicated)
            .await
            .expect("write with node 3 down");
        last_lsn = *lsns_at(&acks, Level::Replicated).last().expect("acked");
        flush_until_committed(&cluster, last_lsn).await;
        for id in [1, 2] {
            wait_for_trim(&cluster, id, leader_end).await;
        }

        // Node 3's log ends below the leader's first entry: it catches up by snapshot.
        cluster.spawn(3);
        eventually("node 3 to catch up by snapshot", DEADLINE, || async {
            assert_node3_started(&cluster);
            let status = cluster.status(3).await?;
            let applied = status["replicated_lsn"].as_u64()?;
            let first = status["tier"]["wal_first_index"].as_u64()?;
            (applied >= last_lsn && first > leader_end).then_some(())
        })
        .await;
        // More writes land in its log after the installed snapshot.
        let more: Vec<WriteItem> = (150..160)
            .map(|s| WriteItem::plain(data::batch(round, s, 10)))
            .collect();
        written.extend(more.iter().map(|w| w.batch.clone()));
        let acks = leader
            .write_all("events", more, Level::Replicated)
            .await
            .expect("write after the install");
        last_lsn = *lsns_at(&acks, Level::Replicated).last().expect("acked");
        eventually("node 3 to apply the new writes", DEADLINE, || async {
            let status = cluster.status(3).await?;
            (status["replicated_lsn"].as_u64()? >= last_lsn).then_some(())
        })
        .await;
    }
    // The last restart, then every node reads the whole table.
    cluster.kill9(3);
    cluster.spawn(3);
    flush_until_committed(&cluster, last_lsn).await;
    eventually("node 3 to serve again", DEADLINE, || async {
        assert_node3_started(&cluster);
        cluster.status(3).await
    })
    .await;
    for id in 1..=3 {
        let batches = eventually("node to serve the whole table", DEADLINE, || async {
            let client = cluster.client(id).await;
            client.read(&read_all("events", last_lsn)).await.ok()
        })
        .await
        .1;
        let lsns: Vec<u64> = batches.iter().map(|(l, _)| *l).collect();
        assert!(
            lsns.windows(2).all(|w| w[0] < w[1]),
            "LSN order on node {id}"
        );
        let got: Vec<RecordBatch> = batches.into_iter().map(|(_, b)| b).collect();
        assert_eq!(got.len(), written.len(), "node {id}");
        assert!(got == written, "node {id} reads the table back as written");
    }
}

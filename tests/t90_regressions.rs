//! Regressions: each test names the bug it keeps away.

mod common;

use arka::client::WriteItem;
use arka::durability::Level;
use common::{data, Cluster, DEADLINE};

/// A session waiting only for MEMORY once forgot its writes' bytes when they reached MEMORY
/// but never released them from its unreplicated-bytes bound, so it stopped reading its input
/// for good after `session-inflight-bytes-max` bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_memory_level_session_writes_far_more_than_its_inflight_bound() {
    let config = "batch-bytes-max = 16384\nsession-inflight-bytes-max = 65536\n";
    let cluster = Cluster::start_with_config(3, config).await;
    let client = cluster.client(1).await;
    let writes: Vec<WriteItem> = (0..400)
        .map(|s| WriteItem::idempotent(data::batch(3, s, 20), "mem", s))
        .collect();
    let acks = tokio::time::timeout(DEADLINE, client.write_all("mem", writes, Level::Memory))
        .await
        .expect("the session does not stall")
        .expect("write");
    let firsts = acks.iter().filter(|a| !a.is_update).count();
    assert_eq!(firsts, 400, "every write was acknowledged");
}

/// Node memory permits were returned only when the session that held them processed its
/// writes' outcomes; sessions blocked waiting for permits then held theirs forever, so many
/// concurrent sessions could deadlock the node's write path.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sessions_beyond_the_node_memory_bound_all_finish() {
    let config = "batch-bytes-max = 16384\nsession-inflight-bytes-max = 65536\nnode-inflight-bytes-max = 131072\n";
    let cluster = Cluster::start_with_config(3, config).await;
    let mut tasks = Vec::new();
    for writer in 0..6i64 {
        let client = cluster.client(1).await;
        tasks.push(tokio::spawn(async move {
            let producer = format!("session-{writer}");
            let writes = (0..150)
                .map(|s| WriteItem::idempotent(data::batch(writer, s, 20), &producer, s))
                .collect();
            client.write_all("shared", writes, Level::Replicated).await
        }));
    }
    for task in tasks {
        let acks = tokio::time::timeout(DEADLINE, task)
            .await
            .expect("no session is stuck")
            .expect("task")
            .expect("write");
        let replicated = acks.iter().filter(|a| a.level == Level::Replicated).count();
        assert_eq!(replicated, 150);
    }
}

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

//! Clusters change shape while serving: nodes join through gossip, an original member is
//! removed, leadership moves twice, and a producer writes throughout.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arka::client::{ClusterClient, ProducerConfig};
use arka::wire::ReadTicket;
use common::{data, eventually, Cluster, DEADLINE};
use serde_json::{json, Value};

fn member(report: &Value, id: u64) -> Option<&Value> {
    report["members"]
        .as_array()?
        .iter()
        .find(|m| m["node_id"] == id)
}

/// Writes `(1, seq)` batches at a steady pace until `stop`; returns `seq → lsn` of every
/// write, all acked REPLICATED.
async fn produce_until(client: ClusterClient, stop: Arc<AtomicBool>) -> BTreeMap<i64, u64> {
    let config = ProducerConfig {
        window: 64,
        ..ProducerConfig::new("shape-writer")
    };
    let producer = client.producer("shape", config).await.expect("producer");
    let mut handles = Vec::new();
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let handle = producer
            .send(data::batch(1, seq, 2))
            .await
            .expect("the producer surfaces no error");
        handles.push(handle);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    producer.close().await.expect("close");
    let mut acked = BTreeMap::new();
    for handle in handles {
        acked.insert(handle.seq(), handle.lsn().await.expect("lsn"));
    }
    acked
}

async fn leader_of(cluster: &Cluster, among: &[u64]) -> u64 {
    cluster.wait_for_leader_among(among).await
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_leave_and_leadership_moves_while_every_acked_write_stays_exactly_once() {
    let mut cluster = Cluster::start(3).await;
    let seeds: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    let client = ClusterClient::connect(&seeds).await.expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(produce_until(client.clone(), stop.clone()));

    let joined = [cluster.join_process(), cluster.join_process()];
    eventually("the joined nodes become voters", DEADLINE, || async {
        let r = cluster.cluster_status(1).await?;
        joined
            .iter()
            .all(|id| member(&r, *id).is_some_and(|m| m["voter"] == true))
            .then_some(())
    })
    .await;

    // Node 1 bootstrapped the cluster and leads it, so removing it moves leadership first.
    let removed = client
        .action("remove_node", &json!({"node_id": 1}))
        .await
        .expect("remove node 1");
    assert_eq!(removed["removed"], true, "{removed}");
    let remaining = [2, 3, joined[0], joined[1]];
    eventually("node 1 leaves the membership", DEADLINE, || async {
        let r = cluster.cluster_status(2).await?;
        (member(&r, 1).is_none_or(|m| m["member"] == false) && r["voters"] == 4).then_some(())
    })
    .await;
    cluster.kill9(1);

    for _ in 0..2 {
        let leader = leader_of(&cluster, &remaining).await;
        let target = *remaining.iter().find(|id| **id != leader).expect("a voter");
        let moved = client
            .action("transfer_leader", &json!({"node_id": target}))
            .await
            .expect("transfer_leader");
        assert_eq!(moved["leader_id"], target);
        assert_eq!(leader_of(&cluster, &remaining).await, target);
    }

    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    assert!(
        acked.len() > 50,
        "the producer wrote throughout: {}",
        acked.len()
    );
    let last = *acked.values().max().expect("writes");

    for id in remaining {
        let node = cluster.client(id).await;
        let ticket = ReadTicket {
            table: "shape".into(),
            min_lsn: Some(last),
            ..Default::default()
        };
        let (_, batches) = node.read(&ticket).await.expect("read");
        let lsns: Vec<u64> = batches.iter().map(|(lsn, _)| *lsn).collect();
        assert!(
            lsns.windows(2).all(|w| w[0] < w[1]),
            "node {id} returns batches in LSN order"
        );
        let mut found = BTreeMap::new();
        for (lsn, batch) in &batches {
            let keys = data::keys([batch]);
            let (writer, seq) = keys[0];
            assert_eq!(writer, 1);
            assert!(
                found.insert(seq, *lsn).is_none(),
                "node {id}: write {seq} appears twice"
            );
        }
        assert_eq!(
            found, acked,
            "node {id} holds exactly the acked writes at their LSNs"
        );
    }
}

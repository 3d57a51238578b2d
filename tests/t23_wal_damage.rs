//! Damage to one node's WAL. A node whose log ends below what it had made durable (its disk
//! lost or cut the end of a segment) refuses to start and says how to replace it: a node
//! that went on would count toward quorums on entries it no longer holds, and two such
//! nodes would let a leader without committed writes be elected. Replaced as the message
//! says, it copies the log anew and holds every acknowledged write.

mod common;

use arka::client::WriteItem;
use arka::durability::Level;
use common::{data, eventually, Cluster, DEADLINE};
use serde_json::json;

/// Cuts node `id`'s last WAL segment to nothing.
fn empty_last_segment(cluster: &Cluster, id: u64) {
    let wal = cluster.nodes[(id - 1) as usize].data_dir.join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    let last = segments.last().expect("a segment");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open");
    file.set_len(0).expect("cut the segment");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_wal_lost_durable_entries_refuses_to_start_and_is_replaced() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client(1).await;
    let write = |from: i64, n: i64| -> Vec<WriteItem> {
        (from..from + n)
            .map(|s| WriteItem::idempotent(data::batch(6, s, 20), "p6", s))
            .collect()
    };
    client
        .write_all("cut", write(0, 500), Level::Replicated)
        .await
        .expect("first writes");
    cluster.kill9(3);
    empty_last_segment(&cluster, 3);
    cluster.spawn(3);
    let refusal = eventually("node 3 to refuse its wal", DEADLINE, || {
        let log = cluster.log_of(3);
        async move { log.find("arka: open wal:").map(|at| log[at..].to_string()) }
    })
    .await;
    assert!(
        refusal.contains("had been made durable here") && refusal.contains("Replace this node"),
        "the refusal names the loss and the remedy: {refusal}"
    );

    // The remedy: out of the membership, data wiped, started, added back.
    client
        .action("remove_node", &json!({ "node_id": 3 }))
        .await
        .expect("remove node 3");
    cluster.kill9(3);
    let data_dir = cluster.nodes[2].data_dir.clone();
    std::fs::remove_dir_all(&data_dir).expect("wipe node 3");
    let acks = client
        .write_all("cut", write(500, 100), Level::Replicated)
        .await
        .expect("writes without node 3");
    let max = acks.iter().map(|a| a.lsn).max().expect("lsn");
    cluster.spawn(3);
    let (raft, flight) = (
        cluster.nodes[2].raft.clone(),
        cluster.nodes[2].flight.clone(),
    );
    let add = json!({ "node_id": 3, "raft_addr": raft, "flight_addr": flight });
    eventually("node 3 to be added back", DEADLINE, || async {
        client.action("add_node", &add).await.ok()
    })
    .await;
    for id in 1..=3 {
        let seqs = cluster.seqs_on(id, "cut", max).await;
        assert_eq!(
            seqs,
            (0..600).collect::<Vec<i64>>(),
            "node {id} holds every write"
        );
    }
}

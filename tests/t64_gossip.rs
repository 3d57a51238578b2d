//! Gossip failure detection: a node cut off from its peers is reported dead by the others
//! within the documented bound, the rest of the cluster keeps serving, and the node rejoins
//! and catches up when the cut heals.

mod common;

use std::process::Command;
use std::time::Duration;

use arka::client::WriteItem;
use arka::durability::Level;
use arka::wire::ReadTicket;
use arka_cluster::gossip::GossipTiming;
use common::{data, eventually, Cluster, DEADLINE};
use serde_json::json;

async fn liveness_seen_by(cluster: &Cluster, observer: u64, node: u64) -> Option<String> {
    let report = cluster.cluster_status(observer).await?;
    let member = report["members"]
        .as_array()?
        .iter()
        .find(|m| m["node_id"] == node)?;
    member["liveness"].as_str().map(str::to_string)
}

/// `arka admin status` against node `id`: its exit code.
fn admin_status_exit_code(cluster: &Cluster, id: u64) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_arka"))
        .args(["admin", "--addr", &cluster.addr(id), "status"])
        .output()
        .expect("run arka admin")
        .status
        .code()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_node_is_reported_dead_and_rejoins_when_the_partition_heals() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let cut = (1..=3).find(|id| *id != leader).expect("a follower");
    let others: Vec<u64> = (1..=3).filter(|id| *id != cut).collect();
    for observer in [1, 2, 3] {
        for node in [1, 2, 3] {
            eventually("every node sees every node alive", DEADLINE, || async {
                (liveness_seen_by(&cluster, observer, node).await? == "alive").then_some(())
            })
            .await;
        }
    }
    assert_eq!(admin_status_exit_code(&cluster, leader), Some(0));

    let isolated = cluster.client(cut).await;
    isolated
        .action("inject_fault", &json!({"isolate": true}))
        .await
        .expect("isolate");
    // The documented bound (docs/api.md), doubled for a loaded 2-core test machine.
    let bound = GossipTiming::default().dead_within(3) * 2;
    for observer in &others {
        eventually("the cut-off node is reported dead", bound, || async {
            (liveness_seen_by(&cluster, *observer, cut).await? == "dead").then_some(())
        })
        .await;
    }
    assert_eq!(
        admin_status_exit_code(&cluster, cut),
        Some(1),
        "the cut-off node has no quorum and says so"
    );
    assert_eq!(admin_status_exit_code(&cluster, leader), Some(0));

    let writes = (0..10)
        .map(|s| WriteItem::plain(data::batch(3, s, 1)))
        .collect();
    let acks = cluster
        .client(leader)
        .await
        .write_all("partitioned", writes, Level::Replicated)
        .await
        .expect("the majority keeps accepting writes");
    let last = acks.iter().map(|a| a.lsn).max().expect("acks");

    isolated
        .action("inject_fault", &json!({"isolate": false}))
        .await
        .expect("heal");
    for observer in [1, 2, 3] {
        eventually("the healed node is alive again", DEADLINE, || async {
            (liveness_seen_by(&cluster, observer, cut).await? == "alive").then_some(())
        })
        .await;
    }
    let ticket = ReadTicket {
        table: "partitioned".into(),
        min_lsn: Some(last),
        ..Default::default()
    };
    let (_, batches) = tokio::time::timeout(Duration::from_secs(30), isolated.read(&ticket))
        .await
        .expect("the healed node catches up")
        .expect("read");
    assert_eq!(batches.len(), 10);
}

/// The node ids, liveness and Flight locations in node `id`'s cluster report.
async fn members_seen_by(cluster: &Cluster, id: u64) -> Option<Vec<(u64, String, String)>> {
    let report = cluster.cluster_status(id).await?;
    report["members"]
        .as_array()?
        .iter()
        .map(|m| {
            let id = m["node_id"].as_u64()?;
            let liveness = m["liveness"].as_str()?.to_string();
            let flight = m["flight_location"].as_str()?.to_string();
            Some((id, liveness, flight))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_of_another_cluster_gossiping_in_stays_out_of_the_view() {
    let ours = Cluster::start(2).await;
    // Our nodes learn the cluster id from Raft; until their gossip says it, a node of our
    // cluster is indistinguishable from one that is joining, and any cluster may show it.
    let id = ours.status(1).await.expect("status")["cluster_id"].clone();
    eventually("our gossip to carry the cluster id", DEADLINE, || async {
        let report = ours.cluster_status(1).await?;
        let members = report["members"].as_array()?;
        (members.len() == 2 && members.iter().all(|m| m["cluster_id"] == id)).then_some(())
    })
    .await;
    // Its single node has node id 1 like ours, and is pointed at our gossip by mistake.
    let stray = format!(
        "join = [{:?}, {:?}]\n",
        ours.node(1).gossip,
        ours.node(2).gossip
    );
    let theirs = Cluster::start_with_config(1, &stray).await;
    let expected: Vec<(u64, String, String)> = (1..=2)
        .map(|id| (id, "alive".to_string(), ours.addr(id)))
        .collect();
    // Long enough for gossip to have exchanged states many times over (it publishes every
    // 250 ms), checked on every poll.
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < end {
        for id in [1, 2] {
            if let Some(seen) = members_seen_by(&ours, id).await {
                assert_eq!(
                    seen, expected,
                    "node {id} of our cluster sees only our nodes"
                );
            }
        }
        if let Some(seen) = members_seen_by(&theirs, 1).await {
            assert_eq!(seen, vec![(1, "alive".to_string(), theirs.addr(1))]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(admin_status_exit_code(&ours, 1), Some(0));
    assert_eq!(admin_status_exit_code(&theirs, 1), Some(0));
}

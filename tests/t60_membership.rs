//! Membership and snapshots through the admin actions.

mod common;

use arka::client::WriteItem;
use arka::durability::Level;
use arka::wire::ReadTicket;
use common::{data, eventually, Cluster, DEADLINE};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_node_added_with_add_node_catches_up_and_serves_reads() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.client(1).await;
    let writes = (0..30)
        .map(|s| WriteItem::plain(data::batch(4, s, 2)))
        .collect();
    let acks = leader
        .write_all("grow", writes, Level::Replicated)
        .await
        .expect("write");
    let last = acks.iter().map(|a| a.lsn).max().expect("lsn");

    let id = cluster.add_process();
    let client = cluster.client(id).await; // waits until the new node listens
    let node = cluster.node(id);
    let body = json!({"node_id": id, "raft_addr": node.raft, "flight_addr": node.flight});
    leader.action("add_node", &body).await.expect("add_node");
    let status = leader.action("status", &json!(null)).await.expect("status");
    let member = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["node_id"] == id)
        .cloned()
        .expect("the new node is a member");
    assert_eq!(
        member["voter"], true,
        "add_node promotes to voter by default"
    );

    let ticket = ReadTicket {
        table: "grow".into(),
        min_lsn: Some(last),
        ..Default::default()
    };
    let (_, batches) = client.read(&ticket).await.expect("read on the new node");
    assert_eq!(batches.len(), 30);

    let err = leader.action("add_node", &body).await.expect_err("twice");
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_action_builds_a_snapshot_and_the_node_restarts_from_it() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.client(1).await;
    let writes = (0..20)
        .map(|s| WriteItem::plain(data::batch(5, s, 1)))
        .collect();
    let acks = leader
        .write_all("snap", writes, Level::Replicated)
        .await
        .expect("write");
    let last = acks.iter().map(|a| a.lsn).max().expect("lsn");
    leader
        .action("snapshot", &json!(null))
        .await
        .expect("snapshot");
    eventually("snapshot built", DEADLINE, || async {
        let lsn = cluster.status(1).await?["snapshot_lsn"].as_u64()?;
        (lsn >= last).then_some(())
    })
    .await;
    cluster.kill9(1);
    cluster.spawn(1);
    cluster.wait_for_leader().await;
    let client = cluster.client(1).await;
    let ticket = ReadTicket {
        table: "snap".into(),
        min_lsn: Some(last),
        ..Default::default()
    };
    let (_, batches) = client.read(&ticket).await.expect("read");
    assert_eq!(batches.len(), 20);
}

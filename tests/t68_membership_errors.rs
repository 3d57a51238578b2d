//! Membership mistakes get clear errors and leave the cluster as it was.

mod common;

use arka::client::Client;
use common::{Cluster, TEST_SECRET};
use serde_json::{json, Value};
use tonic::Code::{InvalidArgument, NotFound, Unavailable};

/// The `(node_id, voter)` pairs of the membership, as the leader reports them.
async fn membership(leader: &Client) -> Vec<(u64, bool)> {
    let status = leader.action("status", &Value::Null).await.expect("status");
    status["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["node_id"].as_u64().expect("id"), m["voter"] == true))
        .collect()
}

async fn expect_error(leader: &Client, action: &str, body: Value, code: tonic::Code, says: &str) {
    let err = leader
        .action(action, &body)
        .await
        .expect_err(&format!("{action} {body} must fail"));
    assert_eq!(err.code(), Some(code), "{action} {body}: {err}");
    assert!(
        err.to_string().contains(says),
        "{action} {body}: {err:?} should say {says:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_membership_changes_are_refused_and_change_nothing() {
    let mut cluster = Cluster::start(1).await;
    let leader = cluster.client(1).await;
    let learner = cluster.add_process();
    cluster.client(learner).await;
    let node = cluster.node(learner);
    let body = json!({"node_id": learner, "raft_addr": node.raft, "flight_addr": node.flight, "voter": false});
    leader
        .action("add_node", &body)
        .await
        .expect("add a learner");
    let before = membership(&leader).await;
    assert_eq!(before, vec![(1, true), (learner, false)]);

    let cases = [
        (
            "add_node",
            json!({"node_id": 1, "raft_addr": "127.0.0.1:1", "flight_addr": "127.0.0.1:1"}),
            InvalidArgument,
            "already a member",
        ),
        (
            "add_node",
            json!({"node_id": 9, "raft_addr": "127.0.0.1:1", "flight_addr": "127.0.0.1:2"}),
            Unavailable,
            "cannot reach node 9",
        ),
        (
            "add_node",
            json!({"node_id": 9}),
            InvalidArgument,
            "not known to gossip",
        ),
        (
            "add_node",
            json!({"node_id": "nine"}),
            InvalidArgument,
            "bad JSON body",
        ),
        (
            "remove_node",
            json!({"node_id": 42}),
            NotFound,
            "node 42 is not a member",
        ),
        (
            "remove_node",
            json!({"node_id": 1}),
            InvalidArgument,
            "last voter",
        ),
        (
            "transfer_leader",
            json!({"node_id": learner}),
            InvalidArgument,
            "not a voter",
        ),
        (
            "transfer_leader",
            json!({"node_id": 42}),
            InvalidArgument,
            "not a voter",
        ),
    ];
    for (action, body, code, says) in cases {
        expect_error(&leader, action, body, code, says).await;
        assert_eq!(
            membership(&leader).await,
            before,
            "{action} changed nothing"
        );
    }
    let status = leader.action("status", &Value::Null).await.expect("status");
    assert_eq!(status["leader_id"], 1, "node 1 still leads");

    // The refusals left nothing half done: the learner can still be promoted.
    leader
        .action("add_node", &json!({"node_id": learner, "voter": true}))
        .await
        .expect("promote the learner");
    assert_eq!(membership(&leader).await, vec![(1, true), (learner, true)]);
    expect_error(
        &leader,
        "add_node",
        json!({"node_id": learner}),
        InvalidArgument,
        "already a member",
    )
    .await;
}

/// Raft traffic from another cluster is refused, not applied: a node at a reused address
/// cannot rewrite the log of a cluster it does not belong to.
#[tokio::test(flavor = "multi_thread")]
async fn another_clusters_node_is_refused_and_its_traffic_rejected() {
    let ours = Cluster::start(1).await;
    let theirs = Cluster::start(2).await;
    let leader = ours.client(1).await;
    let other = theirs.node(2);
    let ours_id =
        leader.action("status", &Value::Null).await.expect("status")["cluster_id"].clone();
    let theirs_id = theirs
        .client(2)
        .await
        .action("status", &Value::Null)
        .await
        .expect("status")["cluster_id"]
        .clone();
    assert!(
        ours_id.is_string() && theirs_id.is_string() && ours_id != theirs_id,
        "{ours_id} {theirs_id}"
    );

    let at = |id: u64| json!({"node_id": id, "raft_addr": other.raft, "flight_addr": other.flight, "voter": false});
    let before = membership(&leader).await;
    expect_error(
        &leader,
        "add_node",
        at(2),
        InvalidArgument,
        "belongs to cluster",
    )
    .await;
    expect_error(
        &leader,
        "add_node",
        at(3),
        InvalidArgument,
        "is node 2, not node 3",
    )
    .await;
    assert_eq!(membership(&leader).await, before);

    // A Raft message signed by our cluster (both test clusters hold the same secret) and
    // stamped with our cluster id, sent straight to their node, is refused before it is
    // even decoded.
    let request = common::node_message(TEST_SECRET, ours_id.as_str().expect("id"), vec![0; 16]);
    let refused = common::raft_port_client(&other.raft, TEST_SECRET)
        .await
        .append_entries(request)
        .await
        .expect_err("foreign append");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("belongs to cluster"),
        "{refused:?}"
    );
    let status = theirs
        .client(1)
        .await
        .action("status", &Value::Null)
        .await
        .expect("their node still serves");
    assert_eq!(status["role"], "leader");
    assert_eq!(status["cluster_id"], theirs_id);
}

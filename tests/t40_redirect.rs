//! Writes and mutating actions sent to a follower are redirected to the leader.

mod common;

use arka::client::WriteItem;
use arka::durability::Level;
use arrow_flight::FlightDescriptor;
use common::{data, Cluster};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_a_follower_fails_with_unavailable_naming_the_leader() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.addr(1);
    let follower = cluster.client(2).await;
    let err = follower
        .write_all(
            "t",
            vec![WriteItem::plain(data::batch(0, 0, 1))],
            Level::Replicated,
        )
        .await
        .expect_err("followers take no writes");
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("not leader; leader is {leader}")),
        "{err}"
    );
    assert_eq!(
        err.leader().as_deref(),
        Some(leader.as_str()),
        "x-arka-leader trailer"
    );

    let err = follower
        .action("drop_table", &json!({"name": "t"}))
        .await
        .expect_err("mutating actions go to the leader");
    assert_eq!(err.leader().as_deref(), Some(leader.as_str()), "{err}");

    // Following the redirect works.
    let acks = cluster
        .client(1)
        .await
        .write_all(
            "t",
            vec![WriteItem::plain(data::batch(0, 0, 1))],
            Level::Replicated,
        )
        .await
        .expect("write on the leader");
    assert!(acks.iter().any(|a| a.level == Level::Replicated));
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_write_flight_info_on_a_follower_points_at_the_leader() {
    let cluster = Cluster::start(3).await;
    for id in [2, 3] {
        let mut client = cluster.client(id).await.flight();
        for path in [vec!["streaming_write"], vec!["streaming_write", "events"]] {
            let descriptor =
                FlightDescriptor::new_path(path.iter().map(|s| s.to_string()).collect());
            let info = client
                .get_flight_info(descriptor)
                .await
                .expect("flight info")
                .into_inner();
            let locations: Vec<String> = info
                .endpoint
                .iter()
                .flat_map(|e| e.location.iter().map(|l| l.uri.clone()))
                .collect();
            assert_eq!(
                locations,
                vec![cluster.addr(1)],
                "node {id} points writers at the leader"
            );
        }
    }
}

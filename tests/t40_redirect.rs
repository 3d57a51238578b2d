//! Writes and mutating actions sent to a follower are redirected to the leader.

mod common;

use std::time::{Duration, Instant};

use arka::client::{Client, WriteItem};
use arka::durability::Level;
use arrow_flight::FlightDescriptor;
use common::{data, lsns_at, Cluster, DEADLINE};
use serde_json::{json, Value};

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

/// The first of `among` whose own status says it leads, asked over `clients` (one per node,
/// already connected) as fast as they answer.
async fn first_to_lead(clients: &[Client], among: &[u64]) -> u64 {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        for id in among {
            let status = clients[*id as usize - 1]
                .action("status", &Value::Null)
                .await;
            if status.is_ok_and(|s| s["role"] == json!("leader")) {
                return *id;
            }
        }
    }
    panic!("none of {among:?} became leader within {DEADLINE:?}");
}

/// One write to `table`, acked REPLICATED; a future of its own, so that it can be spawned.
async fn write_one(
    client: Client,
    table: &'static str,
    seq: i64,
) -> Result<Vec<arka::client::Ack>, arka::client::ClientError> {
    client
        .write_all(
            table,
            vec![WriteItem::plain(data::batch(0, seq, 1))],
            Level::Replicated,
        )
        .await
}

/// A node takes a write the moment it is elected: its followers answer it a heartbeat later,
/// and a write arriving before then waits for that answer instead of being refused for want
/// of a lease.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_takes_a_write_the_moment_it_is_elected() {
    let mut cluster = Cluster::start(3).await;
    let mut clients = Vec::new();
    for id in 1..=3 {
        clients.push(cluster.client(id).await);
    }
    let write = |client: &Client, seq: i64| write_one(client.clone(), "elected", seq);
    write(&clients[0], 0).await.expect("create the table");
    let mut leader = 1;
    for round in 1..=4 {
        cluster.kill9(leader);
        let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        let elected = first_to_lead(&clients, &others).await;
        write(&clients[elected as usize - 1], round)
            .await
            .unwrap_or_else(|e| {
                panic!("round {round}: node {elected} was elected and takes a write: {e}")
            });
        cluster.spawn(leader);
        clients[leader as usize - 1] = cluster.client(leader).await;
        leader = elected;
        cluster.wait_for_leader().await;
    }
}

/// A leader whose followers answer later than its lease (as followers working through a
/// backlog do under saturating load) holds new writes back until they answer in time again,
/// instead of refusing them, and no election follows.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_holds_writes_while_its_followers_answer_later_than_its_lease() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let client = cluster.client(leader).await;
    let write = |seq: i64| write_one(client.clone(), "held", seq);
    write(0).await.expect("create the table");
    let term = |status: Option<Value>| status.and_then(|s| s["term"].as_u64());
    let term_before = term(cluster.status(leader).await);
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let answer_delay = |ms: u64| {
        let followers = followers.clone();
        let cluster = &cluster;
        async move {
            for id in followers {
                cluster
                    .client(id)
                    .await
                    .action("inject_fault", &json!({ "answer_delay_ms": ms }))
                    .await
                    .expect("inject_fault");
            }
        }
    };
    // The suite's lease is 800 ms (election-timeout-max-ms). Once the answers sent before
    // the fault are in, the freshest the leader has is older than its lease.
    answer_delay(1_200).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let held = tokio::spawn(write(1));
    // Leases go by without a timely quorum answer: a leader that refused writes for want of
    // a lease would have answered this one with an error by now.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        !held.is_finished(),
        "the write is held while no quorum answers within the lease: {:?}",
        held.await
    );
    answer_delay(0).await;
    let acks = held
        .await
        .expect("join")
        .expect("the held write is taken once the followers answer in time");
    assert_eq!(lsns_at(&acks, Level::Replicated).len(), 1, "{acks:?}");
    assert_eq!(
        term(cluster.status(leader).await),
        term_before,
        "no election: {}",
        cluster.log_tails()
    );
}

/// A leader whose disk stalls (each group commit of its WAL held for longer than its lease)
/// keeps its lease: writes beyond what its WAL may hold unflushed wait before they are
/// proposed, not in Raft's append, where the leader would stop reading its followers'
/// answers. Every write is taken, no election follows, and all survive kill -9 of every node.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_disk_stalls_keeps_its_lease_and_takes_every_write() {
    const WRITES: i64 = 64;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let client = cluster.client(leader).await;
    write_one(client.clone(), "stalled", 0)
        .await
        .expect("create the table");
    let term = |status: Option<Value>| status.and_then(|s| s["term"].as_u64());
    let term_before = term(cluster.status(leader).await);
    let sync_delay = |ms: u64| {
        let client = client.clone();
        async move {
            client
                .action("inject_fault", &json!({ "wal_sync_delay_ms": ms }))
                .await
                .expect("inject_fault");
        }
    };
    // About 1 MiB each: 64 MiB, over both the leader's bound on its writes not yet flushed
    // and the flusher's own. The suite's lease is 800 ms.
    sync_delay(2_000).await;
    let writes = (1..=WRITES)
        .map(|seq| WriteItem::plain(data::batch(1, seq, 32_000)))
        .collect();
    let acks = client
        .write_all("stalled", writes, Level::Replicated)
        .await
        .unwrap_or_else(|e| panic!("writes to a stalled leader: {e}\n{}", cluster.log_tails()));
    sync_delay(0).await;
    let replicated = lsns_at(&acks, Level::Replicated);
    assert_eq!(replicated.len(), WRITES as usize, "{acks:?}");
    assert_eq!(
        term(cluster.status(leader).await),
        term_before,
        "no election: {}",
        cluster.log_tails()
    );

    let last = replicated.iter().copied().max().unwrap_or_default();
    cluster.kill9_all_and_restart().await;
    for id in 1..=3 {
        let seqs = cluster.seqs_on(id, "stalled", last).await;
        assert_eq!(
            seqs,
            (0..=WRITES).collect::<Vec<_>>(),
            "node {id} holds every write once, in order"
        );
    }
}

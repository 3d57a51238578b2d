//! Producer sessions: a producer that restarts with its id goes on above its last write
//! instead of colliding with it (and silently getting its old LSNs back), and the instance
//! before it is fenced: its writes are refused with FAILED_PRECONDITION and never applied.
//! Sessions survive a snapshot and kill -9 of every node.

mod common;

use arka::client::{ClientError, ClusterClient, Producer, ProducerConfig, WriteItem};
use arka::durability::Level;
use arrow::record_batch::RecordBatch;
use common::{data, eventually, read_all, Cluster, DEADLINE};
use serde_json::json;

const TABLE: &str = "sessions";

async fn start_producer(cluster: &Cluster) -> Producer {
    let seeds: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    let client = ClusterClient::connect(&seeds).await.expect("connect");
    client
        .producer(TABLE, ProducerConfig::new("loader"))
        .await
        .expect("start the producer")
}

/// Sends `batches` and waits for each LSN.
async fn send_all(producer: &Producer, batches: &[RecordBatch]) -> Vec<u64> {
    let mut lsns = Vec::new();
    for batch in batches {
        let handle = producer.send(batch.clone()).await.expect("send");
        lsns.push(handle.lsn().await.expect("REPLICATED"));
    }
    lsns
}

fn batches(writer: i64, seqs: std::ops::Range<i64>) -> Vec<RecordBatch> {
    seqs.map(|s| data::batch(writer, s, 1)).collect()
}

/// Every node reads the table back as exactly `expected`, in LSN order.
async fn assert_every_node_reads(cluster: &Cluster, expected: &[RecordBatch], last_lsn: u64) {
    for id in 1..=3 {
        let got = eventually("the node to serve the table", DEADLINE, || async {
            let client = cluster.client(id).await;
            client.read(&read_all(TABLE, last_lsn)).await.ok()
        })
        .await
        .1;
        let got: Vec<RecordBatch> = got.into_iter().map(|(_, b)| b).collect();
        assert!(got == expected, "node {id} reads {:?}", data::keys(&got));
    }
}

fn assert_fenced(error: ClientError) {
    assert_eq!(
        error.code(),
        Some(tonic::Code::FailedPrecondition),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_producer_goes_on_above_its_writes_and_fences_the_old_instance() {
    let cluster = Cluster::start(3).await;
    let old = start_producer(&cluster).await;
    let old_lsns = send_all(&old, &batches(1, 0..5)).await;

    // The same id again, as a restarted process would start it.
    let new = start_producer(&cluster).await;
    assert!(new.epoch() > old.epoch());
    assert_eq!(new.next_seq(), 5, "it goes on above seq 4");
    let new_lsns = send_all(&new, &batches(2, 0..3)).await;
    let old_last = *old_lsns.last().expect("old writes");
    assert!(
        new_lsns.iter().all(|l| *l > old_last),
        "new writes got new LSNs, not their predecessors' ({old_lsns:?} then {new_lsns:?})"
    );

    // The old instance is a zombie now: what it sends is refused, not applied.
    let zombie = old.send(data::batch(1, 99, 1)).await.expect("queued");
    let refused = zombie.lsn().await.expect_err("a fenced write");
    assert!(refused.to_string().contains("fenced"), "{refused}");
    // So is a write of that id that carries no epoch.
    let leader = cluster.client(cluster.wait_for_leader().await).await;
    let without_epoch = leader
        .write_all(
            TABLE,
            vec![WriteItem::idempotent(data::batch(1, 100, 1), "loader", 100)],
            Level::Replicated,
        )
        .await
        .expect_err("a write of a registered id without its epoch");
    assert_fenced(without_epoch);

    let mut expected = batches(1, 0..5);
    expected.extend(batches(2, 0..3));
    let last = *new_lsns.last().expect("new writes");
    assert_every_node_reads(&cluster, &expected, last).await;
}

/// Writes one batch of session `epoch` as a plain Flight client would.
async fn write_in_session(
    cluster: &Cluster,
    leader: u64,
    epoch: u64,
    seq: i64,
) -> Result<u64, ClientError> {
    let item = WriteItem::idempotent(data::batch(3, seq, 1), "loader", seq).in_session(epoch);
    let acks = cluster
        .client(leader)
        .await
        .write_all(TABLE, vec![item], Level::Replicated)
        .await?;
    Ok(common::lsns_at(&acks, Level::Replicated)[0])
}

async fn kill_every_node_and_restart(cluster: &mut Cluster) -> u64 {
    for id in 1..=3 {
        cluster.kill9(id);
    }
    for id in 1..=3 {
        cluster.spawn(id);
    }
    cluster.wait_for_leader().await
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_survive_a_snapshot_and_kill_9_of_every_node() {
    let mut cluster = Cluster::start(3).await;
    let first = start_producer(&cluster).await;
    let mut lsns = send_all(&first, &batches(1, 0..3)).await;
    let first_epoch = first.epoch();
    drop(first);
    // The session is in every node's snapshot, and no longer in the WAL they replay.
    cluster.snapshot_every_node().await;
    let leader = kill_every_node_and_restart(&mut cluster).await;
    lsns.push(
        write_in_session(&cluster, leader, first_epoch, 3)
            .await
            .expect("the session restored from the snapshot goes on"),
    );

    // A second session, only in the WALs, fences the first across another crash.
    let registered = cluster
        .client(leader)
        .await
        .action("register_producer", &json!({"producer_id": "loader"}))
        .await
        .expect("register again");
    assert_eq!(registered["next_seq"], 4, "{registered}");
    let epoch = registered["epoch"].as_u64().expect("epoch");
    assert!(epoch > first_epoch, "{registered}");
    let leader = kill_every_node_and_restart(&mut cluster).await;
    let refused = write_in_session(&cluster, leader, first_epoch, 4)
        .await
        .expect_err("the first session is fenced");
    assert_fenced(refused);
    lsns.push(
        write_in_session(&cluster, leader, epoch, 4)
            .await
            .expect("the second session goes on"),
    );

    let mut expected = batches(1, 0..3);
    expected.extend([data::batch(3, 3, 1), data::batch(3, 4, 1)]);
    assert_every_node_reads(&cluster, &expected, *lsns.last().expect("lsns")).await;
}

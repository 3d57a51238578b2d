//! `get_durability_status` about one idempotent write tells written, not written and
//! unknown apart, and says ABORTED only when the write is known lost: a write the
//! idempotency window has forgotten is found at its LSN in the log, and once that LSN is no
//! longer in the WAL either, the answer is "unknown", never "lost" (a client that resent on
//! ABORTED would duplicate it). A producer that lost its acks lists its writes above the
//! last LSN it knows, page by page. A write asked about by its LSN and the leader that
//! appended it is told apart from the entry a new leader put at that LSN.

mod common;

use arka::client::{Client, WriteItem};
use arka::durability::Level;
use common::{data, eventually, lsns_at, Cluster, DEADLINE};
use serde_json::{json, Value};

const RETENTION_BYTES: u64 = 65536;
/// Far above any seq the test writes before it: writing it moves the producer's window
/// (100,000 seqs) past them.
const FAR_SEQ: i64 = 1_000_000;

async fn write(client: &Client, producer: &str, seq: i64) -> u64 {
    let acks = client
        .write_all(
            "fates",
            vec![WriteItem::idempotent(data::batch(1, seq, 1), producer, seq)],
            Level::Replicated,
        )
        .await
        .expect("write");
    *lsns_at(&acks, Level::Replicated)
        .first()
        .expect("a REPLICATED ack")
}

async fn fate(client: &Client, query: Value) -> Value {
    client
        .action("get_durability_status", &query)
        .await
        .expect("get_durability_status")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_idempotency_window_forgot_is_written_or_unknown_never_lost() {
    let cluster = Cluster::start_trimming(3, RETENTION_BYTES, 3_600_000).await;
    let client = cluster.client(1).await;
    let first = write(&client, "p", 0).await;
    write(&client, "p", FAR_SEQ).await;

    // The window no longer holds seq 0; the log at its LSN still does.
    let answer = fate(
        &client,
        json!({"producer_id": "p", "seq": 0, "last_known_lsn": first}),
    )
    .await;
    assert_eq!(answer["status"], "written", "{answer}");
    assert_eq!(answer["lsn"], first, "{answer}");
    // At least REPLICATED: the tier worker may have put it in object storage by now.
    let level = answer["level"].as_str().unwrap_or_default();
    assert!(
        ["REPLICATED", "OBJECT_STORAGE", "COMMITTED"].contains(&level),
        "{answer}"
    );
    // Without its LSN nothing says whether it was written.
    let answer = fate(&client, json!({"producer_id": "p", "seq": 0})).await;
    assert_eq!(answer["status"], "unknown", "{answer}");
    // A seq the window covers and that was never written is not written: resending it is safe.
    let answer = fate(&client, json!({"producer_id": "p", "seq": FAR_SEQ - 1})).await;
    assert_eq!(answer["status"], "not_written", "{answer}");
    let answer = fate(&client, json!({"producer_id": "p", "seq": FAR_SEQ})).await;
    assert_eq!(answer["status"], "written", "{answer}");

    // Once the WAL is trimmed past the first write's LSN, this node cannot tell any more.
    fill_and_flush(&client).await;
    eventually(
        "the WAL to be trimmed past the first write",
        DEADLINE,
        || async {
            let tier = cluster.status(1).await?["tier"].clone();
            (tier["wal_first_index"].as_u64()? > first).then_some(())
        },
    )
    .await;
    let answer = fate(
        &client,
        json!({"producer_id": "p", "seq": 0, "last_known_lsn": first}),
    )
    .await;
    assert_eq!(answer["status"], "unknown", "{answer}");
    assert_eq!(answer["level"], Value::Null, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_lists_its_writes_above_an_lsn_page_by_page() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client(cluster.wait_for_leader().await).await;
    let mut lsns = Vec::new();
    for seq in 0..6 {
        lsns.push(write(&client, "e", seq).await);
        write(&client, "other", seq).await;
    }
    let page = |after: u64| json!({"producer_id": "e", "last_known_lsn": after, "limit": 3});

    let first = fate(&client, page(lsns[0])).await;
    let listed = |answer: &Value| -> Vec<(i64, u64)> {
        (answer["events"].as_array().expect("events").iter())
            .map(|e| {
                assert_eq!(e["level"], "REPLICATED", "{e}");
                (
                    e["seq"].as_i64().expect("seq"),
                    e["lsn"].as_u64().expect("lsn"),
                )
            })
            .collect()
    };
    assert_eq!(
        listed(&first),
        vec![(1, lsns[1]), (2, lsns[2]), (3, lsns[3])]
    );
    assert_eq!(first["next_last_known_lsn"], lsns[3], "{first}");
    assert_eq!(first["window_from_seq"], 5 - 100_000, "{first}");
    let second = fate(&client, page(lsns[3])).await;
    assert_eq!(listed(&second), vec![(4, lsns[4]), (5, lsns[5])]);
    assert_eq!(second["next_last_known_lsn"], Value::Null, "{second}");

    let unknown = fate(&client, json!({"producer_id": "nobody"})).await;
    assert_eq!(unknown["events"], json!([]), "{unknown}");
    assert_eq!(unknown["window_from_seq"], Value::Null, "{unknown}");
    let too_many = client
        .action(
            "get_durability_status",
            &json!({"producer_id": "e", "limit": 100_000}),
        )
        .await
        .expect_err("a limit over the page bound");
    assert_eq!(
        too_many.code(),
        Some(tonic::Code::InvalidArgument),
        "{too_many}"
    );
}

/// Writes 200 batches to another table and flushes them to object storage, so that the
/// trimming cluster can drop the older part of its WAL.
async fn fill_and_flush(client: &arka::client::Client) {
    let filler: Vec<WriteItem> = (0..200)
        .map(|s| WriteItem::plain(data::batch(2, s, 20)))
        .collect();
    client
        .write_all("filler", filler, Level::Replicated)
        .await
        .expect("filler");
    client.action("flush", &Value::Null).await.expect("flush");
}

/// One single-row write to the table "fates", acked at `level`.
async fn write_one(
    client: &arka::client::Client,
    seq: i64,
    level: Level,
) -> Result<Vec<arka::client::Ack>, arka::client::ClientError> {
    let write = WriteItem::plain(data::batch(1, seq, 1));
    client.write_all("fates", vec![write], level).await
}

/// The first write of `acks`, as its MEMORY or first ack names it: its LSN and the leader
/// that appended it.
fn appended_at(acks: &[arka::client::Ack]) -> (u64, (u64, u64)) {
    let first = acks.iter().find(|a| !a.is_update).expect("a first ack");
    (
        first.lsn,
        first.appended_by.expect("the ack names its leader"),
    )
}

fn by_position(lsn: u64, (term, leader): (u64, u64)) -> Value {
    json!({"last_known_lsn": lsn, "term": term, "leader_id": leader})
}

async fn position_fate(cluster: &Cluster, node: u64, lsn: u64, by: (u64, u64)) -> Value {
    let client = cluster.client(node).await;
    match client
        .action("get_durability_status", &by_position(lsn, by))
        .await
    {
        Ok(answer) => answer,
        Err(e) if e.code() == Some(tonic::Code::Aborted) => json!({"status": "ABORTED"}),
        Err(e) => panic!("get_durability_status on node {node}: {e}"),
    }
}

/// Asks every running node about the kept and the lost write until each gives the final
/// answer: the kept one written (at least REPLICATED), the lost one ABORTED.
async fn every_node_answers(cluster: &Cluster, kept: (u64, (u64, u64)), lost: (u64, (u64, u64))) {
    for node in cluster.running() {
        eventually(
            &format!("node {node} to settle both writes"),
            DEADLINE,
            || async {
                let kept = position_fate(cluster, node, kept.0, kept.1).await;
                let lost = position_fate(cluster, node, lost.0, lost.1).await;
                let kept_ok = kept["status"] == "written" && kept["level"] != Value::Null;
                (kept_ok && lost["status"] == "ABORTED").then_some(())
            },
        )
        .await;
    }
}

/// An LSN alone names a position, not a write: a leader that appended a write and never
/// replicated it dies, and the next leader puts its own entry at that LSN. The write's LSN
/// with the leader its ack names tells every node's answer apart: the lost write is ABORTED,
/// a replicated one written, also once the WAL no longer holds them and after kill -9 of
/// every node (the leaderships are in the snapshot).
#[tokio::test(flavor = "multi_thread")]
async fn a_write_a_new_leader_overwrote_is_answered_lost_by_its_lsn_and_leader() {
    let mut cluster = Cluster::start_trimming(3, RETENTION_BYTES, 3_600_000).await;
    let old_leader = cluster.wait_for_leader().await;
    let client = cluster.client(old_leader).await;
    let acks = write_one(&client, 0, Level::Replicated)
        .await
        .expect("the kept write");
    let kept = appended_at(&acks);
    let followers: Vec<u64> = (cluster.running().into_iter())
        .filter(|n| *n != old_leader)
        .collect();

    // With its followers dead the leader still holds its lease for a moment: long enough to
    // append a write that no follower will ever get. It is stopped before they come back, so
    // it cannot send them that write either.
    for f in &followers {
        cluster.kill9(*f);
    }
    let acks = write_one(&client, 1, Level::Memory)
        .await
        .expect("the write only the old leader appends");
    let lost = appended_at(&acks);
    let answer = position_fate(&cluster, old_leader, lost.0, lost.1).await;
    assert_eq!(answer["status"], "written", "{answer}");

    cluster.pause(old_leader);
    for f in &followers {
        cluster.spawn(*f);
    }
    let new_leader = cluster.wait_for_leader_among(&followers).await;
    let client = cluster.client(new_leader).await;
    write_one(&client, 2, Level::Replicated)
        .await
        .expect("a write on the new leader");
    // The position alone reads as replicated (or beyond): it holds the new leader's entry now.
    let position = fate(&client, json!({"last_known_lsn": lost.0})).await;
    let level = position["level"].as_str().unwrap_or_default();
    assert!(
        ["REPLICATED", "OBJECT_STORAGE", "COMMITTED"].contains(&level),
        "{position}"
    );
    cluster.kill9(old_leader);
    cluster.spawn(old_leader);
    every_node_answers(&cluster, kept, lost).await;

    // Out of the WAL, the snapshot's leaderships answer.
    fill_and_flush(&client).await;
    for node in cluster.running() {
        eventually(
            &format!("node {node}'s WAL to be trimmed past both writes"),
            DEADLINE,
            || async {
                let tier = cluster.status(node).await?["tier"].clone();
                (tier["wal_first_index"].as_u64()? > lost.0).then_some(())
            },
        )
        .await;
    }
    every_node_answers(&cluster, kept, lost).await;
    for node in cluster.running() {
        cluster.kill9(node);
    }
    for node in 1..=3 {
        cluster.spawn(node);
    }
    cluster.wait_for_leader().await;
    every_node_answers(&cluster, kept, lost).await;
}

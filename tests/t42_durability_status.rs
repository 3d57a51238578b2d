//! `get_durability_status` about one idempotent write tells written, not written and
//! unknown apart, and says ABORTED only when the write is known lost: a write the
//! idempotency window has forgotten is found at its LSN in the log, and once that LSN is no
//! longer in the WAL either, the answer is "unknown", never "lost" (a client that resent on
//! ABORTED would duplicate it). A producer that lost its acks lists its writes above the
//! last LSN it knows, page by page.

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
    assert_eq!(answer["level"], "REPLICATED", "{answer}");
    // Without its LSN nothing says whether it was written.
    let answer = fate(&client, json!({"producer_id": "p", "seq": 0})).await;
    assert_eq!(answer["status"], "unknown", "{answer}");
    // A seq the window covers and that was never written is not written: resending it is safe.
    let answer = fate(&client, json!({"producer_id": "p", "seq": FAR_SEQ - 1})).await;
    assert_eq!(answer["status"], "not_written", "{answer}");
    let answer = fate(&client, json!({"producer_id": "p", "seq": FAR_SEQ})).await;
    assert_eq!(answer["status"], "written", "{answer}");

    // Once the WAL is trimmed past the first write's LSN, this node cannot tell any more.
    let filler: Vec<WriteItem> = (0..200)
        .map(|s| WriteItem::plain(data::batch(2, s, 20)))
        .collect();
    client
        .write_all("filler", filler, Level::Replicated)
        .await
        .expect("filler");
    client.action("flush", &Value::Null).await.expect("flush");
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

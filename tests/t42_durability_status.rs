//! `get_durability_status` about one idempotent write tells written, not written and
//! unknown apart, and says ABORTED only when the write is known lost: a write the
//! idempotency window has forgotten is found at its LSN in the log, and once that LSN is no
//! longer in the WAL either, the answer is "unknown", never "lost" (a client that resent on
//! ABORTED would duplicate it).

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

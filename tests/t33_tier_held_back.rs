//! A table whose Iceberg commit keeps failing (here: the catalog cannot write its metadata,
//! because a regular file sits where the table's directory goes) is held back alone: the
//! other tables keep reaching COMMITTED, its writers waiting for COMMITTED get an error
//! naming the table and the reason, `flush` commits the others and names it, and `status`
//! lists it on every node, also after a snapshot and kill -9 of every node. Once the catalog
//! takes the table again, it is committed exactly once and the watermark moves on.

mod common;

use std::path::PathBuf;

use arka::client::WriteItem;
use arka::durability::Level;
use common::{data, eventually, lsns_at, Cluster, DEADLINE};
use serde_json::{json, Value};

/// Commits are retried for this long before the table is held back.
const HOLD_AFTER_MS: u64 = 1000;

async fn held_cluster() -> Cluster {
    let config = format!("tier-hold-table-after-ms = {HOLD_AFTER_MS}");
    Cluster::start_tiered(3, None, 300, &config).await
}

/// Where the catalog puts table `table`'s metadata in the cluster's local object store.
fn table_dir(cluster: &Cluster, table: &str) -> PathBuf {
    let store = cluster.local_store_url();
    let root = store.strip_prefix("file://").expect("a local store");
    PathBuf::from(root).join("warehouse/arka").join(table)
}

/// Makes the catalog fail to create `table`: a regular file where its directory goes.
fn block_table(cluster: &Cluster, table: &str) -> PathBuf {
    let path = table_dir(cluster, table);
    let parent = path.parent().expect("a parent directory");
    std::fs::create_dir_all(parent).expect("create the namespace directory");
    std::fs::write(&path, b"not a directory").expect("block the table's directory");
    path
}

async fn write(
    cluster: &Cluster,
    table: &str,
    seqs: std::ops::Range<i64>,
    level: Level,
) -> Vec<u64> {
    let writes = seqs
        .map(|s| WriteItem::plain(data::batch(1, s, 2)))
        .collect();
    let client = cluster.client(1).await;
    let acks = tokio::time::timeout(DEADLINE, client.write_all(table, writes, level))
        .await
        .unwrap_or_else(|_| panic!("no {level:?} acks for {table} within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("write to {table}: {e}\n{}", cluster.log_tails()));
    lsns_at(&acks, level)
}

/// The tables node `id` lists as held back, as `(table, committed_lsn)`.
async fn held_back_on(cluster: &Cluster, id: u64) -> Option<Vec<(String, u64)>> {
    let status = cluster.status(id).await?;
    let held = status["tier"]["held_back"].as_array()?;
    held.iter()
        .map(|h| {
            Some((
                h["table"].as_str()?.to_string(),
                h["committed_lsn"].as_u64()?,
            ))
        })
        .collect()
}

async fn wait_held_back_everywhere(cluster: &Cluster, expected: &[(String, u64)]) {
    for id in 1..=3 {
        eventually(
            &format!("node {id} to list {expected:?} as held back"),
            DEADLINE,
            || async { (held_back_on(cluster, id).await? == expected).then_some(()) },
        )
        .await;
    }
}

fn error_names_the_table(error: &str) -> bool {
    error.contains("table blocked is held back") && error.contains("Not a directory")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_the_catalog_refuses_is_held_back_alone_and_committed_once_it_is_taken() {
    let mut cluster = held_cluster().await;
    let mut plain = write(&cluster, "plain", 0..2, Level::Committed).await;
    let blocked_dir = block_table(&cluster, "blocked");

    // Its writers get an error naming the table and why, once the write is durable.
    let client = cluster.client(1).await;
    let writes = (0..3)
        .map(|s| WriteItem::plain(data::batch(2, s, 2)))
        .collect();
    let refused = tokio::time::timeout(
        DEADLINE,
        client.write_all("blocked", writes, Level::Committed),
    )
    .await
    .expect("an answer within the deadline")
    .expect_err("a held-back table cannot reach COMMITTED");
    assert!(error_names_the_table(&refused.to_string()), "{refused}");
    let blocked = lsns_at(
        &client
            .write_all(
                "blocked",
                vec![WriteItem::plain(data::batch(2, 3, 2))],
                Level::Replicated,
            )
            .await
            .expect("writes to a held-back table are still taken"),
        Level::Replicated,
    );

    // The other tables go on reaching COMMITTED.
    plain.extend(write(&cluster, "plain", 2..4, Level::Committed).await);
    let held_at = held_back_on(&cluster, 1).await.expect("status")[0].1;
    assert!(
        held_at < blocked[0],
        "held back below its writes: {held_at}"
    );
    let expected = vec![("blocked".to_string(), held_at)];
    wait_held_back_everywhere(&cluster, &expected).await;
    let status = cluster.status(2).await.expect("status");
    assert!(
        status["committed_lsn"].as_u64() <= Some(held_at),
        "the COMMITTED watermark covers every table: {status}"
    );
    // get_durability_status answers by the write's own table.
    for (lsn, level) in [(plain[3], "COMMITTED"), (blocked[0], "OBJECT_STORAGE")] {
        let query = json!({"last_known_lsn": lsn});
        let answer = (client.action("get_durability_status", &query).await).expect("status");
        assert_eq!(answer["level"], level, "the write at {lsn}: {answer}");
    }
    // flush commits the other tables and names the held one.
    let flushed = (client.action("flush", &Value::Null).await).expect("flush");
    let held = flushed["held_back"].as_array().expect("held_back");
    assert_eq!(held.len(), 1, "{flushed}");
    assert_eq!(held[0]["table"], "blocked", "{flushed}");
    assert!(
        (held[0]["reason"].as_str()).is_some_and(|r| r.contains("Not a directory")),
        "{flushed}"
    );

    // The hold is in every node's snapshot and survives kill -9 of every node.
    cluster.snapshot_every_node().await;
    cluster.kill9_all_and_restart().await;
    wait_held_back_everywhere(&cluster, &expected).await;

    // Once the catalog can take it, it is committed and released, and the watermark moves.
    std::fs::remove_file(&blocked_dir).expect("unblock the table");
    let last = *blocked.last().expect("lsn");
    wait_held_back_everywhere(&cluster, &[]).await;
    for id in 1..=3 {
        eventually(
            &format!("node {id}'s COMMITTED watermark to pass {last}"),
            DEADLINE,
            || async {
                let status = cluster.status(id).await?;
                (status["committed_lsn"].as_u64()? >= last).then_some(())
            },
        )
        .await;
        assert_eq!(
            cluster.seqs_on(id, "blocked", 0).await,
            vec![0, 1, 2, 3],
            "node {id}"
        );
        assert_eq!(
            cluster.seqs_on(id, "plain", 0).await,
            vec![0, 1, 2, 3],
            "node {id}"
        );
    }
    let warehouse = format!("{}/warehouse", cluster.local_store_url());
    let (_, rows) = cluster.iceberg_rows(&warehouse, "blocked", &[]);
    assert_eq!(
        rows.len(),
        8,
        "each write of the held-back table once: {rows:?}"
    );
    let (_, rows) = cluster.iceberg_rows(&warehouse, "plain", &[]);
    assert_eq!(
        rows.len(),
        8,
        "each write of the other table once: {rows:?}"
    );
    assert_eq!(plain.len(), 4);
}

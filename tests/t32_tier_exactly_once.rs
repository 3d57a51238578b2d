//! Exactly-once tiering: the tier worker's node is killed (kill -9) between uploading and
//! committing to Iceberg, and between committing and proposing the COMMITTED watermark. A
//! new tier worker takes over; afterwards the Iceberg table holds every row exactly once.

mod common;

use std::collections::BTreeSet;

use arka::client::WriteItem;
use arka::durability::Level;
use common::{data, eventually, lsns_at, Cluster, DEADLINE};
use serde_json::{json, Value};

async fn write(cluster: &Cluster, seqs: std::ops::Range<i64>, level: Level) -> Vec<u64> {
    let writes: Vec<WriteItem> = seqs
        .map(|s| WriteItem::plain(data::batch(1, s, 3)))
        .collect();
    let n = writes.len();
    let acks = cluster
        .client(1)
        .await
        .write_all("events", writes, level)
        .await
        .expect("write");
    let lsns = lsns_at(&acks, level);
    assert_eq!(lsns.len(), n, "{acks:?}");
    lsns
}

async fn tier_worker(cluster: &Cluster) -> Option<u64> {
    cluster.status(1).await?["tier_worker"].as_u64()
}

async fn kill_tier_worker_at(stage: &str) {
    let mut cluster = Cluster::start_tiered(3, None, 500, "").await;
    let mut lsns = write(&cluster, 0..5, Level::Committed).await;
    let worker = cluster.follower_tier_worker(1).await;

    cluster
        .client(worker)
        .await
        .action("inject_fault", &json!({ "tier_pause": stage }))
        .await
        .expect("pause the tier worker");
    // OBJECT_STORAGE is reached before the worker stops: the files are uploaded.
    lsns.extend(write(&cluster, 5..10, Level::ObjectStorage).await);
    eventually("the tier worker to stop at the stage", DEADLINE, || async {
        let status = cluster.status(worker).await?;
        (status["tier"]["paused_at"] == stage).then_some(())
    })
    .await;
    // The crash window: Iceberg holds the first writes only before the commit, all of them
    // after it; the COMMITTED watermark is behind in both cases.
    let warehouse = format!("{}/warehouse", cluster.local_store_url());
    let in_iceberg = if stage == "before_commit" { 5 } else { 10 };
    eventually(
        "iceberg to hold the writes of the crash window",
        DEADLINE,
        || async {
            let (_, rows) = cluster.iceberg_rows(&warehouse, "events", &[]);
            (rows.len() == in_iceberg * 3).then_some(())
        },
    )
    .await;
    let committed = cluster.status(1).await.expect("status")["committed_lsn"].as_u64();
    assert!(committed < lsns.last().copied(), "COMMITTED is behind");
    cluster.kill9(worker);

    // One flush, sent while the dead worker is still designated, follows the designation to
    // the successor and answers once the range is committed there.
    let last = *lsns.last().expect("lsn");
    let flushed = cluster
        .client(1)
        .await
        .action("flush", &Value::Null)
        .await
        .expect("the flush follows the tier worker");
    assert!(flushed["committed_lsn"].as_u64() >= Some(last), "{flushed}");
    let successor = tier_worker(&cluster).await.expect("a tier worker");
    assert_ne!(successor, worker, "{flushed}");

    // The killed node comes back as an ordinary member; tiering goes on.
    cluster.spawn(worker);
    lsns.extend(write(&cluster, 10..15, Level::Committed).await);

    let (_, rows) = cluster.iceberg_rows(&warehouse, "events", &[]);
    let keys: Vec<(i64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["seq"].as_i64().expect("seq"),
                r["payload"].as_str().expect("payload").to_string(),
            )
        })
        .collect();
    let distinct: BTreeSet<&(i64, String)> = keys.iter().collect();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "no row is committed twice (successor {successor})"
    );
    assert_eq!(keys.len(), 15 * 3, "every row is committed");
    let committed_lsns: BTreeSet<u64> = rows
        .iter()
        .map(|r| r["_lsn"].as_u64().expect("_lsn"))
        .collect();
    assert_eq!(
        committed_lsns,
        lsns.into_iter().collect(),
        "at the acked LSNs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_between_upload_and_commit() {
    kill_tier_worker_at("before_commit").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_between_commit_and_watermark() {
    kill_tier_worker_at("before_watermark").await;
}

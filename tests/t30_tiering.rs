//! Tiering on the embedded defaults (local filesystem, SQLite catalog): writes reach
//! OBJECT_STORAGE and COMMITTED, PyIceberg reads the same rows back, `flush` commits at
//! once, and after the WAL is purged every node (also one that joins later) reads the whole
//! table back from the Parquet files.

mod common;

use std::collections::BTreeMap;

use arka::client::WriteItem;
use arka::durability::Level;
use arrow::record_batch::RecordBatch;
use common::{data, eventually, lsns_at, read_all, Cluster, DEADLINE};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn committed_writes_read_back_with_pyiceberg() {
    let cluster = Cluster::start_tiered(3, None, 500, "").await;
    let leader = cluster.client(1).await;
    let first: Vec<WriteItem> = (0..10)
        .map(|s| WriteItem::plain(data::batch(1, s, 1 + s as usize % 4)))
        .collect();
    let mut written: Vec<RecordBatch> = first.iter().map(|w| w.batch.clone()).collect();
    let acks = leader
        .write_all("events", first, Level::Committed)
        .await
        .expect("write");
    let replicated = lsns_at(&acks, Level::Replicated);
    assert_eq!(replicated.len(), 10, "{acks:?}");
    assert_eq!(lsns_at(&acks, Level::ObjectStorage), replicated);
    assert_eq!(lsns_at(&acks, Level::Committed), replicated);

    // Schema evolution: a nullable column added at the end is carried over to Iceberg.
    let second: Vec<WriteItem> = (10..13)
        .map(|s| WriteItem::plain(data::evolved_batch(s)))
        .collect();
    written.extend(second.iter().map(|w| w.batch.clone()));
    let acks2 = leader
        .write_all("events", second, Level::Committed)
        .await
        .expect("write evolved");
    let mut lsns = replicated.clone();
    lsns.extend(lsns_at(&acks2, Level::Committed));
    assert_eq!(lsns.len(), 13);
    let last = *lsns.last().expect("lsn");

    let status = cluster.status(1).await.expect("status");
    assert!(status["committed_lsn"].as_u64() >= Some(last), "{status}");
    assert!(status["s3_lsn"].as_u64() >= Some(last), "{status}");
    cluster.follower_tier_worker(1).await;

    let expected = data::rows_of(&lsns.iter().copied().zip(written).collect::<Vec<_>>());
    let warehouse = format!("{}/warehouse", cluster.local_store_url());
    let (snapshot_lsn, rows) = cluster.iceberg_rows(&warehouse, "events", &[]);
    assert!(snapshot_lsn >= last, "arka.lsn {snapshot_lsn} < {last}");
    assert_eq!(rows, expected, "PyIceberg reads what was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn flush_commits_at_once_and_reports_watermarks() {
    // A commit interval far beyond the test: only `flush` can commit.
    let cluster = Cluster::start_tiered(3, None, 3_600_000, "").await;
    let leader = cluster.client(1).await;
    let writes: Vec<WriteItem> = (0..5)
        .map(|s| WriteItem::plain(data::batch(1, s, 2)))
        .collect();
    let acks = leader
        .write_all("events", writes, Level::ObjectStorage)
        .await
        .expect("write");
    let last = *lsns_at(&acks, Level::ObjectStorage).last().expect("lsn");
    // Flush through a follower: it is sent on to the tier worker.
    let flushed = cluster
        .client(3)
        .await
        .action("flush", &Value::Null)
        .await
        .expect("flush");
    assert!(flushed["committed_lsn"].as_u64() >= Some(last), "{flushed}");
    assert!(flushed["s3_lsn"].as_u64() >= Some(last), "{flushed}");
    let warehouse = format!("{}/warehouse", cluster.local_store_url());
    let (_, rows) = cluster.iceberg_rows(&warehouse, "events", &[]);
    assert_eq!(rows.len(), 10, "every row is in Iceberg right after flush");
}

const RETENTION_BYTES: u64 = 65536;

#[tokio::test(flavor = "multi_thread")]
async fn purged_ranges_are_read_from_object_storage() {
    let mut cluster = Cluster::start_trimming(3, RETENTION_BYTES, 3_600_000).await;
    let leader = cluster.client(1).await;
    let mut written = Vec::new();
    for round in 0..4 {
        let writes: Vec<WriteItem> = (0..50)
            .map(|s| WriteItem::plain(data::batch(round, s, 20)))
            .collect();
        written.extend(writes.iter().map(|w| w.batch.clone()));
        leader
            .write_all("events", writes, Level::Replicated)
            .await
            .expect("write");
    }
    let flushed = leader.action("flush", &Value::Null).await.expect("flush");
    let committed = flushed["committed_lsn"].as_u64().expect("committed");

    // Every node purges down to its retention bound.
    for id in 1..=3 {
        eventually("the WAL to be trimmed", DEADLINE, || async {
            let status = cluster.status(id).await?;
            let tier = &status["tier"];
            let bytes = tier["wal_bytes"].as_u64()?;
            let first = tier["wal_first_index"].as_u64()?;
            assert_eq!(
                tier["retention"]["bytes"], RETENTION_BYTES,
                "replicated setting"
            );
            (first > 1 && bytes <= RETENTION_BYTES).then_some(())
        })
        .await;
    }

    let (_, follower) = cluster
        .client(2)
        .await
        .read(&read_all("events", committed))
        .await
        .expect("read");
    let lsns: Vec<u64> = follower.iter().map(|(l, _)| *l).collect();
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "LSN order");
    let got: Vec<RecordBatch> = follower.into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        got, written,
        "a follower reads the whole table back as written"
    );

    // A node that joins after the purge installs a snapshot and reads old ranges from
    // object storage.
    let joined = cluster.join_process();
    let from_new: BTreeMap<u64, RecordBatch> =
        eventually("the new node to serve", DEADLINE, || {
            let cluster = &cluster;
            async move {
                let ticket = read_all("events", committed);
                let client = arka::client::Client::connect(&cluster.addr(joined))
                    .await
                    .ok()?;
                client
                    .read(&ticket)
                    .await
                    .ok()
                    .map(|(_, b)| b.into_iter().collect())
            }
        })
        .await;
    let got: Vec<RecordBatch> = from_new.into_values().collect();
    assert_eq!(got, written, "the joined node reads the whole table");
}

/// Under writes that never pause, the tier worker still commits on its interval: it uploads
/// what was applied when a pass began and then commits, instead of uploading new ranges for
/// as long as they keep arriving.
#[tokio::test(flavor = "multi_thread")]
async fn commits_keep_coming_under_sustained_load() {
    // Small ranges: each upload covers a few writes, so the writer keeps ahead of it.
    let cluster = Cluster::start_tiered(3, None, 300, "tier-range-bytes-max = 2048\n").await;
    let leader = cluster.client(1).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut first_tx = Some(first_tx);
            let started = std::time::Instant::now();
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < DEADLINE {
                let writes: Vec<WriteItem> = (0..20)
                    .map(|s| WriteItem::plain(data::batch(round, s, 4)))
                    .collect();
                let acks = leader
                    .write_all("events", writes, Level::Replicated)
                    .await
                    .expect("write");
                if let Some(tx) = first_tx.take() {
                    let _ = tx.send(*lsns_at(&acks, Level::Replicated).last().expect("acked"));
                }
                round += 1;
            }
        })
    };
    let first_round_lsn = first_rx.await.expect("the first round is acked");
    eventually(
        "COMMITTED to pass the first writes while the load goes on",
        DEADLINE,
        || async {
            let committed = cluster.status(1).await?["committed_lsn"].as_u64()?;
            (committed >= first_round_lsn).then_some(())
        },
    )
    .await;
    assert!(!writer.is_finished(), "the load was still running");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("writer");
}

//! `drop_table` leaves nothing behind: a repeat of an idempotent write whose table was
//! dropped since is `NOT_FOUND` (the seq stays used), on every node and after a restart; the
//! tier worker deletes the table's Iceberg table and Parquet files, and a drop it had not
//! finished when it was killed is finished by whoever is tier worker next.

mod common;

use std::path::PathBuf;

use arka::client::{ClientError, WriteItem};
use arka::durability::Level;
use common::{data, eventually, lsns_at, read_all, Cluster, DEADLINE};
use serde_json::json;
use tonic::Code;

/// Writes seqs of `producer` to `table` at `level` through node `via`; their LSNs.
async fn write_seqs(
    cluster: &Cluster,
    via: u64,
    table: &str,
    producer: &str,
    seqs: std::ops::Range<i64>,
    level: Level,
) -> Result<Vec<u64>, ClientError> {
    let writes: Vec<WriteItem> = seqs
        .map(|s| WriteItem::idempotent(data::batch(1, s, 3), producer, s))
        .collect();
    let client = cluster.client(via).await;
    let acks = client.write_all(table, writes, level).await?;
    Ok(lsns_at(&acks, level))
}

/// The Parquet range files of `table` in the cluster's local object store.
fn range_files(cluster: &Cluster, table: &str) -> Vec<PathBuf> {
    let dir = cluster.dir.path().join("objects/data").join(table);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries.filter_map(|e| e.ok().map(|e| e.path())).collect()
}

/// The files below the Iceberg table locations of `table` (its metadata, of every
/// incarnation).
fn iceberg_files(cluster: &Cluster, table: &str) -> usize {
    let dir = cluster
        .dir
        .path()
        .join("objects/warehouse/arka")
        .join(table);
    walk(&dir)
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                1
            }
        })
        .sum()
}

fn expect_dropped_since(result: Result<Vec<u64>, ClientError>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(err.code(), Some(Code::NotFound), "{what}: {err}");
    assert!(err.to_string().contains("dropped since"), "{what}: {err}");
}

async fn drop_table(cluster: &Cluster, via: u64, table: &str) {
    let dropped = (cluster.client(via).await)
        .action("drop_table", &json!({ "name": table }))
        .await
        .expect("drop_table");
    assert_eq!(dropped["dropped"], true, "{dropped}");
}

/// Until every node answers that `table` does not exist.
async fn wait_gone_everywhere(cluster: &Cluster, table: &str) {
    for id in cluster.running() {
        eventually(&format!("{table} gone on node {id}"), DEADLINE, || async {
            let read = cluster.client(id).await.read(&read_all(table, 0)).await;
            matches!(read, Err(e) if e.code() == Some(Code::NotFound)).then_some(())
        })
        .await;
    }
}

async fn lake_drops_pending(cluster: &Cluster, id: u64) -> Option<u64> {
    cluster.status(id).await?["tier"]["lake_drops_pending"].as_u64()
}

/// Until the lake holds nothing of `table` and no node lists a drop still to do.
async fn wait_lake_data_deleted(cluster: &Cluster, table: &str) {
    eventually(
        "the dropped table's lake data deleted",
        DEADLINE,
        || async {
            for id in cluster.running() {
                if lake_drops_pending(cluster, id).await? != 0 {
                    return None;
                }
            }
            let gone = !cluster.iceberg_has_table(table)
                && range_files(cluster, table).is_empty()
                && iceberg_files(cluster, table) == 0;
            gone.then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeat_after_a_drop_is_not_found_and_the_lake_data_goes() {
    let mut cluster = Cluster::start_tiered(3, None, 300, "").await;
    let control = cluster.write_control().await;
    let old = write_seqs(&cluster, 1, "gone", "p", 0..3, Level::Committed)
        .await
        .expect("writes");
    assert_eq!(old.len(), 3);
    assert!(cluster.iceberg_has_table("gone"));
    assert!(!range_files(&cluster, "gone").is_empty());

    drop_table(&cluster, 1, "gone").await;
    expect_dropped_since(
        write_seqs(&cluster, 1, "gone", "p", 1..2, Level::Replicated).await,
        "a repeat once its table is dropped",
    );
    wait_gone_everywhere(&cluster, "gone").await;
    wait_lake_data_deleted(&cluster, "gone").await;

    // The table made again holds only what is written to it now; a repeat of a write of the
    // old table is still refused, and the producer goes on where it was.
    let new = write_seqs(&cluster, 1, "gone", "p", 3..5, Level::Committed)
        .await
        .expect("writes to the new table");
    expect_dropped_since(
        write_seqs(&cluster, 1, "gone", "p", 2..3, Level::Replicated).await,
        "a repeat of a write of the table dropped before it was made again",
    );
    let (_, rows) = cluster.iceberg_rows(
        &format!("{}/warehouse", cluster.local_store_url()),
        "gone",
        &[],
    );
    let lsns: Vec<u64> = rows.iter().filter_map(|r| r["_lsn"].as_u64()).collect();
    assert_eq!(lsns.len(), 2 * 3, "{rows:?}");
    assert!(lsns.iter().all(|l| new.contains(l)), "{lsns:?} vs {new:?}");

    // Every node decides the same from its own state, also after a restart.
    let leader = cluster.kill9_all_and_restart().await;
    expect_dropped_since(
        write_seqs(&cluster, leader, "gone", "p", 0..1, Level::Replicated).await,
        "a repeat after a restart",
    );
    let repeat = write_seqs(&cluster, leader, "gone", "p", 4..5, Level::Replicated)
        .await
        .expect("a repeat of a write of the table as it is");
    assert_eq!(repeat, new[1..].to_vec(), "answered with the original LSN");
    for id in cluster.running() {
        assert_eq!(cluster.seqs_on(id, "gone", new[1]).await, vec![3, 4]);
    }
    cluster.assert_control_everywhere(control).await;
}

/// Every node is killed while the tier worker is stopped at `stage`: before it deleted
/// anything, or after it deleted everything but before it reported the drop done. Every node
/// takes a snapshot there first, so the drop still to do comes back from the snapshot.
async fn tier_worker_killed_while_dropping(stage: &str) {
    let mut cluster = Cluster::start_tiered(3, None, 300, "").await;
    let control = cluster.write_control().await;
    write_seqs(&cluster, 1, "gone", "p", 0..3, Level::Committed)
        .await
        .expect("writes");
    let worker = cluster.follower_tier_worker(1).await;
    (cluster.client(worker).await)
        .action("inject_fault", &json!({ "tier_pause": stage }))
        .await
        .expect("pause the tier worker");

    drop_table(&cluster, 1, "gone").await;
    eventually("the tier worker to stop at the stage", DEADLINE, || async {
        let status = cluster.status(worker).await?;
        (status["tier"]["paused_at"] == stage).then_some(())
    })
    .await;
    let deleted = stage == "before_lake_drop_report";
    assert_eq!(cluster.iceberg_has_table("gone"), !deleted);
    assert_eq!(range_files(&cluster, "gone").is_empty(), deleted);
    for id in cluster.running() {
        assert_eq!(lake_drops_pending(&cluster, id).await, Some(1), "node {id}");
    }
    cluster.snapshot_every_node().await;

    let leader = cluster.kill9_all_and_restart().await;
    wait_lake_data_deleted(&cluster, "gone").await;
    expect_dropped_since(
        write_seqs(&cluster, leader, "gone", "p", 2..3, Level::Replicated).await,
        "a repeat after the restart",
    );
    wait_gone_everywhere(&cluster, "gone").await;
    cluster.assert_control_everywhere(control).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tier_worker_killed_before_deleting_a_dropped_tables_lake_data() {
    tier_worker_killed_while_dropping("before_lake_drop").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tier_worker_killed_before_reporting_a_dropped_tables_lake_data_deleted() {
    tier_worker_killed_while_dropping("before_lake_drop_report").await;
}

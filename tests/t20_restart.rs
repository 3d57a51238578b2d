//! Crashes: every write acknowledged at REPLICATED survives kill -9 of any nodes; writes
//! acknowledged only at MEMORY/LOCAL_DISK that a new leader overwrote are reported ABORTED;
//! idempotent retries after a failover write nothing twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use arka::client::{Ack, Client, WriteItem};
use arka::durability::Level;
use common::crash::{acks_until_replicated, replicated_by_seq, restart_all_and_read};
use common::{data, eventually, read_all, Cluster, DEADLINE};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A cluster whose followers were killed after `table` was created: the leader (node 1) can
/// still accept writes, but none can reach REPLICATED.
async fn leader_without_followers(table: &str) -> (Cluster, Client) {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.client(1).await;
    let first = vec![WriteItem::plain(data::batch(0, 0, 1))];
    leader
        .write_all(table, first, Level::Replicated)
        .await
        .expect("create the table");
    cluster.kill9(2);
    cluster.kill9(3);
    (cluster, leader)
}

/// Brings the killed followers back (without the old leader's unreplicated writes); once they
/// elect a leader among themselves, it writes `count` batches to `table`. Returns the new
/// leader's client and the highest LSN it wrote.
async fn followers_move_on(cluster: &mut Cluster, table: &str, count: i64) -> (Client, u64) {
    cluster.spawn(2);
    cluster.spawn(3);
    let leader = cluster.wait_for_leader_among(&[2, 3]).await;
    let client = cluster.client(leader).await;
    let writes = (0..count)
        .map(|s| WriteItem::plain(data::batch(2, s, 1)))
        .collect();
    let acks = client
        .write_all(table, writes, Level::Replicated)
        .await
        .expect("write");
    let max = acks.iter().map(|a| a.lsn).max().expect("lsn");
    (client, max)
}

#[tokio::test(flavor = "multi_thread")]
async fn replicated_writes_survive_kill9_of_every_node() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client(1).await;
    let writes = (0..50)
        .map(|s| WriteItem::idempotent(data::batch(1, s, 3), "p", s))
        .collect();
    let acks = client
        .write_all("durable", writes, Level::Replicated)
        .await
        .expect("write");
    let acked = replicated_by_seq(&acks);
    assert_eq!(acked.len(), 50);

    for id in 1..=3 {
        cluster.kill9(id);
    }
    let max = *acked.values().max().expect("lsn");
    for (id, got) in restart_all_and_read(&mut cluster, "durable", max).await {
        assert_eq!(
            got.by_seq, acked,
            "node {id}: every acked write is back at its LSN"
        );
        assert_eq!(got.rows, 150, "node {id}: nothing more, nothing twice");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicated_writes_survive_kill9_of_every_node_mid_stream_across_segment_rolls() {
    // Segments of 16 KiB: the log rolls over every few writes, so the kill finds appends
    // handed to the WAL flusher and not yet written, and new segments not yet published.
    let mut cluster = Cluster::start_with_config(3, "segment-bytes-max = 16384\n").await;
    let client = cluster.client(1).await;
    let writes: Vec<WriteItem> = (0..3000)
        .map(|s| WriteItem::idempotent(data::batch(3, s, 20), "p3", s))
        .collect();
    let mut acks = Box::pin(
        client
            .write_stream("rolled", futures::stream::iter(writes), Level::Replicated)
            .await
            .expect("open stream"),
    );
    let before = acks_until_replicated(&mut acks, 500).await;
    for id in 1..=3 {
        cluster.kill9(id);
    }
    drop(acks);
    let acked = replicated_by_seq(&before);
    assert!(acked.len() < 3000, "the kill came mid-stream");

    let max = *acked.values().max().expect("lsn");
    for (id, got) in restart_all_and_read(&mut cluster, "rolled", max).await {
        assert_eq!(got.by_seq.len(), got.writes, "node {id}: no write twice");
        for (seq, lsn) in &acked {
            assert_eq!(
                got.by_seq.get(seq),
                Some(lsn),
                "node {id}: acked write {seq} is back at its LSN"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_kill9_mid_stream_then_idempotent_retry_on_the_new_leader() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client(1).await;
    let writes: Vec<WriteItem> = (0..300)
        .map(|s| WriteItem::idempotent(data::batch(7, s, 2), "producer-7", s))
        .collect();
    let mut acks_stream = Box::pin(
        client
            .write_stream(
                "failover",
                futures::stream::iter(writes.clone()),
                Level::Replicated,
            )
            .await
            .expect("open stream"),
    );
    let mut before: Vec<Ack> = Vec::new();
    let mut killed = false;
    while let Some(item) = acks_stream.next().await {
        match item {
            Ok(batch) => before.extend(batch),
            Err(e) => {
                assert!(killed, "the stream fails only after the kill: {e}");
                break;
            }
        }
        if !killed && replicated_by_seq(&before).len() >= 50 {
            cluster.kill9(1);
            killed = true;
        }
    }
    assert!(killed, "the leader was killed mid-stream");
    let acked_before = replicated_by_seq(&before);

    let leader = cluster.wait_for_leader_among(&[2, 3]).await;
    let new_leader = cluster.client(leader).await;
    // The producer resends every write it has not seen REPLICATED; resending all is the
    // harshest case and must be just as exact.
    let acks = new_leader
        .write_all("failover", writes, Level::Replicated)
        .await
        .expect("retry");
    let after = replicated_by_seq(&acks);
    assert_eq!(after.len(), 300, "every write is acked on the new leader");
    for (seq, lsn) in &acked_before {
        assert_eq!(
            after.get(seq),
            Some(lsn),
            "seq {seq} keeps the LSN it was acked with"
        );
    }
    let max = *after.values().max().expect("lsn");
    let (_, batches) = new_leader
        .read(&read_all("failover", max))
        .await
        .expect("read");
    let seqs: Vec<i64> = data::keys(batches.iter().map(|(_, b)| b))
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let unique: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(
        seqs.len(),
        600,
        "each of the 300 writes (2 rows each) is in the table once"
    );
    assert_eq!(unique, (0..300).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_acked_writes_overwritten_by_a_new_leader_are_reported_aborted() {
    // Both followers crash: the leader's writes reach MEMORY and LOCAL_DISK only.
    let (mut cluster, old_leader) = leader_without_followers("lost").await;
    let (tx, rx) = mpsc::channel(16);
    let mut acks = Box::pin(
        old_leader
            .write_stream("lost", ReceiverStream::new(rx), Level::Replicated)
            .await
            .expect("open stream"),
    );
    for s in 1..=5 {
        tx.send(WriteItem::idempotent(data::batch(1, s, 1), "doomed", s))
            .await
            .expect("send");
    }
    let mut unreplicated = BTreeMap::new();
    while unreplicated.len() < 5 {
        let batch = tokio::time::timeout(DEADLINE, acks.next())
            .await
            .expect("acks arrive")
            .expect("stream open")
            .expect("acks");
        for ack in batch {
            assert!(
                ack.level < Level::Replicated,
                "no quorum, no REPLICATED: {ack:?}"
            );
            unreplicated.insert(ack.seq.expect("seq"), ack.lsn);
        }
    }
    let first_lost = *unreplicated.values().min().expect("lsn");

    // The old leader stalls; the followers come back without those writes and elect a new
    // leader, which writes other data at those LSNs.
    cluster.pause(1);
    let (new_leader, max) = followers_move_on(&mut cluster, "lost", 10).await;
    assert!(
        max >= *unreplicated.values().max().expect("lsn"),
        "the new leader reused the LSNs"
    );

    // The old leader comes back, learns it was deposed and drops its unreplicated tail: the
    // client holding MEMORY acks is told ABORTED, naming the first lost LSN.
    cluster.resume(1);
    let error = tokio::time::timeout(DEADLINE, async {
        loop {
            match acks.next().await {
                Some(Ok(batch)) => assert!(
                    batch.iter().all(|a| a.level < Level::Replicated),
                    "{batch:?}"
                ),
                Some(Err(e)) => return e,
                None => panic!("the stream ended without an error"),
            }
        }
    })
    .await
    .expect("the client is told in time");
    assert_eq!(error.code(), Some(tonic::Code::Aborted), "{error}");
    assert!(
        error.to_string().contains(&format!("lsn {first_lost}")),
        "{error}"
    );
    drop(tx);

    // None of the lost writes is in the table; retrying them writes each once.
    let (_, batches) = new_leader.read(&read_all("lost", max)).await.expect("read");
    let writers: BTreeSet<i64> = data::keys(batches.iter().map(|(_, b)| b))
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    assert!(!writers.contains(&1), "lost writes are not in the table");
    let retry = (1..=5)
        .map(|s| WriteItem::idempotent(data::batch(1, s, 1), "doomed", s))
        .collect();
    let acks = new_leader
        .write_all("lost", retry, Level::Replicated)
        .await
        .expect("retry");
    let retried = replicated_by_seq(&acks);
    assert_eq!(retried.len(), 5);
    eventually("old leader follows again", DEADLINE, || async {
        let status = cluster.status(1).await?;
        (status["role"] == "follower").then_some(())
    })
    .await;

    // Every node, the old leader too (whose in-memory log tail held the cut writes), reads
    // the same table: the new leader's writes at the reused LSNs, then the retries.
    let last = retried.values().copied().max().expect("lsn");
    let (_, expected) = new_leader
        .read(&read_all("lost", last))
        .await
        .expect("read");
    let expected_lsns: Vec<u64> = expected.iter().map(|(l, _)| *l).collect();
    for id in 1..=3 {
        let (_, got) = cluster
            .client(id)
            .await
            .read(&read_all("lost", last))
            .await
            .expect("read");
        let lsns: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(lsns, expected_lsns, "node {id} holds the new leader's log");
        assert_eq!(
            data::keys(got.iter().map(|(_, b)| b)),
            data::keys(expected.iter().map(|(_, b)| b)),
            "node {id} returns the new leader's rows"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_of_a_killed_leader_learns_its_unreplicated_writes_were_aborted() {
    let (mut cluster, old_leader) = leader_without_followers("gone").await;
    let acks = old_leader
        .write_all(
            "gone",
            vec![WriteItem::idempotent(data::batch(1, 1, 1), "doomed", 1)],
            Level::LocalDisk,
        )
        .await
        .expect("write reaches LOCAL_DISK without a quorum");
    let lsn = acks.iter().map(|a| a.lsn).max().expect("lsn");

    // The leader dies with the write; the followers come back without it and move on.
    cluster.kill9(1);
    let (new_leader, _) = followers_move_on(&mut cluster, "gone", 5).await;

    let query = serde_json::json!({"last_known_lsn": lsn, "producer_id": "doomed", "seq": 1});
    let err = new_leader
        .action("get_durability_status", &query)
        .await
        .expect_err("lost");
    assert_eq!(err.code(), Some(tonic::Code::Aborted), "{err}");
    assert!(err.to_string().contains(&format!("lsn {lsn}")), "{err}");

    // A write that did survive is reported with its LSN and level.
    let retry = vec![WriteItem::idempotent(data::batch(1, 1, 1), "doomed", 1)];
    let acks = new_leader
        .write_all("gone", retry, Level::Replicated)
        .await
        .expect("retry");
    let retried = replicated_by_seq(&acks)[&1];
    let query = serde_json::json!({"last_known_lsn": retried, "producer_id": "doomed", "seq": 1});
    let status = new_leader
        .action("get_durability_status", &query)
        .await
        .expect("status");
    assert_eq!(status["lsn"], retried);
    assert_eq!(status["level"], "REPLICATED");
}

/// A leader whose disk lags: its followers make writes committed, it applies them from memory
/// and saves the commit index, while its log on disk holds none of them. Killed then, it
/// restarts at the end of the log it has (not at the commit index it saved, which its log
/// cannot reach) and gets the rest from the new leader.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_while_its_disk_lags_the_commit_index_restarts_with_every_write() {
    let mut cluster = Cluster::start(3).await;
    let lagging = cluster.wait_for_leader().await;
    let client = cluster.client(lagging).await;
    let write = |seq: i64| {
        let client = client.clone();
        async move {
            let one = vec![WriteItem::plain(data::batch(0, seq, 1))];
            let acks = client
                .write_all("lagging", one, Level::Replicated)
                .await
                .expect("write");
            acks.iter().map(|a| a.lsn).max().expect("lsn")
        }
    };
    write(0).await;
    // Its group commits now hold for longer than the test runs.
    client
        .action("inject_fault", &json!({ "wal_sync_delay_ms": 600_000 }))
        .await
        .expect("inject_fault");
    // The commit index is saved at most every 200 ms: writing for a second, each write
    // applied by the lagging node before the next, has it saved a few times.
    let started = std::time::Instant::now();
    let mut seq = 1;
    let mut last = 0;
    while started.elapsed() < std::time::Duration::from_secs(1) {
        last = write(seq).await;
        let applied = |status: Option<Value>| {
            status
                .and_then(|s| s["replicated_lsn"].as_u64())
                .filter(|applied| *applied >= last)
        };
        eventually("the lagging node applies the write", DEADLINE, || async {
            applied(cluster.status(lagging).await)
        })
        .await;
        seq += 1;
    }
    cluster.kill9(lagging);
    cluster.spawn(lagging);
    cluster.wait_for_leader().await;
    for id in 1..=3 {
        let seqs = cluster.seqs_on(id, "lagging", last).await;
        assert_eq!(
            seqs,
            (0..seq).collect::<Vec<_>>(),
            "node {id}: every write, once, in order"
        );
    }
}

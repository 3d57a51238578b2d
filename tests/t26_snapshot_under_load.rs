//! A snapshot taken while writes keep being applied is the state at exactly its log id: a
//! node that joins after the log was purged installs it, replays the rest, and ends with the
//! same catalog (rows, bytes, batches, schemas), the same producer dedup state and the same
//! data as the leader. Then every node is killed and restarted, and all of it is still equal.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arka::client::{ClusterClient, WriteItem};
use arka::durability::Level;
use arka::wire::ReadTicket;
use common::{data, eventually, Cluster, DEADLINE};
use serde_json::{json, Value};

const TABLES: [&str; 2] = ["left", "right"];

/// Writes idempotent batches to `table` until `stop`, and returns the seqs written. A batch
/// is sent again, to whoever leads, if leadership moves under the load.
async fn writer(seeds: Vec<String>, table: &'static str, stop: Arc<AtomicBool>) -> Vec<i64> {
    let producer = format!("writer-{table}");
    let mut seq = 0;
    let mut written = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let writes: Vec<WriteItem> = (seq..seq + 20)
            .map(|s| WriteItem::idempotent(data::batch(1, s, 10), &producer, s))
            .collect();
        eventually("a batch of writes to be replicated", DEADLINE, || {
            let (seeds, writes) = (seeds.clone(), writes.clone());
            async move {
                let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
                let leader = ClusterClient::connect(&seeds)
                    .await
                    .ok()?
                    .leader()
                    .await
                    .ok()?;
                leader
                    .write_all(table, writes, Level::Replicated)
                    .await
                    .ok()
            }
        })
        .await;
        written.extend(seq..seq + 20);
        seq += 20;
    }
    written
}

async fn action(cluster: &Cluster, id: u64, name: &str, body: Value) -> Value {
    eventually(&format!("{name} on node {id}"), DEADLINE, || async {
        cluster.client(id).await.action(name, &body).await.ok()
    })
    .await
}

/// What a node holds of the replicated state, as clients see it.
async fn state_of(cluster: &Cluster, id: u64, seqs: &[(&str, Vec<i64>)]) -> Value {
    let tables = action(cluster, id, "list_tables", Value::Null).await;
    let mut dedup = Vec::new();
    for (table, written) in seqs {
        // A sample across the run: enough to see a lost or doubled entry, few calls.
        let step = (written.len() / 40).max(1);
        for seq in written.iter().step_by(step) {
            let body = json!({"producer_id": format!("writer-{table}"), "seq": seq});
            let answer = action(cluster, id, "get_durability_status", body).await;
            dedup.push(answer["lsn"].clone());
        }
    }
    let mut rows = Vec::new();
    for table in TABLES {
        let ticket = ReadTicket {
            table: table.into(),
            with_lsn: Some(true),
            ..Default::default()
        };
        let (_, batches) = cluster.client(id).await.read(&ticket).await.expect("read");
        rows.push(data::rows_of(&batches));
    }
    json!({"tables": tables["tables"], "dedup": dedup, "rows": rows})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_taken_under_writes_gives_a_joining_node_the_leaders_state() {
    let mut cluster = Cluster::start_trimming(3, 65536, 0).await;
    let leader = cluster.client(1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = TABLES
        .into_iter()
        .map(|t| {
            let seeds = (1..=3).map(|id| cluster.addr(id)).collect();
            tokio::spawn(writer(seeds, t, stop.clone()))
        })
        .collect();

    // While the writers go on: tier, snapshot and purge, until node 1's log no longer starts
    // at the beginning.
    eventually("the leader to purge under load", DEADLINE * 2, || async {
        let _ = leader.action("flush", &Value::Null).await;
        let _ = leader.action("snapshot", &Value::Null).await;
        let status = cluster.status(1).await?;
        (status["tier"]["wal_first_index"].as_u64()? > 100).then_some(())
    })
    .await;
    let joined = cluster.join_process();
    eventually("the new node to install a snapshot", DEADLINE, || async {
        let status = cluster.status(joined).await?;
        (status["snapshot_lsn"].as_u64()? > 0).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut seqs = Vec::new();
    for (table, writer) in TABLES.into_iter().zip(writers) {
        seqs.push((table, writer.await.expect("writer")));
    }
    let last = cluster.status(1).await.expect("status")["replicated_lsn"]
        .as_u64()
        .expect("replicated");
    for id in [2, 3, joined] {
        eventually("every node to apply every write", DEADLINE, || async {
            let status = cluster.status(id).await?;
            (status["replicated_lsn"].as_u64()? >= last).then_some(())
        })
        .await;
    }
    // Tier everything, so that each node can read the ranges it purged or never had.
    action(&cluster, 1, "flush", Value::Null).await;

    let on_leader = state_of(&cluster, 1, &seqs).await;
    assert!(on_leader["dedup"]
        .as_array()
        .is_some_and(|d| d.iter().all(Value::is_u64)));
    for id in [2, 3, joined] {
        let got = state_of(&cluster, id, &seqs).await;
        assert!(got == on_leader, "node {id} holds the leader's state");
    }

    // Every in-memory structure is reported with its bound.
    let status = cluster.status(joined).await.expect("status");
    let state = &status["state"];
    assert!(state["index_entries"].as_u64() > Some(0), "{status}");
    assert!(
        state["dedup_entries"].as_u64() <= state["dedup_entries_max"].as_u64(),
        "{status}"
    );
    assert!(state["tiered_files"].as_u64() > Some(0), "{status}");
    let gossip = &status["gossip"];
    assert!(
        gossip["states"].as_u64() >= Some(joined),
        "every member is heard: {status}"
    );
    assert!(
        gossip["states"].as_u64() <= gossip["states_max"].as_u64(),
        "{status}"
    );

    // A restart of every node rebuilds the same state from snapshot files and the log.
    for id in 1..=joined {
        cluster.kill9(id);
    }
    for id in 1..=joined {
        cluster.spawn(id);
    }
    cluster.wait_for_leader().await;
    for id in 1..=joined {
        eventually("the node to apply every write again", DEADLINE, || async {
            let status = cluster.status(id).await?;
            (status["replicated_lsn"].as_u64()? >= last).then_some(())
        })
        .await;
        let got = state_of(&cluster, id, &seqs).await;
        assert!(got == on_leader, "node {id} after a restart of every node");
    }
}

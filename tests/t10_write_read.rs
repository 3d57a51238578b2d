//! Writes through the leader are read back identically from every node, in LSN order.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use arka::client::{Ack, ReadItem, WriteItem};
use arka::durability::Level;
use arka::wire::ReadTicket;
use common::{data, lsns_at, Cluster, DEADLINE};
use futures::StreamExt;

fn replicated(acks: &[Ack]) -> Vec<Ack> {
    acks.iter()
        .filter(|a| a.level == Level::Replicated)
        .cloned()
        .collect()
}

fn ticket(table: &str, min_lsn: u64) -> ReadTicket {
    ReadTicket {
        table: table.into(),
        min_lsn: Some(min_lsn),
        with_lsn: Some(true),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_the_leader_read_back_identically_from_every_node() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.client(1).await;
    let writes: Vec<WriteItem> = (0..20)
        .map(|s| WriteItem::plain(data::batch(1, s, 1 + s as usize % 5)))
        .collect();
    let expected: Vec<_> = writes.iter().map(|w| w.batch.clone()).collect();
    let acks = leader
        .write_all("events", writes, Level::Replicated)
        .await
        .expect("write");
    let done = replicated(&acks);
    assert_eq!(done.len(), 20, "every write reached REPLICATED: {acks:?}");
    let first_acks: Vec<&Ack> = acks.iter().filter(|a| !a.is_update).collect();
    assert_eq!(first_acks.len(), 20, "one first ack per write");
    let last_lsn = done.iter().map(|a| a.lsn).max().expect("lsn");

    for id in 1..=3 {
        let client = cluster.client(id).await;
        let (_, batches) = client
            .read(&ticket("events", last_lsn))
            .await
            .expect("read");
        let lsns: Vec<u64> = batches.iter().map(|(l, _)| *l).collect();
        let mut acked: Vec<u64> = done.iter().map(|a| a.lsn).collect();
        acked.sort_unstable();
        assert_eq!(lsns, acked, "node {id} returns the acked LSNs in order");
        for ((_, got), want) in batches.iter().zip(&expected) {
            assert_eq!(
                got.num_columns(),
                want.num_columns() + 1,
                "with_lsn adds _lsn"
            );
            let data_columns = got.project(&[0, 1, 2]).expect("project");
            assert_eq!(
                &data_columns, want,
                "node {id} returns the batch as written"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lsns_strictly_increase_across_tables_and_concurrent_writers() {
    let cluster = Cluster::start(3).await;
    let mut tasks = Vec::new();
    for writer in 0..4i64 {
        let client = cluster.client(1).await;
        let table = if writer % 2 == 0 { "even" } else { "odd" };
        tasks.push(tokio::spawn(async move {
            let producer = format!("writer-{writer}");
            let writes = (0..40)
                .map(|s| WriteItem::idempotent(data::batch(writer, s, 2), &producer, s))
                .collect();
            let acks = client
                .write_all(table, writes, Level::Replicated)
                .await
                .expect("write");
            // LSNs in write (seq) order.
            let by_seq: std::collections::BTreeMap<i64, u64> = acks
                .iter()
                .filter(|a| !a.is_update)
                .map(|a| (a.seq.expect("seq"), a.lsn))
                .collect();
            (table, by_seq.into_values().collect::<Vec<u64>>())
        }));
    }
    let mut all = BTreeSet::new();
    let mut per_table: std::collections::BTreeMap<&str, BTreeSet<u64>> = Default::default();
    for task in tasks {
        let (table, lsns) = task.await.expect("writer");
        assert_eq!(lsns.len(), 40);
        assert!(
            lsns.windows(2).all(|w| w[0] < w[1]),
            "a writer's LSNs rise in write order: {lsns:?}"
        );
        for lsn in &lsns {
            assert!(all.insert(*lsn), "LSN {lsn} given twice");
        }
        per_table.entry(table).or_default().extend(lsns);
    }
    let max = *all.iter().max().expect("lsns");
    let client = cluster.client(2).await;
    for (table, want) in per_table {
        let (_, batches) = client.read(&ticket(table, max)).await.expect("read");
        let got: Vec<u64> = batches.iter().map(|(l, _)| *l).collect();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "reads come in LSN order"
        );
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            want,
            "table {table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn min_lsn_gives_read_your_writes_on_a_follower() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.client(1).await;
    let follower = cluster.client(3).await;
    for s in 0..100 {
        let acks = leader
            .write_all(
                "ryw",
                vec![WriteItem::plain(data::batch(9, s, 1))],
                Level::Replicated,
            )
            .await
            .expect("write");
        let lsn = replicated(&acks)[0].lsn;
        let ticket = ReadTicket {
            from_lsn: Some(lsn),
            ..ticket("ryw", lsn)
        };
        let (_, batches) = follower.read(&ticket).await.expect("read");
        assert_eq!(
            batches.len(),
            1,
            "write {s} at {lsn} is visible on the follower at once"
        );
        assert_eq!(data::keys([&batches[0].1]), vec![(9, s)]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_tails_new_writes() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.client(1).await;
    let created = leader
        .write_all(
            "tail",
            vec![WriteItem::plain(data::batch(0, 0, 1))],
            Level::Replicated,
        )
        .await
        .expect("create the table");
    // Read-your-writes on a follower: it may not have applied the first write yet.
    let first = lsns_at(&created, Level::Replicated)[0];
    let follower = cluster.client(2).await;
    let ticket = format!(r#"{{"table": "tail", "follow": true, "min_lsn": {first}}}"#).into_bytes();
    let mut stream = Box::pin(follower.read_stream(ticket).await.expect("follow"));

    let writer = tokio::spawn(async move {
        for s in 1..=10 {
            leader
                .write_all(
                    "tail",
                    vec![WriteItem::plain(data::batch(0, s, 1))],
                    Level::Replicated,
                )
                .await
                .expect("write");
        }
    });
    let mut seen = Vec::new();
    let mut last_lsn = 0;
    while seen.len() < 11 {
        let item = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("a tailed write arrives in time")
            .expect("stream stays open")
            .expect("read item");
        if let ReadItem::Batch(lsn, batch) = item {
            assert!(lsn > last_lsn, "tailed batches come in LSN order");
            last_lsn = lsn;
            seen.extend(data::keys([&batch]));
        }
    }
    writer.await.expect("writer");
    assert_eq!(seen, (0..=10).map(|s| (0, s)).collect::<Vec<_>>());
    // The stream stays open for more: nothing more arrives while nothing is written.
    let more = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(more.is_err(), "follow keeps the stream open: {more:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_evolves_by_nullable_columns_and_old_batches_read_with_nulls() {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;

    let cluster = Cluster::start(3).await;
    let leader = cluster.client(1).await;
    leader
        .write_all(
            "evolve",
            vec![WriteItem::plain(data::batch(1, 0, 2))],
            Level::Replicated,
        )
        .await
        .expect("first schema");
    let old = data::batch(1, 1, 2);
    let mut columns = old.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![Some("a"), None])));
    let grown = RecordBatch::try_new(data::evolved_schema(), columns).expect("batch");
    let acks = leader
        .write_all(
            "evolve",
            vec![WriteItem::plain(grown.clone())],
            Level::Replicated,
        )
        .await
        .expect("grown schema is accepted");
    let last = acks.iter().map(|a| a.lsn).max().expect("lsn");

    let err = leader
        .write_all(
            "evolve",
            vec![WriteItem::plain(data::batch(1, 2, 1))],
            Level::Replicated,
        )
        .await
        .expect_err("the old schema is no longer the table's");
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");

    let (schema, batches) = cluster
        .client(3)
        .await
        .read(&ticket("evolve", last))
        .await
        .expect("read");
    let schema = schema.expect("schema");
    assert_eq!(schema.field(3).name(), "note");
    let first = &batches[0].1;
    assert_eq!(
        first.column(3).null_count(),
        2,
        "columns added later read as null"
    );
    assert_eq!(
        batches[1]
            .1
            .column(3)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8")
            .value(0),
        "a"
    );
    let seqs = batches[1]
        .1
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("seq");
    assert_eq!(seqs.value(0), 1);
}

/// A single-node cluster is its own quorum: nothing refreshes its leader's lease while it is
/// idle, and it once refused every write after half a lease without one.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_cluster_takes_writes_after_idling_past_its_lease() {
    let cluster = Cluster::start(1).await;
    // The lease in tests is the 800 ms election timeout; 2 s of uptime is past it.
    common::eventually(
        "the node to idle past its lease",
        common::DEADLINE,
        || async {
            let uptime = cluster.status(1).await?["uptime_seconds"].as_u64()?;
            (uptime >= 2).then_some(())
        },
    )
    .await;
    let writes = vec![arka::client::WriteItem::plain(common::data::batch(1, 0, 1))];
    cluster
        .client(1)
        .await
        .write_all("idle", writes, arka::durability::Level::Replicated)
        .await
        .expect("the idle single node takes the write");
}

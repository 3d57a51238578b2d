//! The client's Reader: reads spread over the live replicas, and `min_lsn` makes a read on a
//! follower see the write just acked.

mod common;

use std::collections::BTreeMap;

use arka::client::{ClientError, ClusterClient, Producer, ProducerConfig, WriteItem};
use arka::durability::Level;
use arrow::record_batch::RecordBatch;
use common::{data, eventually, Cluster, DEADLINE};
use futures::{Stream, StreamExt};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread")]
async fn reads_spread_over_replicas_and_read_your_writes_holds_on_followers() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let leader_location = cluster.addr(leader);
    let seeds: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    let client = ClusterClient::connect(&seeds).await.expect("connect");
    // The leader offers a replica for reads once gossip reports it alive: wait for all three,
    // so the spread below measures the reader, not the cluster's start-up.
    cluster
        .client(leader)
        .await
        .write_all(
            "warmup",
            vec![WriteItem::plain(data::batch(0, 0, 1))],
            Level::Replicated,
        )
        .await
        .expect("warm-up write");
    eventually("every replica offered for reads", DEADLINE, || async {
        (client.replicas("warmup").await.ok()?.len() == 3).then_some(())
    })
    .await;
    let producer = client
        .producer("ryw", ProducerConfig::new("ryw-writer"))
        .await
        .expect("producer");
    let reader = client.reader("ryw");

    // A small deterministic generator (xorshift) for the rows of each write.
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for seq in 0..1_000 {
        let rows = 1 + (next() % 5) as usize;
        let handle = producer
            .send(data::batch(6, seq, rows))
            .await
            .expect("send");
        let lsn = handle.lsn().await.expect("acked");
        let read = reader
            .read(Some(lsn), Some(lsn), Some(lsn))
            .await
            .expect("read");
        assert_eq!(
            read.batches.len(),
            1,
            "write {seq} at {lsn} read on {}",
            read.node
        );
        let (got_lsn, batch) = &read.batches[0];
        assert_eq!(*got_lsn, lsn);
        assert_eq!(batch.num_rows(), rows);
        assert!(data::keys([batch]).iter().all(|k| *k == (6, seq)));
        *served.entry(read.node).or_default() += 1;
    }
    producer.close().await.expect("close");

    assert_eq!(served.len(), 3, "every replica served reads: {served:?}");
    let on_followers: usize = served
        .iter()
        .filter(|(node, _)| **node != leader_location)
        .map(|(_, n)| n)
        .sum();
    assert!(
        on_followers >= 500,
        "most reads were served by followers: {served:?}"
    );
}

/// Writes `(8, seq)` for every seq of `seqs`, then takes batches from `tail` up to the one of
/// the last seq, each as its LSN and seq.
async fn write_then_tail<S>(
    producer: &Producer,
    tail: &mut S,
    seqs: std::ops::RangeInclusive<i64>,
) -> Vec<(u64, i64)>
where
    S: Stream<Item = Result<(u64, RecordBatch), ClientError>> + Unpin,
{
    let last = *seqs.end();
    for seq in seqs {
        producer.send(data::batch(8, seq, 1)).await.expect("send");
    }
    let mut got = Vec::new();
    while got.last().is_none_or(|(_, seq)| *seq != last) {
        let (lsn, batch) = timeout(DEADLINE, tail.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("batch");
        got.push((lsn, data::keys([&batch])[0].1));
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tail_delivers_every_write_in_order_and_survives_losing_a_replica() {
    let mut cluster = Cluster::start(3).await;
    let seeds: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    let client = ClusterClient::connect(&seeds).await.expect("connect");
    let producer = client
        .producer("tailed", ProducerConfig::new("tail-writer"))
        .await
        .expect("producer");
    let first = producer
        .send(data::batch(8, 0, 1))
        .await
        .expect("send")
        .lsn()
        .await
        .expect("acked");
    let mut tail = Box::pin(client.reader("tailed").tail(first));
    let mut seen = Vec::new();
    let expect_up_to = |seen: &mut Vec<(u64, i64)>, n: i64| {
        assert_eq!(seen.len() as i64, n + 1, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "LSN order");
        assert!(
            seen.iter().map(|(_, s)| *s).eq(0..=n),
            "each write once: {seen:?}"
        );
    };
    seen.extend(write_then_tail(&producer, &mut tail, 1..=20).await);
    expect_up_to(&mut seen, 20);

    let leader = cluster.wait_for_leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.kill9(follower);
    seen.extend(write_then_tail(&producer, &mut tail, 21..=40).await);
    expect_up_to(&mut seen, 40);
    producer.close().await.expect("close");
}

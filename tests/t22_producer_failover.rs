//! The Rust client's producer rides through a kill -9 of the leader, and through a leader
//! that stops answering without closing its connections (SIGSTOP), with no error and no
//! duplicate.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arka::client::{ClusterClient, ProducerConfig};
use arka::durability::Level;
use arka::wire::ReadTicket;
use common::{data, eventually, Cluster, DEADLINE};

const WRITES: i64 = 10_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_finishes_on_the_new_leader_after_kill_9_with_each_batch_once() {
    let mut cluster = Cluster::start(3).await;
    let seeds: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    let client = ClusterClient::connect(&seeds).await.expect("connect");
    let sent = Arc::new(AtomicI64::new(0));
    let producer = client
        .producer("failover", ProducerConfig::new("failover-writer"))
        .await
        .expect("producer");
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        let mut handles = Vec::new();
        for seq in 0..WRITES {
            let handle = producer
                .send(data::batch(2, seq, 1))
                .await
                .expect("no error reaches the caller");
            handles.push(handle);
            counter.store(seq + 1, Ordering::Relaxed);
        }
        producer.close().await.expect("close");
        let mut lsns = Vec::new();
        for handle in handles {
            lsns.push(handle.lsn().await.expect("every write gets its LSN"));
        }
        lsns
    });

    eventually("the producer is under way", DEADLINE, || async {
        (sent.load(Ordering::Relaxed) >= 2_000).then_some(())
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    cluster.kill9(leader);

    let lsns = writer.await.expect("writer");
    assert_eq!(lsns.len(), WRITES as usize);
    let distinct: BTreeSet<u64> = lsns.iter().copied().collect();
    assert_eq!(distinct.len(), lsns.len(), "every write has its own LSN");

    let survivor = cluster.wait_for_leader().await;
    let node = cluster.client(survivor).await;
    let ticket = ReadTicket {
        table: "failover".into(),
        min_lsn: distinct.last().copied(),
        ..Default::default()
    };
    let (_, batches) = node.read(&ticket).await.expect("read");
    let mut seqs: Vec<i64> = batches
        .iter()
        .flat_map(|(_, b)| data::keys([b]))
        .map(|(_, seq)| seq)
        .collect();
    assert_eq!(
        seqs.len(),
        WRITES as usize,
        "each batch is in the table once"
    );
    seqs.sort_unstable();
    assert!(seqs.iter().copied().eq(0..WRITES));
    let stored: BTreeSet<u64> = batches.iter().map(|(lsn, _)| *lsn).collect();
    assert_eq!(
        stored, distinct,
        "the table holds the writes at their acked LSNs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_moves_on_from_a_paused_leader_with_each_batch_once() {
    let cluster = Cluster::start(3).await;
    let seeds: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    let client = ClusterClient::connect(&seeds).await.expect("connect");
    let producer = client
        .producer("paused", ProducerConfig::new("paused-writer"))
        .await
        .expect("producer");
    let send = |seq| producer.send(data::batch(3, seq, 1));
    let first = send(0).await.expect("send");
    first.wait(Level::Replicated).await.expect("replicated");

    // The leader's process stops; its connections stay open and silent.
    let leader = cluster.wait_for_leader().await;
    cluster.pause(leader);
    let mut lsns = Vec::new();
    for seq in 1..4 {
        let handle = send(seq).await.expect("send");
        let acked = tokio::time::timeout(DEADLINE, handle.wait(Level::Replicated))
            .await
            .unwrap_or_else(|_| {
                panic!("write {seq} still waits on the paused leader after {DEADLINE:?}")
            });
        lsns.push(acked.expect("replicated by the new leader"));
    }
    cluster.resume(leader);
    producer.close().await.expect("close");

    let last = *lsns.last().expect("lsn");
    for id in 1..=3 {
        let seqs = cluster.seqs_on(id, "paused", last).await;
        assert_eq!(
            seqs,
            vec![0, 1, 2, 3],
            "node {id} holds each write once, in order"
        );
    }
}

//! SIGTERM stops a node cleanly: a leader hands leadership over before it stops, every node
//! exits 0 within 5 s, and a producer that writes all along (resending on error with its
//! producer id and seqs) loses no write and writes none twice, on any node.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arka::client::{ClusterClient, Producer, ProducerConfig};
use common::{data, eventually, Cluster, DEADLINE};
use tokio::time::Instant;

/// What a supervisor (systemd, Kubernetes) gives a node between SIGTERM and SIGKILL, at least.
const STOP_WITHIN: Duration = Duration::from_secs(5);
/// Acked writes between two stops, so that each stop happens under load.
const ACKS_BETWEEN_STOPS: usize = 200;
/// How often the producer sends a write.
const SEND_EVERY: Duration = Duration::from_millis(5);
const TABLE: &str = "steady";

/// `(seq, lsn, when the ack came)` of every acknowledged write.
type Acked = Arc<Mutex<Vec<(i64, u64, Instant)>>>;

/// Sends a write every [`SEND_EVERY`] until `stop`, recording each write's ack as it comes;
/// returns how many writes it sent. Any write the producer gives up on fails the test.
async fn write_steadily(producer: Producer, acked: Acked, stop: Arc<AtomicBool>) -> i64 {
    let mut waiting = Vec::new();
    let mut tick = tokio::time::interval(SEND_EVERY);
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let handle = producer
            .send(data::batch(1, sent, 1))
            .await
            .expect("the producer takes the write");
        sent += 1;
        let acked = acked.clone();
        waiting.push(tokio::spawn(async move {
            let lsn = handle.lsn().await.expect("every write is acknowledged");
            let seq = handle.seq();
            acked.lock().expect("acks").push((seq, lsn, Instant::now()));
        }));
    }
    producer.close().await.expect("close the producer");
    for wait in waiting {
        wait.await.expect("ack waiter");
    }
    sent
}

/// The longest time between two consecutive acks.
fn longest_gap(acked: &[(i64, u64, Instant)]) -> Duration {
    let mut at: Vec<Instant> = acked.iter().map(|(_, _, at)| *at).collect();
    at.sort_unstable();
    at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// The node a stopping leader says it handed leadership to.
fn handed_over_to(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("handed leadership over"))?;
    let to = line.split("to=").nth(1)?;
    to.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_to_each_node_in_turn_under_load_loses_and_repeats_no_write() {
    let mut cluster = Cluster::start(3).await;
    let seeds: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    let client = ClusterClient::connect(&seeds).await.expect("connect");
    let producer = client
        .producer(TABLE, ProducerConfig::new("steady-writer"))
        .await
        .expect("producer");
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_steadily(producer, acked.clone(), stop.clone()));

    let mut leaders_stopped = 0;
    for id in 1..=3 {
        let before = acked.lock().expect("acks").len();
        eventually("writes acked since the last stop", DEADLINE, || async {
            (acked.lock().expect("acks").len() >= before + ACKS_BETWEEN_STOPS).then_some(())
        })
        .await;
        let leader = cluster.wait_for_leader().await;
        let (exit, took) = cluster.sigterm(id).await;
        let log = cluster.log_of(id);
        assert!(
            exit.success() && took < STOP_WITHIN,
            "node {id} exits 0 within {STOP_WITHIN:?} of SIGTERM: it exited {exit} after {took:?}; its log:\n{log}"
        );
        println!(
            "node {id} (leader: {}) exited 0 after {took:?}",
            leader == id
        );
        if leader == id {
            leaders_stopped += 1;
            let successor = handed_over_to(&log)
                .unwrap_or_else(|| panic!("leader {id} handed leadership over; its log:\n{log}"));
            let others: Vec<u64> = (1..=3).filter(|n| *n != id).collect();
            assert_eq!(
                cluster.wait_for_leader_among(&others).await,
                successor,
                "the node leader {id} handed over to leads"
            );
        }
        cluster.spawn(id);
        cluster.wait_for_leader().await;
    }
    assert!(leaders_stopped >= 1, "a leader was among the nodes stopped");

    let before = acked.lock().expect("acks").len();
    eventually("writes acked after the last restart", DEADLINE, || async {
        (acked.lock().expect("acks").len() >= before + ACKS_BETWEEN_STOPS).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let sent = writer.await.expect("writer");
    let acked = acked.lock().expect("acks").clone();
    assert_eq!(
        acked.len(),
        sent as usize,
        "every write sent is acknowledged"
    );
    let by_seq: BTreeMap<i64, u64> = acked.iter().map(|(seq, lsn, _)| (*seq, *lsn)).collect();
    assert!(by_seq.keys().copied().eq(0..sent), "one ack per seq");
    let last = by_seq.values().copied().max().expect("an ack");
    for id in 1..=3 {
        let seqs = cluster.seqs_on(id, TABLE, last).await;
        assert!(
            seqs.iter().copied().eq(0..sent),
            "node {id} holds every acknowledged write once, in order ({} writes read, {sent} sent)",
            seqs.len()
        );
    }
    println!(
        "{sent} writes through 3 SIGTERMs; longest gap between two acks: {:?}",
        longest_gap(&acked)
    );
}

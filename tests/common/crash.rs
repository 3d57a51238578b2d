//! What crash tests share: the writes a stream acknowledged at REPLICATED, and every node
//! started again and read back.

use std::collections::BTreeMap;

use arka::client::Ack;
use arka::durability::Level;
use futures::{Stream, StreamExt};

use super::{data, read_all, Cluster, DEADLINE};

/// `seq -> lsn` of the writes that reached REPLICATED.
pub fn replicated_by_seq(acks: &[Ack]) -> BTreeMap<i64, u64> {
    acks.iter()
        .filter(|a| a.level == Level::Replicated)
        .map(|a| (a.seq.expect("seq"), a.lsn))
        .collect()
}

/// The acks of `stream` until `count` writes reached REPLICATED.
pub async fn acks_until_replicated<S, E>(stream: &mut S, count: usize) -> Vec<Ack>
where
    S: Stream<Item = Result<Vec<Ack>, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut acks: Vec<Ack> = Vec::new();
    while replicated_by_seq(&acks).len() < count {
        let batch = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("acks arrive")
            .expect("stream open")
            .expect("acks");
        acks.extend(batch);
    }
    acks
}

/// What one node holds of a table: `seq -> lsn` of the writes read, how many writes and rows.
pub struct ReadBack {
    pub by_seq: BTreeMap<i64, u64>,
    pub writes: usize,
    pub rows: usize,
}

/// Starts every node again (all were stopped) and reads `table` from each once it applied
/// `max`.
pub async fn restart_all_and_read(
    cluster: &mut Cluster,
    table: &str,
    max: u64,
) -> Vec<(u64, ReadBack)> {
    for id in 1..=3 {
        cluster.spawn(id);
    }
    cluster.wait_for_leader().await;
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let (_, batches) = cluster
            .client(id)
            .await
            .read(&read_all(table, max))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "read from node {id}: {e}; node logs:\n{}",
                    cluster.log_tails()
                )
            });
        let by_seq = batches
            .iter()
            .map(|(lsn, b)| (data::keys([b])[0].1, *lsn))
            .collect();
        let rows = batches.iter().map(|(_, b)| b.num_rows()).sum();
        let writes = batches.len();
        nodes.push((
            id,
            ReadBack {
                by_seq,
                writes,
                rows,
            },
        ));
    }
    nodes
}

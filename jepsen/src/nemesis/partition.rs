//! Network partitions between the nodes' hosts (the clients still reach every node), made
//! in the hosts' firewalls: the leader or a node at random cut off from the others (a
//! minority of one against the majority); a bridge, where two nodes cannot reach each other
//! but both reach the third; or a flapping cut of the leader or a node, healed and made
//! again every 0.3 to 1.5 s while the fault lasts. Healing removes every cut.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{leader_or_any, Nemesis, Rng};
use crate::cluster::Cluster;

/// How long a flapping cut stays made, or healed, at a time.
const FLAP: (Duration, Duration) = (Duration::from_millis(300), Duration::from_millis(1500));

#[derive(Default)]
pub struct Partition {
    /// The cuts made: each node with the nodes it is cut off from.
    cuts: Vec<(usize, Vec<usize>)>,
    flapping: bool,
}

impl Partition {
    fn cut(&self, cluster: &Cluster) -> anyhow::Result<()> {
        for (node, others) in &self.cuts {
            cluster.net.cut(*node, others)?;
        }
        Ok(())
    }

    fn heal(&self, cluster: &Cluster) -> anyhow::Result<()> {
        for (node, _) in &self.cuts {
            cluster.net.heal(*node)?;
        }
        Ok(())
    }
}

impl Nemesis for Partition {
    fn name(&self) -> &'static str {
        "partition"
    }

    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let (what, node) = leader_or_any(cluster, leader, rng);
            let nodes = cluster.nodes();
            let others: Vec<usize> = (1..=nodes).filter(|n| *n != node).collect();
            let mode = rng.below(3);
            self.flapping = mode == 2;
            let description = match mode {
                1 if nodes >= 3 => {
                    // `node` and the next one lose each other; the one after reaches both.
                    let peer = others[0];
                    self.cuts = vec![(node, vec![peer])];
                    format!("bridge: {what} (n{node}) and n{peer} cut off from each other only")
                }
                _ => {
                    self.cuts = vec![(node, others)];
                    let flapping = if self.flapping { "flapping: " } else { "" };
                    format!("{flapping}isolate {what} (n{node})")
                }
            };
            self.cut(cluster)?;
            Ok(description)
        })
    }

    fn hold<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        length: Duration,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let until = Instant::now() + length;
            let mut made = true;
            while self.flapping && Instant::now() < until {
                let spell = rng.between(FLAP.0, FLAP.1);
                tokio::time::sleep_until(until.min(Instant::now() + spell)).await;
                match made {
                    true => self.heal(cluster)?,
                    false => self.cut(cluster)?,
                }
                made = !made;
            }
            tokio::time::sleep_until(until).await;
            Ok(())
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.heal(cluster)?;
            self.cuts.clear();
            Ok(())
        })
    }
}

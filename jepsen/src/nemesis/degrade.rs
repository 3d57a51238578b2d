//! A bad network: the links of one node, of the leader or of every node drop a share of
//! their packets (5 or 20 %) and are throttled (to 2 or 10 Mbit/s, queueing packets for up
//! to 300 ms), clients' traffic included; restored when the fault ends.

use futures::future::BoxFuture;

use super::{Nemesis, Rng};
use crate::cluster::Cluster;

#[derive(Default)]
pub struct Degrade {
    degraded: Vec<usize>,
}

impl Nemesis for Degrade {
    fn name(&self) -> &'static str {
        "degrade"
    }

    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let nodes = cluster.nodes();
            let (what, targets) = match (rng.below(3), leader) {
                (0, _) => ("every node", (1..=nodes).collect()),
                (1, Some(leader)) => ("the leader", vec![leader]),
                _ => ("a node", vec![1 + rng.below(nodes as u64) as usize]),
            };
            let loss_percent = [5, 20][rng.below(2) as usize];
            let rate_kbit = [2_000, 10_000][rng.below(2) as usize];
            self.degraded = targets.clone();
            for node in &targets {
                cluster.net.degrade(*node, loss_percent, rate_kbit)?;
            }
            let names: Vec<String> = targets.iter().map(|n| format!("n{n}")).collect();
            Ok(format!(
                "{loss_percent}% loss and {} Mbit/s on the links of {what} ({})",
                rate_kbit / 1000,
                names.join(", ")
            ))
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            for node in self.degraded.drain(..) {
                cluster.net.restore(node)?;
            }
            Ok(())
        })
    }
}

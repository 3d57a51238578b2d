//! A bad network: the links of one node, of the leader or of every node drop a share of
//! their packets (5 or 20 %) and are throttled (to 2 or 10 Mbit/s, queueing packets for up
//! to 300 ms), clients' traffic included; restored when the fault ends.

use futures::future::BoxFuture;

use super::{every_leader_or_any, node_names, Nemesis, Rng};
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
            let (what, targets) = every_leader_or_any(cluster, leader, rng);
            let loss_percent = [5, 20][rng.below(2) as usize];
            let rate_kbit = [2_000, 10_000][rng.below(2) as usize];
            self.degraded = targets.clone();
            for node in &targets {
                cluster.net.degrade(*node, loss_percent, rate_kbit)?;
            }
            Ok(format!(
                "{loss_percent}% loss and {} Mbit/s on the links of {what} ({})",
                rate_kbit / 1000,
                node_names(&targets)
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

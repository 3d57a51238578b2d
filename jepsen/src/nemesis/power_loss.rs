//! Power loss: a node, the leader or every node at once loses every byte it wrote but had
//! not fsynced, then stops (SIGPWR, which a node started with fault injection takes as a
//! power loss at its WAL's file layer); restarted on what is left when the fault ends.
//! With `skip_fsync` the nodes' disks lie about their flushes and every power loss hits all
//! nodes at once: acknowledged writes are lost, which the checker must report.

use futures::future::BoxFuture;

use super::{Nemesis, Rng};
use crate::cluster::Cluster;

#[derive(Default)]
pub struct PowerLoss {
    /// Every fault takes down every node (the run's disks skip their fsyncs).
    every_node: bool,
    down: Vec<usize>,
}

impl PowerLoss {
    pub fn every_node_at_once() -> Self {
        Self {
            every_node: true,
            down: Vec::new(),
        }
    }
}

impl Nemesis for PowerLoss {
    fn name(&self) -> &'static str {
        "power-loss"
    }

    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let nodes = cluster.nodes();
            let every: Vec<usize> = (1..=nodes).collect();
            let (what, targets) = match (self.every_node, rng.below(3), leader) {
                (true, _, _) | (false, 0, _) => ("every node", every),
                (false, 1, Some(leader)) => ("the leader", vec![leader]),
                _ => ("a node", vec![1 + rng.below(nodes as u64) as usize]),
            };
            cluster.power_loss(&targets)?;
            let names: Vec<String> = targets.iter().map(|n| format!("n{n}")).collect();
            self.down = targets;
            Ok(format!("power loss of {what} ({})", names.join(", ")))
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            for node in self.down.drain(..) {
                cluster.spawn(node)?;
            }
            Ok(())
        })
    }
}

//! Power loss: a node, the leader or every node at once loses every byte it wrote but had
//! not fsynced, then stops (SIGPWR, which a node started with fault injection takes as a
//! power loss at its WAL's file layer); restarted on what is left when the fault ends.
//! With `skip_fsync` the nodes' disks lie about their flushes and every power loss hits all
//! nodes at once: acknowledged writes are lost, which the checker must report.

use futures::future::BoxFuture;

use super::{every_leader_or_any, node_names, Nemesis, Rng};
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
            let (what, targets) = if self.every_node {
                ("every node", (1..=cluster.nodes()).collect())
            } else {
                every_leader_or_any(cluster, leader, rng)
            };
            cluster.power_loss(&targets)?;
            let names = node_names(&targets);
            self.down = targets;
            Ok(format!("power loss of {what} ({names})"))
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

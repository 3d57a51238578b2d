//! Network partitions between the nodes' hosts (the clients still reach every node): the
//! leader cut off from the others, or one node at random (a minority on one side, the
//! majority on the other). Healing removes every cut.

use futures::future::BoxFuture;

use super::{leader_or_any, Nemesis, Rng};
use crate::cluster::Cluster;

#[derive(Default)]
pub struct Partition {
    cut: Option<usize>,
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
            let others: Vec<usize> = (1..=cluster.nodes()).filter(|n| *n != node).collect();
            cluster.net.cut(node, &others)?;
            self.cut = Some(node);
            Ok(format!("isolate {what} (n{node})"))
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some(node) = self.cut.take() {
                cluster.net.heal(node)?;
            }
            Ok(())
        })
    }
}

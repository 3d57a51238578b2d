//! kill -9: of one node at random, of the leader, or of a majority (the leader and another
//! node), restarted on their data when the fault ends.

use futures::future::BoxFuture;

use super::{node_names, Nemesis, Rng};
use crate::cluster::Cluster;

#[derive(Default)]
pub struct Kill {
    killed: Vec<usize>,
}

impl Nemesis for Kill {
    fn name(&self) -> &'static str {
        "kill"
    }

    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let nodes = cluster.nodes();
            let random = |rng: &mut Rng| 1 + rng.below(nodes as u64) as usize;
            let (what, targets) = match (rng.below(3), leader) {
                (0, Some(leader)) => ("the leader", vec![leader]),
                (1, Some(leader)) => {
                    let other = 1 + (leader + rng.below(nodes as u64 - 1) as usize) % nodes;
                    ("a majority", vec![leader, other])
                }
                _ => ("a node", vec![random(rng)]),
            };
            for node in &targets {
                cluster.kill9(*node);
            }
            let names = node_names(&targets);
            self.killed = targets;
            Ok(format!("kill -9 {what} ({names})"))
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            for node in self.killed.drain(..) {
                cluster.spawn(node)?;
            }
            Ok(())
        })
    }
}

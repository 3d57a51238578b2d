//! SIGSTOP of one node at random or of the leader, SIGCONT when the fault ends: a process
//! that stops answering without dying, as a long GC pause or a stalled VM does.

use futures::future::BoxFuture;

use super::{leader_or_any, Nemesis, Rng};
use crate::cluster::Cluster;

#[derive(Default)]
pub struct Pause {
    paused: Option<usize>,
}

impl Nemesis for Pause {
    fn name(&self) -> &'static str {
        "pause"
    }

    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let (what, node) = leader_or_any(cluster, leader, rng);
            cluster.signal(node, libc::SIGSTOP);
            self.paused = Some(node);
            Ok(format!("pause {what} (n{node})"))
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some(node) = self.paused.take() {
                cluster.signal(node, libc::SIGCONT);
            }
            Ok(())
        })
    }
}

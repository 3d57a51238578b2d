//! SIGSTOP of one node at random or of the leader, SIGCONT when the fault ends: a process
//! that stops answering without dying, as a long GC pause or a stalled VM does.

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

    fn start(
        &mut self,
        cluster: &mut Cluster,
        leader: Option<usize>,
        rng: &mut Rng,
    ) -> anyhow::Result<String> {
        let (what, node) = leader_or_any(cluster, leader, rng);
        cluster.signal(node, libc::SIGSTOP);
        self.paused = Some(node);
        Ok(format!("pause {what} (n{node})"))
    }

    fn stop(&mut self, cluster: &mut Cluster) -> anyhow::Result<()> {
        if let Some(node) = self.paused.take() {
            cluster.signal(node, libc::SIGCONT);
        }
        Ok(())
    }
}

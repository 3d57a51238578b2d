//! Membership changes under load: leadership moved to another voter, or a node (the leader
//! or any) removed from the membership while it keeps running, and added back on its old
//! data when the fault ends. Changes go to the leader through the Rust cluster client.

use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use serde_json::json;
use tokio::time::Instant;

use super::{leader_or_any, Nemesis, Rng};
use crate::cluster::Cluster;

/// How long adding a removed node back may take before the run gives up.
const ADD_BACK_WAIT_MAX: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Membership {
    removed: Option<usize>,
}

impl Nemesis for Membership {
    fn name(&self) -> &'static str {
        "membership"
    }

    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let client = crate::connect::cluster(&cluster.flight_addrs()).await?;
            let nodes = cluster.nodes();
            if let (0, Some(leader)) = (rng.below(2), leader) {
                let to = 1 + (leader + rng.below(nodes as u64 - 1) as usize) % nodes;
                let moved = client
                    .action("transfer_leader", &json!({ "node_id": to }))
                    .await;
                let what = format!("move leadership from n{leader} to n{to}");
                return Ok(with_outcome(what, moved.map(|_| ())));
            }
            let (which, node) = leader_or_any(cluster, leader, rng);
            let removed = (client
                .action("remove_node", &json!({ "node_id": node }))
                .await)
                .map(|_| ());
            // Added back even when the answer was lost: adding a member is refused harmlessly.
            self.removed = Some(node);
            let what = format!("remove {which} (n{node}) from the membership");
            Ok(with_outcome(what, removed))
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Some(node) = self.removed.take() else {
                return Ok(());
            };
            add_back(cluster, node)
                .await
                .with_context(|| format!("add n{node} back to the membership"))
        })
    }
}

fn with_outcome(what: String, outcome: Result<(), arka::client::ClientError>) -> String {
    match outcome {
        Ok(()) => what,
        Err(e) => format!("{what} (refused: {e})"),
    }
}

/// Adds `node` back as a voter on its old address and data, asking again (it waits for the
/// node to catch up, which a busy cluster may not give it in one try) until it is a member.
pub(super) async fn add_back(cluster: &Cluster, node: usize) -> anyhow::Result<()> {
    let client = crate::connect::cluster(&cluster.flight_addrs()).await?;
    let body = json!({
        "node_id": node,
        "raft_addr": cluster.raft_addr(node),
        "flight_addr": cluster.flight_socket_addr(node),
    });
    let deadline = Instant::now() + ADD_BACK_WAIT_MAX;
    loop {
        let error = match client.action("add_node", &body).await {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("already a member") => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(error.into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

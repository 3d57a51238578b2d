//! The leader chooses the tier worker and records it in the replicated state: a live,
//! caught-up follower whose WAL still holds the range to tier next, else the leader itself.
//! A worker is replaced when gossip no longer reports it alive or it left the membership.

use std::collections::BTreeSet;

use arka_cluster::{Command, Lsn, NodeId};

use super::report::{alive, caught_up_replicas};
use super::MemberNode;

/// Called by the leader's membership agent on every tick.
pub async fn designate(node: &MemberNode) {
    if !node.tiering || !node.raft.is_leader() {
        return;
    }
    let tier = node.state.tier();
    let eligible = eligible(node, tier.s3_lsn);
    let caught_up = caught_up_replicas(node);
    let follower = eligible
        .iter()
        .copied()
        .filter(|id| *id != node.node_id && caught_up.contains(id))
        .min();
    let keep = tier.worker.is_some_and(|w| eligible.contains(&w))
        // The leader keeps the work only until a follower can take it.
        && (tier.worker != Some(node.node_id) || follower.is_none());
    if keep {
        return;
    }
    let choice = follower.or_else(|| eligible.contains(&node.node_id).then_some(node.node_id));
    let Some(node_id) = choice.filter(|c| tier.worker != Some(*c)) else {
        return;
    };
    tracing::info!(previous = ?tier.worker, %node_id, "assigning the tier worker");
    let assign = |request| Command::AssignTierWorker { node_id, request };
    if let Err(e) = node.proposer.propose_command(assign).await {
        tracing::warn!(error = %e, %node_id, "assigning the tier worker failed");
    }
}

/// Members that are alive and whose WAL starts at or below `s3_lsn + 1` (a node that joined
/// from a snapshot may lack the range to tier next).
fn eligible(node: &MemberNode, s3_lsn: Lsn) -> BTreeSet<NodeId> {
    let metrics = crate::raft::metrics(&node.raft);
    let view = node.gossip.view();
    let live = alive(&view, node.node_id);
    metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| live.contains(id))
        .filter(|id| {
            let first = if *id == node.node_id {
                Some(node.log.first_index().get())
            } else {
                view.state(*id).map(|s| s.wal_first_index)
            };
            first.is_some_and(|f| f <= s3_lsn.next().get())
        })
        .collect()
}

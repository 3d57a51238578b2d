//! The task that keeps this node's gossip state current (role, leader, watermarks, whether it
//! asks to join) and, on the leader, adds and promotes the nodes that asked to join.

use std::time::Duration;

use arka_cluster::gossip::NodeState;
use openraft::type_config::async_runtime::WatchReceiver;
use tokio_util::sync::CancellationToken;

use super::MemberNode;
use crate::raft::role_name;

const TICK: Duration = Duration::from_millis(250);

/// How this node joins, and how its leader grows the voters.
#[derive(Debug, Clone, Copy)]
pub struct JoinPolicy {
    /// The node was started with `--join`.
    pub joining: bool,
    /// It asks the leader to promote it once it replicates.
    pub auto_promote: bool,
    /// As leader: the voters that auto-promotion grows the cluster to at most.
    pub voters_max: usize,
}

/// What this node publishes, from its Raft metrics and watermarks.
fn local_state(node: &MemberNode, policy: JoinPolicy) -> NodeState {
    let metrics = node.raft.metrics().borrow_watched().clone();
    let tier = node.state.tier();
    let in_membership = metrics
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_some();
    NodeState {
        node_id: node.node_id,
        // Both filled in by gossip when it publishes.
        gossip_addr: None,
        version: 0,
        role: role_name(metrics.state).to_string(),
        term: metrics.current_term,
        leader_id: metrics.current_leader,
        applied_lsn: node.state.applied_lsn().get(),
        last_log_index: metrics.last_log_index.unwrap_or(0),
        wal_first_index: node.log.first_index().get(),
        s3_lsn: tier.s3_lsn.get(),
        committed_lsn: tier.committed_lsn.get(),
        join_requested: policy.joining && !in_membership,
        auto_promote: policy.auto_promote,
        cluster_id: node.cluster_id.get(),
    }
}

/// The membership agent: publishes this node's state through gossip, and as the leader adds
/// the nodes that ask to join and designates the tier worker.
pub struct Agent {
    pub node: MemberNode,
    pub policy: JoinPolicy,
}

impl Agent {
    /// Runs a round each tick until `shutdown`; a round under way is finished first (a
    /// membership change it started is not left half-asked).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while shutdown.run_until_cancelled(tick.tick()).await.is_some() {
            round(&self.node, self.policy).await;
        }
    }
}

/// One round of the agent.
async fn round(node: &MemberNode, policy: JoinPolicy) {
    let state = local_state(node, policy);
    node.gossip.update_local(|s| *s = state);
    node.ops()
        .reconcile_joins(&node.gossip.view(), policy.voters_max)
        .await;
    super::tier_worker::designate(node).await;
}

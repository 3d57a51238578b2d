//! The task that keeps this node's gossip state current (role, leader, watermarks, whether it
//! asks to join) and, on the leader, adds and promotes the nodes that asked to join.

use std::sync::Arc;
use std::time::Duration;

use arka_cluster::gossip::NodeState;
use openraft::type_config::async_runtime::WatchReceiver;

use crate::context::NodeContext;
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
fn local_state(ctx: &NodeContext, policy: JoinPolicy) -> NodeState {
    let metrics = ctx.raft.metrics().borrow_watched().clone();
    let w = ctx.watermarks();
    let in_membership = metrics
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_some();
    NodeState {
        node_id: ctx.node_id,
        // Both filled in by gossip when it publishes.
        gossip_addr: None,
        version: 0,
        role: role_name(metrics.state).to_string(),
        term: metrics.current_term,
        leader_id: metrics.current_leader,
        applied_lsn: w.replicated_lsn,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        wal_first_index: ctx.log.first_index().get(),
        s3_lsn: w.s3_lsn,
        committed_lsn: w.committed_lsn,
        join_requested: policy.joining && !in_membership,
        auto_promote: policy.auto_promote,
        cluster_id: ctx.cluster_id.get(),
    }
}

/// Runs until the node stops.
pub async fn run(ctx: Arc<NodeContext>, policy: JoinPolicy) {
    let ops = ctx.membership();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = local_state(&ctx, policy);
        ctx.gossip.update_local(|s| *s = state);
        ops.reconcile_joins(&ctx.gossip.view(), policy.voters_max)
            .await;
        super::tier_worker::designate(&ctx).await;
    }
}

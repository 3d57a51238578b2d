//! Membership changes, checked before they reach Raft so that a bad request leaves the
//! cluster unchanged: adding a learner and promoting it, removing a member (moving leadership
//! away first when the leader itself goes), transferring leadership, and adding the nodes that
//! asked to join through gossip.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, Instant, Raft, RaftMetrics, ServerState};

use crate::cluster_id::ClusterId;
use crate::gossip::{ClusterView, Liveness};
use crate::network::InternalClient;
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// A learner whose log is at most this many entries behind the leader's counts as caught up.
pub const CAUGHT_UP_LAG_MAX: u64 = 1_000;
/// A learner is promoted by itself only if the leader heard from it (a heartbeat or an
/// append answered) within this long.
pub const PROMOTE_IF_HEARD_WITHIN: Duration = Duration::from_secs(3);
/// Voters that promotion by itself grows a cluster to at most (`voters-max`).
pub const VOTERS_MAX_DEFAULT: usize = 5;
/// How long `add` waits for a new node to say who it is.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a membership change waits for the one before it (a promotion's second phase) to
/// commit before it gives up.
pub const SETTLE_WAIT_MAX: Duration = Duration::from_secs(10);
/// How long a leadership transfer may take before the call gives up.
pub const TRANSFER_WAIT_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("this node is not the leader")]
    NotLeader,
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    #[error("node {0} is the last voter; a cluster cannot remove its last voter")]
    LastVoter(NodeId),
    #[error("node {0} is not a voter; leadership can only move to a voter")]
    NotVoter(NodeId),
    #[error("no other voter is caught up enough to take over leadership from node {0}")]
    NoSuccessor(NodeId),
    #[error("cannot reach node {node_id} at raft address {addr}; start it first")]
    Unreachable { node_id: NodeId, addr: String },
    #[error("the node at raft address {addr} is node {found}, not node {expected}")]
    WrongNode {
        addr: String,
        expected: NodeId,
        found: NodeId,
    },
    #[error("the node at raft address {addr} belongs to cluster {theirs}, not to this cluster ({ours}); give it an empty data dir to join here")]
    ForeignCluster {
        addr: String,
        theirs: String,
        ours: String,
    },
    #[error("node {0} joined as a learner but did not catch up within {1:?}; it was not promoted")]
    CatchUpTimeout(NodeId, Duration),
    /// Leadership moved to `0` (to let the leader remove itself); the caller goes on there.
    #[error("leadership moved to node {0}")]
    LeadershipMoved(NodeId),
    #[error("a membership change is still in progress after {0:?}: it cannot commit without a quorum of both the old and the new voters; bring enough of them back")]
    Unsettled(Duration),
    #[error("{action} failed: {reason}")]
    Raft {
        action: &'static str,
        reason: String,
    },
}

fn raft_failed(action: &'static str, e: impl std::fmt::Display) -> MembershipError {
    MembershipError::Raft {
        action,
        reason: e.to_string(),
    }
}

/// The member and voter ids of the latest membership this node knows.
pub struct Members {
    pub all: BTreeSet<NodeId>,
    pub voters: BTreeSet<NodeId>,
}

pub fn members(metrics: &RaftMetrics<TypeConfig>) -> Members {
    let membership = metrics.membership_config.membership();
    Members {
        all: membership.nodes().map(|(id, _)| *id).collect(),
        voters: membership.voter_ids().collect(),
    }
}

/// Whether learner `node` is really replicating, as the leader sees it: it acknowledged the
/// log up to the membership that holds it, is caught up, and answered recently. A node that
/// never answered has no matched log id and is never counted (a young cluster's short log
/// does not make a silent node look caught up).
pub fn replicating(metrics: &RaftMetrics<TypeConfig>, node: NodeId) -> bool {
    let Some(Some(matched)) = metrics.replication.as_ref().and_then(|r| r.get(&node)) else {
        return false;
    };
    let membership_index = metrics
        .membership_config
        .log_id()
        .as_ref()
        .map_or(0, |l| l.index);
    let heard_recently = metrics
        .heartbeat
        .as_ref()
        .and_then(|h| h.get(&node).cloned().flatten())
        .is_some_and(|at| at.elapsed() < PROMOTE_IF_HEARD_WITHIN);
    let lag = metrics
        .last_log_index
        .unwrap_or(0)
        .saturating_sub(matched.index);
    matched.index >= membership_index && lag <= CAUGHT_UP_LAG_MAX && heard_recently
}

/// How many of `candidates` learners to promote at once so that the voters stay an odd count
/// and at most `voters_max`: an even count adds no failure tolerance and makes a split vote
/// possible, so learners are promoted in pairs (or one, to make an even count odd).
pub fn voters_to_add(voters: usize, candidates: usize, voters_max: usize) -> usize {
    let room = voters_max.saturating_sub(voters).min(candidates);
    if (voters + room) % 2 == 1 {
        room
    } else {
        room.saturating_sub(1)
    }
}

/// How many entries `node` is behind the leader's log, from the leader's replication progress.
pub fn lag_entries(metrics: &RaftMetrics<TypeConfig>, node: NodeId) -> Option<u64> {
    let matched = metrics.replication.as_ref()?.get(&node)?;
    let index = matched.as_ref().map(|l| l.index).unwrap_or(0);
    Some(metrics.last_log_index.unwrap_or(0).saturating_sub(index))
}

/// The voter other than `leader` that is the most caught up, if one is caught up enough to
/// take over leadership at once.
fn successor(metrics: &RaftMetrics<TypeConfig>, leader: NodeId) -> Option<NodeId> {
    members(metrics)
        .voters
        .into_iter()
        .filter(|id| *id != leader)
        .filter_map(|id| Some((lag_entries(metrics, id)?, id)))
        .filter(|(lag, _)| *lag <= CAUGHT_UP_LAG_MAX)
        .min()
        .map(|(_, id)| id)
}

/// Changes membership on the leader.
pub struct MembershipOps<SM: RaftStateMachine<TypeConfig>> {
    raft: Raft<TypeConfig, SM>,
    node_id: NodeId,
    cluster_id: ClusterId,
    /// Reaches a node before it is a member (to ask who it is).
    peers: InternalClient,
}

impl<SM: RaftStateMachine<TypeConfig>> MembershipOps<SM> {
    pub fn new(
        raft: Raft<TypeConfig, SM>,
        node_id: NodeId,
        cluster_id: ClusterId,
        peers: InternalClient,
    ) -> Self {
        Self {
            raft,
            node_id,
            cluster_id,
            peers,
        }
    }

    /// Asks the node at `node.raft_addr` who it is, and refuses to add it when it is another
    /// node or belongs to another cluster.
    async fn check_identity(
        &self,
        node_id: NodeId,
        node: &NodeInfo,
    ) -> Result<(), MembershipError> {
        let addr = node.raft_addr.clone();
        let unreachable = || MembershipError::Unreachable {
            node_id,
            addr: addr.clone(),
        };
        let (found, theirs) = self
            .peers
            .identify(&addr, IDENTIFY_TIMEOUT)
            .await
            .map_err(|_| unreachable())?;
        if found != node_id {
            return Err(MembershipError::WrongNode {
                addr,
                expected: node_id,
                found,
            });
        }
        match (self.cluster_id.get(), theirs) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                Err(MembershipError::ForeignCluster { addr, theirs, ours })
            }
            _ => Ok(()),
        }
    }

    fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Waits until no membership change is in progress (the latest membership entry is
    /// committed), so that a change asked for right after another (a removal after a
    /// promotion) goes ahead instead of being refused as concurrent.
    async fn settle(&self) -> Result<(), MembershipError> {
        let settled = |m: &RaftMetrics<TypeConfig>| {
            m.membership_config.log_id() == m.committed_membership_config.log_id()
        };
        self.raft
            .wait(Some(SETTLE_WAIT_MAX))
            .metrics(settled, "membership change settles")
            .await
            .map(|_| ())
            .map_err(|_| MembershipError::Unsettled(SETTLE_WAIT_MAX))
    }

    fn leader_metrics(&self) -> Result<RaftMetrics<TypeConfig>, MembershipError> {
        let metrics = self.metrics();
        if metrics.state != ServerState::Leader {
            return Err(MembershipError::NotLeader);
        }
        Ok(metrics)
    }

    /// Adds `node_id` as a learner; with `voter`, waits (at most `catch_up_max`) until it
    /// caught up and promotes it. For a learner that is already a member, `voter` promotes it.
    pub async fn add(
        &self,
        node_id: NodeId,
        node: NodeInfo,
        voter: bool,
        catch_up_max: Duration,
    ) -> Result<(), MembershipError> {
        let metrics = self.leader_metrics()?;
        let current = members(&metrics);
        if current.all.contains(&node_id) {
            // Promoting a learner is the one change `add` makes to an existing member.
            if voter && !current.voters.contains(&node_id) {
                return self.promote(node_id).await;
            }
            return Err(MembershipError::AlreadyMember(node_id));
        }
        self.check_identity(node_id, &node).await?;
        self.settle().await?;
        // Blocking: returns once the learner has caught up, so that promoting it cannot stall
        // commits; bounded so that a node that dies while catching up does not hang the call.
        let added = tokio::time::timeout(catch_up_max, self.raft.add_learner(node_id, node, true))
            .await
            .map_err(|_| MembershipError::CatchUpTimeout(node_id, catch_up_max))?;
        added.map_err(|e| raft_failed("add learner", e))?;
        if voter {
            self.promote(node_id).await?;
        }
        Ok(())
    }

    async fn promote(&self, node_id: NodeId) -> Result<(), MembershipError> {
        self.settle().await?;
        let ids = BTreeSet::from([node_id]);
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(ids), true)
            .await
            .map_err(|e| raft_failed("promote to voter", e))?;
        Ok(())
    }

    /// Removes a member (a voter is demoted and removed in one joint change). Removing the
    /// leader moves leadership to the most caught-up other voter first and returns
    /// [`MembershipError::LeadershipMoved`]: the new leader finishes the removal.
    pub async fn remove(&self, node_id: NodeId) -> Result<(), MembershipError> {
        self.leader_metrics()?;
        self.settle().await?;
        let metrics = self.leader_metrics()?;
        let members = members(&metrics);
        if !members.all.contains(&node_id) {
            return Err(MembershipError::NotMember(node_id));
        }
        if members.voters.contains(&node_id) && members.voters.len() == 1 {
            return Err(MembershipError::LastVoter(node_id));
        }
        if node_id == self.node_id {
            let successor =
                successor(&metrics, node_id).ok_or(MembershipError::NoSuccessor(node_id))?;
            self.transfer(successor).await?;
            return Err(MembershipError::LeadershipMoved(successor));
        }
        let change = if members.voters.contains(&node_id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| raft_failed("remove member", e))?;
        Ok(())
    }

    /// As the leader: moves leadership to the most caught-up other voter and waits (at most
    /// `wait`) until it took over; returns it. `None` when this node does not lead.
    pub async fn hand_over(&self, wait: Duration) -> Result<Option<NodeId>, MembershipError> {
        let Ok(metrics) = self.leader_metrics() else {
            return Ok(None);
        };
        let to =
            successor(&metrics, self.node_id).ok_or(MembershipError::NoSuccessor(self.node_id))?;
        self.transfer_within(to, wait).await?;
        Ok(Some(to))
    }

    /// Moves leadership to voter `to` and waits until it took over.
    pub async fn transfer(&self, to: NodeId) -> Result<(), MembershipError> {
        self.transfer_within(to, TRANSFER_WAIT_MAX).await
    }

    /// Moves leadership to voter `to` and waits, at most `wait`, until it took over.
    async fn transfer_within(&self, to: NodeId, wait: Duration) -> Result<(), MembershipError> {
        let metrics = self.leader_metrics()?;
        if !members(&metrics).voters.contains(&to) {
            return Err(MembershipError::NotVoter(to));
        }
        if to == self.node_id {
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| raft_failed("transfer leadership", e))?;
        self.raft
            .wait(Some(wait))
            .current_leader(to, "leadership transfer")
            .await
            .map_err(|e| raft_failed("transfer leadership", e))?;
        Ok(())
    }

    /// On the leader: adds every live node that asked through gossip to join as a learner
    /// (gossip is signed with the cluster secret, so only holders of it can ask), and
    /// promotes live learners that asked for it and are [`replicating`], as many at once as
    /// [`voters_to_add`] allows. Nodes that are suspect or dead are left alone; nothing is
    /// ever removed here.
    pub async fn reconcile_joins(&self, view: &ClusterView, voters_max: usize) {
        let Ok(metrics) = self.leader_metrics() else {
            return;
        };
        let members = members(&metrics);
        let mut candidates = Vec::new();
        for (id, peer) in &view.peers {
            let Some((state, _)) = &peer.state else {
                continue;
            };
            if peer.liveness != Liveness::Alive {
                continue;
            }
            if state.join_requested && !members.all.contains(id) {
                tracing::info!(node_id = %id, addr = %peer.peer.raft_addr, "adding a joining node as a learner");
                if let Err(e) = self
                    .raft
                    .add_learner(*id, peer.peer.node_info(), false)
                    .await
                {
                    tracing::warn!(node_id = %id, error = %e, "cannot add joining node");
                }
            } else if state.auto_promote
                && members.all.contains(id)
                && !members.voters.contains(id)
                && replicating(&metrics, *id)
            {
                candidates.push((lag_entries(&metrics, *id).unwrap_or(0), *id));
            }
        }
        candidates.sort_unstable();
        let promote = voters_to_add(members.voters.len(), candidates.len(), voters_max);
        if promote == 0 {
            return;
        }
        let ids: BTreeSet<NodeId> = candidates.iter().take(promote).map(|(_, id)| *id).collect();
        tracing::info!(nodes = ?ids, voters = members.voters.len() + promote, "promoting caught-up learners to voters");
        if let Err(e) = self
            .raft
            .change_membership(ChangeMembers::AddVoterIds(ids), true)
            .await
        {
            tracing::warn!(error = %e, "cannot promote learners");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::voters_to_add;

    #[test]
    fn learners_are_promoted_to_an_odd_count_of_voters_within_the_bound() {
        // (voters, candidates, max) → promoted
        for (voters, candidates, max, promoted) in [
            (3, 1, 5, 0),
            (3, 2, 5, 2),
            (3, 5, 5, 2),
            (5, 2, 5, 0),
            (4, 1, 5, 1),
            (4, 3, 5, 1),
            (1, 1, 5, 0),
            (1, 2, 5, 2),
            (3, 3, 7, 2),
            (3, 4, 7, 4),
            (3, 2, 3, 0),
        ] {
            assert_eq!(
                voters_to_add(voters, candidates, max),
                promoted,
                "{voters} voters, {candidates} candidates, at most {max}"
            );
            assert!(voters + promoted <= max.max(voters));
        }
    }
}

//! `cluster_status`: every member as this node sees it, from the Raft membership (voter or
//! learner, addresses) and gossip (alive/suspect/dead, role, applied LSN).

use std::collections::BTreeSet;
use std::time::Instant;

use arka_cluster::gossip::{ClusterView, Liveness, NodeState};
use arka_cluster::membership::{self, CAUGHT_UP_LAG_MAX};
use arka_cluster::NodeId;
use serde::Serialize;

use super::MemberNode;
use crate::raft::role_name;

#[derive(Debug, Serialize)]
pub struct MemberReport {
    pub node_id: NodeId,
    /// `leader`, `follower`, `learner`, `candidate`; `joining` for a node that asked to join
    /// and is not a member yet, `not_member` for one gossiping outside the membership (removed,
    /// or waiting for `add_node`). The last role it published when it is not alive.
    pub role: String,
    pub voter: bool,
    /// In the Raft membership (false while a node is joining).
    pub member: bool,
    /// `alive`, `suspect`, `dead`, or `unknown` when gossip has not heard of it.
    pub liveness: String,
    pub applied_lsn: Option<u64>,
    /// Entries and seconds behind the most advanced live node; seconds are measured against
    /// when the answering node applied the first missing entry.
    pub lag_entries: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub flight_location: Option<String>,
    pub raft_addr: Option<String>,
    pub gossip_addr: Option<String>,
    /// The cluster the member says it belongs to in gossip (`null` until it knows).
    pub cluster_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClusterReport {
    /// A leader is known and alive, and a majority of voters is alive.
    pub healthy: bool,
    pub problems: Vec<String>,
    pub reporter: NodeId,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub leader_location: Option<String>,
    pub voters: usize,
    pub voters_alive: usize,
    pub members: Vec<MemberReport>,
}

fn liveness_name(l: Option<Liveness>) -> &'static str {
    match l {
        Some(Liveness::Alive) => "alive",
        Some(Liveness::Suspect) => "suspect",
        Some(Liveness::Dead) => "dead",
        None => "unknown",
    }
}

/// The node ids gossip reports alive, this node always among them.
pub fn alive(view: &ClusterView, me: NodeId) -> BTreeSet<NodeId> {
    let mut ids: BTreeSet<NodeId> = view
        .peers
        .iter()
        .filter(|(_, p)| p.liveness == Liveness::Alive)
        .map(|(id, _)| *id)
        .collect();
    ids.insert(me);
    ids
}

/// The members that serve reads well: alive in gossip and within `CAUGHT_UP_LAG_MAX`
/// entries of the most advanced live node (this node always counts).
pub fn caught_up_replicas(here: &MemberNode) -> BTreeSet<NodeId> {
    let view = here.gossip.view();
    let live = alive(&view, here.node_id);
    let applied = |id: &NodeId| {
        if *id == here.node_id {
            Some(here.state.applied_lsn().get())
        } else {
            view.state(*id).map(|s| s.applied_lsn)
        }
    };
    let newest = live.iter().filter_map(applied).max().unwrap_or(0);
    live.iter()
        .filter(|id| {
            **id == here.node_id || applied(id).is_some_and(|a| a + CAUGHT_UP_LAG_MAX >= newest)
        })
        .copied()
        .collect()
}

pub fn cluster_report(here: &MemberNode) -> ClusterReport {
    let metrics = crate::raft::metrics(&here.raft);
    let view = here.gossip.view();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let mut ids: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    ids.extend(view.peers.keys().copied());
    let live = alive(&view, here.node_id);
    let my_applied = here.state.applied_lsn().get();
    let own_state = |id: NodeId| -> Option<NodeState> {
        if id == here.node_id {
            return Some(NodeState {
                role: role_name(metrics.state).to_string(),
                applied_lsn: my_applied,
                cluster_id: here.cluster_id.get(),
                ..Default::default()
            });
        }
        let mut state = view.state(id).cloned()?;
        // On the leader, replication progress is exact and current, where gossip is up to a
        // publish interval old: a member holds at least what it has acknowledged, up to what
        // this node has applied.
        if let Some(lag) = membership::lag_entries(&metrics, id) {
            let matched = metrics.last_log_index.unwrap_or(0).saturating_sub(lag);
            state.applied_lsn = state.applied_lsn.max(matched.min(my_applied));
        }
        Some(state)
    };
    let newest = ids
        .iter()
        .filter(|id| live.contains(id))
        .filter_map(|id| own_state(*id).map(|s| s.applied_lsn))
        .max()
        .unwrap_or(my_applied);
    let now = Instant::now();
    let members: Vec<MemberReport> = ids
        .iter()
        .map(|id| {
            let node = membership.get_node(id);
            let peer = view.peers.get(id).map(|p| &p.peer);
            let state = own_state(*id);
            let member = node.is_some();
            let role = match &state {
                Some(s) if member => s.role.clone(),
                Some(s) if s.join_requested => "joining".to_string(),
                Some(_) => "not_member".to_string(),
                None => "unknown".to_string(),
            };
            let applied = state.as_ref().map(|s| s.applied_lsn);
            MemberReport {
                node_id: *id,
                role,
                voter: voters.contains(id),
                member,
                liveness: liveness_name(if *id == here.node_id {
                    Some(Liveness::Alive)
                } else {
                    view.liveness(*id)
                })
                .to_string(),
                applied_lsn: applied,
                lag_entries: applied.map(|a| newest.saturating_sub(a)),
                lag_seconds: applied.map(|a| here.apply_clock.lag_seconds(a, now)),
                flight_location: node
                    .map(|n| n.flight_location())
                    .or_else(|| peer.map(|p| p.node_info().flight_location())),
                raft_addr: node
                    .map(|n| n.raft_addr.clone())
                    .or_else(|| peer.map(|p| p.raft_addr.clone())),
                gossip_addr: peer.map(|p| p.gossip_addr.to_string()),
                cluster_id: state.and_then(|s| s.cluster_id),
            }
        })
        .collect();
    let voters_alive = voters.iter().filter(|id| live.contains(id)).count();
    let leader_id = metrics.current_leader;
    let mut problems = Vec::new();
    match leader_id {
        None => problems.push("no leader".to_string()),
        Some(id) if !live.contains(&id) => {
            problems.push(format!("leader {id} is not alive in gossip"))
        }
        Some(_) => {}
    }
    if voters_alive * 2 <= voters.len() {
        problems.push(format!(
            "no quorum: {voters_alive} of {} voters alive",
            voters.len()
        ));
    }
    ClusterReport {
        healthy: problems.is_empty(),
        problems,
        reporter: here.node_id,
        term: metrics.current_term,
        leader_id,
        leader_location: crate::raft::leader_location(&here.raft),
        voters: voters.len(),
        voters_alive,
        members,
    }
}

//! The node's Raft instance and what the rest of the node asks of it.

pub mod snapshot_schedule;

use arka_cluster::{NodeId, NodeInfo, TypeConfig};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{RaftMetrics, ServerState};

use crate::state::StateMachineStore;

pub type Raft = openraft::Raft<TypeConfig, StateMachineStore>;

/// A copy of the latest Raft metrics (role, term, leader, membership, replication).
pub fn metrics(raft: &Raft) -> RaftMetrics<TypeConfig> {
    raft.metrics().borrow_watched().clone()
}

/// The current leader's id, as this node knows it.
pub fn leader_id(raft: &Raft) -> Option<NodeId> {
    raft.metrics().borrow_watched().current_leader
}

/// A member's addresses, from the latest membership this node has seen.
pub fn member(raft: &Raft, id: NodeId) -> Option<NodeInfo> {
    raft.metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .get_node(&id)
        .cloned()
}

/// The leader's Flight location (`grpc://HOST:PORT`), when a leader is known.
pub fn leader_location(raft: &Raft) -> Option<String> {
    member(raft, leader_id(raft)?).map(|n| n.flight_location())
}

pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

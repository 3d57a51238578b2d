//! Cluster membership as the node runs it: the gossip agent, the member report of
//! `cluster_status`, the apply history behind lag in seconds, and the leader's choice of the
//! tier worker among the live, caught-up members.

pub mod agent;
pub mod apply_clock;
pub mod report;
mod tier_worker;

pub use apply_clock::ApplyClock;

use std::sync::Arc;

use arka_cluster::gossip::Gossip;
use arka_cluster::membership::MembershipOps;
use arka_cluster::network::InternalClient;
use arka_cluster::{ClusterId, NodeId};

use crate::propose::Proposer;
use crate::raft::Raft;
use crate::state::{StateMachine, StateMachineStore};
use crate::wal::LogReader;

/// What membership uses of its node (cheap to clone).
#[derive(Clone)]
pub struct MemberNode {
    pub node_id: NodeId,
    pub raft: Raft,
    pub gossip: Arc<Gossip>,
    pub state: StateMachine,
    pub log: LogReader,
    pub cluster_id: ClusterId,
    pub apply_clock: Arc<ApplyClock>,
    pub internal: InternalClient,
    pub proposer: Proposer,
    /// Whether tiering is configured: only then is a tier worker chosen.
    pub tiering: bool,
}

impl MemberNode {
    /// Membership changes, as this node (the leader) makes them.
    pub fn ops(&self) -> MembershipOps<StateMachineStore> {
        MembershipOps::new(
            self.raft.clone(),
            self.node_id,
            self.cluster_id.clone(),
            self.internal.clone(),
        )
    }
}

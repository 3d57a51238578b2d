//! A gossip member's identity: who it is and where to reach it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, NodeInfo};

/// What every gossip message says about its sender. `incarnation` starts at the process start
/// time, so a restarted node's identity wins over the one it had before, and foca bumps it when
/// the node learns it was declared down, so that it rejoins at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub node_id: NodeId,
    pub gossip_addr: SocketAddr,
    pub raft_addr: String,
    pub flight_addr: String,
    pub incarnation: u64,
    /// A placeholder for a `--join` seed whose node id is not known yet; never reported.
    pub seed: bool,
}

impl Peer {
    pub fn seed(gossip_addr: SocketAddr) -> Self {
        Self {
            node_id: NodeId(0),
            gossip_addr,
            raft_addr: String::new(),
            flight_addr: String::new(),
            incarnation: 0,
            seed: true,
        }
    }

    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            raft_addr: self.raft_addr.clone(),
            flight_addr: self.flight_addr.clone(),
        }
    }
}

impl foca::Identity for Peer {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            incarnation: self.incarnation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

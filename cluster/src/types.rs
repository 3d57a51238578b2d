//! The openraft type configuration and the ids that cross module boundaries.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResponse};

/// A member of the cluster: the id a node is configured with, as Raft and gossip know it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl NodeId {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for NodeId {
    fn from(id: u64) -> Self {
        NodeId(id)
    }
}

impl std::str::FromStr for NodeId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(NodeId)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a member can be reached. Stored in the Raft membership, so every node knows every
/// member's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `HOST:PORT` of the node-to-node Raft RPC service.
    pub raft_addr: String,
    /// `HOST:PORT` of the public Arrow Flight service.
    pub flight_addr: String,
}

/// Whether this process's Flight service (and so every member's: TLS is set cluster-wide)
/// speaks TLS, which makes the locations handed to clients `grpc+tls://`. Set once at node
/// start, before any location is made; a process that never sets it hands out `grpc://`.
static FLIGHT_TLS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Makes every Flight location this process hands out `grpc+tls://` (`tls`) or
/// `grpc://`. The first call wins.
pub fn advertise_flight_tls(tls: bool) {
    let _ = FLIGHT_TLS.set(tls);
}

impl NodeInfo {
    /// The Flight location clients use, `grpc://HOST:PORT` (`grpc+tls://` with TLS on).
    pub fn flight_location(&self) -> String {
        let scheme = match FLIGHT_TLS.get() {
            Some(true) => "grpc+tls",
            _ => "grpc",
        };
        format!("{scheme}://{}", self.flight_addr)
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} flight={}", self.raft_addr, self.flight_addr)
    }
}

/// A log sequence number: the Raft log index of an entry. Strictly increasing across the
/// cluster and all tables; not necessarily consecutive.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Before the first entry: nothing is at or below it.
    pub const ZERO: Lsn = Lsn(0);

    pub fn get(self) -> u64 {
        self.0
    }

    /// The LSN right after this one.
    pub fn next(self) -> Lsn {
        Lsn(self.0.saturating_add(1))
    }
}

impl From<u64> for Lsn {
    fn from(index: u64) -> Self {
        Lsn(index)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one proposal of one node, so that log-store and apply events can be routed back
/// to the client session waiting for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The node that proposed the entry (only that node has a session waiting for it).
    pub origin: NodeId,
    /// Unique per origin process run.
    pub seq: u64,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of arka.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = NodeInfo,
);

/// The log entry type of arka's Raft log.
pub type Entry = openraft::Entry<
    <<TypeConfig as openraft::RaftTypeConfig>::LeaderId as openraft::vote::RaftLeaderId>::Committed,
    <TypeConfig as openraft::RaftTypeConfig>::Payload,
>;
/// A Raft log id (term, leader, index).
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// The leader that appended an entry, as its log id names it: its term and node. Two leaders
/// may share a term, so the term alone does not name one.
pub type CommittedLeaderId = openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>;
/// A Raft vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// Stored membership.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

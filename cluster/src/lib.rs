//! Consensus and membership for arka.
//!
//! This crate holds the openraft type configuration, the replicated command set, the Raft
//! network over tonic, the Raft configuration policy, gossip (foca), membership changes and
//! the network fault point. It is generic over storage: it knows nothing of Arrow, Flight or
//! Iceberg. The `arka` crate supplies the log store and the state machine.

pub mod cluster_id;
pub mod codec;
pub mod command;
pub mod fault;
pub mod gossip;
pub mod membership;
pub mod network;
pub mod raft_config;
pub mod refusals;
pub mod secret;
pub mod types;

pub use cluster_id::ClusterId;
pub use command::{
    is_tier_report, write_of, Command, CommandResponse, HeldBackTable, ProducerSeq, TieredFile,
    WriteCommand,
};
pub use secret::ClusterSecret;
pub use types::{Lsn, NodeId, NodeInfo, RequestId, TypeConfig};

//! Raft over the network: a tonic client per peer and the tonic service that hands incoming
//! RPCs to the local Raft instance. Payloads are openraft messages in the `codec` encoding.

mod client;
mod server;

pub use client::{ChannelConnector, NetworkFactory, PeerConnection, TcpConnector};
pub use server::{Identity, RaftRpcService};

/// Largest gRPC message a Raft RPC may carry, either way.
pub const GRPC_MESSAGE_BYTES_MAX: usize = crate::codec::MESSAGE_BYTES_MAX + 1024;

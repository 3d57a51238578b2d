//! Raft over the network: a tonic client per peer and the tonic service that hands incoming
//! RPCs to the local Raft instance. Payloads are openraft messages in the `codec` encoding.

mod budget;
mod client;
mod internal;
mod server;
mod snapshot;

pub use budget::APPEND_BYTES_MAX;
pub use client::{ChannelConnector, NetworkFactory, PeerConnection, TcpConnector};
pub use internal::{InternalClient, InternalHandler};
pub use server::{Identity, RaftRpcService};
pub use snapshot::{SNAPSHOT_BYTES_MAX, SNAPSHOT_CHUNK_BYTES};

/// Largest gRPC message a Raft RPC may carry, either way.
pub const GRPC_MESSAGE_BYTES_MAX: usize = crate::codec::MESSAGE_BYTES_MAX + 1024;

//! Raft over the network: a tonic client per peer and the tonic service that hands incoming
//! RPCs to the local Raft instance. Payloads are openraft messages in the `codec` encoding.

mod budget;
mod client;
mod gate;
mod intake;
mod internal;
mod pipeline;
mod server;
mod snapshot;

pub use budget::{entry_bytes, APPEND_BYTES_MAX};
pub use client::{ChannelConnector, NetworkFactory, PeerConnection, TcpConnector};
pub use gate::{NodeGate, NodeKey, RaftClient, NODE_KEY_HEADER};
pub use intake::EntryIntake;
pub use internal::{InternalClient, InternalHandler};
pub use server::{Identity, RaftRpcService};
pub use snapshot::{SNAPSHOT_BYTES_MAX, SNAPSHOT_CHUNK_BYTES};

/// Largest gRPC message a Raft RPC may carry, either way.
pub const GRPC_MESSAGE_BYTES_MAX: usize = crate::codec::MESSAGE_BYTES_MAX + 1024;

/// HTTP/2 flow-control windows of every arka connection (Raft and Flight, both ends). The
/// protocol's default of 64 KiB lets a sender put only that much on the wire before the
/// receiver's window update comes back, which caps a bulk stream far below what the disk
/// takes; a window bounds what one stream and one connection may have buffered unread.
pub const HTTP2_STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
pub const HTTP2_CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

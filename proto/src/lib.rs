//! Node-to-node RPC definitions for arka (generated; never edited by hand).

/// Raft RPC between the members of one arka cluster.
pub mod raft {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("arka.raft.v1");
}

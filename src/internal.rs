//! Node-to-node requests that are not Raft messages (DESIGN §2): the tier worker's reports
//! to the leader, a `flush` forwarded to the tier worker, a removal forwarded to the new
//! leader. They are not Flight actions: they travel over the internal RPC on the Raft port,
//! which only members of this cluster can use and which goes through the network fault point.
//! This module holds the requests and sends them; `flight::peer_requests` answers them.

use std::time::Duration;

use arka_cluster::codec;
use arka_cluster::network::InternalClient;
use arka_cluster::{HeldBackTable, Lsn, NodeId, TieredFile};
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::error::{Error, Result};
use crate::raft::Raft;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum InternalRequest {
    /// To the leader: propose the tier worker's report.
    TierReport(TierReport),
    /// To the tier worker: seal, upload and commit everything up to `upto` now.
    Flush { upto: Lsn },
    /// To the leader: remove a member (the old leader handed leadership over to finish it).
    RemoveNode { node_id: NodeId },
}

/// What the tier worker tells the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TierReport {
    /// The range `(from_lsn, to_lsn]` is in object storage as `files`.
    Uploaded {
        worker: NodeId,
        from_lsn: Lsn,
        to_lsn: Lsn,
        files: Vec<TieredFile>,
    },
    /// Every table but those `held_back` is in committed Iceberg snapshots up to
    /// `committed_lsn`.
    Committed {
        worker: NodeId,
        committed_lsn: Lsn,
        held_back: Vec<HeldBackTable>,
    },
    /// The lake data of the table dropped at `dropped_lsn` is deleted.
    TableDropped { worker: NodeId, dropped_lsn: Lsn },
}

/// Sends `request` to member `node_id` (its address from the membership `raft` holds) and
/// waits for it to be carried out.
pub async fn send(
    raft: &Raft,
    client: &InternalClient,
    node_id: NodeId,
    request: &InternalRequest,
    timeout: Duration,
) -> Result<()> {
    let node = crate::raft::member(raft, node_id)
        .ok_or_else(|| Error::Unavailable(format!("node {node_id} is not a member")))?;
    let data = codec::encode("internal request", request)
        .map_err(|e| Error::internal("internal request", e))?;
    client
        .call(&node.raft_addr, data, timeout)
        .await
        .map_err(|status| error_of(node_id, status))?;
    Ok(())
}

/// The error a peer answered with, as this node reports it.
fn error_of(node_id: NodeId, status: Status) -> Error {
    let message = format!("node {node_id}: {}", status.message());
    match status.code() {
        Code::InvalidArgument => Error::InvalidArgument(message),
        Code::NotFound => Error::NotFound(message),
        Code::ResourceExhausted => Error::ResourceExhausted(message),
        Code::DeadlineExceeded => Error::DeadlineExceeded(message),
        Code::PermissionDenied => Error::PermissionDenied(message),
        Code::Internal => Error::Internal(message),
        _ => Error::Unavailable(message),
    }
}

//! Node-to-node requests that are not Raft messages (DESIGN §2): the tier worker's reports
//! to the leader, a `flush` forwarded to the tier worker, a removal forwarded to the new
//! leader. They are not Flight actions: they travel over the internal RPC on the Raft port,
//! which only members of this cluster can use and which goes through the network fault point.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arka_cluster::codec;
use arka_cluster::network::InternalHandler;
use arka_cluster::{Lsn, NodeId};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::context::NodeContext;
use crate::error::{Error, Result};
use crate::tier::report::{self, TierReport};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum InternalRequest {
    /// To the leader: propose the tier worker's report.
    TierReport(TierReport),
    /// To the tier worker: seal, upload and commit everything up to `upto` now.
    Flush { upto: Lsn },
    /// To the leader: remove a member (the old leader handed leadership over to finish it).
    RemoveNode { node_id: NodeId },
}

/// Sends `request` to member `node_id` and waits for it to be carried out.
pub async fn send(
    ctx: &NodeContext,
    node_id: NodeId,
    request: &InternalRequest,
    timeout: Duration,
) -> Result<()> {
    let node = crate::raft::member(&ctx.raft, node_id)
        .ok_or_else(|| Error::Unavailable(format!("node {node_id} is not a member")))?;
    let data = codec::encode("internal request", request)
        .map_err(|e| Error::internal("internal request", e))?;
    ctx.internal
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

/// Answers the internal requests of the node's peers.
pub struct InternalService {
    /// Weak: the node context owns the Raft instance, whose RPC service holds this.
    ctx: Weak<NodeContext>,
}

impl InternalService {
    pub fn new(ctx: &Arc<NodeContext>) -> Self {
        Self {
            ctx: Arc::downgrade(ctx),
        }
    }
}

impl InternalHandler for InternalService {
    fn handle(&self, request: Vec<u8>) -> BoxFuture<'static, std::result::Result<Vec<u8>, Status>> {
        let ctx = self.ctx.upgrade();
        Box::pin(async move {
            let ctx = ctx.ok_or(Error::Shutdown)?;
            let request: InternalRequest = codec::decode("internal request", &request)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            serve(&ctx, request).await?;
            Ok(Vec::new())
        })
    }
}

async fn serve(ctx: &NodeContext, request: InternalRequest) -> Result<()> {
    match request {
        InternalRequest::TierReport(report) => report::accept(ctx, report).await,
        InternalRequest::Flush { upto } => crate::flight::tiering::flush_at_worker(ctx, upto).await,
        InternalRequest::RemoveNode { node_id } => {
            crate::flight::members::remove_here(ctx, node_id).await
        }
    }
}

//! Answers the internal requests of the node's peers (see [`crate::internal`]): each is
//! carried out by the part of the node that owns it.

use std::sync::{Arc, Weak};

use arka_cluster::codec;
use arka_cluster::network::InternalHandler;
use futures::future::BoxFuture;
use tonic::Status;

use super::served::Served;
use crate::error::{Error, Result};
use crate::internal::InternalRequest;

/// Answers the internal requests of the node's peers.
pub struct InternalService {
    /// Weak: these handles own the Raft instance, whose RPC service holds this.
    ctx: Weak<Served>,
}

impl InternalService {
    pub fn new(ctx: &Arc<Served>) -> Self {
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

async fn serve(ctx: &Served, request: InternalRequest) -> Result<()> {
    match request {
        InternalRequest::TierReport(report) => ctx.tier_reporter().accept(report).await,
        InternalRequest::Flush { upto } => super::tiering::flush_at_worker(ctx, upto).await,
        InternalRequest::RemoveNode { node_id } => super::members::remove_here(ctx, node_id).await,
    }
}

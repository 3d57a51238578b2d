//! Node-to-node requests that are not Raft messages: tier reports, forwarded flushes and
//! forwarded membership changes. They travel on the Raft port as Raft traffic does: the
//! receiver refuses another cluster's requests, and both ends go through the network fault
//! point. This crate carries their bytes; the node that owns the storage decodes and answers
//! them (`InternalHandler`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arka_proto::raft::RaftPayload;
use futures::future::BoxFuture;
use tonic::transport::Channel;
use tonic::Status;

use super::client::ChannelConnector;
use super::gate::{NodeKey, RaftClient};
use super::GRPC_MESSAGE_BYTES_MAX;
use crate::cluster_id::ClusterId;
use crate::fault::NetworkFaults;

/// Answers the internal requests a node receives.
pub trait InternalHandler: Send + Sync + 'static {
    /// Handles one encoded request; the answer is encoded too.
    fn handle(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, Status>>;
}

/// Peers whose channel is kept; more addresses than this (a cluster far larger than any
/// arka runs, or churn of addresses) start the cache afresh.
const CHANNELS_MAX: usize = 64;

/// Sends internal requests to peers by their Raft address, one cached channel per peer.
#[derive(Clone)]
pub struct InternalClient {
    connector: Arc<dyn ChannelConnector>,
    faults: NetworkFaults,
    cluster_id: ClusterId,
    /// Presented on every call (the Raft port's gate).
    key: NodeKey,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl InternalClient {
    pub fn new(
        connector: Arc<dyn ChannelConnector>,
        faults: NetworkFaults,
        cluster_id: ClusterId,
    ) -> Self {
        Self {
            connector,
            faults,
            key: NodeKey::new(cluster_id.secret()),
            cluster_id,
            channels: Arc::default(),
        }
    }

    fn channel(&self, raft_addr: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(raft_addr) {
            return Ok(channel.clone());
        }
        let channel = self
            .connector
            .channel(raft_addr)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if channels.len() >= CHANNELS_MAX {
            channels.clear();
        }
        channels.insert(raft_addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Asks the node at `raft_addr` who it is (its node id and cluster id), within
    /// `timeout`.
    pub async fn identify(
        &self,
        raft_addr: &str,
        timeout: Duration,
    ) -> Result<super::Identity, Status> {
        let send: Rpc = |mut c, p| Box::pin(async move { c.identify(p).await });
        let answer = self.exchange(raft_addr, Vec::new(), timeout, send).await?;
        crate::codec::decode("identify", &answer).map_err(|e| Status::internal(e.to_string()))
    }

    /// Sends `request` to the node at `raft_addr` and returns its answer, within `timeout`.
    pub async fn call(
        &self,
        raft_addr: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, Status> {
        let send: Rpc = |mut c, p| Box::pin(async move { c.internal(p).await });
        self.exchange(raft_addr, request, timeout, send).await
    }

    /// Sends `data` signed, through the fault point, and returns the authenticated answer.
    async fn exchange(
        &self,
        raft_addr: &str,
        data: Vec<u8>,
        timeout: Duration,
        send: Rpc,
    ) -> Result<Vec<u8>, Status> {
        if self.faults.is_isolated() {
            return Err(Status::unavailable(
                "dropped: this node is isolated by an injected fault",
            ));
        }
        let client = self
            .key
            .client(self.channel(raft_addr)?)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let response = tokio::time::timeout(timeout, send(client, self.cluster_id.seal(data)))
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "node-to-node request to {raft_addr} got no answer within {timeout:?}"
                ))
            })??
            .into_inner();
        self.cluster_id.authenticate(&response)?;
        Ok(response.data)
    }
}

type Rpc =
    fn(RaftClient, RaftPayload) -> BoxFuture<'static, Result<tonic::Response<RaftPayload>, Status>>;

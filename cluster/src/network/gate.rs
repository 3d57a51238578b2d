//! The Raft port's gate: every call carries a header derived from the cluster secret, checked
//! from the request's headers before tonic reads its body. A caller without the secret costs
//! the node no more than its headers; the per-message tags (`ClusterId::authenticate`) still
//! decide whether a message is genuine, so a header seen on the wire and replayed gets a
//! caller no further than having its body read and refused.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

use arka_proto::raft::raft_service_client::RaftServiceClient;

use crate::secret::ClusterSecret;

/// The header that carries the gate key.
pub const NODE_KEY_HEADER: &str = "x-arka-node-key";

/// A Raft-port client that presents the gate key on every call.
pub type RaftClient = RaftServiceClient<InterceptedService<Channel, NodeKey>>;

/// Adds the gate key to every call of a node-to-node client.
#[derive(Clone)]
pub struct NodeKey(MetadataValue<Ascii>);

impl NodeKey {
    pub fn new(secret: &ClusterSecret) -> Self {
        let value = MetadataValue::try_from(secret.gate_key())
            .unwrap_or_else(|_| MetadataValue::from_static("unusable"));
        Self(value)
    }

    /// A client on `channel` that presents this key.
    pub fn client(&self, channel: Channel) -> RaftClient {
        RaftServiceClient::with_interceptor(channel, self.clone())
    }
}

impl Interceptor for NodeKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(NODE_KEY_HEADER, self.0.clone());
        Ok(request)
    }
}

/// Refuses, from its headers, every call to the Raft port without the gate key.
#[derive(Clone)]
pub struct NodeGate {
    key: String,
}

impl NodeGate {
    pub fn new(secret: &ClusterSecret) -> Self {
        Self {
            key: secret.gate_key(),
        }
    }
}

impl Interceptor for NodeGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get(NODE_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if crate::secret::equal_in_constant_time(presented.as_bytes(), self.key.as_bytes()) {
            return Ok(request);
        }
        super::server::REFUSED.note(
            &format!("a caller at {:?}", request.remote_addr()),
            "no gate key of this cluster's secret",
        );
        Err(Status::unauthenticated(
            "node-to-node call refused: it does not present this cluster's key",
        ))
    }
}

//! The Raft RPC client: one lazily connected tonic channel per peer, reconnected by tonic with
//! backoff; openraft is told to back off (exponentially, capped) while a peer is unreachable.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arka_proto::raft::RaftPayload;
use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{
    stream_append_sequential, Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::budget::{cut_to_budget, APPEND_BYTES_MAX};
use super::gate::{NodeKey, RaftClient};
use super::pipeline::{self, InFlight, Incoming, Outgoing};
use super::snapshot::{messages, SNAPSHOT_CHUNK_BYTES};
use super::{GRPC_MESSAGE_BYTES_MAX, HTTP2_CONNECTION_WINDOW_BYTES, HTTP2_STREAM_WINDOW_BYTES};
use crate::cluster_id::ClusterId;
use crate::codec;
use crate::fault::NetworkFaults;
use crate::types::{NodeId, NodeInfo, TypeConfig, Vote};

/// openraft bounds an AppendEntries by the heartbeat interval (100 ms by default). A batch of
/// up to `max_payload_entries` entries that the follower must fsync can take longer on a busy
/// machine; timing it out would only make the leader back off and resend it. A dead peer still
/// fails fast (connection refused), and a hung one is given up after this bound.
const APPEND_TIMEOUT_MIN: Duration = Duration::from_secs(2);
/// A snapshot is given at least this long, plus this much per chunk.
const SNAPSHOT_TIMEOUT_MIN: Duration = Duration::from_secs(10);
const SNAPSHOT_TIME_PER_CHUNK: Duration = Duration::from_secs(1);

/// Makes the channel to a peer's Raft address. Production uses TCP; simulation and
/// fault-injection tests supply their own.
pub trait ChannelConnector: Send + Sync + 'static {
    fn channel(&self, raft_addr: &str) -> Result<Channel, ChannelError>;
}

/// Why no channel to a peer could be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChannelError {
    #[error("bad raft address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("TLS to {addr}: {reason}")]
    Tls { addr: String, reason: String },
}

/// TCP to `HOST:PORT`, connected on first use and reconnected by tonic after failures;
/// with TLS, the peer must show a certificate signed by the cluster CA and this node shows
/// its own (mutual TLS).
#[derive(Debug, Default, Clone)]
pub struct TcpConnector {
    tls: Option<ClientTlsConfig>,
}

impl TcpConnector {
    /// Plain TCP.
    pub fn plain() -> Self {
        Self::default()
    }

    /// Mutual TLS: trusts peers signed by the cluster CA (`ca_pem`) and presents this node's
    /// certificate and key.
    pub fn mutual_tls(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Self {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(cert_pem, key_pem));
        Self { tls: Some(config) }
    }
}

impl ChannelConnector for TcpConnector {
    fn channel(&self, raft_addr: &str) -> Result<Channel, ChannelError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint =
            Endpoint::from_shared(format!("{scheme}://{raft_addr}")).map_err(|e| {
                ChannelError::BadAddress {
                    addr: raft_addr.to_string(),
                    reason: e.to_string(),
                }
            })?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| ChannelError::Tls {
                    addr: raft_addr.to_string(),
                    reason: e.to_string(),
                })?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .initial_stream_window_size(HTTP2_STREAM_WINDOW_BYTES)
            .initial_connection_window_size(HTTP2_CONNECTION_WINDOW_BYTES)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        Ok(endpoint.connect_lazy())
    }
}

/// Creates a [`PeerConnection`] for every peer openraft replicates to.
#[derive(Clone)]
pub struct NetworkFactory {
    connector: Arc<dyn ChannelConnector>,
    faults: NetworkFaults,
    cluster_id: ClusterId,
    reachability: Reachability,
    append_bytes_max: usize,
}

impl NetworkFactory {
    pub fn new(
        connector: Arc<dyn ChannelConnector>,
        faults: NetworkFaults,
        cluster_id: ClusterId,
    ) -> Self {
        Self {
            connector,
            faults,
            cluster_id,
            reachability: Reachability::default(),
            append_bytes_max: APPEND_BYTES_MAX,
        }
    }

    /// Bounds the bytes of entries in one AppendEntries message (default
    /// [`APPEND_BYTES_MAX`]).
    pub fn with_append_bytes_max(mut self, bytes: usize) -> Self {
        self.append_bytes_max = bytes;
        self
    }
}

/// Whether each peer answered its last RPC, shared by all connections to it (openraft opens
/// one for replication and one for heartbeats). A peer going down or coming back is logged
/// once, instead of every failed heartbeat.
#[derive(Clone, Default)]
struct Reachability {
    down: Arc<std::sync::Mutex<std::collections::HashSet<NodeId>>>,
}

impl Reachability {
    fn record<T>(&self, target: NodeId, result: &Result<T, RPCError<TypeConfig>>) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(RPCError::Unreachable(reason)) = result {
            if down.insert(target) {
                tracing::warn!(peer = %target, %reason, "peer unreachable; retrying with backoff");
            }
        } else if down.remove(&target) {
            tracing::info!(peer = %target, "peer reachable again");
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerConnection {
        let key = NodeKey::new(self.cluster_id.secret());
        let client = self.connector.channel(&node.raft_addr).map(|channel| {
            key.client(channel)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        });
        PeerConnection {
            target,
            client,
            faults: self.faults.clone(),
            cluster_id: self.cluster_id.clone(),
            reachability: self.reachability.clone(),
            append_bytes_max: self.append_bytes_max,
            append_stream_unsupported: false,
        }
    }
}

/// The connection to one peer.
pub struct PeerConnection {
    target: NodeId,
    client: Result<RaftClient, ChannelError>,
    faults: NetworkFaults,
    cluster_id: ClusterId,
    reachability: Reachability,
    append_bytes_max: usize,
    /// The peer answered `AppendStream` with "unimplemented" (it runs an older version):
    /// replicate to it one request at a time.
    append_stream_unsupported: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("raft rpc to node {target}: {message}")]
pub(super) struct PeerError {
    pub(super) target: NodeId,
    pub(super) message: String,
}

/// The answers of a pipelined AppendEntries stream, in request order.
type AnswerStream<'s> = BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>;

type RpcFuture =
    futures::future::BoxFuture<'static, Result<tonic::Response<RaftPayload>, tonic::Status>>;

type RpcFn = fn(RaftClient, RaftPayload) -> RpcFuture;

impl PeerConnection {
    fn error(&self, message: impl Into<String>) -> PeerError {
        PeerError {
            target: self.target,
            message: message.into(),
        }
    }

    /// Sends one request and decodes the answer; transport failures become `Unreachable` (so
    /// openraft backs off), everything else `Network`.
    async fn call<Req, Resp>(
        &self,
        what: &'static str,
        rpc: RpcFn,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let data = codec::encode(what, request);
        self.exchange(what, ttl, move |client, cluster_id| {
            Ok(rpc(client, cluster_id.seal(data?)))
        })
        .await
    }

    /// Opens the pipelined AppendEntries stream (`pipeline.rs`) and returns its answers.
    async fn open_append_stream<S>(
        &mut self,
        requests: S,
        option: RPCOption,
    ) -> Result<AnswerStream<'static>, RPCError<TypeConfig>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        let ttl = option.hard_ttl().max(APPEND_TIMEOUT_MIN);
        let target = self.target;
        let unreachable = move |message: String| {
            RPCError::Unreachable(Unreachable::new(&PeerError { target, message }))
        };
        if self.faults.is_isolated() {
            return Err(unreachable(
                "dropped: this node is isolated by an injected fault".into(),
            ));
        }
        let mut client = self
            .client
            .clone()
            .map_err(|e| unreachable(e.to_string()))?;
        let in_flight = InFlight::new(self.append_bytes_max);
        let requests = pipeline::outgoing(Outgoing {
            requests,
            in_flight: in_flight.clone(),
            bytes_max: self.append_bytes_max,
            cluster_id: self.cluster_id.clone(),
            faults: self.faults.clone(),
        });
        let opened = match tokio::time::timeout(ttl, client.append_stream(requests)).await {
            Err(_) => Err(unreachable(format!("append_stream not opened in {ttl:?}"))),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                tracing::warn!(peer = %self.target, "peer has no pipelined AppendEntries (an older version); replicating one request at a time");
                self.append_stream_unsupported = true;
                Err(unreachable(status.to_string()))
            }
            Ok(Err(status)) => Err(status_error(self.error(status.to_string()), &status)),
            Ok(Ok(response)) => Ok(response.into_inner()),
        };
        self.reachability.record(self.target, &opened);
        let reachability = self.reachability.clone();
        let answers = pipeline::answers(Incoming {
            answers: opened?,
            in_flight,
            ttl,
            target,
            cluster_id: self.cluster_id.clone(),
        });
        Ok(Box::pin(answers.inspect(move |answer| {
            reachability.record(target, answer)
        })))
    }

    /// Runs one exchange that `send` starts with the client and this node's cluster identity
    /// (to sign the request with), and authenticates and decodes the answer; transport failures become `Unreachable` (so openraft backs off),
    /// everything else `Network`.
    async fn exchange<Resp, F>(
        &self,
        what: &'static str,
        ttl: Duration,
        send: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Resp: DeserializeOwned,
        F: FnOnce(RaftClient, &ClusterId) -> Result<RpcFuture, codec::CodecError>,
    {
        let result = async {
            if self.faults.is_isolated() {
                let e = self.error("dropped: this node is isolated by an injected fault");
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            let client = match &self.client {
                Ok(client) => client.clone(),
                Err(e) => {
                    let e = self.error(e.to_string());
                    return Err(RPCError::Unreachable(Unreachable::new(&e)));
                }
            };
            let network = |e: String| RPCError::Network(NetworkError::new(&self.error(e)));
            let sent = send(client, &self.cluster_id).map_err(|e| network(e.to_string()))?;
            let response = match tokio::time::timeout(ttl, sent).await {
                Err(_) => {
                    let e = self.error(format!("{what} timed out after {ttl:?}"));
                    return Err(RPCError::Unreachable(Unreachable::new(&e)));
                }
                Ok(Err(status)) => {
                    return Err(status_error(self.error(status.to_string()), &status))
                }
                Ok(Ok(response)) => response.into_inner(),
            };
            self.cluster_id
                .authenticate(&response)
                .map_err(|refused| network(refused.message().to_string()))?;
            codec::decode(what, &response.data).map_err(|e| network(e.to_string()))
        }
        .await;
        self.reachability.record(self.target, &result);
        result
    }
}

pub(super) fn status_error(error: PeerError, status: &tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => {
            RPCError::Unreachable(Unreachable::new(&error))
        }
        _ => RPCError::Network(NetworkError::new(&error)),
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let f: RpcFn = |mut c, p| Box::pin(async move { c.append_entries(p).await });
        let ttl = option.hard_ttl().max(APPEND_TIMEOUT_MIN);
        let cut = cut_to_budget(&mut rpc, self.append_bytes_max);
        let response = self.call("append_entries", f, &rpc, ttl).await?;
        Ok(match (cut, response) {
            (Some(last), AppendEntriesResponse::Success) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (_, response) => response,
        })
    }

    fn stream_append<'s, S>(
        &'s mut self,
        requests: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<AnswerStream<'s>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        if self.append_stream_unsupported {
            return stream_append_sequential(self, requests, option);
        }
        Box::pin(async move {
            let answers: AnswerStream<'s> = self.open_append_stream(requests, option).await?;
            Ok(answers)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let f: RpcFn = |mut c, p| Box::pin(async move { c.vote(p).await });
        self.call("vote", f, &rpc, option.hard_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let f: RpcFn = |mut c, p| Box::pin(async move { c.pre_vote(p).await });
        self.call("pre_vote", f, &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        // A snapshot goes in bounded chunks on one stream; a large one is given time in
        // proportion to its size.
        let (meta, data) = (snapshot.meta, snapshot.snapshot);
        let ttl = option.hard_ttl().max(SNAPSHOT_TIMEOUT_MIN)
            + SNAPSHOT_TIME_PER_CHUNK * (data.len() / SNAPSHOT_CHUNK_BYTES) as u32;
        let send = self.exchange("install_snapshot", ttl, move |mut client, cluster_id| {
            let messages = messages(&vote, &meta, &data, cluster_id)?;
            Ok(Box::pin(async move {
                client
                    .install_snapshot_stream(futures::stream::iter(messages))
                    .await
            }))
        });
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => result.map_err(|e| match e {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
            }),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let f: RpcFn = |mut c, p| Box::pin(async move { c.transfer_leader(p).await });
        self.call("transfer_leader", f, &req, option.hard_ttl())
            .await
    }

    fn backoff(&self) -> Option<Backoff> {
        let delays = (0..).map(|attempt: u32| {
            let ms = 50u64.saturating_mul(1 << attempt.min(5));
            Duration::from_millis(ms.min(1_000))
        });
        Some(Backoff::new(delays))
    }
}

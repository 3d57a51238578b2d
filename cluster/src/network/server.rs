//! The Raft RPC service: decodes each request, hands it to the local Raft instance and encodes
//! the answer.

use std::sync::{Arc, Mutex};

use arka_proto::raft::raft_service_server::RaftService;
use arka_proto::raft::RaftPayload;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use openraft::raft::AppendEntriesRequest;
use openraft::storage::RaftStateMachine;
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::{EntryIntake, InternalHandler};
use crate::cluster_id::ClusterId;
use crate::codec;
use crate::fault::NetworkFaults;
use crate::refusals::RefusalLog;
use crate::types::{SnapshotMeta, TypeConfig, Vote};

/// Serves node-to-node RPC for one Raft instance: Raft messages, and the internal requests
/// that `internal` answers.
pub struct RaftRpcService<SM: RaftStateMachine<TypeConfig>> {
    raft: Raft<TypeConfig, SM>,
    faults: NetworkFaults,
    cluster_id: ClusterId,
    internal: Arc<dyn InternalHandler>,
    intake: EntryIntake,
}

impl<SM: RaftStateMachine<TypeConfig>> RaftRpcService<SM> {
    pub fn new(
        raft: Raft<TypeConfig, SM>,
        faults: NetworkFaults,
        cluster_id: ClusterId,
        internal: Arc<dyn InternalHandler>,
        intake: EntryIntake,
    ) -> Self {
        Self {
            raft,
            faults,
            cluster_id,
            internal,
            intake,
        }
    }

    fn admit(&self, req: &RaftPayload) -> Result<(), Status> {
        admit(&self.faults, &self.cluster_id, req)
    }
}

/// Answers of one append stream held at once by an injected answer delay: more than a
/// leader keeps in flight.
const DELAYED_ANSWERS_MAX: usize = 4 * super::pipeline::PIPELINE_DEPTH as usize;

/// Refuses every request while the node is isolated by an injected fault, requests not
/// signed with the cluster secret, and requests from another cluster.
fn admit(faults: &NetworkFaults, cluster_id: &ClusterId, req: &RaftPayload) -> Result<(), Status> {
    refuse_if_isolated(faults)?;
    cluster_id
        .admit(req)
        .inspect_err(|refused| log_refusal(req, refused))
}

fn refuse_if_isolated(faults: &NetworkFaults) -> Result<(), Status> {
    if faults.is_isolated() {
        return Err(Status::unavailable("node is isolated by an injected fault"));
    }
    Ok(())
}

/// Messages the Raft port refused (one Raft service per process).
pub(super) static REFUSED: RefusalLog = RefusalLog::new("node-to-node messages");

fn log_refusal(req: &RaftPayload, refused: &Status) {
    let from = format!("a sender naming cluster {:?}", req.cluster_id);
    REFUSED.note(&from, refused.message());
}

/// The AppendEntries requests of a pipelined stream, each admitted and decoded. The first
/// that is refused or undecodable ends the requests and is left in `refusal`, to end the
/// answers after those of the requests before it.
fn admitted_requests(
    incoming: Streaming<RaftPayload>,
    faults: NetworkFaults,
    cluster_id: ClusterId,
    intake: EntryIntake,
    refusal: Arc<Mutex<Option<Status>>>,
) -> impl Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + 'static {
    let state = (incoming, faults, cluster_id, intake, refusal);
    futures::stream::unfold(Some(state), |state| async move {
        let (mut incoming, faults, cluster_id, intake, refusal) = state?;
        let request = incoming.next().await?.and_then(|payload| {
            admit(&faults, &cluster_id, &payload)?;
            let request: AppendEntriesRequest<TypeConfig> =
                decode_request("append_stream", payload)?;
            intake.admit(request.entries.len())?;
            Ok(request)
        });
        match request {
            Ok(request) => {
                let state = (incoming, faults, cluster_id, intake, refusal);
                Some((request, Some(state)))
            }
            Err(status) => {
                *refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                None
            }
        }
    })
}

impl<SM> RaftRpcService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = Vec<u8>>,
{
    async fn install(
        &self,
        vote: Vote,
        meta: SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<Response<RaftPayload>, Status> {
        let snapshot = openraft::Snapshot {
            meta,
            snapshot: data,
        };
        let resp = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| raft_failed("install_snapshot", e))?;
        encode_response(&self.cluster_id, "install_snapshot", &resp)
    }
}

/// The answer to `Identify`.
pub type Identity = (crate::types::NodeId, Option<String>);

/// Decodes an admitted request (its version was checked with its tag).
fn decode_request<T: DeserializeOwned>(what: &'static str, req: RaftPayload) -> Result<T, Status> {
    codec::decode(what, &req.data).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn encode_response<T: Serialize>(
    cluster_id: &ClusterId,
    what: &'static str,
    value: &T,
) -> Result<Response<RaftPayload>, Status> {
    encode_payload(cluster_id, what, value).map(Response::new)
}

/// An answer, signed like a request so that the asker knows a member answered.
fn encode_payload<T: Serialize>(
    cluster_id: &ClusterId,
    what: &'static str,
    value: &T,
) -> Result<RaftPayload, Status> {
    let data = codec::encode(what, value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(cluster_id.seal(data))
}

fn raft_failed(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what} failed: {e}"))
}

#[tonic::async_trait]
impl<SM> RaftService for RaftRpcService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = Vec<u8>>,
{
    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req = req.into_inner();
        self.admit(&req)?;
        let rpc = decode_request("vote", req)?;
        let resp = self
            .raft
            .vote(rpc)
            .await
            .map_err(|e| raft_failed("vote", e))?;
        encode_response(&self.cluster_id, "vote", &resp)
    }

    async fn pre_vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req = req.into_inner();
        self.admit(&req)?;
        let rpc = decode_request("pre_vote", req)?;
        let resp = self
            .raft
            .pre_vote(rpc)
            .await
            .map_err(|e| raft_failed("pre_vote", e))?;
        encode_response(&self.cluster_id, "pre_vote", &resp)
    }

    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let req = req.into_inner();
        self.admit(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode_request("append_entries", req)?;
        self.intake.admit(rpc.entries.len())?;
        let resp = self
            .raft
            .append_entries(rpc)
            .await
            .map_err(|e| raft_failed("append_entries", e))?;
        self.faults.delay_answer().await;
        encode_response(&self.cluster_id, "append_entries", &resp)
    }

    type AppendStreamStream = BoxStream<'static, Result<RaftPayload, Status>>;

    async fn append_stream(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let refusal = Arc::new(Mutex::new(None));
        let requests = admitted_requests(
            req.into_inner(),
            self.faults.clone(),
            self.cluster_id.clone(),
            self.intake.clone(),
            refusal.clone(),
        );
        let faults = self.faults.clone();
        let sealer = self.cluster_id.clone();
        let answers = self
            .raft
            .stream_append(requests)
            // Each answer is held on its own (not after the one before it), as many at
            // once as can be in flight.
            .map(move |answer| {
                let faults = faults.clone();
                async move {
                    faults.delay_answer().await;
                    answer
                }
            })
            .buffered(DELAYED_ANSWERS_MAX)
            .map(move |answer| match answer {
                Ok(result) => encode_payload(&sealer, "append_stream", &result),
                Err(fatal) => Err(raft_failed("append_stream", fatal)),
            });
        let refused = futures::stream::once(async move {
            refusal.lock().unwrap_or_else(|e| e.into_inner()).take()
        })
        .filter_map(|refusal| async move { refusal.map(Err) });
        Ok(Response::new(Box::pin(answers.chain(refused))))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let req = req.into_inner();
        self.admit(&req)?;
        let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) =
            decode_request("install_snapshot", req)?;
        self.install(vote, meta, data).await
    }

    async fn install_snapshot_stream(
        &self,
        req: Request<tonic::Streaming<RaftPayload>>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (vote, meta, data) =
            super::snapshot::receive(req.into_inner(), &self.cluster_id, |first| {
                self.admit(first)
            })
            .await?;
        self.install(vote, meta, data).await
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let req = req.into_inner();
        self.admit(&req)?;
        let rpc = decode_request("transfer_leader", req)?;
        let resp = self
            .raft
            .handle_transfer_leader(rpc)
            .await
            .map_err(|e| raft_failed("transfer_leader", e))?;
        encode_response(&self.cluster_id, "transfer_leader", &resp)
    }

    async fn identify(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        // Answered to any holder of the secret, also one of no cluster yet (a leader about to
        // add this node asks before this node has learned the cluster id).
        let req = req.into_inner();
        refuse_if_isolated(&self.faults)?;
        self.cluster_id
            .authenticate(&req)
            .inspect_err(|refused| log_refusal(&req, refused))?;
        let node_id = self.raft.metrics().borrow_watched().id;
        let identity: Identity = (node_id, self.cluster_id.get());
        encode_response(&self.cluster_id, "identify", &identity)
    }

    async fn internal(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req = req.into_inner();
        refuse_if_isolated(&self.faults)?;
        // Served only between members of one cluster: unlike a Raft message, an internal
        // request never makes a node adopt the sender's cluster id.
        self.cluster_id
            .admit_member(&req)
            .inspect_err(|refused| log_refusal(&req, refused))?;
        let data = self.internal.handle(req.data).await?;
        Ok(Response::new(self.cluster_id.seal(data)))
    }
}

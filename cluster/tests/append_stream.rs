//! The pipelined AppendEntries stream against a follower played by a tonic service on
//! loopback: requests go out before the earlier ones are answered, answers come back in
//! order, a follower that stops answering is reported unreachable, and a follower without the
//! stream (an older version) is replicated to one request at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arka_cluster::codec;
use arka_cluster::fault::NetworkFaults;
use arka_cluster::network::{NetworkFactory, TcpConnector};
use arka_cluster::types::{Entry, LogId, Vote};
use arka_cluster::{ClusterId, ClusterSecret, NodeId, NodeInfo, TypeConfig};
use arka_proto::raft::raft_service_server::{RaftService, RaftServiceServer};
use arka_proto::raft::RaftPayload;
use futures::stream::BoxStream;
use futures::StreamExt;
use openraft::errors::RPCError;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, StreamAppendResult};
use openraft::EntryPayload;
use tonic::{Request, Response, Status, Streaming};

/// How the played follower treats `AppendStream`.
#[derive(Clone, Copy)]
enum Follower {
    /// Answers nothing until `n` requests have arrived, then answers them all in order.
    AnswersAfter(usize),
    /// Reads requests and never answers.
    Silent,
    /// Has no `AppendStream` (answers "unimplemented"); serves unary AppendEntries.
    Unary,
}

struct PlayedFollower {
    mode: Follower,
    unary_calls: Arc<AtomicUsize>,
}

fn log_id(index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term: 1,
            node_id: NodeId(1),
        },
        index,
    )
}

fn request(index: u64) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new(1, NodeId(1)),
        prev_log_id: index.checked_sub(1).filter(|i| *i > 0).map(log_id),
        leader_commit: None,
        entries: vec![Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        }],
    }
}

/// The cluster both ends of these tests belong to.
fn cluster_id() -> ClusterId {
    let secret = ClusterSecret::new(b"append stream test secret").expect("secret");
    ClusterId::new(Some("c".into()), Arc::new(|_| Ok(())), secret)
}

fn payload<T: serde::Serialize>(value: &T) -> RaftPayload {
    cluster_id().seal(codec::encode("test", value).expect("encode"))
}

fn last_log_id(payload: &RaftPayload) -> Option<LogId> {
    let request: AppendEntriesRequest<TypeConfig> =
        codec::decode("test", &payload.data).expect("decode");
    request.entries.last().map(|e| e.log_id)
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not played"))
}

#[tonic::async_trait]
impl RaftService for PlayedFollower {
    type AppendStreamStream = BoxStream<'static, Result<RaftPayload, Status>>;

    async fn append_stream(
        &self,
        req: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let mut incoming = req.into_inner();
        let answer_after = match self.mode {
            Follower::Unary => return unimplemented(),
            Follower::Silent => usize::MAX,
            Follower::AnswersAfter(n) => n,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut received = Vec::new();
            while let Some(Ok(message)) = incoming.next().await {
                received.push(last_log_id(&message));
                if received.len() == answer_after {
                    for last in received.drain(..) {
                        let answer: StreamAppendResult<TypeConfig> = Ok(last);
                        if tx.send(Ok(payload(&answer))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let answers = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn append_entries(
        &self,
        _req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        if !matches!(self.mode, Follower::Unary) {
            return Err(Status::failed_precondition(
                "this follower takes only the stream",
            ));
        }
        self.unary_calls.fetch_add(1, Ordering::SeqCst);
        let answer: AppendEntriesResponse<TypeConfig> = AppendEntriesResponse::Success;
        Ok(Response::new(payload(&answer)))
    }

    async fn vote(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        unimplemented()
    }
    async fn pre_vote(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        unimplemented()
    }
    async fn install_snapshot(
        &self,
        _: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        unimplemented()
    }
    async fn install_snapshot_stream(
        &self,
        _: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<RaftPayload>, Status> {
        unimplemented()
    }
    async fn transfer_leader(
        &self,
        _: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        unimplemented()
    }
    async fn identify(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        unimplemented()
    }
    async fn internal(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        unimplemented()
    }
}

/// Starts the played follower on a loopback port and returns the leader's connection to it
/// and the count of unary AppendEntries it served.
async fn connect(mode: Follower) -> (arka_cluster::network::PeerConnection, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let unary_calls = Arc::new(AtomicUsize::new(0));
    let follower = PlayedFollower {
        mode,
        unary_calls: unary_calls.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftServiceServer::new(follower))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut factory = NetworkFactory::new(
        Arc::new(TcpConnector::plain()),
        NetworkFaults::default(),
        cluster_id(),
    );
    let node = NodeInfo {
        raft_addr: addr.to_string(),
        flight_addr: String::new(),
    };
    (factory.new_client(NodeId(2), &node).await, unary_calls)
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_millis(100))
}

#[tokio::test]
async fn requests_go_out_before_earlier_ones_are_answered_and_answers_keep_their_order() {
    let (mut peer, _) = connect(Follower::AnswersAfter(3)).await;
    let requests = futures::stream::iter((1..=3).map(request));
    let answers = peer.stream_append(requests, option()).await.expect("open");
    let answers: Vec<_> = answers.collect().await;
    let lasts: Vec<_> = answers
        .into_iter()
        .map(|a| a.expect("answer").expect("accepted"))
        .collect();
    assert_eq!(
        lasts,
        vec![Some(log_id(1)), Some(log_id(2)), Some(log_id(3))]
    );
}

#[tokio::test]
async fn a_follower_that_stops_answering_is_reported_unreachable() {
    let (mut peer, _) = connect(Follower::Silent).await;
    let requests = futures::stream::iter(vec![request(1)]).chain(futures::stream::pending());
    let mut answers = peer.stream_append(requests, option()).await.expect("open");
    let answer = tokio::time::timeout(Duration::from_secs(30), answers.next())
        .await
        .expect("the stream gives up on an unanswered request");
    assert!(
        matches!(answer, Some(Err(RPCError::Unreachable(_)))),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_follower_without_the_stream_is_replicated_to_one_request_at_a_time() {
    let (mut peer, unary_calls) = connect(Follower::Unary).await;
    let refused = peer
        .stream_append(futures::stream::iter(vec![request(1)]), option())
        .await
        .err();
    assert!(
        matches!(refused, Some(RPCError::Unreachable(_))),
        "{refused:?}"
    );
    let answers = peer
        .stream_append(futures::stream::iter((1..=2).map(request)), option())
        .await
        .expect("sequential");
    let lasts: Vec<_> = answers
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|a| a.expect("answer").expect("accepted"))
        .collect();
    assert_eq!(lasts, vec![Some(log_id(1)), Some(log_id(2))]);
    assert_eq!(unary_calls.load(Ordering::SeqCst), 2);
}

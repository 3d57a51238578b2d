//! AppendEntries pipelined on one gRPC stream per follower. openraft's default sends one
//! request and waits for its answer, so a follower's disk sits idle while a message crosses the
//! network and the leader's next batch waits for the follower's fsync. On one ordered HTTP/2
//! stream the leader keeps up to [`PIPELINE_DEPTH`] requests in flight; the follower hands
//! them to Raft in order (`Raft::stream_append`), its group commit takes several at once, and
//! it answers each in order once it is on disk.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arka_proto::raft::RaftPayload;
use futures::{Stream, StreamExt};
use openraft::errors::{NetworkError, RPCError, Unreachable};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::Streaming;

use super::budget::{cut_to_budget, entry_bytes};
use super::client::{status_error, PeerError};
use crate::cluster_id::ClusterId;
use crate::codec;
use crate::fault::NetworkFaults;
use crate::types::{NodeId, TypeConfig};

/// Requests one stream keeps in flight at most: a few keep the follower's disk busy while
/// the earlier ones are fsynced.
pub const PIPELINE_DEPTH: u32 = 8;

/// Bytes one stream keeps in flight at most, in append budgets. The leader's lease is counted
/// from when an answered request was sent, and a follower answers only once everything it
/// accepted before is on disk: what is in flight must be written well within the lease.
const PIPELINE_BUDGETS: usize = 2;

/// Byte slots are counted in KiB so that a semaphore can hold them.
const SLOT_BYTES: usize = 1024;

type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// A request on the wire, waiting for its answer. Holding its slot keeps the stream from
/// sending more than the pipeline's bounds ahead.
struct Sent {
    at: Instant,
    /// Why the request could not be sent; it is reported in its turn, as its answer.
    failed: Option<String>,
    _slots: OwnedSemaphorePermit,
}

/// The requests sent on one stream and not yet answered, oldest first, and the slots (KiB)
/// they hold: every request takes at least `1 / PIPELINE_DEPTH` of them, and more when its
/// bytes need more.
#[derive(Clone)]
pub struct InFlight {
    sent: Arc<Mutex<VecDeque<Sent>>>,
    slots: Arc<Semaphore>,
    slots_total: u32,
}

impl InFlight {
    /// In flight for a stream whose requests are cut at `append_bytes_max`.
    pub fn new(append_bytes_max: usize) -> Self {
        let total = (PIPELINE_BUDGETS * append_bytes_max).div_ceil(SLOT_BYTES);
        let slots_total = u32::try_from(total)
            .unwrap_or(u32::MAX)
            .clamp(PIPELINE_DEPTH, Semaphore::MAX_PERMITS as u32);
        Self {
            sent: Arc::default(),
            slots: Arc::new(Semaphore::new(slots_total as usize)),
            slots_total,
        }
    }

    fn slots_least(&self) -> u32 {
        self.slots_total / PIPELINE_DEPTH
    }

    /// The slots a request of `bytes` takes beyond the least every request takes.
    fn slots_beyond_least(&self, bytes: usize) -> u32 {
        let wanted = u32::try_from(bytes.div_ceil(SLOT_BYTES)).unwrap_or(u32::MAX);
        wanted
            .min(self.slots_total)
            .saturating_sub(self.slots_least())
    }

    async fn acquire(&self, slots: u32) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_many_owned(slots).await.ok()
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, VecDeque<Sent>> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, sent: Sent) {
        self.sent().push_back(sent);
    }

    fn oldest(&self) -> Option<(Instant, Option<String>)> {
        self.sent()
            .front()
            .map(|sent| (sent.at, sent.failed.clone()))
    }

    /// Takes the oldest request off the queue (and frees its slot); false when none was sent.
    fn answered(&self) -> bool {
        self.sent().pop_front().is_some()
    }
}

/// What the outgoing side of a stream needs to frame each request.
pub struct Outgoing<S> {
    pub requests: S,
    pub in_flight: InFlight,
    pub bytes_max: usize,
    pub cluster_id: ClusterId,
    pub faults: NetworkFaults,
}

/// The request stream: each request openraft hands over, cut to the byte budget and encoded,
/// once a slot is free. After a cut request nothing more is sent: openraft resends the rest
/// from the follower's answer in its next stream.
pub fn outgoing<S>(out: Outgoing<S>) -> impl Stream<Item = RaftPayload> + Send + 'static
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    futures::stream::unfold(Some(out), |state| async move {
        let mut out = state?;
        let mut slots = out.in_flight.acquire(out.in_flight.slots_least()).await?;
        let mut request = out.requests.next().await?;
        if out.faults.is_isolated() {
            return None;
        }
        let cut = cut_to_budget(&mut request, out.bytes_max);
        let bytes = request.entries.iter().map(entry_bytes).sum();
        slots.merge(
            out.in_flight
                .acquire(out.in_flight.slots_beyond_least(bytes))
                .await?,
        );
        let (data, failed) = match codec::encode("append_entries", &request) {
            Ok(data) => (data, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let stop = cut.is_some() || failed.is_some();
        out.in_flight.push(Sent {
            at: Instant::now(),
            failed,
            _slots: slots,
        });
        let payload = out.cluster_id.seal(data);
        Some((payload, (!stop).then_some(out)))
    })
}

/// What the answering side of a stream needs.
pub struct Incoming {
    pub answers: Streaming<RaftPayload>,
    pub in_flight: InFlight,
    /// How long a request may wait for its answer before the follower counts as unreachable.
    pub ttl: Duration,
    pub target: NodeId,
    /// Answers must be signed with the cluster secret.
    pub cluster_id: ClusterId,
}

/// The answer stream: one answer per request, in order. A request that waits longer than
/// `ttl` ends the stream as `Unreachable`, so that openraft backs off and opens a new one.
pub fn answers(incoming: Incoming) -> impl Stream<Item = Answer> + Send + 'static {
    futures::stream::unfold(Some(incoming), |state| async move {
        let mut incoming = state?;
        let answer = next_answer(&mut incoming).await?;
        let more = matches!(answer, Ok(Ok(_)));
        Some((answer, more.then_some(incoming)))
    })
}

async fn next_answer(incoming: &mut Incoming) -> Option<Answer> {
    let error = |message: String| PeerError {
        target: incoming.target,
        message,
    };
    let unreachable = |e: String| RPCError::Unreachable(Unreachable::new(&error(e)));
    let network = |e: String| RPCError::Network(NetworkError::new(&error(e)));
    loop {
        let oldest = incoming.in_flight.oldest();
        if let Some((_, Some(failed))) = oldest {
            return Some(Err(network(failed)));
        }
        // With nothing in flight the stream is idle: look again after `ttl` in case a request
        // went out meanwhile.
        let deadline = oldest.as_ref().map_or_else(Instant::now, |(at, _)| *at) + incoming.ttl;
        let message = match tokio::time::timeout_at(deadline, incoming.answers.next()).await {
            Err(_) if oldest.is_none() => continue,
            Err(_) => {
                let waited = incoming.ttl;
                return Some(Err(unreachable(format!(
                    "append_entries unanswered after {waited:?}"
                ))));
            }
            Ok(None) => return None,
            Ok(Some(Err(status))) => {
                return Some(Err(status_error(error(status.to_string()), &status)))
            }
            Ok(Some(Ok(message))) => message,
        };
        if !incoming.in_flight.answered() {
            return Some(Err(network("an answer to no request".to_string())));
        }
        if let Err(refused) = incoming.cluster_id.authenticate(&message) {
            return Some(Err(network(refused.message().to_string())));
        }
        return Some(
            codec::decode::<StreamAppendResult<TypeConfig>>("append_stream", &message.data)
                .map_err(|e| network(e.to_string())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 4 * 1024 * 1024;

    #[tokio::test]
    async fn small_requests_are_bounded_by_the_depth() {
        let in_flight = InFlight::new(BUDGET);
        let mut held = Vec::new();
        for _ in 0..PIPELINE_DEPTH {
            held.push(in_flight.acquire(in_flight.slots_least()).await);
            assert_eq!(in_flight.slots_beyond_least(100), 0);
        }
        assert_eq!(in_flight.slots.available_permits(), 0);
    }

    #[test]
    fn large_requests_are_bounded_by_their_bytes_up_to_the_whole_budget() {
        let in_flight = InFlight::new(BUDGET);
        let least = in_flight.slots_least();
        let one_budget = in_flight.slots_beyond_least(BUDGET) + least;
        assert_eq!(one_budget as usize * SLOT_BYTES, BUDGET);
        assert_eq!(
            in_flight.slots_beyond_least(100 * BUDGET) + least,
            in_flight.slots_total,
            "a request larger than the whole budget waits until nothing else is in flight"
        );
        assert_eq!(
            in_flight.slots_total as usize * SLOT_BYTES,
            PIPELINE_BUDGETS * BUDGET
        );
    }
}

//! How the Flight service stops, in two steps the node takes in its shutdown order: first it
//! refuses new calls (`UNAVAILABLE`, naming this node as shutting down and, once another node
//! leads, the leader's location, so that clients go there at once), then it ends the streams
//! still open with the same status. Between the two, a leader hands leadership over, while
//! its open write sessions get the acks of what they sent or a redirect.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use openraft::type_config::async_runtime::WatchReceiver;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;

use super::Stream;
use crate::error::Error;
use crate::raft::{leader_location, Raft};

#[derive(Clone)]
pub struct Drain {
    raft: Raft,
    refusing: CancellationToken,
    ending: CancellationToken,
}

impl Drain {
    pub fn new(raft: Raft) -> Self {
        Self {
            raft,
            refusing: CancellationToken::new(),
            ending: CancellationToken::new(),
        }
    }

    /// From now on every new call is refused.
    pub fn refuse_new_calls(&self) {
        self.refusing.cancel();
    }

    /// Ends every stream still open (and refuses new calls, if not already).
    pub fn end_open_streams(&self) {
        self.refusing.cancel();
        self.ending.cancel();
    }

    /// Admits a new call unless the node is shutting down.
    pub fn admit(&self) -> Result<(), Status> {
        if self.refusing.is_cancelled() {
            return Err(self.stopping());
        }
        Ok(())
    }

    /// `stream`, ended with the shutdown status once [`Drain::end_open_streams`] is called
    /// (a stream that ended before is left as it ended).
    pub fn until_ended<T: Send + 'static>(&self, stream: Stream<T>) -> Stream<T> {
        UntilEnded {
            inner: stream,
            ending: Box::pin(self.ending.clone().cancelled_owned()),
            drain: self.clone(),
            ended: false,
        }
        .boxed()
    }

    fn stopping(&self) -> Status {
        let (node_id, leader_id) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            (m.id, m.current_leader)
        };
        // While this node still leads (handing over), no other node is known to.
        let leader = match leader_id {
            Some(id) if id != node_id => leader_location(&self.raft),
            _ => None,
        };
        Error::Stopping {
            node_id: node_id.0,
            leader,
        }
        .into()
    }
}

/// A stream that ends with the shutdown status when the drain ends open streams. The wait
/// for that is one future for the stream's life, polled before each item.
struct UntilEnded<T> {
    inner: Stream<T>,
    ending: Pin<Box<WaitForCancellationFutureOwned>>,
    drain: Drain,
    ended: bool,
}

impl<T> futures::Stream for UntilEnded<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.ending.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(self.drain.stopping())));
        }
        self.inner.poll_next_unpin(cx)
    }
}

//! Routes log-store events back to the client sessions that proposed the entries: the LSN of
//! a proposal when the leader appends it (`MEMORY`), and the leader's durable index after each
//! group commit (`LOCAL_DISK`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arka_cluster::types::{Entry, LogId};
use arka_cluster::{NodeId, RequestId};
use openraft::EntryPayload;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::wal::WalObserver;

/// Writes handed to Raft that its log has not appended yet, at most, and their bytes. Raft
/// takes its inbox in order, appends what it took in one go, and reads the followers'
/// acknowledgements, which keep the leader's lease, only between such runs: a deep inbox of
/// writes makes a leader that hears from its followers in time see its lease expire and
/// refuse writes. A write is appended within moments of being handed over, so these bounds
/// cost no throughput.
pub const UNAPPENDED_WRITES_MAX: u32 = 4096;
pub const UNAPPENDED_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Places among the unappended writes are counted in units of this many bytes: a write takes
/// at least one unit and one more per unit of its bytes, up to all of them.
const UNIT_BYTES: usize = UNAPPENDED_BYTES_MAX / UNAPPENDED_WRITES_MAX as usize;

/// A proposal waiting for its log id, and its place among the unappended writes.
struct Waiting {
    log_id: oneshot::Sender<LogId>,
    _slot: Option<OwnedSemaphorePermit>,
}

pub struct AckRouter {
    node_id: NodeId,
    next_seq: AtomicU64,
    /// Proposals of this node waiting for their LSN. Bounded by the node's in-flight limit:
    /// every entry is removed when its LSN arrives or its proposal fails.
    waiting: Mutex<HashMap<u64, Waiting>>,
    unappended: Arc<Semaphore>,
    memory_lsn: watch::Sender<u64>,
    disk_lsn: watch::Sender<u64>,
}

impl AckRouter {
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            next_seq: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            unappended: Arc::new(Semaphore::new(UNAPPENDED_WRITES_MAX as usize)),
            memory_lsn: watch::channel(0).0,
            disk_lsn: watch::channel(0).0,
        }
    }

    /// A fresh request id and the receiver of its log id (the LSN and the leader that appended
    /// it), for a command that is not a write.
    pub fn register(&self) -> (RequestId, oneshot::Receiver<LogId>) {
        self.insert(None)
    }

    /// Like [`AckRouter::register`], for a write of `bytes`: waits while the writes handed
    /// to Raft and not yet appended are at their bounds. `None` when the node is stopping.
    pub async fn register_write(
        &self,
        bytes: usize,
    ) -> Option<(RequestId, oneshot::Receiver<LogId>)> {
        let units = u32::try_from(bytes / UNIT_BYTES + 1)
            .unwrap_or(u32::MAX)
            .min(UNAPPENDED_WRITES_MAX);
        let slot = self
            .unappended
            .clone()
            .acquire_many_owned(units)
            .await
            .ok()?;
        Some(self.insert(Some(slot)))
    }

    fn insert(&self, slot: Option<OwnedSemaphorePermit>) -> (RequestId, oneshot::Receiver<LogId>) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (log_id, rx) = oneshot::channel();
        self.lock().insert(
            seq,
            Waiting {
                log_id,
                _slot: slot,
            },
        );
        (
            RequestId {
                origin: self.node_id,
                seq,
            },
            rx,
        )
    }

    /// Forgets a request whose proposal failed before it was appended.
    pub fn forget(&self, request: RequestId) {
        self.lock().remove(&request.seq);
    }

    pub fn memory_lsn(&self) -> u64 {
        *self.memory_lsn.borrow()
    }

    pub fn disk_lsn(&self) -> u64 {
        *self.disk_lsn.borrow()
    }

    pub fn subscribe_disk(&self) -> watch::Receiver<u64> {
        self.disk_lsn.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn raise(watermark: &watch::Sender<u64>, to: u64) {
    watermark.send_if_modified(|current| {
        let raised = to > *current;
        if raised {
            *current = to;
        }
        raised
    });
}

fn lower(watermark: &watch::Sender<u64>, to: u64) {
    watermark.send_if_modified(|current| {
        let lowered = to < *current;
        if lowered {
            *current = to;
        }
        lowered
    });
}

impl WalObserver for AckRouter {
    fn appended(&self, entry: &Entry) {
        let lsn = entry.log_id.index;
        raise(&self.memory_lsn, lsn);
        let EntryPayload::Normal(cmd) = &entry.payload else {
            return;
        };
        let request = cmd.request();
        if request.origin != self.node_id {
            return;
        }
        if let Some(waiting) = self.lock().remove(&request.seq) {
            // The session may have gone away; the entry is in the log all the same.
            let _ = waiting.log_id.send(entry.log_id);
        }
    }

    fn flushed(&self, last_index: u64) {
        raise(&self.disk_lsn, last_index);
    }

    fn truncated(&self, last_index: u64) {
        // The entries above `last_index` are gone, and their LSNs will name new entries that
        // are not yet durable: the watermarks come down with the log (never below
        // REPLICATED, which cannot be truncated). Sessions whose entries were cut learn it
        // from their proposal failing (`LogEntryDiscarded` → ABORTED).
        lower(&self.memory_lsn, last_index);
        lower(&self.disk_lsn, last_index);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;

    fn appended_entry(request: RequestId, index: u64) -> Entry {
        let command = arka_cluster::Command::Write(arka_cluster::WriteCommand {
            table: "t".into(),
            request,
            producer: None,
            rows: 1,
            ipc: bytes::Bytes::new(),
        });
        Entry {
            log_id: arka_cluster::types::LogId::new(
                LeaderId {
                    term: 1,
                    node_id: NodeId(1),
                },
                index,
            ),
            payload: EntryPayload::Normal(command),
        }
    }

    #[tokio::test]
    async fn writes_past_the_unappended_bound_wait_until_earlier_ones_are_appended() {
        let acks = AckRouter::new(NodeId(1));
        let mut registered = Vec::new();
        for _ in 0..UNAPPENDED_WRITES_MAX {
            registered.push(acks.register_write(100).await.expect("registered"));
        }
        let next = tokio::time::timeout(Duration::from_millis(50), acks.register_write(100)).await;
        assert!(next.is_err(), "the bound holds");
        // Commands that are not writes are not held back.
        let _command = acks.register();

        let (first, lsn) = registered.swap_remove(0);
        acks.appended(&appended_entry(first, 7));
        assert_eq!(lsn.await.map(|id| id.index), Ok(7));
        let next = tokio::time::timeout(Duration::from_secs(10), acks.register_write(100)).await;
        assert!(
            matches!(next, Ok(Some(_))),
            "an appended write frees its place"
        );

        let (second, _) = registered.swap_remove(0);
        acks.forget(second);
        let next = tokio::time::timeout(Duration::from_secs(10), acks.register_write(100)).await;
        assert!(
            matches!(next, Ok(Some(_))),
            "a failed proposal frees its place"
        );
    }

    #[tokio::test]
    async fn large_writes_are_bounded_by_their_bytes() {
        let acks = AckRouter::new(NodeId(1));
        let half = UNAPPENDED_BYTES_MAX / 2;
        let _first = acks.register_write(half).await.expect("registered");
        let next = tokio::time::timeout(Duration::from_millis(50), acks.register_write(half)).await;
        assert!(
            next.is_err(),
            "two halves and their units are over the bound"
        );
        let huge = acks.register_write(10 * UNAPPENDED_BYTES_MAX);
        let waiting = tokio::time::timeout(Duration::from_millis(50), huge).await;
        assert!(
            waiting.is_err(),
            "a write over the bound waits for the rest to be appended"
        );
    }
}

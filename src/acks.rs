//! Routes log-store events back to the client sessions that proposed the entries: the LSN of
//! a proposal when the leader appends it (`MEMORY`), and the leader's durable index after each
//! group commit (`LOCAL_DISK`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arka_cluster::types::{Entry, LogId};
use arka_cluster::{NodeId, RequestId};
use openraft::EntryPayload;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::wal::WalObserver;

/// Writes this node handed to Raft that are not yet durable in its WAL, at most, and their
/// bytes. Raft takes its inbox in order, appends what it took in one go, and reads the
/// followers' acknowledgements, which keep the leader's lease, only between such runs: a deep
/// inbox of writes, or an append that waits for the WAL's flusher to make room (a slow or
/// stalled disk), makes a leader that hears from its followers in time see its lease expire
/// and refuse writes. Holding writes back here, before they are proposed, keeps both from
/// happening: the flusher's own bound ([`crate::wal::UNFLUSHED_BYTES_MAX`]) is above this
/// one, so the leader's appends never wait for it. A write is appended and flushed within
/// moments of being handed over, so these bounds cost no throughput.
pub const PENDING_WRITES_MAX: u32 = 4096;
pub const PENDING_BYTES_MAX: usize = 32 * 1024 * 1024;

const _: () = assert!(PENDING_BYTES_MAX < crate::wal::UNFLUSHED_BYTES_MAX);

/// Places among the pending writes are counted in units of this many bytes: a write takes
/// at least one unit and one more per unit of its bytes, up to all of them.
const UNIT_BYTES: usize = PENDING_BYTES_MAX / PENDING_WRITES_MAX as usize;

/// A proposal waiting for its log id, and its place among the pending writes.
struct Waiting {
    log_id: oneshot::Sender<LogId>,
    slot: Option<OwnedSemaphorePermit>,
}

pub struct AckRouter {
    node_id: NodeId,
    next_seq: AtomicU64,
    /// Proposals of this node waiting for their LSN. Bounded by the node's in-flight limit:
    /// every entry is removed when its LSN arrives or its proposal fails.
    waiting: Mutex<HashMap<u64, Waiting>>,
    pending: Arc<Semaphore>,
    /// The places of appended writes, by LSN in log order, held until the WAL flushed them.
    unflushed: Mutex<VecDeque<(u64, OwnedSemaphorePermit)>>,
    memory_lsn: watch::Sender<u64>,
    disk_lsn: watch::Sender<u64>,
}

impl AckRouter {
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            next_seq: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            pending: Arc::new(Semaphore::new(PENDING_WRITES_MAX as usize)),
            unflushed: Mutex::default(),
            memory_lsn: watch::channel(0).0,
            disk_lsn: watch::channel(0).0,
        }
    }

    /// A fresh request id and the receiver of its log id (the LSN and the leader that appended
    /// it), for a command that is not a write.
    pub fn register(&self) -> (RequestId, oneshot::Receiver<LogId>) {
        self.insert(None)
    }

    /// Like [`AckRouter::register`], for a write of `bytes`: waits while the pending writes
    /// are at their bounds. `None` when the node is stopping.
    pub async fn register_write(
        &self,
        bytes: usize,
    ) -> Option<(RequestId, oneshot::Receiver<LogId>)> {
        let units = u32::try_from(bytes / UNIT_BYTES + 1)
            .unwrap_or(u32::MAX)
            .min(PENDING_WRITES_MAX);
        let slot = self.pending.clone().acquire_many_owned(units).await.ok()?;
        Some(self.insert(Some(slot)))
    }

    fn insert(&self, slot: Option<OwnedSemaphorePermit>) -> (RequestId, oneshot::Receiver<LogId>) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (log_id, rx) = oneshot::channel();
        self.lock().insert(seq, Waiting { log_id, slot });
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

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_unflushed(&self) -> MutexGuard<'_, VecDeque<(u64, OwnedSemaphorePermit)>> {
        self.unflushed.lock().unwrap_or_else(|p| p.into_inner())
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
        let Some(waiting) = self.lock().remove(&request.seq) else {
            return;
        };
        // The session may have gone away; the entry is in the log all the same.
        let _ = waiting.log_id.send(entry.log_id);
        if let Some(slot) = waiting.slot {
            self.lock_unflushed().push_back((lsn, slot));
        }
    }

    fn flushed(&self, last_index: u64) {
        raise(&self.disk_lsn, last_index);
        let mut unflushed = self.lock_unflushed();
        while unflushed.front().is_some_and(|(lsn, _)| *lsn <= last_index) {
            unflushed.pop_front();
        }
    }

    fn truncated(&self, last_index: u64) {
        // The entries above `last_index` are gone, and their LSNs will name new entries that
        // are not yet durable: the watermarks come down with the log (never below
        // REPLICATED, which cannot be truncated). Sessions whose entries were cut learn it
        // from their proposal failing (`LogEntryDiscarded` → ABORTED).
        lower(&self.memory_lsn, last_index);
        lower(&self.disk_lsn, last_index);
        let mut unflushed = self.lock_unflushed();
        while unflushed.back().is_some_and(|(lsn, _)| *lsn > last_index) {
            unflushed.pop_back();
        }
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

    async fn registers_in_time(acks: &AckRouter) -> bool {
        let next = tokio::time::timeout(Duration::from_millis(50), acks.register_write(100));
        matches!(next.await, Ok(Some(_)))
    }

    #[tokio::test]
    async fn writes_past_the_pending_bound_wait_until_earlier_ones_are_flushed() {
        let acks = AckRouter::new(NodeId(1));
        let mut registered = Vec::new();
        for _ in 0..PENDING_WRITES_MAX {
            registered.push(acks.register_write(100).await.expect("registered"));
        }
        assert!(!registers_in_time(&acks).await, "the bound holds");
        // Commands that are not writes are not held back.
        let _command = acks.register();

        let (first, lsn) = registered.swap_remove(0);
        acks.appended(&appended_entry(first, 7));
        assert_eq!(lsn.await.map(|id| id.index), Ok(7));
        assert!(
            !registers_in_time(&acks).await,
            "an appended write keeps its place until it is flushed"
        );
        acks.flushed(6);
        assert!(
            !registers_in_time(&acks).await,
            "a flush before it does not free it"
        );
        acks.flushed(7);
        assert!(
            registers_in_time(&acks).await,
            "a flushed write frees its place"
        );

        let (second, _) = registered.swap_remove(0);
        acks.forget(second);
        assert!(
            registers_in_time(&acks).await,
            "a failed proposal frees its place"
        );

        let (third, _) = registered.swap_remove(0);
        acks.appended(&appended_entry(third, 8));
        acks.truncated(7);
        assert!(
            registers_in_time(&acks).await,
            "a truncated write frees its place"
        );
    }

    #[tokio::test]
    async fn large_writes_are_bounded_by_their_bytes() {
        let acks = AckRouter::new(NodeId(1));
        let half = PENDING_BYTES_MAX / 2;
        let _first = acks.register_write(half).await.expect("registered");
        let next = tokio::time::timeout(Duration::from_millis(50), acks.register_write(half)).await;
        assert!(
            next.is_err(),
            "two halves and their units are over the bound"
        );
        let huge = acks.register_write(10 * PENDING_BYTES_MAX);
        let waiting = tokio::time::timeout(Duration::from_millis(50), huge).await;
        assert!(
            waiting.is_err(),
            "a write over the bound waits for the rest to be flushed"
        );
    }
}

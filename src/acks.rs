//! Routes log-store events back to the client sessions that proposed the entries: the LSN of
//! a proposal when the leader appends it (`MEMORY`), and the leader's durable index after each
//! group commit (`LOCAL_DISK`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use arka_cluster::types::Entry;
use arka_cluster::{NodeId, RequestId};
use openraft::EntryPayload;
use tokio::sync::{oneshot, watch};

use crate::wal::WalObserver;

pub struct AckRouter {
    node_id: NodeId,
    next_seq: AtomicU64,
    /// Proposals of this node waiting for their LSN. Bounded by the node's in-flight limit:
    /// every entry is removed when its LSN arrives or its proposal fails.
    waiting: Mutex<HashMap<u64, oneshot::Sender<u64>>>,
    memory_lsn: watch::Sender<u64>,
    disk_lsn: watch::Sender<u64>,
}

impl AckRouter {
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            next_seq: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            memory_lsn: watch::channel(0).0,
            disk_lsn: watch::channel(0).0,
        }
    }

    /// A fresh request id and the receiver of its LSN.
    pub fn register(&self) -> (RequestId, oneshot::Receiver<u64>) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(seq, tx);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<u64>>> {
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
        if let Some(tx) = self.lock().remove(&request.seq) {
            // The session may have gone away; the entry is in the log all the same.
            let _ = tx.send(lsn);
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

//! Tiering (DESIGN §5): the designated tier worker turns committed log ranges into Parquet
//! files on object storage and commits them as Iceberg snapshots; every node purges its WAL
//! below what is in object storage and reads purged ranges back from the Parquet files.

mod catalog;
mod error;
mod failing;
mod iceberg;
mod iceberg_io;
mod pause;
mod purge;
mod range;
pub mod report;
mod store;
mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arka_cluster::{Lsn, NodeId};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

pub use catalog::check_options as check_catalog_options;
pub use error::TierError;
pub use pause::{TierPause, TierStage};
pub use purge::Purge;
pub use store::ObjectStorage;
pub use worker::run as run_worker;

use crate::state::StateMachine;
use crate::wal::LogReader;
use report::Reporter;

/// What the tier worker uses of its node.
pub struct TierNode {
    pub node_id: NodeId,
    pub state: StateMachine,
    pub log: LogReader,
    pub reporter: Reporter,
    pub tiering: Arc<Tiering>,
}

/// Flush requests queued at the tier worker at most; more wait for a slot.
const FLUSH_QUEUE_MAX: usize = 64;

/// Tiering settings (the node configuration makes them: `NodeConfig::tier_settings`).
#[derive(Debug, Clone)]
pub struct TierSettings {
    pub store_url: String,
    pub store_options: BTreeMap<String, String>,
    pub catalog_url: String,
    pub catalog_options: BTreeMap<String, String>,
    pub commit_interval: Duration,
    pub tier_interval: Duration,
    pub range_bytes_max: u64,
    pub hold_table_after: Duration,
}

/// An SQLite catalog file in `dir` (created on first use).
pub fn default_catalog_url(dir: &Path) -> String {
    format!(
        "sqlite:{}?mode=rwc",
        dir.join("iceberg-catalog.db").display()
    )
}

/// A request to seal, upload and commit everything applied up to `upto`.
pub struct FlushRequest {
    pub upto: Lsn,
    pub done: oneshot::Sender<Result<(), FlushError>>,
}

/// Why a flush did not reach the Iceberg catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    #[error("node {node} is not the tier worker (the tier worker is {worker:?})")]
    NotWorker {
        node: NodeId,
        worker: Option<NodeId>,
    },
    #[error("this node is no longer the tier worker")]
    NoLongerWorker,
    #[error("the tier worker is stopped at {0:?} by inject_fault")]
    Paused(TierStage),
    #[error("node {0} is shutting down")]
    ShuttingDown(NodeId),
    #[error("the tier worker has stopped")]
    WorkerStopped,
    #[error("the tier worker stopped before the flush finished")]
    Abandoned,
}

/// What the tier worker of this node is doing, for `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerStatus {
    /// The last error of the worker (cleared when the step that failed succeeds).
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u64,
    #[serde(skip)]
    failed_step: Option<Step>,
}

/// The worker's steps, which fail independently: a catalog that is down does not stop
/// uploads, so an upload must not clear the catalog's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Upload,
    Commit,
    /// Deleting a dropped table's lake data.
    LakeDrop,
}

/// A node's tiering machinery (present when tiering is configured).
pub struct Tiering {
    pub settings: TierSettings,
    pub storage: ObjectStorage,
    pub pause: TierPause,
    flush_tx: mpsc::Sender<FlushRequest>,
    flush_rx: Mutex<Option<mpsc::Receiver<FlushRequest>>>,
    status: Mutex<WorkerStatus>,
    /// Bytes of this node's WAL on disk, as last measured by the purge task.
    wal_bytes: watch::Sender<u64>,
}

impl Tiering {
    pub fn open(settings: TierSettings) -> Result<Self, TierError> {
        let storage = ObjectStorage::open(&settings.store_url, &settings.store_options)?;
        let (flush_tx, flush_rx) = mpsc::channel(FLUSH_QUEUE_MAX);
        Ok(Self {
            settings,
            storage,
            pause: TierPause::default(),
            flush_tx,
            flush_rx: Mutex::new(Some(flush_rx)),
            status: Mutex::new(WorkerStatus::default()),
            wal_bytes: watch::channel(0).0,
        })
    }

    /// Queues a flush at this node's tier worker and waits for it.
    pub async fn flush_here(&self, upto: Lsn) -> Result<(), FlushError> {
        let (done, rx) = oneshot::channel();
        self.flush_tx
            .send(FlushRequest { upto, done })
            .await
            .map_err(|_| FlushError::WorkerStopped)?;
        rx.await.unwrap_or(Err(FlushError::Abandoned))
    }

    pub fn status(&self) -> WorkerStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the worker's errors: the node no longer tiers, and they were its own.
    fn clear_status(&self) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = WorkerStatus::default();
    }

    fn record(&self, step: Step, outcome: Result<(), &TierError>) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) if status.failed_step.is_none_or(|s| s == step) => {
                *status = WorkerStatus::default()
            }
            Ok(()) => {}
            Err(e) => {
                status.last_error = Some(e.to_string());
                status.failures += 1;
                status.failed_step = Some(step);
            }
        }
    }

    pub fn wal_bytes(&self) -> u64 {
        *self.wal_bytes.borrow()
    }

    /// Waits until the WAL holds at most `bytes`, for `wait` at most; true if it does.
    pub async fn wait_for_wal_bytes_at_most(&self, bytes: u64, wait: Duration) -> bool {
        if self.wal_bytes() <= bytes {
            return true;
        }
        let mut measured = self.wal_bytes.subscribe();
        let under = measured.wait_for(|now| *now <= bytes);
        let waited = tokio::time::timeout(wait, under).await;
        matches!(waited, Ok(Ok(_)))
    }

    fn set_wal_bytes(&self, bytes: u64) {
        self.wal_bytes.send_replace(bytes);
    }
}

//! A fault point in the tier worker: with `fault-injection` on, `inject_fault
//! {"tier_pause": STAGE}` makes every commit stop at that stage (uploads go on), so that a
//! test can kill the node exactly between uploading and committing, or between committing
//! and reporting; likewise around deleting a dropped table's lake data.

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierStage {
    /// Files are uploaded and their watermark proposed; the Iceberg commit has not started.
    BeforeCommit,
    /// The Iceberg commit is done; the COMMITTED watermark is not proposed yet.
    BeforeWatermark,
    /// A table is dropped; its Iceberg table and files are not deleted yet.
    BeforeLakeDrop,
    /// A dropped table's Iceberg table and files are deleted; that is not reported yet.
    BeforeLakeDropReport,
}

pub struct TierPause {
    /// The stage to stop at, if any.
    at: watch::Sender<Option<TierStage>>,
    /// The stage the worker is stopped at now.
    paused: watch::Sender<Option<TierStage>>,
}

impl Default for TierPause {
    fn default() -> Self {
        Self {
            at: watch::channel(None).0,
            paused: watch::channel(None).0,
        }
    }
}

impl TierPause {
    pub fn set(&self, stage: Option<TierStage>) {
        self.at.send_replace(stage);
    }

    /// Where the worker is stopped now.
    pub fn paused(&self) -> Option<TierStage> {
        *self.paused.borrow()
    }

    /// True when the worker is asked to stop at `stage`: it then leaves the step there.
    /// Passing another stage does not clear where it is stopped.
    pub fn stops_at(&self, stage: TierStage) -> bool {
        let stop = *self.at.borrow() == Some(stage);
        if stop {
            if self.paused.send_replace(Some(stage)) != Some(stage) {
                tracing::warn!(?stage, "tier worker stopped by inject_fault");
            }
        } else {
            self.paused.send_if_modified(|paused| {
                let left = *paused == Some(stage);
                if left {
                    *paused = None;
                }
                left
            });
        }
        stop
    }
}

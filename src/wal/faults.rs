//! Disk fault points of the WAL, for tests and chaos runs: the group commit goes through
//! them, so a stalled disk is simulated where production writes happen. Without an injected
//! fault each costs one atomic load per group commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct WalFaults {
    sync_delay_ms: Arc<AtomicU64>,
}

impl WalFaults {
    /// Holds every group commit for `delay` before it writes and syncs (zero: not at all),
    /// as a disk that stalls would.
    pub fn set_sync_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.sync_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Waits out the injected delay, if any, before a group commit.
    pub(super) async fn stall_sync(&self) {
        let ms = self.sync_delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

//! Disk fault points of the WAL, for tests and chaos runs: the group commit goes through
//! them, so a stalled disk, a disk that skips `fdatasync` and a power loss are simulated
//! where production writes happen. Without an injected fault each costs an atomic load and
//! an uncontended read lock per group commit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use super::segment::Segment;

#[derive(Debug, Clone, Default)]
pub struct WalFaults {
    sync_delay_ms: Arc<AtomicU64>,
    skip_fsync: Arc<AtomicBool>,
    /// Held shared while a group commit writes and syncs; a power loss takes it exclusively,
    /// so that no write lands after the unsynced bytes were dropped.
    power: Arc<RwLock<()>>,
}

impl WalFaults {
    /// Holds every group commit for `delay` before it writes and syncs (zero: not at all),
    /// as a disk that stalls would.
    pub fn set_sync_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.sync_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Makes group commits skip their `fdatasync` and report the writes durable anyway, as a
    /// disk or file system that lies about its flushes would: a power loss then loses writes
    /// that were acknowledged. Chaos runs use it to prove that their checker notices.
    pub fn set_skip_fsync(&self, skip: bool) {
        self.skip_fsync.store(skip, Ordering::Relaxed);
    }

    /// Waits out the injected delay, if any, before a group commit.
    pub(super) async fn stall_sync(&self) {
        let ms = self.sync_delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    pub(super) fn skips_fsync(&self) -> bool {
        self.skip_fsync.load(Ordering::Relaxed)
    }

    /// Held by a group commit while it writes and syncs.
    pub(super) fn powered(&self) -> RwLockReadGuard<'_, ()> {
        self.power.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A power loss: once the group commit in progress (if any) is done, every segment is
    /// cut back to the length its last `fdatasync` covered, so each byte written but not yet
    /// durable is gone, and the process dies at once, as with kill -9. The files are cut
    /// durably, so the loss is what a restart finds.
    pub(super) fn lose_power(&self, segments: impl FnOnce() -> Vec<Arc<Segment>>) -> ! {
        let _off = self.power.write().unwrap_or_else(|p| p.into_inner());
        for segment in segments() {
            let synced = segment.synced_len();
            if let Err(e) = segment.truncate(synced) {
                tracing::error!(error = %e, "power loss: cutting a segment back failed");
            }
        }
        tracing::warn!("power loss: the unsynced bytes of the wal are gone; stopping");
        // SAFETY: kill(2) of this process; nothing runs after it.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::process::abort()
    }
}

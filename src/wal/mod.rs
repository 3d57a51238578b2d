//! The write-ahead log: append-only segment files that are openraft's log storage.
//!
//! Every Raft entry is one record, framed with its length and a CRC32C (`record.rs`). Records
//! go to the current segment (`segment.rs`) until it reaches `segment_bytes_max`, then a new
//! one is started. Appends are written at once and made durable by the group-commit flusher
//! (`flusher.rs`): many appends, one `fdatasync`, and openraft's `IOFlushed` callback only after
//! it. Vote, committed and purged log ids live in sled (`meta.rs`). The one writer is
//! `log_store.rs`; readers (`reader.rs`) share its record index (`index.rs`).

mod error;
mod faults;
mod flusher;
mod index;
mod log_store;
mod meta;
mod reader;
pub mod record;
mod recovery;
mod segment;
mod tail;

pub use error::{WalError, WalResult};
pub use faults::WalFaults;
pub use flusher::{Flusher, UNFLUSHED_BYTES_MAX};
pub use log_store::{LogStore, WalConfig};
pub use reader::LogReader;

use arka_cluster::types::Entry;

/// Receives log-store events on the leader, to turn them into `MEMORY` and `LOCAL_DISK`
/// acknowledgements.
pub trait WalObserver: Send + Sync + 'static {
    /// The entry was written to the log (its LSN is now known).
    fn appended(&self, entry: &Entry);
    /// Every entry up to and including `last_index` is on disk.
    fn flushed(&self, last_index: u64);
    /// Entries above `last_index` were removed from the log (a new leader overwrote them).
    fn truncated(&self, last_index: u64);
}

/// An observer that ignores every event.
#[derive(Debug, Default)]
pub struct NoopObserver;

impl WalObserver for NoopObserver {
    fn appended(&self, _entry: &Entry) {}
    fn flushed(&self, _last_index: u64) {}
    fn truncated(&self, _last_index: u64) {}
}

//! Group commit: one task takes every append's flush request that is waiting, writes their
//! records to the segments, makes those durable with one `fdatasync` each, and only then
//! completes openraft's `IOFlushed` callbacks and reports the new durable index.
//!
//! The writes happen here, on a blocking thread, and not in `append`: `append` runs on
//! openraft's core task, and a `pwrite` of a few MiB can take tens of milliseconds on a busy
//! disk, during which the leader would read no acknowledgement and its lease could lapse.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arka_cluster::TypeConfig;
use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::{WalError, WalResult};
use super::meta::Meta;
use super::segment::Segment;
use super::{WalFaults, WalObserver};

/// How many appends may wait for a flush before `append` itself waits (backpressure).
pub const FLUSH_QUEUE_MAX: usize = 4096;

/// Encoded records handed to the flusher and not yet written or durable, at most (on top of
/// one append larger than this): `append` waits for room, on openraft's core task, where the
/// wait would keep a leader from reading its followers' answers. So it is a last resort, set
/// above what reaches the log without a wait: the leader's own writes, held back before they
/// are proposed ([`crate::acks::PENDING_BYTES_MAX`]), and a follower's, which the leader's
/// pipeline bounds (two append budgets in flight). Below the tail cache's bound, so that the
/// cache holds every entry not yet written (readers never `pread` those).
pub const UNFLUSHED_BYTES_MAX: usize = 48 * 1024 * 1024;

const _: () = assert!(UNFLUSHED_BYTES_MAX < super::tail::TAIL_BYTES_MAX);

/// How often the durable end of the log is saved, at most (each save is one metadata fsync).
const DURABLE_SAVE_EVERY: Duration = Duration::from_millis(200);

/// The unit in which [`UNFLUSHED_BYTES_MAX`] is counted by a semaphore.
pub const UNFLUSHED_UNIT_BYTES: usize = 4096;

/// Records to write at `offset` of `segment`.
pub struct SegmentWrite {
    pub segment: Arc<Segment>,
    pub offset: u64,
    pub bytes: Vec<u8>,
    /// The first write to a segment made by `Segment::create_pending`: everything before
    /// it is made durable, then the segment is published.
    pub opens_segment: bool,
}

impl SegmentWrite {
    fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }
}

pub enum FlushRequest {
    /// Entries up to `last_index`, encoded in `writes` (in log order; two segments when the
    /// append rolled the log over); complete `callback` once they are written and durable.
    Append {
        writes: Vec<SegmentWrite>,
        last_index: u64,
        callback: IOFlushed<TypeConfig>,
        /// Room taken in the unflushed bound, given back once this request is done.
        _room: OwnedSemaphorePermit,
    },
    /// Answered once every request sent before it was flushed and reported: a truncation
    /// waits for it, so that no flush of the cut entries is reported after the cut.
    Barrier(oneshot::Sender<()>),
}

/// The running flusher, to stop once nothing appends to the log any more.
pub struct Flusher {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Flusher {
    /// Writes and makes durable every append handed over before the call, saves the durable
    /// end of the log, and ends the flusher; an append handed over later fails as shut down.
    pub async fn finish(self) -> WalResult<()> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|e| WalError::FlusherFailed(e.to_string()))
    }
}

/// Starts the flusher. `written` is the index up to which every entry of the log is in its
/// segment file (the flusher raises it once a batch is written and durable), so the tail
/// cache knows which entries it must keep.
pub fn spawn(
    observer: Arc<dyn WalObserver>,
    written: Arc<AtomicU64>,
    faults: WalFaults,
    meta: Meta,
) -> (mpsc::Sender<FlushRequest>, Flusher) {
    let (tx, rx) = mpsc::channel(FLUSH_QUEUE_MAX);
    let marker = DurableMarker {
        meta,
        saved_at: None,
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(rx, observer, written, faults, marker, stop.clone()));
    (tx, Flusher { stop, task })
}

/// Saves how far the log is durable, at most every [`DURABLE_SAVE_EVERY`], so that a restart
/// can tell a log that lost its durable end (a damaged or truncated disk) from one that
/// lost only what was never made durable.
struct DurableMarker {
    meta: Meta,
    saved_at: Option<Instant>,
}

impl DurableMarker {
    /// Notes that the log is durable up to `index`. Saved by the flusher, before it answers
    /// a truncation's barrier, so that the truncation lowers it after any save.
    async fn durable_up_to(&mut self, index: u64, faults: &WalFaults) {
        if self
            .saved_at
            .is_some_and(|at| at.elapsed() < DURABLE_SAVE_EVERY)
        {
            return;
        }
        self.save(index, faults).await;
    }

    /// Saves that the log is durable up to `index` now.
    async fn save(&mut self, index: u64, faults: &WalFaults) {
        // A disk that skips its fsyncs keeps none of what it wrote since, this included.
        if faults.skips_fsync() {
            return;
        }
        self.saved_at = Some(Instant::now());
        if let Err(e) = self.meta.save_durable(index).await {
            tracing::warn!(error = %e, "wal: saving the durable end failed");
        }
    }
}

/// Makes each segment written to durable up to the length written to it (unless `faults`
/// skip the `fdatasync`).
fn sync_all(written: &mut Vec<(Arc<Segment>, u64)>, faults: &WalFaults) -> WalResult<()> {
    if faults.skips_fsync() {
        written.clear();
        return Ok(());
    }
    written
        .drain(..)
        .try_for_each(|(segment, len)| segment.sync_up_to(len))
}

/// Writes the records in log order and makes them durable. A segment is published only
/// after everything before it is durable.
fn write_and_sync(writes: &[SegmentWrite], faults: &WalFaults) -> WalResult<()> {
    let _powered = faults.powered();
    let mut written: Vec<(Arc<Segment>, u64)> = Vec::new();
    for write in writes {
        if write.opens_segment {
            sync_all(&mut written, faults)?;
            write.segment.publish()?;
        }
        write.segment.write_at(write.offset, &write.bytes)?;
        match written.iter_mut().find(|(s, _)| s.id == write.segment.id) {
            Some((_, len)) => *len = (*len).max(write.end()),
            None => written.push((write.segment.clone(), write.end())),
        }
    }
    sync_all(&mut written, faults)
}

/// How long the flusher waits before it writes again to a full disk, at first and at most.
const DISK_FULL_RETRY_MIN: Duration = Duration::from_millis(100);
const DISK_FULL_RETRY_MAX: Duration = Duration::from_secs(2);

/// How often a flusher waiting for room on a full disk says so, at most.
const DISK_FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Writes and syncs `writes` (an error is shared by every append of the batch); a disk that
/// is full is waited out (the writes are made again,
/// with backoff, until there is room) rather than failing them: openraft takes a failed
/// flush as the end of the log, and a node with a dead log is a zombie. The node's free-space
/// floor keeps new writes away long before the disk is full, so this is the rare race of the
/// writes already taken; the bytes it holds meanwhile are bounded by the unflushed bound.
async fn write_until_there_is_room(
    writes: Vec<SegmentWrite>,
    faults: &WalFaults,
) -> Result<(), Arc<WalError>> {
    let writes = Arc::new(writes);
    let mut backoff = DISK_FULL_RETRY_MIN;
    let mut logged_at: Option<Instant> = None;
    loop {
        let (on_disk, batch) = (faults.clone(), writes.clone());
        let synced = tokio::task::spawn_blocking(move || write_and_sync(&batch, &on_disk)).await;
        match synced {
            Ok(Ok(())) => {
                if logged_at.is_some() {
                    tracing::info!("wal: the disk has room again; the log is written");
                }
                return Ok(());
            }
            Ok(Err(full @ WalError::DiskFull { .. })) => {
                if logged_at.is_none_or(|at| at.elapsed() >= DISK_FULL_LOG_EVERY) {
                    tracing::warn!(error = %full, "wal: the disk is full; the log is written again once there is room (free space on the data dir's disk)");
                    logged_at = Some(Instant::now());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(DISK_FULL_RETRY_MAX);
            }
            Ok(Err(e)) => return Err(Arc::new(e)),
            Err(join) => return Err(Arc::new(WalError::FlusherFailed(join.to_string()))),
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<FlushRequest>,
    observer: Arc<dyn WalObserver>,
    written: Arc<AtomicU64>,
    faults: WalFaults,
    mut marker: DurableMarker,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(FLUSH_QUEUE_MAX);
    let mut durable = None;
    // One wait for the stop signal for the flusher's life, not one per group commit.
    let stopping = stop.cancelled();
    tokio::pin!(stopping);
    loop {
        let received = tokio::select! {
            received = rx.recv_many(&mut batch, FLUSH_QUEUE_MAX) => received,
            // Takes no new request; those already queued are still received, then none.
            () = &mut stopping, if !rx.is_closed() => {
                rx.close();
                continue;
            }
        };
        if received == 0 {
            break;
        }
        let writes: Vec<SegmentWrite> = batch
            .iter_mut()
            .flat_map(|request| match request {
                FlushRequest::Append { writes, .. } => std::mem::take(writes),
                FlushRequest::Barrier(_) => Vec::new(),
            })
            .collect();
        faults.stall_sync().await;
        let result = write_until_there_is_room(writes, &faults).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "wal: fdatasync failed");
        }
        // Requests are in append order, and a truncation waits for its barrier before the log
        // changes (so a barrier ends its batch): the last append is the durable end of the log.
        let last = batch.iter().rev().find_map(|request| match request {
            FlushRequest::Append { last_index, .. } => Some(*last_index),
            FlushRequest::Barrier(_) => None,
        });
        if let (Ok(()), Some(last)) = (&result, last) {
            written.store(last, Ordering::Release);
            observer.flushed(last);
        }
        let mut barriers = Vec::new();
        for request in batch.drain(..) {
            match request {
                FlushRequest::Append { callback, .. } => {
                    let done = result.clone().map_err(|e| io::Error::other(e.to_string()));
                    callback.io_completed(done);
                }
                FlushRequest::Barrier(done) => barriers.push(done),
            }
        }
        // After the appends are answered (their acks do not wait for it), and before a
        // truncation waiting on a barrier may lower it.
        if let (Ok(()), Some(last)) = (&result, last) {
            marker.durable_up_to(last, &faults).await;
            durable = Some(last);
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
    // Stopped by the node (not by a dropped store, as in a crash): the next start then
    // knows the log's durable end exactly.
    if let (true, Some(last)) = (stop.is_cancelled(), durable) {
        marker.save(last, &faults).await;
    }
}

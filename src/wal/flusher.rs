//! Group commit: one task takes every append's flush request that is waiting, makes the
//! segments they wrote durable with one `fdatasync` each, and only then completes openraft's
//! `IOFlushed` callbacks and reports the new durable index.

use std::io;
use std::sync::Arc;

use arka_cluster::TypeConfig;
use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot};

use super::segment::Segment;
use super::WalObserver;

/// How many appends may wait for a flush before `append` itself waits (backpressure).
pub const FLUSH_QUEUE_MAX: usize = 4096;

pub enum FlushRequest {
    /// Entries up to `last_index` were written to `segment`, which is now `written` bytes
    /// long; complete `callback` once they are durable.
    Append {
        segment: Arc<Segment>,
        written: u64,
        last_index: u64,
        callback: IOFlushed<TypeConfig>,
    },
    /// Answered once every request sent before it was flushed and reported: a truncation
    /// waits for it, so that no flush of the cut entries is reported after the cut.
    Barrier(oneshot::Sender<()>),
}

pub fn spawn(observer: Arc<dyn WalObserver>) -> mpsc::Sender<FlushRequest> {
    let (tx, rx) = mpsc::channel(FLUSH_QUEUE_MAX);
    tokio::spawn(run(rx, observer));
    tx
}

/// Each segment of the batch once, with the length written to it.
fn segments_of(batch: &[FlushRequest]) -> Vec<(Arc<Segment>, u64)> {
    let mut segments: Vec<(Arc<Segment>, u64)> = Vec::new();
    for request in batch {
        let FlushRequest::Append {
            segment, written, ..
        } = request
        else {
            continue;
        };
        match segments.iter_mut().find(|(s, _)| s.id == segment.id) {
            Some((_, len)) => *len = (*len).max(*written),
            None => segments.push((segment.clone(), *written)),
        }
    }
    segments
}

async fn run(mut rx: mpsc::Receiver<FlushRequest>, observer: Arc<dyn WalObserver>) {
    let mut batch = Vec::with_capacity(FLUSH_QUEUE_MAX);
    while rx.recv_many(&mut batch, FLUSH_QUEUE_MAX).await > 0 {
        let segments = segments_of(&batch);
        let synced = tokio::task::spawn_blocking(move || {
            segments
                .iter()
                .try_for_each(|(segment, written)| segment.sync_up_to(*written))
        })
        .await;
        let result = match synced {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(join) => Err(format!("wal flush task failed: {join}")),
        };
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
            observer.flushed(last);
        }
        for request in batch.drain(..) {
            match request {
                FlushRequest::Append { callback, .. } => {
                    callback.io_completed(result.clone().map_err(io::Error::other));
                }
                FlushRequest::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}

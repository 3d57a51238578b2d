//! Group commit: one task takes every append's flush request that is waiting, makes the
//! segments they wrote durable with one `fdatasync` each, and only then completes openraft's
//! `IOFlushed` callbacks and reports the new durable index.

use std::io;
use std::sync::Arc;

use arka_cluster::TypeConfig;
use openraft::storage::IOFlushed;
use tokio::sync::mpsc;

use super::segment::Segment;
use super::WalObserver;

/// How many appends may wait for a flush before `append` itself waits (backpressure).
pub const FLUSH_QUEUE_MAX: usize = 4096;

pub struct FlushRequest {
    pub segment: Arc<Segment>,
    pub last_index: u64,
    pub callback: IOFlushed<TypeConfig>,
}

pub fn spawn(observer: Arc<dyn WalObserver>) -> mpsc::Sender<FlushRequest> {
    let (tx, rx) = mpsc::channel(FLUSH_QUEUE_MAX);
    tokio::spawn(run(rx, observer));
    tx
}

async fn run(mut rx: mpsc::Receiver<FlushRequest>, observer: Arc<dyn WalObserver>) {
    let mut batch = Vec::with_capacity(FLUSH_QUEUE_MAX);
    while rx.recv_many(&mut batch, FLUSH_QUEUE_MAX).await > 0 {
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        for request in &batch {
            if !segments.iter().any(|s| s.id == request.segment.id) {
                segments.push(request.segment.clone());
            }
        }
        let synced = tokio::task::spawn_blocking(move || {
            segments.iter().try_for_each(|segment| segment.sync())
        })
        .await;
        let result = match synced {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(join) => Err(format!("wal flush task failed: {join}")),
        };
        match &result {
            Ok(()) => {
                let last = batch.iter().map(|r| r.last_index).max().unwrap_or(0);
                observer.flushed(last);
            }
            Err(e) => tracing::error!(error = %e, "wal: fdatasync failed"),
        }
        for request in batch.drain(..) {
            let outcome = result.clone().map_err(io::Error::other);
            request.callback.io_completed(outcome);
        }
    }
}

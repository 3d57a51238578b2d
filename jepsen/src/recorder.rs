//! Records the history as the run goes: every operation gets its index and time here, in
//! the order the harness saw it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::history::{Op, OpType};

#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            started: Instant::now(),
            ops: Arc::default(),
        }
    }

    /// Appends `op`, stamped with its index and time.
    pub fn record(&self, mut op: Op) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        op.index = ops.len() as u64;
        op.time_ns = self.started.elapsed().as_nanos() as u64;
        ops.push(op);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs `work` for at most `wait` and returns the completion of `invoke`: `ok` with what
/// the work gave, or `fail` with why (its error, or no answer in time). For operations that
/// change nothing, so that one that did not finish certainly did not happen.
pub async fn complete_within<T>(
    invoke: &Op,
    wait: Duration,
    work: impl Future<Output = anyhow::Result<T>>,
) -> (Op, Option<T>) {
    let mut done = Op {
        kind: OpType::Ok,
        ..invoke.clone()
    };
    let error = match tokio::time::timeout(wait, work).await {
        Ok(Ok(value)) => return (done, Some(value)),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {wait:?}"),
    };
    done.kind = OpType::Fail;
    done.error = Some(error);
    (done, None)
}

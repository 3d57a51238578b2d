//! Records the history as the run goes: every operation gets its index and time here, in
//! the order the harness saw it.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::history::Op;

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

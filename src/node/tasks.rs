//! A set of long-running tasks of a node that stop together: each receives the set's stop
//! signal, ends its work when it fires, and is waited for, within a bound, before the node
//! goes on with the next step of its shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

pub struct Tasks {
    /// What the set is, in the log.
    what: &'static str,
    stop: CancellationToken,
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            stop: CancellationToken::new(),
            set: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// Starts `run`, giving it the set's stop signal.
    pub fn spawn<F>(&mut self, name: &'static str, run: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.set.spawn(run(self.stop.clone()));
        self.names.insert(handle.id(), name);
    }

    /// Signals every task to stop and waits for them, at most `within`; a task still running
    /// then is aborted, and named in the log.
    pub async fn stop(mut self, within: Duration) {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await {
                Ok(None) => return,
                Ok(Some(Ok((id, ())))) => {
                    self.names.remove(&id);
                }
                Ok(Some(Err(e))) => {
                    let name = self.names.remove(&e.id()).unwrap_or("a task");
                    tracing::error!(task = name, error = %e, "{} task failed", self.what);
                }
                Err(_) => break,
            }
        }
        let late: Vec<&str> = self.names.values().copied().collect();
        self.set.shutdown().await;
        tracing::warn!(tasks = ?late, after = ?within, "{} still running at shutdown: stopped where they were", self.what);
    }

    /// Stops every task where it is, without waiting for it to finish its work.
    pub async fn abort(mut self) {
        self.set.shutdown().await;
    }
}

//! A thread for a node's CPU-heavy background work (the tier worker reading a range back
//! from the WAL and encoding it as Parquet, a snapshot's encoding), at a lower CPU priority
//! than the rest of the node. That work has seconds of slack; on a busy node its bursts
//! must yield to the threads that take writes and answer Raft, as a database runs
//! compaction at low priority.

use std::panic::AssertUnwindSafe;

use tokio::sync::{mpsc, oneshot};

/// How much lower than the node's threads it runs (a `nice` increment).
const NICE_INCREMENT: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the thread; clones share it, and it ends when the last is dropped.
#[derive(Clone)]
pub struct LowPriorityThread {
    jobs: mpsc::Sender<Job>,
}

impl LowPriorityThread {
    /// Starts the thread.
    pub fn start(name: &str) -> std::io::Result<Self> {
        // Each user waits for its job before it sends the next.
        let (jobs, mut rx) = mpsc::channel::<Job>(1);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                lower_this_threads_priority();
                while let Some(job) = rx.blocking_recv() {
                    // A panic fails the one job (its answer is dropped), not the thread.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the thread and returns what it returned; `None` when it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).await.ok()?;
        rx.await.ok()
    }
}

/// Raises the calling thread's nice value (on Linux, `setpriority` with `PRIO_PROCESS` and
/// id 0 applies to the calling thread only). Not being allowed to is no reason to stop
/// tiering: the thread then runs at the node's priority.
fn lower_this_threads_priority() {
    // SAFETY: getpriority/setpriority read and change only this thread's scheduling value.
    let result = unsafe {
        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, current + NICE_INCREMENT)
    };
    if result != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not lower a background thread's CPU priority"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread.
    fn nice() -> i32 {
        // SAFETY: reads this thread's scheduling value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test]
    async fn jobs_run_at_a_lower_priority_and_a_panic_fails_only_its_job() {
        let thread = LowPriorityThread::start("test-low").expect("start");
        let ours = nice();
        let theirs = thread.run(nice).await.expect("ran");
        assert_eq!(theirs, (ours + NICE_INCREMENT).min(19));
        assert_eq!(nice(), ours, "the caller's priority is unchanged");
        let panicked: Option<()> = thread.run(|| panic!("a bad range")).await;
        assert!(panicked.is_none());
        assert_eq!(thread.run(|| 7).await, Some(7), "the thread goes on");
    }
}

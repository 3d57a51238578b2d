//! Refused node-to-node traffic, counted and logged at most once per [`LOG_EVERY`]: an
//! operator must see a stranger probing the ports or a member with another secret, but a
//! flood of forged messages must not become a flood of log lines.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counts {
    total: u64,
    logged_at: Option<Instant>,
}

pub struct RefusalLog {
    /// What is refused, as the log line says it.
    what: &'static str,
    counts: Mutex<Counts>,
}

impl RefusalLog {
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            counts: Mutex::new(Counts {
                total: 0,
                logged_at: None,
            }),
        }
    }

    /// Counts one refusal and logs it with the total so far, unless a line was logged
    /// less than [`LOG_EVERY`] ago.
    pub fn note(&self, from: &dyn Display, reason: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total += 1;
        if counts.logged_at.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            counts.logged_at = Some(Instant::now());
            tracing::warn!(
                %from,
                reason,
                refused_total = counts.total,
                "refused {}",
                self.what
            );
        }
    }
}

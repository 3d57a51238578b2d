//! The audit log: one JSON line for every admin action (whatever its outcome) and every
//! refused call, with the user, the action, its target, the outcome and the source address.
//!
//! Lines go through a bounded queue to one writer task, so that a flood of refused calls
//! never blocks a request; what the queue cannot take is counted and reported in the next
//! line written. The file is rotated at [`AUDIT_FILE_BYTES_MAX`] (one older file is kept),
//! so its disk use is bounded too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

/// Audit lines queued for the writer at most.
const AUDIT_QUEUE_MAX: usize = 4096;
/// The audit file is moved to `audit.log.1` past this size.
pub const AUDIT_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub user: String,
    /// The Flight call, or the action of a DoAction.
    pub action: String,
    /// What it was about: a table, a node id, or empty.
    pub target: String,
    /// `ok`, `refused: …` or `failed: …`.
    pub outcome: String,
    pub source: String,
}

#[derive(Serialize)]
struct Line<'a> {
    time_ms: u64,
    #[serde(flatten)]
    event: &'a AuditEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped_before: Option<u64>,
}

/// A handle to the audit log; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    queue: Option<mpsc::Sender<AuditEvent>>,
    dropped: Arc<AtomicU64>,
}

impl Audit {
    /// Audit lines appended to `path` by a writer task.
    pub fn to_file(path: PathBuf) -> Self {
        let (queue, events) = mpsc::channel(AUDIT_QUEUE_MAX);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_lines(path, events, dropped.clone()));
        Self {
            queue: Some(queue),
            dropped,
        }
    }

    /// An audit log that writes nothing (tests of components that need one).
    pub fn off() -> Self {
        Self {
            queue: None,
            dropped: Arc::default(),
        }
    }

    pub fn record(&self, event: AuditEvent) {
        tracing::info!(target: "arka::audit", user = %event.user, action = %event.action, target = %event.target, outcome = %event.outcome, source = %event.source, "audit");
        if let Some(queue) = &self.queue {
            if queue.try_send(event).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn write_lines(
    path: PathBuf,
    mut events: mpsc::Receiver<AuditEvent>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(event) = events.recv().await {
        let dropped_before = Some(dropped.swap(0, Ordering::Relaxed)).filter(|n| *n > 0);
        let line = Line {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            event: &event,
            dropped_before,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            continue;
        };
        text.push(b'\n');
        let path = path.clone();
        let written = tokio::task::spawn_blocking(move || append(&path, &text)).await;
        if let Ok(Err(e)) = written {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

fn append(path: &Path, line: &[u8]) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= AUDIT_FILE_BYTES_MAX) {
        std::fs::rename(path, path.with_extension("log.1"))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_become_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::to_file(path.clone());
        let event = |outcome: &str| AuditEvent {
            user: "ann".into(),
            action: "drop_table".into(),
            target: "t".into(),
            outcome: outcome.into(),
            source: "127.0.0.1:5".into(),
        };
        audit.record(event("ok"));
        audit.record(event("refused: reader"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let lines = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2 || std::time::Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let parsed: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(parsed.len(), 2, "{lines}");
        assert_eq!(parsed[1]["outcome"], "refused: reader");
        assert_eq!(parsed[0]["user"], "ann");
        assert!(parsed[0]["time_ms"].as_u64().is_some());
    }
}

//! When a node builds its snapshots: every [`SNAPSHOT_EVERY_ENTRIES`] applied entries, at a
//! phase that depends on its node id. openraft's own policy snapshots every node at the same
//! log index, so all of them copied, encoded and fsynced their state in the same instant and
//! the quorum's acks stalled together; with the phases apart, at most one member of a small
//! cluster is busy with a snapshot at a time, and the others keep the quorum moving.

use arka_cluster::NodeId;
use openraft::type_config::async_runtime::WatchReceiver;
use tokio_util::sync::CancellationToken;

use super::Raft;

/// Applied entries between two snapshots of one node, unless configured
/// (`snapshot-every-entries`): bounds how much of the WAL a restart applies again.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 50_000;

/// Where in each period node `id` snapshots: spread by the golden ratio, so that any few
/// consecutive ids land far apart.
fn phase(id: NodeId, every: u64) -> u64 {
    // In u128: node ids come from the config and may be any u64.
    let every = u128::from(every.max(1));
    (u128::from(id.0) * every * 5 / 8 % every) as u64
}

/// Which of node `id`'s periods the log index `index` is in.
fn period(id: NodeId, every: u64, index: u64) -> u64 {
    let every = every.max(1);
    index.saturating_add(phase(id, every)) / every
}

/// Whether a node at `applied`, whose newest snapshot is at `snapshot`, is due for one: the
/// applied position crossed one of its period's boundaries since that snapshot.
pub fn snapshot_due(id: NodeId, every: u64, applied: u64, snapshot: Option<u64>) -> bool {
    period(id, every, applied) > period(id, every, snapshot.unwrap_or(0))
}

/// This node's snapshot schedule: what it uses of the node.
pub struct SnapshotSchedule {
    pub raft: Raft,
    pub node_id: NodeId,
    /// Applied entries between two snapshots (`snapshot-every-entries`).
    pub every: u64,
}

impl SnapshotSchedule {
    /// Triggers snapshots until `shutdown` (or until Raft shuts down). Raft builds them: a
    /// snapshot under way when the schedule stops is finished or dropped by Raft itself.
    pub async fn run(self, shutdown: CancellationToken) {
        let schedule = follow(self.raft, self.node_id, self.every);
        let _ = shutdown.run_until_cancelled(schedule).await;
    }
}

/// Triggers this node's snapshots as [`snapshot_due`] says, until Raft shuts down.
async fn follow(raft: Raft, id: NodeId, every: u64) {
    let mut metrics = raft.metrics();
    // The period asked for last: one request per period, even while a build is under way.
    let mut asked = None;
    loop {
        let (applied, snapshot) = {
            let m = metrics.borrow_watched();
            (m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index))
        };
        if let Some(applied) = applied {
            let period = period(id, every, applied);
            if asked != Some(period) && snapshot_due(id, every, applied, snapshot) {
                asked = Some(period);
                if let Err(e) = raft.trigger().snapshot().await {
                    tracing::warn!(error = %e, "cannot trigger a snapshot; Raft is shutting down");
                    return;
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The applied indexes at which a node that snapshots whenever due takes its snapshots.
    fn snapshots_of(id: u64, every: u64, upto: u64) -> Vec<u64> {
        let mut last = None;
        let mut at = Vec::new();
        for applied in 1..=upto {
            if snapshot_due(NodeId(id), every, applied, last) {
                last = Some(applied);
                at.push(applied);
            }
        }
        at
    }

    #[test]
    fn a_node_snapshots_once_per_period() {
        let at = snapshots_of(1, 1000, 10_000);
        assert!((9..=10).contains(&at.len()), "{at:?}");
        for pair in at.windows(2) {
            assert_eq!(pair[1] - pair[0], 1000, "{at:?}");
        }
    }

    #[test]
    fn three_nodes_snapshot_far_apart() {
        let every = 1000;
        let mut all: Vec<u64> = (1..=3)
            .flat_map(|id| snapshots_of(id, every, 10_000))
            .collect();
        all.sort_unstable();
        for pair in all.windows(2) {
            assert!(pair[1] - pair[0] >= every / 5, "{all:?}");
        }
    }

    #[test]
    fn any_node_id_has_a_phase_within_the_period() {
        for id in [0, 1, u64::MAX / 3, u64::MAX] {
            assert!(phase(NodeId(id), 1000) < 1000);
            assert!(snapshot_due(NodeId(id), 1000, 5000, Some(100)));
        }
    }

    #[test]
    fn a_node_far_behind_its_period_snapshots_once_it_catches_up() {
        // A snapshot installed from the leader, then many entries applied at once.
        assert!(snapshot_due(NodeId(2), 1000, 5000, Some(100)));
        assert!(!snapshot_due(NodeId(2), 1000, 150, Some(100)));
    }
}

//! Which leader appended each applied entry: the log id of the first entry of every
//! leadership in the applied log, in log order. An LSN alone does not name a write for good
//! (a new leader overwrites what an old one appended but never replicated); an LSN and the
//! leader that appended it do, so `get_durability_status` can tell a client whether the write
//! it was acknowledged at an LSN is still the one there, even after the WAL dropped it.

use std::collections::VecDeque;

use arka_cluster::types::{CommittedLeaderId, LogId};
use serde::{Deserialize, Serialize};

/// Leaderships remembered; past it the oldest is forgotten, and the entries it appended are
/// answered as unknown. Each election starts one, so this reaches far beyond the writes a
/// client still asks about.
pub const LEADERSHIPS_MAX: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaderships {
    starts: VecDeque<LogId>,
}

impl Leaderships {
    /// Records the applied entry `log_id` (entries are applied in log order).
    pub fn note(&mut self, log_id: &LogId) {
        if (self.starts.back()).is_some_and(|s| s.leader_id == log_id.leader_id) {
            return;
        }
        self.starts.push_back(*log_id);
        if self.starts.len() > LEADERSHIPS_MAX {
            self.starts.pop_front();
        }
    }

    /// The leader that appended the applied entry at `lsn`; `None` when `lsn` is older than
    /// the leaderships remembered. Only meaningful for `lsn` up to the applied one.
    pub fn leader_at(&self, lsn: u64) -> Option<CommittedLeaderId> {
        let after = self.starts.partition_point(|s| s.index <= lsn);
        let start = self.starts.get(after.checked_sub(1)?)?;
        Some(start.leader_id)
    }
}

#[cfg(test)]
mod tests {
    use arka_cluster::NodeId;
    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(leader(term, node), index)
    }

    fn leader(term: u64, node: u64) -> CommittedLeaderId {
        LeaderId {
            term,
            node_id: NodeId(node),
        }
    }

    #[test]
    fn each_lsn_maps_to_the_leadership_that_appended_it() {
        let mut history = Leaderships::default();
        for id in [(1, 1, 5), (1, 1, 6), (2, 3, 7), (2, 3, 8), (2, 2, 9)] {
            history.note(&log_id(id.0, id.1, id.2));
        }
        assert_eq!(history.leader_at(4), None);
        assert_eq!(history.leader_at(6), Some(leader(1, 1)));
        assert_eq!(history.leader_at(8), Some(leader(2, 3)));
        // The same term under another node is another leadership.
        assert_eq!(history.leader_at(9), Some(leader(2, 2)));
        assert_eq!(history.leader_at(100), Some(leader(2, 2)));
    }

    #[test]
    fn the_oldest_leaderships_are_forgotten_past_the_bound() {
        let mut history = Leaderships::default();
        for term in 1..=(LEADERSHIPS_MAX as u64 + 1) {
            history.note(&log_id(term, 1, term * 10));
        }
        assert_eq!(history.leader_at(10), None);
        assert_eq!(history.leader_at(25), Some(leader(2, 1)));
    }
}

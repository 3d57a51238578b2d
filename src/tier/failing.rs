//! Which tables the tier worker holds back from Iceberg. A table whose commit fails is
//! retried with the others, as a catalog that is briefly down needs; only once it has failed
//! for `hold_table_after` is it held back, so the other tables reach COMMITTED again and its
//! writers are told why theirs do not.

use std::collections::BTreeMap;
use std::time::Duration;

use arka_cluster::HeldBackTable;
use tokio::time::Instant;

use super::TierError;
use crate::state::TableCommits;

/// The tables whose last commit attempt failed, with when their failures began.
#[derive(Debug, Default)]
pub struct FailingTables {
    since: BTreeMap<String, Instant>,
}

impl FailingTables {
    /// Records the tables that failed in the commit attempt made at `now` (every other table
    /// succeeded or had nothing to commit). Answers the tables to report held back, or the error of a
    /// table that has not failed for long enough to be held back: the attempt then fails as
    /// a whole and is retried.
    pub fn update(
        &mut self,
        failed: Vec<(String, TierError)>,
        commits: &TableCommits,
        hold_after: Duration,
        now: Instant,
    ) -> Result<Vec<HeldBackTable>, TierError> {
        let before = std::mem::take(&mut self.since);
        let mut held_back = Vec::new();
        let mut first_young = None;
        for (table, error) in failed {
            let since = before.get(&table).copied().unwrap_or(now);
            self.since.insert(table.clone(), since);
            let held = commits.held_back(&table).is_some();
            if held || now.duration_since(since) >= hold_after {
                held_back.push(HeldBackTable {
                    table,
                    reason: error.to_string(),
                });
            } else {
                first_young.get_or_insert(error);
            }
        }
        match first_young {
            Some(error) => Err(error),
            None => Ok(held_back),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(table: &str) -> Vec<(String, TierError)> {
        let error = TierError::Schema {
            table: table.into(),
            reason: "refused".into(),
        };
        vec![(table.to_string(), error)]
    }

    #[test]
    fn a_table_is_held_back_only_once_it_has_failed_for_the_hold_time() {
        let mut failing = FailingTables::default();
        let commits = TableCommits::default();
        let hold = Duration::from_secs(10);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert!(failing.update(failure("b"), &commits, hold, at(0)).is_err());
        assert!(failing.update(failure("b"), &commits, hold, at(9)).is_err());
        let held = (failing.update(failure("b"), &commits, hold, at(10))).expect("held");
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].reason, "table b: refused");
        // A success in between starts the clock again.
        assert!(failing.update(Vec::new(), &commits, hold, at(11)).is_ok());
        assert!(failing
            .update(failure("b"), &commits, hold, at(30))
            .is_err());
    }

    #[test]
    fn a_table_already_held_back_stays_held_back_on_the_next_worker() {
        let mut commits = TableCommits::default();
        let held = HeldBackTable {
            table: "b".into(),
            reason: "refused".into(),
        };
        commits.commit(arka_cluster::Lsn(5), &[held]);
        let mut failing = FailingTables::default();
        let hold = Duration::from_secs(60);
        let again = failing.update(failure("b"), &commits, hold, Instant::now());
        assert_eq!(again.expect("still held").len(), 1);
    }
}

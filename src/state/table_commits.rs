//! How far each table is committed to Iceberg. The tier worker commits every table up to one
//! LSN, except tables whose catalog commit keeps failing: those are held back where they
//! were, so that one table the catalog refuses does not hold back the others. The COMMITTED
//! watermark is the lowest of these positions: everything at or below it is committed in
//! every table.

use std::collections::BTreeMap;

use arka_cluster::{HeldBackTable, Lsn};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCommits {
    /// Every table that is not held back is committed up to here.
    upto: Lsn,
    /// The tables held back, by name.
    held: BTreeMap<String, HeldBack>,
}

/// A table held back: committed up to `committed_lsn`, and why no further.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBack {
    pub committed_lsn: Lsn,
    pub reason: String,
}

impl HeldBack {
    /// What a client waiting for COMMITTED on `table` is told.
    pub fn explain(&self, table: &str) -> String {
        format!(
            "table {table} is held back from Iceberg at LSN {}: its catalog commit keeps failing: {}",
            self.committed_lsn, self.reason
        )
    }
}

impl TableCommits {
    /// Where `table` is committed up to.
    pub fn position(&self, table: &str) -> Lsn {
        self.held.get(table).map_or(self.upto, |h| h.committed_lsn)
    }

    /// Where every table that is not held back is committed up to.
    pub fn upto(&self) -> Lsn {
        self.upto
    }

    /// The table's hold, when it is held back.
    pub fn held_back(&self, table: &str) -> Option<&HeldBack> {
        self.held.get(table)
    }

    /// Every held-back table, by name.
    pub fn held(&self) -> &BTreeMap<String, HeldBack> {
        &self.held
    }

    /// The lowest position: the COMMITTED watermark.
    pub fn watermark(&self) -> Lsn {
        (self.held.values())
            .map(|h| h.committed_lsn)
            .fold(self.upto, Lsn::min)
    }

    /// Applies a commit report: every table but `held_back` is committed up to `upto`. A
    /// table newly held back stays at the position it had; one no longer held back moves up.
    /// Positions never go down.
    pub fn commit(&mut self, upto: Lsn, held_back: &[HeldBackTable]) {
        let before = std::mem::take(&mut self.held);
        for table in held_back {
            let committed_lsn = before
                .get(&table.table)
                .map_or(self.upto, |h| h.committed_lsn);
            let hold = HeldBack {
                committed_lsn,
                reason: table.reason.clone(),
            };
            self.held.insert(table.table.clone(), hold);
        }
        self.upto = self.upto.max(upto);
    }

    /// A dropped table holds nothing back.
    pub fn forget(&mut self, table: &str) {
        self.held.remove(table);
    }

    /// Raises the common position to at least `lsn`: an image taken before tables could be
    /// held back has only the watermark.
    pub fn raise_to(&mut self, lsn: Lsn) {
        self.upto = self.upto.max(lsn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(table: &str) -> HeldBackTable {
        HeldBackTable {
            table: table.into(),
            reason: format!("{table} refused"),
        }
    }

    #[test]
    fn a_held_table_stays_where_it_was_while_the_others_move_on() {
        let mut commits = TableCommits::default();
        commits.commit(Lsn(10), &[]);
        commits.commit(Lsn(20), &[held("b")]);
        assert_eq!(commits.position("a"), Lsn(20));
        assert_eq!(commits.position("b"), Lsn(10));
        assert_eq!(commits.watermark(), Lsn(10));
        commits.commit(Lsn(30), &[held("b")]);
        assert_eq!(
            (commits.position("a"), commits.position("b")),
            (Lsn(30), Lsn(10))
        );
        assert_eq!(
            commits.held_back("b").map(|h| h.reason.as_str()),
            Some("b refused")
        );
    }

    #[test]
    fn a_released_table_catches_up_and_a_dropped_one_holds_nothing() {
        let mut commits = TableCommits::default();
        commits.commit(Lsn(20), &[held("b"), held("c")]);
        commits.commit(Lsn(30), &[held("c")]);
        assert_eq!(commits.position("b"), Lsn(30));
        assert_eq!(commits.watermark(), Lsn(0));
        commits.forget("c");
        assert_eq!(commits.watermark(), Lsn(30));
        assert!(commits.held().is_empty());
    }
}

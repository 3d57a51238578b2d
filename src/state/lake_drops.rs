//! Dropped tables whose lake data (the Iceberg table and the Parquet files in object
//! storage) the tier worker has yet to delete. A drop is listed when it is applied and
//! leaves the list when the tier worker reports its data deleted, so a drop survives tier
//! worker crashes and handovers until it is done.

use std::collections::BTreeMap;

use arka_cluster::Lsn;
use serde::{Deserialize, Serialize};

/// Drops remembered at most; past it the oldest is forgotten and its lake data stays (drops
/// are administrative, so this is reached only without a tier worker to do them).
pub const LAKE_DROPS_MAX: usize = 10_000;

/// One incarnation of a table, dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedTable {
    pub table: String,
    /// The LSN the incarnation was created at: its Iceberg table is named by it.
    pub created_lsn: Lsn,
    /// The LSN of the drop: every row of the incarnation is below it.
    pub dropped_lsn: Lsn,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LakeDrops {
    by_lsn: BTreeMap<Lsn, DroppedTable>,
}

impl LakeDrops {
    pub fn add(&mut self, dropped: DroppedTable) {
        self.by_lsn.insert(dropped.dropped_lsn, dropped);
        while self.by_lsn.len() > LAKE_DROPS_MAX {
            if let Some((_, forgotten)) = self.by_lsn.pop_first() {
                tracing::warn!(
                    table = forgotten.table,
                    dropped_lsn = forgotten.dropped_lsn.get(),
                    "too many dropped tables wait for their lake data to be deleted: this one's stays"
                );
            }
        }
    }

    /// The drop at `dropped_lsn` is done.
    pub fn done(&mut self, dropped_lsn: Lsn) {
        self.by_lsn.remove(&dropped_lsn);
    }

    /// The oldest drop not done yet.
    pub fn oldest(&self) -> Option<&DroppedTable> {
        self.by_lsn.values().next()
    }

    pub fn contains(&self, dropped_lsn: Lsn) -> bool {
        self.by_lsn.contains_key(&dropped_lsn)
    }

    pub fn len(&self) -> usize {
        self.by_lsn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_lsn.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(dropped_lsn: u64) -> DroppedTable {
        DroppedTable {
            table: format!("t{dropped_lsn}"),
            created_lsn: Lsn(dropped_lsn - 1),
            dropped_lsn: Lsn(dropped_lsn),
        }
    }

    #[test]
    fn oldest_first_until_done_and_bounded() {
        let mut drops = LakeDrops::default();
        drops.add(dropped(20));
        drops.add(dropped(10));
        assert_eq!(drops.oldest().map(|d| d.dropped_lsn), Some(Lsn(10)));
        drops.done(Lsn(10));
        assert_eq!(drops.oldest().map(|d| d.dropped_lsn), Some(Lsn(20)));
        for lsn in 100..100 + LAKE_DROPS_MAX as u64 {
            drops.add(dropped(lsn));
        }
        assert_eq!(drops.len(), LAKE_DROPS_MAX);
        assert!(!drops.contains(Lsn(20)), "the oldest is forgotten first");
    }
}

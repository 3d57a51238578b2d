//! The idempotency table: `(producer_id, seq) -> lsn`, bounded per producer, in total, and
//! by age. Age is counted in log positions, not wall-clock time, so that every replica
//! forgets the same entries at the same entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::chunk_map::ChunkMap;

/// How many of a producer's most recent sequence numbers are remembered. A retry of a seq
/// older than the window is no longer recognised; producers retry far more recent writes.
pub const DEDUP_WINDOW: i64 = 100_000;
/// Sequence numbers remembered over all producers; past it the least recently writing
/// producers are forgotten first.
pub const DEDUP_ENTRIES_MAX: usize = 1_000_000;
/// A producer that has not written for this many log entries is forgotten.
pub const DEDUP_AGE_MAX_LSNS: u64 = 100_000_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Producer {
    /// Shared in chunks, so a snapshot's copy of a full window is cheap.
    seqs: ChunkMap<i64, u64>,
    last_lsn: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    producers: BTreeMap<String, Producer>,
    /// Each producer by the LSN of its last write (an LSN belongs to one write, so to one
    /// producer): who wrote least recently comes first.
    by_age: BTreeMap<u64, String>,
    entries: usize,
}

impl Dedup {
    pub fn lookup(&self, producer_id: &str, seq: i64) -> Option<u64> {
        self.producers.get(producer_id)?.seqs.get(&seq).copied()
    }

    /// The lowest seq of `producer_id` its window covers: a write `(producer_id, seq)` with
    /// a seq at or above it would be remembered had it been applied (a write removes only
    /// seqs more than the window below its own, and the highest stays). `None` for a
    /// producer not known.
    pub fn window_from(&self, producer_id: &str) -> Option<i64> {
        let (last, _) = self.producers.get(producer_id)?.seqs.iter().next_back()?;
        Some(last.saturating_sub(DEDUP_WINDOW))
    }

    /// True when `seq` is in the window of a known producer: see [`Dedup::window_from`].
    pub fn covers(&self, producer_id: &str, seq: i64) -> bool {
        self.window_from(producer_id)
            .is_some_and(|from| seq >= from)
    }

    /// The remembered writes `(seq, lsn)` of `producer_id` above `after_lsn`, in LSN order,
    /// at most `limit`, and whether more follow.
    pub fn writes_after(
        &self,
        producer_id: &str,
        after_lsn: u64,
        limit: usize,
    ) -> (Vec<(i64, u64)>, bool) {
        let Some(producer) = self.producers.get(producer_id) else {
            return (Vec::new(), false);
        };
        let mut writes: Vec<(i64, u64)> = (producer.seqs.iter())
            .filter(|(_, lsn)| **lsn > after_lsn)
            .map(|(seq, lsn)| (*seq, *lsn))
            .collect();
        writes.sort_unstable_by_key(|(_, lsn)| *lsn);
        let more = writes.len() > limit;
        writes.truncate(limit);
        (writes, more)
    }

    /// One above the highest seq remembered of `producer_id`; 0 for a producer not known.
    pub fn next_seq(&self, producer_id: &str) -> i64 {
        self.producers
            .get(producer_id)
            .and_then(|p| p.seqs.iter().next_back())
            .map_or(0, |(last, _)| last.saturating_add(1))
    }

    /// Records `(producer, seq) -> lsn` and forgets what falls outside the bounds. A known
    /// producer's write allocates nothing here: this runs for every idempotent write.
    pub fn record(&mut self, producer_id: &str, seq: i64, lsn: u64) {
        let known = self.producers.get(producer_id).map(|p| p.last_lsn);
        let id = known
            .and_then(|last| self.by_age.remove(&last))
            .unwrap_or_else(|| producer_id.to_string());
        self.by_age.insert(lsn, id);
        if known.is_none() {
            self.producers
                .insert(producer_id.to_string(), Producer::default());
        }
        let Some(producer) = self.producers.get_mut(producer_id) else {
            return;
        };
        producer.last_lsn = lsn;
        if producer.seqs.insert(seq, lsn).is_none() {
            self.entries += 1;
        }
        let oldest_kept = seq.saturating_sub(DEDUP_WINDOW);
        while let Some((&first, _)) = producer.seqs.first_key_value() {
            if first >= oldest_kept {
                break;
            }
            producer.seqs.pop_first();
            self.entries -= 1;
        }
        self.evict(lsn);
    }

    fn evict(&mut self, now: u64) {
        while let Some((&last_lsn, _)) = self.by_age.first_key_value() {
            let too_old = now.saturating_sub(last_lsn) > DEDUP_AGE_MAX_LSNS;
            if !too_old && self.entries <= DEDUP_ENTRIES_MAX {
                break;
            }
            let Some((_, id)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(gone) = self.producers.remove(&id) {
                self.entries -= gone.seqs.len();
            }
        }
    }

    pub fn producers(&self) -> usize {
        self.producers.len()
    }

    pub fn entries(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_window_below_the_highest_seq_of_known_producers() {
        let mut dedup = Dedup::default();
        dedup.record("p", 0, 1);
        dedup.record("p", 3 * DEDUP_WINDOW, 2);
        assert!(dedup.lookup("p", 0).is_none() && !dedup.covers("p", 0));
        assert!(
            dedup.covers("p", 2 * DEDUP_WINDOW),
            "never written, within the window"
        );
        assert!(dedup.covers("p", 3 * DEDUP_WINDOW + 1), "not written yet");
        assert!(!dedup.covers("p", 2 * DEDUP_WINDOW - 1));
        assert!(!dedup.covers("q", 0), "an unknown producer");
    }

    #[test]
    fn lists_a_producers_writes_above_an_lsn_in_lsn_order_by_pages() {
        let mut dedup = Dedup::default();
        for (seq, lsn) in [(5, 10), (1, 11), (7, 12), (2, 13)] {
            dedup.record("p", seq, lsn);
        }
        dedup.record("q", 0, 14);
        assert_eq!(
            dedup.writes_after("p", 10, 2),
            (vec![(1, 11), (7, 12)], true)
        );
        assert_eq!(dedup.writes_after("p", 12, 2), (vec![(2, 13)], false));
        assert_eq!(dedup.writes_after("p", 13, 2), (vec![], false));
        assert_eq!(dedup.writes_after("r", 0, 2), (vec![], false));
    }

    #[test]
    fn remembers_recent_seqs_and_forgets_outside_the_window() {
        let mut dedup = Dedup::default();
        dedup.record("p", 1, 10);
        dedup.record("p", 2, 11);
        assert_eq!(dedup.lookup("p", 1), Some(10));
        assert_eq!(dedup.lookup("q", 1), None);
        dedup.record("p", 2 + DEDUP_WINDOW, 12);
        assert_eq!(dedup.lookup("p", 1), None);
        assert_eq!(dedup.lookup("p", 2), Some(11));
        assert_eq!(dedup.entries(), 2);
    }

    #[test]
    fn forgets_idle_producers_by_log_age() {
        let mut dedup = Dedup::default();
        dedup.record("idle", 1, 1);
        dedup.record("busy", 1, 2);
        dedup.record("busy", 2, 3 + DEDUP_AGE_MAX_LSNS);
        assert_eq!(dedup.lookup("idle", 1), None);
        assert_eq!(dedup.lookup("busy", 1), Some(2));
        assert_eq!(dedup.producers(), 1);
    }

    #[test]
    fn the_total_is_bounded_least_recent_producer_first() {
        let mut dedup = Dedup::default();
        let per = 1000;
        let producers = DEDUP_ENTRIES_MAX / per + 2;
        let mut lsn = 0;
        for p in 0..producers {
            for seq in 0..per as i64 {
                lsn += 1;
                dedup.record(&format!("p{p}"), seq, lsn);
            }
        }
        assert!(dedup.entries() <= DEDUP_ENTRIES_MAX);
        assert_eq!(
            dedup.lookup("p0", 0),
            None,
            "the oldest producer went first"
        );
        let newest = format!("p{}", producers - 1);
        assert!(dedup.lookup(&newest, 0).is_some());
    }
}

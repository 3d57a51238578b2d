//! The newest entries of the log, kept decoded in memory: replication to followers and the
//! apply task read what was just appended, and serving them from here saves a `pread` and a
//! decode per entry per reader. Bounded by bytes; older entries are read from the segments.

use std::collections::VecDeque;

use arka_cluster::network::entry_bytes;
use arka_cluster::types::Entry;

/// Default bound of the cache.
pub const TAIL_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A contiguous run of the log's newest entries: `entries[0]` has index `first`.
pub struct TailCache {
    first: u64,
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    bytes_max: usize,
}

impl TailCache {
    pub fn new(bytes_max: usize) -> Self {
        Self {
            first: 0,
            entries: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Adds entries just appended to the log (contiguous, in order). An entry that does not
    /// continue the cached run starts a new one. Entries from `unwritten_from` on are not yet
    /// in their segment file and stay cached, over the bound if need be (the flusher's own
    /// bound keeps them few), since nothing else could serve them.
    pub fn push(&mut self, entries: impl IntoIterator<Item = Entry>, unwritten_from: u64) {
        for entry in entries {
            let index = entry.log_id.index;
            if self.entries.is_empty() || index != self.end() {
                self.clear_from(0);
                self.first = index;
            }
            let bytes = entry_bytes(&entry);
            self.bytes += bytes;
            self.entries.push_back((entry, bytes));
        }
        while self.bytes > self.bytes_max && self.first < unwritten_from {
            let Some((_, bytes)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= bytes;
            self.first += 1;
        }
    }

    /// The first index the cache holds, if any.
    pub fn first_index(&self) -> Option<u64> {
        (!self.entries.is_empty()).then_some(self.first)
    }

    /// Copies of the cached entries with index in `[start, end)`, while `admit` takes them.
    pub fn get(&self, start: u64, end: u64, mut admit: impl FnMut(&Entry) -> bool) -> Vec<Entry> {
        let from = start.max(self.first);
        let to = end.min(self.end());
        if from >= to {
            return Vec::new();
        }
        let skip = (from - self.first) as usize;
        let take = (to - from) as usize;
        self.entries
            .iter()
            .skip(skip)
            .take(take)
            .map(|(e, _)| e)
            .take_while(|e| admit(e))
            .cloned()
            .collect()
    }

    /// Forgets entries with index `>= index` (a truncation).
    pub fn clear_from(&mut self, index: u64) {
        let keep = index
            .saturating_sub(self.first)
            .min(self.entries.len() as u64) as usize;
        for (_, bytes) in self.entries.drain(keep..) {
            self.bytes -= bytes;
        }
    }

    /// Forgets entries with index `<= upto` (a purge).
    pub fn forget_upto(&mut self, upto: u64) {
        while self.first <= upto {
            let Some((_, bytes)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= bytes;
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use arka_cluster::types::{Entry, LogId};
    use arka_cluster::{Command, NodeId, RequestId, WriteCommand};
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::EntryPayload;

    use super::TailCache;

    fn entry(index: u64, bytes: usize) -> Entry {
        let write = WriteCommand {
            table: "t".into(),
            request: RequestId {
                origin: NodeId(1),
                seq: index,
            },
            producer: None,
            rows: 1,
            ipc: vec![0u8; bytes].into(),
        };
        Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 1,
                    node_id: NodeId(1),
                },
                index,
            ),
            payload: EntryPayload::Normal(Command::Write(write)),
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn keeps_the_newest_entries_within_its_bound() {
        let mut tail = TailCache::new(3 * (1000 + 200));
        tail.push((1..=10).map(|i| entry(i, 1000)), u64::MAX);
        assert_eq!(tail.first_index(), Some(8), "the three newest are kept");
        assert_eq!(indexes(&tail.get(0, 100, |_| true)), vec![8, 9, 10]);
        assert_eq!(indexes(&tail.get(9, 10, |_| true)), vec![9]);
    }

    #[test]
    fn entries_not_yet_written_stay_over_the_bound() {
        let mut tail = TailCache::new(3 * (1000 + 200));
        tail.push((1..=10).map(|i| entry(i, 1000)), 6);
        assert_eq!(tail.first_index(), Some(6), "5 is written, 6 is not");
        // Once they are written, the next push brings the cache back within its bound.
        tail.push([entry(11, 1000)], 12);
        assert_eq!(tail.first_index(), Some(9));
    }

    #[test]
    fn a_truncation_or_purge_forgets_the_entries_it_removes() {
        let mut tail = TailCache::new(usize::MAX);
        tail.push((1..=10).map(|i| entry(i, 10)), u64::MAX);
        tail.clear_from(6);
        assert_eq!(indexes(&tail.get(0, 100, |_| true)), vec![1, 2, 3, 4, 5]);
        tail.push([entry(6, 10)], u64::MAX);
        tail.forget_upto(3);
        assert_eq!(indexes(&tail.get(0, 100, |_| true)), vec![4, 5, 6]);
        // An entry that does not continue the run starts a new one.
        tail.push([entry(20, 10)], u64::MAX);
        assert_eq!(indexes(&tail.get(0, 100, |_| true)), vec![20]);
    }

    #[test]
    fn a_read_stops_where_its_budget_does() {
        let mut tail = TailCache::new(usize::MAX);
        tail.push((1..=5).map(|i| entry(i, 10)), u64::MAX);
        let mut left = 2;
        let got = tail.get(1, 6, |_| {
            left -= 1;
            left >= 0
        });
        assert_eq!(indexes(&got), vec![1, 2]);
    }
}

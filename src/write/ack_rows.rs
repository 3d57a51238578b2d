//! The ack rows a session has to send, in the order the contract gives them (DESIGN §4):
//! the first row of each write (`is_durability_update = false`) in the order the writes
//! were sent, so that a plain client can pair its k-th write with the k-th first row.

use std::collections::BTreeMap;

use super::session::AckEvent;

#[derive(Default)]
pub struct AckRows {
    /// Rows ready to go out in the next ack batch.
    ready: Vec<AckEvent>,
    /// First rows waiting for an earlier write's first row, by write number. Bounded by the
    /// writes the session tracks.
    held_first: BTreeMap<u64, AckEvent>,
    /// The write whose first row goes out next.
    next_first: u64,
}

impl AckRows {
    /// Queues a row. A first row, and any rise of a write whose first row still waits, waits
    /// until the first rows of all earlier writes are ready; the first row then carries the
    /// level reached by then.
    pub fn push(&mut self, event: AckEvent) {
        if let Some(held) = self.held_first.get_mut(&event.write_no) {
            held.level = event.level;
            held.lsn = event.lsn;
            held.appended_by = event.appended_by;
        } else if event.is_update {
            self.ready.push(event);
        } else {
            self.held_first.insert(event.write_no, event);
        }
        while let Some(first) = self.held_first.first_entry() {
            if *first.key() != self.next_first {
                break;
            }
            self.ready.push(first.remove());
            self.next_first += 1;
        }
    }

    /// The next ack batch, if any row is ready: first rows in write order, then the updates
    /// by level and LSN (outcomes arrive in any order).
    pub fn take_batch(&mut self) -> Option<Vec<AckEvent>> {
        if self.ready.is_empty() {
            return None;
        }
        let (mut rows, mut updates): (Vec<_>, Vec<_>) =
            self.ready.drain(..).partition(|e| !e.is_update);
        updates.sort_by_key(|e| (e.level, e.lsn));
        rows.append(&mut updates);
        Some(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::Level;

    fn row(write_no: u64, lsn: u64, level: Level, is_update: bool) -> AckEvent {
        AckEvent {
            write_no,
            lsn,
            level,
            is_update,
            table: "t".into(),
            rows: 1,
            seq: None,
            appended_by: None,
        }
    }

    fn firsts(rows: &[AckEvent]) -> Vec<(u64, u64, Level)> {
        rows.iter()
            .filter(|r| !r.is_update)
            .map(|r| (r.write_no, r.lsn, r.level))
            .collect()
    }

    #[test]
    fn first_rows_go_out_in_write_order_whatever_order_they_come_in() {
        let mut rows = AckRows::default();
        // Write 1's LSN is known before write 0's.
        rows.push(row(1, 11, Level::Memory, false));
        assert!(rows.take_batch().is_none(), "write 1 waits for write 0");
        // Write 1 is replicated meanwhile: its first row will say so.
        rows.push(row(1, 11, Level::Replicated, true));
        rows.push(row(0, 10, Level::Memory, false));
        let batch = rows.take_batch().unwrap_or_default();
        assert_eq!(
            firsts(&batch),
            vec![(0, 10, Level::Memory), (1, 11, Level::Replicated)]
        );
        assert_eq!(batch.len(), 2, "no separate update for write 1: {batch:?}");
    }

    #[test]
    fn updates_follow_the_first_rows_by_level_and_lsn() {
        let mut rows = AckRows::default();
        rows.push(row(0, 10, Level::Memory, false));
        rows.push(row(1, 11, Level::Memory, false));
        assert_eq!(rows.take_batch().map(|b| b.len()), Some(2));
        rows.push(row(1, 11, Level::Replicated, true));
        rows.push(row(2, 12, Level::Memory, false));
        rows.push(row(0, 10, Level::LocalDisk, true));
        let batch = rows.take_batch().unwrap_or_default();
        let order: Vec<_> = batch.iter().map(|r| (r.write_no, r.level)).collect();
        assert_eq!(
            order,
            vec![
                (2, Level::Memory),
                (0, Level::LocalDisk),
                (1, Level::Replicated)
            ]
        );
    }
}

//! The WAL's record index (where every entry is, and the newest entries decoded) and the
//! state its writer and readers share.

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, RwLock};

use arka_cluster::network::entry_bytes;
use arka_cluster::types::{Entry, LogId};

use super::error::{WalError, WalResult};
use super::meta::Meta;
use super::record;
use super::segment::{RecordLoc, Segment, SegmentId};
use super::tail::TailCache;
use super::WalFaults;

/// The record index: where every entry of the log is.
pub(super) struct WalIndex {
    /// Index of `locs[0]`.
    pub(super) first_index: u64,
    pub(super) locs: VecDeque<RecordLoc>,
    pub(super) segments: BTreeMap<SegmentId, Arc<Segment>>,
    pub(super) last_log_id: Option<LogId>,
    pub(super) last_purged: Option<LogId>,
    /// The newest entries, decoded: what replication and apply read.
    pub(super) tail: TailCache,
}

impl WalIndex {
    pub(super) fn next_index(&self) -> u64 {
        self.first_index + self.locs.len() as u64
    }

    pub(super) fn loc(&self, index: u64) -> Option<RecordLoc> {
        let pos = index.checked_sub(self.first_index)?;
        self.locs.get(usize::try_from(pos).ok()?).copied()
    }
}

pub(super) struct Shared {
    pub(super) index: RwLock<WalIndex>,
    pub(super) meta: Meta,
    pub(super) faults: WalFaults,
}

impl Shared {
    pub(super) fn read_index(&self) -> std::sync::RwLockReadGuard<'_, WalIndex> {
        // A panic while holding the lock leaves no partial state behind (updates are
        // applied after the I/O succeeded), so a poisoned lock is still consistent.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, WalIndex> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The entries with index in `[start, end)` that the log holds, stopping before the one
    /// that would take their bytes past `bytes_max` (at least one): the newest from the tail
    /// cache, older ones read from their segments (off the lock).
    pub(super) fn read_entries(
        &self,
        start: u64,
        end: u64,
        bytes_max: usize,
    ) -> WalResult<Vec<Entry>> {
        let mut budget = Budget::new(bytes_max);
        let (on_disk, cached): (Vec<(Arc<Segment>, RecordLoc)>, Vec<Entry>) = {
            let index = self.read_index();
            let start = start.max(index.first_index);
            let end = end.min(index.next_index()).max(start);
            let cached_from = index.tail.first_index().unwrap_or(end).clamp(start, end);
            let on_disk: Vec<_> = (start..cached_from)
                .filter_map(|i| index.loc(i))
                .take_while(|loc| budget.take(loc.payload_len as usize))
                .filter_map(|loc| Some((index.segments.get(&loc.segment)?.clone(), loc)))
                .collect();
            let cached = if budget.exhausted {
                Vec::new()
            } else {
                index
                    .tail
                    .get(cached_from, end, |e| budget.take(entry_bytes(e)))
            };
            (on_disk, cached)
        };
        let mut entries = Vec::with_capacity(on_disk.len() + cached.len());
        for (segment, loc) in &on_disk {
            let payload = segment.read_payload(loc)?;
            let entry = record::decode(&payload).map_err(|e| WalError::Corrupt {
                path: segment.path.clone(),
                offset: loc.offset,
                reason: e.to_string(),
            })?;
            entries.push(entry);
        }
        entries.extend(cached);
        Ok(entries)
    }
}

/// Bytes a read may still return; the first entry always fits.
struct Budget {
    left: usize,
    first: bool,
    exhausted: bool,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        Self {
            left: bytes,
            first: true,
            exhausted: false,
        }
    }

    /// Takes `bytes` for the next entry: false (and from then on) once they do not fit.
    fn take(&mut self, bytes: usize) -> bool {
        if self.exhausted || (bytes > self.left && !self.first) {
            self.exhausted = true;
            return false;
        }
        self.first = false;
        self.left = self.left.saturating_sub(bytes);
        true
    }
}

pub(super) fn range_to_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

//! Reading the WAL: what replication, apply, reads and the purge ask of it, from any task.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

use arka_cluster::types::{Entry, Vote};
use arka_cluster::{Lsn, TypeConfig};
use openraft::{OptionalSend, RaftLogReader};

use super::error::WalResult;
use super::index::{range_to_bounds, Shared};

/// A cheap, cloneable reader of the WAL.
#[derive(Clone)]
pub struct LogReader {
    pub(super) shared: Arc<Shared>,
    pub(super) read_bytes_max: usize,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_to_bounds(&range);
        Ok(self.shared.read_entries(start, end, usize::MAX)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.meta.vote()?)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.shared.read_entries(start, end, self.read_bytes_max)?)
    }
}

impl LogReader {
    /// Reads the entries with LSN in `[start, end)` that are still in the WAL.
    pub fn entries(&self, start: Lsn, end: Lsn) -> WalResult<Vec<Entry>> {
        self.shared.read_entries(start.get(), end.get(), usize::MAX)
    }

    /// The first LSN still in the WAL (everything below was purged).
    pub fn first_index(&self) -> Lsn {
        Lsn(self.shared.read_index().first_index)
    }

    /// A power loss, simulated for chaos runs (fault injection only): every byte the WAL
    /// wrote but had not made durable is dropped, and the process dies.
    pub fn lose_power(&self) -> ! {
        self.shared.faults.lose_power(|| {
            self.shared
                .read_index()
                .segments
                .values()
                .cloned()
                .collect()
        })
    }

    /// Bytes of the WAL's segment files.
    pub fn disk_bytes(&self) -> WalResult<u64> {
        let index = self.shared.read_index();
        index.segments.values().map(|s| s.len()).sum()
    }

    /// The highest index whose segment lies (at least partly) outside the newest
    /// `keep_bytes` of the WAL: purging up to it deletes the older segments and leaves at most
    /// `keep_bytes` on disk. 0 when the WAL is within `keep_bytes`.
    pub fn last_index_beyond_newest(&self, keep_bytes: u64) -> WalResult<Lsn> {
        let index = self.shared.read_index();
        let mut newest = 0u64;
        for (id, segment) in index.segments.iter().rev() {
            newest += segment.len()?;
            if newest > keep_bytes {
                let kept = index.locs.partition_point(|l| l.segment <= *id) as u64;
                return Ok(Lsn((index.first_index + kept).saturating_sub(1)));
            }
        }
        Ok(Lsn::ZERO)
    }
}

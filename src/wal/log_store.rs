//! openraft's `RaftLogStorage` on WAL segments.
//!
//! Rules this store keeps (openraft's storage contract):
//! - no hole in the log: an append continues right after the last entry (or starts the log);
//! - an appended entry is readable at once, before it is durable (from the tail cache: the
//!   flusher writes it to its segment later, off openraft's core task);
//! - `IOFlushed` is completed only after the entry is on disk (group commit, `flusher.rs`);
//! - the vote and the purged id are on disk before the call returns.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arka_cluster::network::APPEND_BYTES_MAX;
use arka_cluster::types::{Entry, LogId, Vote};
use arka_cluster::TypeConfig;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use tokio::sync::{mpsc, Semaphore};

use super::error::{WalError, WalResult};
use super::flusher::{
    self, FlushRequest, Flusher, SegmentWrite, UNFLUSHED_BYTES_MAX, UNFLUSHED_UNIT_BYTES,
};
use super::index::{Shared, WalIndex};
use super::meta::Meta;
use super::reader::LogReader;
use super::record;
use super::recovery;
use super::segment::{sync_dir, RecordLoc, Segment, SegmentId};
use super::tail::{TailCache, TAIL_BYTES_MAX};
use super::{WalFaults, WalObserver};

/// The committed id is written at most this often (the state machine is rebuilt from the log
/// at start, up to it; entries committed after it are applied once the leader says so), so
/// that no client write costs a metadata write.
const COMMITTED_SAVE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Configuration of the WAL.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes_max: u64,
    /// Where tests inject disk faults (none by default).
    pub faults: WalFaults,
}

/// Refuses a log that ends below the durable end saved in `meta` (purged entries count as
/// held: a purge or a snapshot install removes them on purpose).
fn refuse_a_lost_tail(dir: &std::path::Path, meta: &Meta, last: Option<LogId>) -> WalResult<()> {
    let end = last.map_or(0, |l| l.index);
    match meta.durable()? {
        Some(durable) if durable > end => Err(WalError::LostTail {
            dir: dir.to_path_buf(),
            end,
            durable,
        }),
        _ => Ok(()),
    }
}

/// The single writer of the WAL.
pub struct LogStore {
    config: WalConfig,
    shared: Arc<Shared>,
    /// The segment appends go to, and the offset of its end.
    tail: Arc<Segment>,
    tail_offset: u64,
    /// The tail segment is not yet published: the next write to it must say so.
    tail_pending: bool,
    next_segment_id: u64,
    flush_tx: mpsc::Sender<FlushRequest>,
    /// Until the node takes it to stop it in its shutdown order.
    flusher: Option<Flusher>,
    /// Every entry up to this index is in its segment file (raised by the flusher).
    written: Arc<AtomicU64>,
    /// Room for records handed to the flusher and not yet durable, in
    /// [`UNFLUSHED_UNIT_BYTES`] units.
    unflushed_room: Arc<Semaphore>,
    observer: Arc<dyn WalObserver>,
    /// When the committed id was last written to the metadata store.
    committed_saved_at: Option<std::time::Instant>,
    /// Bytes of entries one replication read returns at most.
    read_bytes_max: usize,
}

impl LogStore {
    /// Opens (or creates) the WAL in `config.dir`, repairing a torn tail.
    pub async fn open(
        config: WalConfig,
        db: sled::Db,
        observer: Arc<dyn WalObserver>,
    ) -> WalResult<Self> {
        std::fs::create_dir_all(&config.dir).map_err(|e| WalError::io(&config.dir, e))?;
        let meta = Meta::open(db)?;
        let last_purged = meta.purged()?;
        let recovered = recovery::recover(&config.dir, last_purged.map(|p| p.index))?;

        let mut segments: BTreeMap<SegmentId, Arc<Segment>> = recovered
            .segments
            .iter()
            .map(|s| (s.id, s.clone()))
            .collect();
        let (tail, tail_offset) = match recovered.segments.last() {
            Some(last) => (last.clone(), recovered.tail_offset),
            None => {
                let segment = Arc::new(Segment::create(&config.dir, SegmentId(1))?);
                segments.insert(segment.id, segment.clone());
                (segment, 0)
            }
        };
        let next_segment_id = tail.id.0 + 1;

        let first_index = match (recovered.locs.is_empty(), last_purged) {
            (true, Some(purged)) => purged.index + 1,
            _ => recovered.first_index,
        };
        let index = WalIndex {
            first_index,
            locs: recovered.locs.into(),
            segments,
            last_log_id: None,
            last_purged,
            tail: TailCache::new(TAIL_BYTES_MAX),
        };
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            meta,
            faults: config.faults.clone(),
        });
        let last_log_id = {
            let index = shared.read_index();
            index
                .next_index()
                .checked_sub(1)
                .filter(|_| !index.locs.is_empty())
        };
        let last_log_id = match last_log_id {
            Some(i) => shared
                .read_entries(i, i + 1, usize::MAX)?
                .pop()
                .map(|e| e.log_id),
            None => last_purged,
        };
        shared.write_index().last_log_id = last_log_id;
        refuse_a_lost_tail(&config.dir, &shared.meta, last_log_id)?;

        let written = Arc::new(AtomicU64::new(last_log_id.map_or(0, |l| l.index)));
        let (flush_tx, flusher) = flusher::spawn(
            observer.clone(),
            written.clone(),
            config.faults.clone(),
            shared.meta.clone(),
        );
        Ok(Self {
            config,
            shared,
            tail,
            tail_offset,
            tail_pending: false,
            next_segment_id,
            flush_tx,
            flusher: Some(flusher),
            written,
            unflushed_room: Arc::new(Semaphore::new(UNFLUSHED_BYTES_MAX / UNFLUSHED_UNIT_BYTES)),
            observer,
            committed_saved_at: None,
            read_bytes_max: APPEND_BYTES_MAX,
        })
    }

    /// The flusher, for the node to stop once Raft has stopped (left here, it ends when the
    /// store is dropped).
    pub fn take_flusher(&mut self) -> Option<Flusher> {
        self.flusher.take()
    }

    /// Bounds the bytes of entries openraft reads for one AppendEntries message (default
    /// [`APPEND_BYTES_MAX`]), so that it reads what the message can carry, not more.
    pub fn with_read_bytes_max(mut self, bytes: usize) -> Self {
        self.read_bytes_max = bytes;
        self
    }

    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
            read_bytes_max: self.read_bytes_max,
        }
    }

    /// Starts a new tail segment, `pending`: the flusher publishes it once the one before is
    /// durable (else at once: the caller has made sure of that).
    fn roll_segment(&mut self, pending: bool) -> WalResult<()> {
        let id = SegmentId(self.next_segment_id);
        let segment = Arc::new(if pending {
            Segment::create_pending(&self.config.dir, id)?
        } else {
            Segment::create(&self.config.dir, id)?
        });
        self.next_segment_id += 1;
        self.shared
            .write_index()
            .segments
            .insert(segment.id, segment.clone());
        self.tail = segment;
        self.tail_offset = 0;
        self.tail_pending = pending;
        Ok(())
    }

    /// Hands the records in `buf` to the flusher's `writes`, at the end of the tail segment.
    fn take_buf(&mut self, buf: &mut Vec<u8>, writes: &mut Vec<SegmentWrite>) {
        if buf.is_empty() {
            return;
        }
        let bytes = std::mem::take(buf);
        let offset = self.tail_offset;
        self.tail_offset += bytes.len() as u64;
        writes.push(SegmentWrite {
            segment: self.tail.clone(),
            offset,
            bytes,
            opens_segment: std::mem::take(&mut self.tail_pending),
        });
    }

    /// Encodes `entries` at the end of the log: the records for the flusher to write, and
    /// where each entry will be.
    fn encode_entries(
        &mut self,
        entries: &[Entry],
    ) -> WalResult<(Vec<SegmentWrite>, Vec<RecordLoc>)> {
        let (mut next, empty) = {
            let index = self.shared.read_index();
            (index.next_index(), index.locs.is_empty())
        };
        let mut locs = Vec::with_capacity(entries.len());
        let mut writes = Vec::new();
        let mut buf = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let got = entry.log_id.index;
            if got != next && !(empty && i == 0) {
                return Err(WalError::Hole {
                    last: next.saturating_sub(1),
                    got,
                });
            }
            next = got + 1;
            if self.tail_offset + buf.len() as u64 >= self.config.segment_bytes_max {
                self.take_buf(&mut buf, &mut writes);
                self.roll_segment(true)?;
            }
            let start = buf.len();
            record::encode_into(entry, self.tail.synced_len(), &mut buf).map_err(|e| {
                WalError::Encode {
                    index: got,
                    reason: e.to_string(),
                }
            })?;
            locs.push(RecordLoc {
                segment: self.tail.id,
                offset: self.tail_offset + start as u64,
                payload_len: (buf.len() - start - record::HEADER_BYTES) as u32,
            });
        }
        self.take_buf(&mut buf, &mut writes);
        Ok((writes, locs))
    }

    /// Indexes the encoded entries and caches them, under one lock: a reader that finds them
    /// indexed finds them cached too, and never looks for them in a file they are not yet
    /// written to.
    fn index_entries(&self, locs: Vec<RecordLoc>, entries: Vec<Entry>) {
        let mut index = self.shared.write_index();
        if index.locs.is_empty() {
            if let Some(first) = entries.first() {
                index.first_index = first.log_id.index;
            }
        }
        index.locs.extend(locs);
        if let Some(last) = entries.last() {
            index.last_log_id = Some(last.log_id);
        }
        let unwritten_from = self.written.load(Ordering::Acquire) + 1;
        index.tail.push(entries, unwritten_from);
    }

    fn truncate_index_after(&mut self, last: Option<LogId>) -> WalResult<()> {
        let mut index = self.shared.write_index();
        let keep_until = last
            .map(|l| l.index + 1)
            .unwrap_or(0)
            .max(index.first_index);
        let Some(cut) = index.loc(keep_until) else {
            return Ok(());
        };
        let doomed: Vec<SegmentId> = index
            .segments
            .range(SegmentId(cut.segment.0 + 1)..)
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            if let Some(segment) = index.segments.remove(&id) {
                std::fs::remove_file(&segment.path).map_err(|e| WalError::io(&segment.path, e))?;
            }
        }
        let segment =
            index
                .segments
                .get(&cut.segment)
                .cloned()
                .ok_or_else(|| WalError::Corrupt {
                    path: self.config.dir.clone(),
                    offset: cut.offset,
                    reason: format!("segment {} of entry {keep_until} is missing", cut.segment.0),
                })?;
        segment.truncate(cut.offset)?;
        sync_dir(&self.config.dir)?;
        let keep = (keep_until - index.first_index) as usize;
        index.locs.truncate(keep);
        index.tail.clear_from(keep_until);
        index.last_log_id = last.or(index.last_purged);
        // Nothing is left for the flusher (the caller waited for it): all that is kept is
        // written.
        self.written
            .store(index.next_index().saturating_sub(1), Ordering::Release);
        self.tail = segment;
        self.tail_offset = cut.offset;
        Ok(())
    }

    /// Waits for room in the flusher's bound for `writes` (one append larger than the whole
    /// bound takes all of it).
    async fn take_unflushed_room(
        &self,
        writes: &[SegmentWrite],
    ) -> io::Result<tokio::sync::OwnedSemaphorePermit> {
        let bytes: usize = writes.iter().map(|w| w.bytes.len()).sum();
        let units =
            (bytes / UNFLUSHED_UNIT_BYTES + 1).min(UNFLUSHED_BYTES_MAX / UNFLUSHED_UNIT_BYTES);
        self.unflushed_room
            .clone()
            .acquire_many_owned(units as u32)
            .await
            .map_err(|_| io::Error::from(WalError::Shutdown))
    }

    /// Waits until every append sent to the flusher so far is durable and reported.
    async fn wait_for_flushes(&self) -> WalResult<()> {
        let (done, flushed) = tokio::sync::oneshot::channel();
        self.flush_tx
            .send(FlushRequest::Barrier(done))
            .await
            .map_err(|_| WalError::Shutdown)?;
        flushed.await.map_err(|_| WalError::Shutdown)
    }

    /// True when purging up to `upto` leaves no entry, and the tail segment holds some.
    fn purges_every_entry(&self, upto: LogId) -> bool {
        let index = self.shared.read_index();
        self.tail_offset > 0 && index.next_index() <= upto.index + 1
    }

    /// Drops the purged entries from the index and returns the segments that hold none of
    /// the kept ones; their files are deleted by the caller, off the index lock.
    fn purge_index(&mut self, upto: LogId) -> Vec<Arc<Segment>> {
        let mut index = self.shared.write_index();
        while index.first_index <= upto.index && index.locs.pop_front().is_some() {
            index.first_index += 1;
        }
        if index.locs.is_empty() {
            index.first_index = upto.index + 1;
        }
        index.last_purged = Some(upto);
        index.tail.forget_upto(upto.index);
        if index.last_log_id.is_none_or(|l| l.index < upto.index) {
            index.last_log_id = Some(upto);
        }
        // Whole segments before the one holding the first kept entry can go.
        let keep_from = index
            .locs
            .front()
            .map(|l| l.segment)
            .unwrap_or(self.tail.id);
        let doomed: Vec<SegmentId> = index
            .segments
            .range(..keep_from)
            .map(|(id, _)| *id)
            .collect();
        doomed
            .into_iter()
            .filter_map(|id| index.segments.remove(&id))
            .collect()
    }
}

/// Deletes purged segment files. Runs on a blocking thread: deleting a gigabyte of
/// segments can take longer than an election timeout, and the Raft storage task must not
/// wait for it. A file left behind by a crash is deleted by the next purge.
async fn delete_segments(dir: PathBuf, segments: Vec<Arc<Segment>>) -> WalResult<()> {
    if segments.is_empty() {
        return Ok(());
    }
    let deleted = tokio::task::spawn_blocking(move || {
        for segment in segments {
            std::fs::remove_file(&segment.path).map_err(|e| WalError::io(&segment.path, e))?;
        }
        // The removals are durable only once the directory is.
        sync_dir(&dir)
    });
    deleted.await.map_err(|_| WalError::Shutdown)?
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.reader().try_get_log_entries(range).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.reader().read_vote().await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let index = self.shared.read_index();
        Ok(LogState {
            last_purged_log_id: index.last_purged,
            last_log_id: index.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        Ok(self.shared.meta.save_vote(vote).await?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        if self
            .committed_saved_at
            .is_some_and(|at| at.elapsed() < COMMITTED_SAVE_EVERY)
        {
            return Ok(());
        }
        self.committed_saved_at = Some(std::time::Instant::now());
        Ok(self.shared.meta.save_committed(&committed)?)
    }

    /// The committed id saved, or the end of the log where that is lower. Raft learns an
    /// entry is committed from a quorum that need not include this node's disk: the id is
    /// saved while entries up to it may still wait for the flusher, and a crash then leaves
    /// the log ending below it, while openraft applies the log up to it at start. Every entry
    /// the log holds below the saved id is committed (they were flushed in log order, and a
    /// truncation never cuts committed entries), so its end is the committed id to restart at;
    /// the leader sends the rest.
    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let saved = self.shared.meta.committed()?;
        let last = self.shared.read_index().last_log_id;
        Ok(match saved {
            Some(saved) if last.is_none_or(|l| l.index < saved.index) => last,
            saved => saved,
        })
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let (writes, locs) = self.encode_entries(&entries)?;
        for entry in &entries {
            self.observer.appended(entry);
        }
        let last_index = entries.last().map(|e| e.log_id.index).unwrap_or(0);
        self.index_entries(locs, entries);
        let room = self.take_unflushed_room(&writes).await?;
        let request = FlushRequest::Append {
            writes,
            last_index,
            callback,
            _room: room,
        };
        self.flush_tx
            .send(request)
            .await
            .map_err(|_| io::Error::from(WalError::Shutdown))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        self.wait_for_flushes().await?;
        // The durable end goes down first, so a crash after the cut finds no loss.
        let end = last.map_or(0, |l| l.index);
        if self
            .shared
            .meta
            .durable()?
            .is_some_and(|durable| durable > end)
        {
            self.shared.meta.save_durable(end).await?;
        }
        self.truncate_index_after(last)?;
        self.observer.truncated(last.map(|l| l.index).unwrap_or(0));
        Ok(())
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        self.shared.meta.save_purged(&upto).await?;
        if self.purges_every_entry(upto) {
            // A snapshot install purges up to its log id, which may lie past the end of this
            // log; the tail segment then holds only purged records, and the log goes on at
            // `upto + 1` in a fresh segment, so that it reopens without a gap. That segment
            // is published at once, so the one before must be durable first.
            self.wait_for_flushes().await?;
            self.roll_segment(false)?;
        }
        let doomed = self.purge_index(upto);
        let dir = self.config.dir.clone();
        tokio::spawn(async move {
            if let Err(e) = delete_segments(dir, doomed).await {
                tracing::warn!(error = %e, "deleting purged wal segments failed");
            }
        });
        Ok(())
    }
}

//! The state machine handle shared by the Raft core (which applies entries) and the Flight
//! service (which reads the catalog and the index). The state lives in memory; only the
//! apply task changes it, and readers take a short read lock.

use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use arka_cluster::types::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership};
use arka_cluster::{Lsn, TieredFile, TypeConfig};
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::SnapshotOf;
use openraft::OptionalSend;
use serde::Serialize;
use tokio::sync::watch;

use super::catalog::{IndexEntry, TableInfo};
use super::data::{StateData, TableGone};
use super::dedup::{DEDUP_ENTRIES_MAX, DEDUP_WINDOW};
use super::error::{StateError, StateResult};
use super::lake_drops::DroppedTable;
use super::sessions::{SessionRefused, SESSIONS_MAX};
use super::snapshot::{decode_image, encode_image, Image, SnapshotFiles};
use super::table_commits::TableCommits;
use super::tier::TierState;
use crate::low_priority::LowPriorityThread;
use crate::table::TableName;
use crate::wal::LogReader;

struct Inner {
    data: RwLock<StateData>,
    snapshots: SnapshotFiles,
    applied_tx: watch::Sender<u64>,
    tier_tx: watch::Sender<TierState>,
    commits_tx: watch::Sender<Arc<TableCommits>>,
    /// Encodes and saves snapshots at a lower CPU priority than the write path.
    snapshot_thread: LowPriorityThread,
}

/// Read access to the state machine, cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

/// How big each in-memory structure is, against its bound (for `status`).
/// A page of one producer's applied writes, from the idempotency table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerWrites {
    /// `(seq, lsn)` in LSN order.
    pub writes: Vec<(i64, u64)>,
    /// More writes follow the last one.
    pub more: bool,
    /// The lowest seq the table covers: older writes may be missing.
    pub window_from_seq: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateSizes {
    pub tables: usize,
    /// Writes still in this node's WAL (or above the OBJECT_STORAGE watermark): bounded by
    /// the WAL, which `wal-bytes-max` bounds.
    pub index_entries: usize,
    pub index_floor: u64,
    pub dedup_producers: usize,
    pub dedup_entries: usize,
    pub dedup_entries_max: usize,
    pub dedup_window_per_producer: i64,
    pub producer_sessions: usize,
    pub producer_sessions_max: usize,
    pub tiered_files: usize,
}

impl StateMachine {
    /// An empty state machine whose snapshots live in `snapshot_dir`. openraft restores it
    /// at start from the newest snapshot and the committed log above it.
    pub fn open(snapshot_dir: std::path::PathBuf) -> StateResult<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                data: RwLock::new(StateData::default()),
                snapshots: SnapshotFiles::open(snapshot_dir)?,
                applied_tx: watch::channel(0).0,
                tier_tx: watch::channel(TierState::default()).0,
                commits_tx: watch::channel(Arc::default()).0,
                snapshot_thread: LowPriorityThread::start("arka-snapshot")
                    .map_err(StateError::Thread)?,
            }),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, StateData> {
        // Applies change the state only after every fallible step, so a panic elsewhere
        // leaves it consistent.
        self.inner.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, StateData> {
        self.inner.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the watchers what the state is now.
    fn publish(&self, data: &StateData) {
        let applied = data.applied.map_or(0, |l| l.index);
        self.inner.applied_tx.send_if_modified(|a| {
            let changed = *a != applied;
            *a = applied;
            changed
        });
        let tier = data.tier;
        self.inner.tier_tx.send_if_modified(|t| {
            let changed = *t != tier;
            *t = tier;
            changed
        });
        self.inner.commits_tx.send_if_modified(|c| {
            let changed = **c != data.commits;
            if changed {
                *c = Arc::new(data.commits.clone());
            }
            changed
        });
    }

    pub fn table(&self, name: &TableName) -> Option<TableInfo> {
        self.read().tables.get(name).cloned()
    }

    pub fn table_count(&self) -> usize {
        self.read().tables.len()
    }

    pub fn tables(&self) -> Vec<(TableName, TableInfo)> {
        let data = self.read();
        data.tables
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect()
    }

    /// The indexed writes of `name` with `from <= lsn <= to`, in LSN order, at most `limit`.
    /// Writes below [`StateMachine::index_floor`] are not indexed: read them from their
    /// tiered files.
    pub fn index_range(
        &self,
        name: &TableName,
        from: Lsn,
        to: Lsn,
        limit: usize,
    ) -> Vec<(Lsn, IndexEntry)> {
        if from > to {
            return Vec::new();
        }
        let data = self.read();
        let Some(writes) = data.index.get(name) else {
            return Vec::new();
        };
        writes
            .range(from.get()..=to.get())
            .take(limit)
            .map(|(l, e)| (Lsn(*l), *e))
            .collect()
    }

    /// The table of the write at `lsn`, while the index holds it (it is in this node's WAL, or
    /// above the OBJECT_STORAGE watermark).
    pub fn indexed_table_of(&self, lsn: Lsn) -> Option<TableName> {
        let data = self.read();
        let mut tables = data.index.iter();
        let (name, _) = tables.find(|(_, writes)| writes.get(&lsn.get()).is_some())?;
        Some(name.clone())
    }

    /// True when the state machine took the write at `lsn` into `table`: it refuses some
    /// writes that stay in the log (fenced sessions, repeats, schemas that did not fit).
    pub fn holds_write(&self, table: &TableName, lsn: Lsn) -> bool {
        !self.index_range(table, lsn, lsn, 1).is_empty()
    }

    /// Writes below this LSN are found through the tiered-file list, not the index.
    pub fn index_floor(&self) -> Lsn {
        Lsn(self.read().index_floor)
    }

    /// The oldest dropped table whose lake data is still to delete, and how many wait.
    pub fn lake_drops(&self) -> (Option<DroppedTable>, usize) {
        let data = self.read();
        (data.lake_drops.oldest().cloned(), data.lake_drops.len())
    }

    /// See [`StateData::repeat_of`].
    pub fn repeat_of(
        &self,
        producer_id: &str,
        seq: i64,
        table: &TableName,
    ) -> Option<Result<Lsn, TableGone>> {
        self.read().repeat_of(producer_id, seq, table)
    }

    pub fn dedup_lookup(&self, producer_id: &str, seq: i64) -> Option<Lsn> {
        self.read().dedup.lookup(producer_id, seq).map(Lsn)
    }

    /// See [`super::sessions::Sessions::check`].
    pub fn check_session(
        &self,
        producer_id: &str,
        epoch: Option<u64>,
    ) -> Result<(), SessionRefused> {
        self.read().sessions.check(producer_id, epoch)
    }

    /// See [`super::dedup::Dedup::writes_after`] and [`super::dedup::Dedup::window_from`].
    pub fn producer_writes_after(
        &self,
        producer_id: &str,
        after: Lsn,
        limit: usize,
    ) -> ProducerWrites {
        let data = self.read();
        let (writes, more) = data.dedup.writes_after(producer_id, after.get(), limit);
        ProducerWrites {
            writes,
            more,
            window_from_seq: data.dedup.window_from(producer_id),
        }
    }

    /// See [`super::dedup::Dedup::covers`].
    pub fn dedup_covers(&self, producer_id: &str, seq: i64) -> bool {
        self.read().dedup.covers(producer_id, seq)
    }

    /// The leader that appended the applied entry at `lsn`: `None` above the applied LSN or
    /// older than the leaderships remembered.
    pub fn leader_at(&self, lsn: Lsn) -> Option<CommittedLeaderId> {
        let data = self.read();
        let applied = data.applied.map_or(0, |l| l.index);
        (lsn.get() <= applied)
            .then(|| data.leaderships.leader_at(lsn.get()))
            .flatten()
    }

    /// The highest LSN applied (`REPLICATED` on this node).
    pub fn applied_lsn(&self) -> Lsn {
        Lsn(*self.inner.applied_tx.borrow())
    }

    /// The last applied entry that holds data to tier: when the OBJECT_STORAGE watermark is
    /// at or above it, nothing is waiting for object storage (tier reports above the
    /// watermark hold nothing to tier).
    pub fn last_data_lsn(&self) -> Lsn {
        Lsn(self.read().last_data_lsn)
    }

    /// Watches the applied LSN: reads waiting for `min_lsn` and tailing reads use it.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.inner.applied_tx.subscribe()
    }

    pub fn tier(&self) -> TierState {
        *self.inner.tier_tx.borrow()
    }

    /// Watches the tiering state: sessions waiting for OBJECT_STORAGE / COMMITTED and the
    /// tier worker use it.
    pub fn subscribe_tier(&self) -> watch::Receiver<TierState> {
        self.inner.tier_tx.subscribe()
    }

    /// How far each table is committed to Iceberg.
    pub fn table_commits(&self) -> Arc<TableCommits> {
        self.inner.commits_tx.borrow().clone()
    }

    /// Watches [`StateMachine::table_commits`]: sessions waiting for COMMITTED use it.
    pub fn subscribe_table_commits(&self) -> watch::Receiver<Arc<TableCommits>> {
        self.inner.commits_tx.subscribe()
    }

    /// The tiered file of `table` that holds `lsn`, if that range is tiered.
    pub fn tiered_file_at(&self, table: &TableName, lsn: Lsn) -> Option<TieredFile> {
        let data = self.read();
        let (_, file) = data.tiered.get(table)?.range(lsn.get()..).next()?;
        (file.min_lsn <= lsn).then(|| file.clone())
    }

    /// The first tiered file of `table` that ends at or after `lsn`.
    pub fn first_tiered_file_from(&self, table: &TableName, lsn: Lsn) -> Option<TieredFile> {
        let data = self.read();
        let (_, file) = data.tiered.get(table)?.range(lsn.get()..).next()?;
        Some(file.clone())
    }

    /// The tiered files of `table` whose last LSN is in `(after, upto]`, in LSN order.
    pub fn tiered_files(&self, table: &TableName, after: Lsn, upto: Lsn) -> Vec<TieredFile> {
        if after >= upto {
            return Vec::new();
        }
        let data = self.read();
        let Some(files) = data.tiered.get(table) else {
            return Vec::new();
        };
        files
            .range(after.next().get()..=upto.get())
            .map(|(_, f)| f.clone())
            .collect()
    }

    pub fn sizes(&self) -> StateSizes {
        let data = self.read();
        StateSizes {
            tables: data.tables.len(),
            index_entries: data.index_entries(),
            index_floor: data.index_floor,
            dedup_producers: data.dedup.producers(),
            dedup_entries: data.dedup.entries(),
            dedup_entries_max: DEDUP_ENTRIES_MAX,
            dedup_window_per_producer: DEDUP_WINDOW,
            producer_sessions: data.sessions.len(),
            producer_sessions_max: SESSIONS_MAX,
            tiered_files: data.tiered_files(),
        }
    }

    /// The whole state as a snapshot holds it (for tests and checks).
    pub fn image(&self) -> Image {
        self.read().image()
    }
}

/// The state machine as openraft drives it: the apply task.
pub struct StateMachineStore {
    sm: StateMachine,
    /// This node's WAL: index entries of writes it purged are dropped after each apply.
    log: Option<LogReader>,
}

impl StateMachineStore {
    pub fn new(sm: StateMachine, log: Option<LogReader>) -> Self {
        Self { sm, log }
    }
}

/// Builds a snapshot from the copy of the state taken between two applies.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    image: Image,
    snapshots: SnapshotFiles,
    thread: LowPriorityThread,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Vec<u8>>, io::Error> {
        let meta = self.meta.clone();
        // A builder builds one snapshot: its copy of the state is moved, not copied again.
        let image = std::mem::take(&mut self.image);
        let snapshots = self.snapshots.clone();
        // Encoding and fsyncing a large state is kept off the runtime threads, and yields
        // the CPU to them.
        let build = move || -> StateResult<Vec<u8>> {
            let started = std::time::Instant::now();
            let data = encode_image(&image)?;
            let encoded = started.elapsed();
            snapshots.save(&meta, &data)?;
            tracing::info!(
                index = ?meta.last_log_id.map(|l| l.index),
                bytes = data.len(),
                encode_ms = encoded.as_millis() as u64,
                total_ms = started.elapsed().as_millis() as u64,
                "snapshot saved"
            );
            Ok(data)
        };
        let data = (self.thread.run(build).await)
            .ok_or_else(|| io::Error::other("building the snapshot panicked"))??;
        Ok(openraft::Snapshot {
            meta: self.meta.clone(),
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let data = self.sm.read();
        Ok((data.applied, data.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let response = {
                let mut data = self.sm.write();
                let response = data.apply(&entry)?;
                self.sm.publish(&data);
                response
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        if let Some(log) = &self.log {
            let first_in_wal = log.first_index().get();
            self.sm.write().forget_index_below(first_in_wal);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Called between applies: the copy is the state at exactly `applied`.
        let started = std::time::Instant::now();
        let data = self.sm.read();
        let builder = SnapshotBuilder {
            meta: data.meta(),
            image: data.image(),
            snapshots: self.sm.inner.snapshots.clone(),
            thread: self.sm.inner.snapshot_thread.clone(),
        };
        tracing::info!(
            copy_ms = started.elapsed().as_millis() as u64,
            "snapshot state copied"
        );
        builder
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let image = decode_image(&snapshot)?;
        let mut installed = StateData::from_image(image)?;
        if installed.applied != meta.last_log_id {
            return Err(io::Error::other(format!(
                "snapshot meta names {:?}, its state was applied up to {:?}",
                meta.last_log_id, installed.applied
            )));
        }
        // The file first: a crash from here on restarts from this snapshot. At start,
        // openraft installs the newest file itself, which is already in place.
        let snapshots = self.sm.inner.snapshots.clone();
        if snapshots.current_log_id() != Some(meta.last_log_id) {
            let meta = meta.clone();
            tokio::task::spawn_blocking(move || snapshots.save(&meta, &snapshot))
                .await
                .map_err(io::Error::other)??;
        }
        if let Some(log) = &self.log {
            installed.forget_index_below(log.first_index().get());
        }
        let mut data = self.sm.write();
        *data = installed;
        self.sm.publish(&data);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Vec<u8>>>, io::Error> {
        let snapshots = self.sm.inner.snapshots.clone();
        let newest = tokio::task::spawn_blocking(move || snapshots.newest())
            .await
            .map_err(io::Error::other)??;
        Ok(newest.map(|(meta, snapshot)| openraft::Snapshot { meta, snapshot }))
    }
}

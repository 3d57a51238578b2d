//! The state machine handle shared by the Raft core (which applies entries) and the Flight
//! service (which reads the catalog and the LSN index).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arka_cluster::types::{LogId, SnapshotMeta, StoredMembership};
use arka_cluster::TypeConfig;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::OptionalSend;
use tokio::sync::watch;

use super::catalog::{IndexEntry, TableCounts, TableInfo, TableMeta};
use super::error::{decode, StateResult};
use super::tier::TierState;
use super::{dedup, keys};
use crate::ipc;
use crate::table::TableName;

pub(super) struct Inner {
    pub db: sled::Db,
    pub tree: sled::Tree,
    pub snapshots: sled::Tree,
    pub tables: RwLock<BTreeMap<TableName, TableInfo>>,
    pub applied_tx: watch::Sender<u64>,
    pub tier_tx: watch::Sender<TierState>,
    /// The last applied entry that is not a tier report (in memory; after a restart, the
    /// applied position).
    pub last_data_lsn: AtomicU64,
}

/// Read access to the state machine, cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    pub(super) inner: Arc<Inner>,
}

impl StateMachine {
    pub fn open(db: sled::Db) -> StateResult<Self> {
        let tree = db.open_tree("state_machine")?;
        let snapshots = db.open_tree("snapshots")?;
        let (applied_tx, _) = watch::channel(0);
        let (tier_tx, _) = watch::channel(TierState::default());
        let sm = Self {
            inner: Arc::new(Inner {
                db,
                tree,
                snapshots,
                tables: RwLock::new(BTreeMap::new()),
                applied_tx,
                tier_tx,
                last_data_lsn: AtomicU64::new(0),
            }),
        };
        sm.reload()?;
        Ok(sm)
    }

    /// Rebuilds the in-memory views (table cache, applied watermark) from sled.
    pub(super) fn reload(&self) -> StateResult<()> {
        let mut tables = BTreeMap::new();
        for item in self.inner.tree.scan_prefix(keys::TABLE_PREFIX) {
            let (key, value) = item?;
            let meta: TableMeta = decode(&key, &value)?;
            let Some(name) = keys::table_name_of(&key).and_then(|n| TableName::parse(n).ok())
            else {
                continue;
            };
            let counts_key = keys::table_counts(&name);
            let counts = match self.inner.tree.get(&counts_key)? {
                Some(v) => decode(&counts_key, &v)?,
                None => TableCounts::default(),
            };
            tables.insert(name, table_info(&key, meta, counts)?);
        }
        *self.inner.tables.write().unwrap_or_else(|p| p.into_inner()) = tables;
        let applied = self.last_applied()?.map(|l| l.index).unwrap_or(0);
        self.inner.applied_tx.send_replace(applied);
        self.inner.last_data_lsn.store(applied, Ordering::Relaxed);
        self.inner.tier_tx.send_replace(self.load_tier()?);
        Ok(())
    }

    pub fn table(&self, name: &TableName) -> Option<TableInfo> {
        self.read_tables().get(name).cloned()
    }

    pub fn tables(&self) -> Vec<(TableName, TableInfo)> {
        self.read_tables()
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect()
    }

    pub(super) fn read_tables(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<TableName, TableInfo>> {
        self.inner.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The batches of `name` with `from <= lsn <= to`, in LSN order, at most `limit`.
    pub fn index_range(
        &self,
        name: &TableName,
        from: u64,
        to: u64,
        limit: usize,
    ) -> StateResult<Vec<(u64, IndexEntry)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let start = keys::index(name, from);
        let end = keys::index(name, to);
        let mut out = Vec::new();
        for item in self.inner.tree.range(start..=end).take(limit) {
            let (key, value) = item?;
            let Some(lsn) = keys::lsn_of_index_key(&key) else {
                continue;
            };
            out.push((lsn, decode(&key, &value)?));
        }
        Ok(out)
    }

    pub fn dedup_lookup(&self, producer_id: &str, seq: i64) -> StateResult<Option<u64>> {
        dedup::lookup(&self.inner.tree, producer_id, seq)
    }

    pub fn last_applied(&self) -> StateResult<Option<LogId>> {
        match self.inner.tree.get(keys::APPLIED)? {
            Some(v) => decode(keys::APPLIED, &v),
            None => Ok(None),
        }
    }

    pub fn membership(&self) -> StateResult<StoredMembership> {
        match self.inner.tree.get(keys::MEMBERSHIP)? {
            Some(v) => decode(keys::MEMBERSHIP, &v),
            None => Ok(StoredMembership::default()),
        }
    }

    /// The highest LSN applied (`REPLICATED` on this node).
    pub fn applied_lsn(&self) -> u64 {
        *self.inner.applied_tx.borrow()
    }

    /// The last applied entry that holds data to tier: when the OBJECT_STORAGE watermark is
    /// at or above it, nothing is waiting for object storage (tier reports above the
    /// watermark hold nothing to tier).
    pub fn last_data_lsn(&self) -> u64 {
        self.inner.last_data_lsn.load(Ordering::Relaxed)
    }

    /// Watches the applied LSN: reads waiting for `min_lsn` and tailing reads use it.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.inner.applied_tx.subscribe()
    }

    /// Flushes sled (on shutdown).
    pub async fn flush(&self) -> StateResult<()> {
        self.inner.db.flush_async().await?;
        Ok(())
    }
}

pub(super) fn table_info(
    key: &[u8],
    meta: TableMeta,
    counts: TableCounts,
) -> StateResult<TableInfo> {
    let schema = ipc::decode_schema(&meta.schema_ipc).map_err(|e| super::StateError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })?;
    Ok(TableInfo {
        schema,
        meta: Arc::new(meta),
        counts,
    })
}

/// The state machine as openraft drives it.
pub struct StateMachineStore {
    sm: StateMachine,
}

impl StateMachineStore {
    pub fn new(sm: StateMachine) -> Self {
        Self { sm }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.sm.last_applied()?, self.sm.membership()?))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let response = self.sm.apply_entry(&entry)?;
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.sm.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        Ok(self.sm.install_snapshot(meta, data)?)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>>, io::Error>
    {
        Ok(self.sm.current_snapshot()?)
    }
}

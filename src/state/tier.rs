//! The replicated tiering state: which node is the tier worker, the OBJECT_STORAGE and
//! COMMITTED watermarks, the WAL retention, and the list of tiered files per table (so that
//! any node can read a range whose WAL it purged).

use arka_cluster::{CommandResponse, NodeId, TieredFile};
use serde::{Deserialize, Serialize};

use super::error::{decode, encode, StateResult};
use super::keys;
use super::machine::StateMachine;
use crate::table::TableName;

/// How much of the log a node keeps once it is in object storage: entries beyond the newest
/// `bytes` or older than `ms` are purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub bytes: u64,
    pub ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierState {
    pub worker: Option<NodeId>,
    /// Every entry up to here is in object storage.
    pub s3_lsn: u64,
    /// Every entry up to here is in a committed Iceberg snapshot.
    pub committed_lsn: u64,
    /// Set by `set_retention`; until then each node uses its configured retention.
    pub retention: Option<Retention>,
}

impl StateMachine {
    pub fn tier(&self) -> TierState {
        *self.inner.tier_tx.borrow()
    }

    /// Watches the tiering state: sessions waiting for OBJECT_STORAGE / COMMITTED and the
    /// tier worker use it.
    pub fn subscribe_tier(&self) -> tokio::sync::watch::Receiver<TierState> {
        self.inner.tier_tx.subscribe()
    }

    pub(super) fn load_tier(&self) -> StateResult<TierState> {
        match self.inner.tree.get(keys::TIER)? {
            Some(v) => decode(keys::TIER, &v),
            None => Ok(TierState::default()),
        }
    }

    /// The tiered file of `table` that holds `lsn`, if that range is tiered.
    pub fn tiered_file_at(&self, table: &TableName, lsn: u64) -> StateResult<Option<TieredFile>> {
        let start = keys::tiered(table, lsn);
        let end = keys::tiered(table, u64::MAX);
        let Some(item) = self.inner.tree.range(start..=end).next() else {
            return Ok(None);
        };
        let (key, value) = item?;
        let file: TieredFile = decode(&key, &value)?;
        Ok((file.min_lsn <= lsn).then_some(file))
    }

    /// The tiered files of `table` whose last LSN is in `(after, upto]`, in LSN order.
    pub fn tiered_files(
        &self,
        table: &TableName,
        after: u64,
        upto: u64,
    ) -> StateResult<Vec<TieredFile>> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let start = keys::tiered(table, after + 1);
        let end = keys::tiered(table, upto);
        self.inner
            .tree
            .range(start..=end)
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    pub(super) fn apply_tier_uploaded(
        &self,
        lsn: u64,
        worker: NodeId,
        (from_lsn, to_lsn): (u64, u64),
        files: &[TieredFile],
        batch: &mut sled::Batch,
        next: &mut Option<TierState>,
    ) -> StateResult<CommandResponse> {
        let mut tier = self.tier();
        if let Some(refused) = refuse_report(&tier, worker) {
            return Ok(refused);
        }
        if from_lsn != tier.s3_lsn || to_lsn <= from_lsn || to_lsn >= lsn {
            return Ok(CommandResponse::Rejected {
                reason: format!(
                    "tiered range ({from_lsn}, {to_lsn}] does not follow the OBJECT_STORAGE watermark {}",
                    tier.s3_lsn
                ),
            });
        }
        for file in files {
            // A table dropped (and maybe made again) since the range was read: the file
            // belongs to no table now.
            let Ok(name) = TableName::parse(&file.table) else {
                continue;
            };
            let current = self.table(&name);
            if current.is_some_and(|t| file.min_lsn >= t.meta.created_lsn) {
                batch.insert(keys::tiered(&name, file.max_lsn), encode(file)?);
            }
        }
        tier.s3_lsn = to_lsn;
        stage(tier, batch, next)
    }

    pub(super) fn apply_tier_committed(
        &self,
        worker: NodeId,
        committed_lsn: u64,
        batch: &mut sled::Batch,
        next: &mut Option<TierState>,
    ) -> StateResult<CommandResponse> {
        let mut tier = self.tier();
        if let Some(refused) = refuse_report(&tier, worker) {
            return Ok(refused);
        }
        tier.committed_lsn = committed_lsn.min(tier.s3_lsn).max(tier.committed_lsn);
        stage(tier, batch, next)
    }

    pub(super) fn apply_tier_change(
        &self,
        change: impl FnOnce(&mut TierState),
        batch: &mut sled::Batch,
        next: &mut Option<TierState>,
    ) -> StateResult<CommandResponse> {
        let mut tier = self.tier();
        change(&mut tier);
        stage(tier, batch, next)
    }

    /// Removes a dropped table's file list (its objects stay in object storage and Iceberg).
    pub(super) fn forget_tiered_files(
        &self,
        name: &TableName,
        batch: &mut sled::Batch,
    ) -> StateResult<()> {
        for item in self.inner.tree.scan_prefix(keys::tiered_prefix(name)) {
            let (key, _) = item?;
            batch.remove(key);
        }
        Ok(())
    }
}

/// Puts the new tiering state in the entry's batch; the in-memory view follows once the
/// batch is written.
fn stage(
    tier: TierState,
    batch: &mut sled::Batch,
    next: &mut Option<TierState>,
) -> StateResult<CommandResponse> {
    batch.insert(keys::TIER, encode(&tier)?);
    *next = Some(tier);
    Ok(CommandResponse::Done)
}

/// Refuses a report from a node that is no longer the tier worker.
fn refuse_report(tier: &TierState, worker: NodeId) -> Option<CommandResponse> {
    (tier.worker != Some(worker)).then(|| CommandResponse::Rejected {
        reason: format!(
            "node {worker} is not the tier worker (the tier worker is {:?})",
            tier.worker
        ),
    })
}

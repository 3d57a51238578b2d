//! Snapshots hold metadata only: every key of the state machine tree (catalog, LSN index,
//! idempotency table, applied position). The data they point at is in the WAL or, once
//! tiered, in object storage.

use std::io;

use arka_cluster::types::SnapshotMeta;
use arka_cluster::TypeConfig;
use openraft::storage::RaftSnapshotBuilder;
use openraft::type_config::alias::SnapshotOf;
use serde::{Deserialize, Serialize};

use super::error::{decode, encode, StateResult};
use super::machine::StateMachine;

const CURRENT: &[u8] = b"current";

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

impl StateMachine {
    fn dump(&self) -> StateResult<Pairs> {
        self.inner
            .tree
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn store_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> StateResult<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        self.inner.snapshots.insert(CURRENT, encode(&stored)?)?;
        Ok(())
    }

    pub(super) fn install_snapshot(&self, meta: &SnapshotMeta, data: Vec<u8>) -> StateResult<()> {
        let pairs: Pairs = decode(b"snapshot", &data)?;
        let tree = &self.inner.tree;
        tree.clear()?;
        let mut batch = sled::Batch::default();
        for (k, v) in pairs {
            batch.insert(k, v);
        }
        tree.apply_batch(batch)?;
        self.store_snapshot(meta, &data)?;
        self.reload()
    }

    pub(super) fn current_snapshot(&self) -> StateResult<Option<SnapshotOf<TypeConfig, Vec<u8>>>> {
        let Some(bytes) = self.inner.snapshots.get(CURRENT)? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = decode(CURRENT, &bytes)?;
        Ok(Some(openraft::Snapshot {
            meta: stored.meta,
            snapshot: stored.data,
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Vec<u8>>, io::Error> {
        // The sled tree is read as one pass; the applied id and membership are taken from the
        // same dump so that meta and data agree.
        let pairs = self.dump()?;
        let find = |key: &[u8]| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let last_log_id = match find(super::keys::APPLIED) {
            Some(v) => decode(super::keys::APPLIED, &v)?,
            None => None,
        };
        let last_membership = match find(super::keys::MEMBERSHIP) {
            Some(v) => decode(super::keys::MEMBERSHIP, &v)?,
            None => Default::default(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        let data = encode(&pairs)?;
        self.store_snapshot(&meta, &data)?;
        Ok(openraft::Snapshot {
            meta,
            snapshot: data,
        })
    }
}

//! Applying one committed log entry to the state machine. Each entry's changes go to sled as
//! one atomic batch together with the new applied id, so a crash leaves a consistent prefix;
//! re-applying an entry after a crash gives the same result (every change is keyed by LSN).

use std::sync::Arc;

use arka_cluster::types::{Entry, StoredMembership};
use arka_cluster::{Command, CommandResponse, Lsn, WriteCommand};
use bytes::Bytes;
use openraft::EntryPayload;

use super::catalog::{IndexEntry, TableInfo, TableMeta};
use super::error::{encode, StateResult};
use super::machine::{table_info, StateMachine};
use super::tier::{Retention, TierState};
use super::{dedup, keys};
use crate::ipc;
use crate::table::{fit_schema, SchemaFit, TableName};

/// What applying one command changes: the sled batch, and the in-memory views updated once
/// the batch is written.
struct Changes<'a> {
    batch: &'a mut sled::Batch,
    cache: &'a mut Option<CacheChange>,
    tier: &'a mut Option<TierState>,
}

/// A change to the in-memory table cache, made once the sled batch is written.
enum CacheChange {
    Put(TableName, TableInfo),
    Remove(TableName),
}

impl StateMachine {
    pub(super) fn apply_entry(&self, entry: &Entry) -> StateResult<CommandResponse> {
        let lsn = entry.log_id.index;
        let mut batch = sled::Batch::default();
        let mut cache = None;
        let mut tier = None;
        let response = match &entry.payload {
            EntryPayload::Blank => CommandResponse::TableCreated { created: false },
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                batch.insert(keys::MEMBERSHIP, encode(&stored)?);
                CommandResponse::TableCreated { created: false }
            }
            EntryPayload::Normal(cmd) => {
                let mut changes = Changes {
                    batch: &mut batch,
                    cache: &mut cache,
                    tier: &mut tier,
                };
                self.apply_command(lsn, cmd, &mut changes)?
            }
        };
        batch.insert(keys::APPLIED, encode(&Some(entry.log_id))?);
        self.inner.tree.apply_batch(batch)?;
        if let Some(change) = cache {
            let mut tables = self.inner.tables.write().unwrap_or_else(|p| p.into_inner());
            match change {
                CacheChange::Put(name, info) => {
                    tables.insert(name, info);
                }
                CacheChange::Remove(name) => {
                    tables.remove(&name);
                }
            }
        }
        if let Some(tier) = tier {
            self.inner.tier_tx.send_replace(tier);
        }
        if !crate::tier::is_tier_report(entry) {
            self.inner
                .last_data_lsn
                .store(lsn, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.applied_tx.send_replace(lsn);
        Ok(response)
    }

    fn apply_command(
        &self,
        lsn: u64,
        cmd: &Command,
        changes: &mut Changes<'_>,
    ) -> StateResult<CommandResponse> {
        let Changes { batch, cache, tier } = changes;
        match cmd {
            Command::Write(write) => self.apply_write(lsn, write, batch, cache),
            Command::CreateTable {
                name, schema_ipc, ..
            } => self.apply_create(lsn, name, schema_ipc, batch, cache),
            Command::DropTable { name, .. } => self.apply_drop(name, batch, cache),
            Command::AssignTierWorker { node_id, .. } => {
                let node_id = *node_id;
                self.apply_tier_change(|t| t.worker = Some(node_id), batch, tier)
            }
            Command::TierUploaded {
                worker,
                from_lsn,
                to_lsn,
                files,
                ..
            } => self.apply_tier_uploaded(lsn, *worker, (*from_lsn, *to_lsn), files, batch, tier),
            Command::TierCommitted {
                worker,
                committed_lsn,
                ..
            } => self.apply_tier_committed(*worker, *committed_lsn, batch, tier),
            Command::SetRetention { bytes, ms, .. } => {
                let retention = Retention {
                    bytes: *bytes,
                    ms: *ms,
                };
                self.apply_tier_change(|t| t.retention = Some(retention), batch, tier)
            }
        }
    }

    fn apply_write(
        &self,
        lsn: u64,
        write: &WriteCommand,
        batch: &mut sled::Batch,
        cache: &mut Option<CacheChange>,
    ) -> StateResult<CommandResponse> {
        let name = match TableName::parse(&write.table) {
            Ok(n) => n,
            Err(reason) => return Ok(CommandResponse::Rejected { reason }),
        };
        if let Some(p) = &write.producer {
            if let Some(original) = self.dedup_lookup(&p.producer_id, p.seq)? {
                return Ok(CommandResponse::Duplicate {
                    original: Lsn(original),
                });
            }
        }
        let schema = match ipc::decode_schema(&write.ipc) {
            Ok(s) => s,
            Err(e) => {
                return Ok(CommandResponse::Rejected {
                    reason: format!("undecodable batch: {e}"),
                })
            }
        };
        let existing = self.table(&name);
        let (schema, meta, schema_changed) = match &existing {
            None => {
                let meta = TableMeta {
                    schema_ipc: schema_bytes(&schema)?,
                    created_lsn: lsn,
                };
                (schema, Arc::new(meta), true)
            }
            Some(info) => match fit_schema(&name, &info.schema, &schema) {
                Ok(SchemaFit::Same) => (info.schema.clone(), info.meta.clone(), false),
                Ok(SchemaFit::Extends) => {
                    let meta = TableMeta {
                        schema_ipc: schema_bytes(&schema)?,
                        created_lsn: info.meta.created_lsn,
                    };
                    (schema, Arc::new(meta), true)
                }
                Err(reason) => return Ok(CommandResponse::Rejected { reason }),
            },
        };
        let bytes = write.ipc.len() as u64;
        let mut counts = existing.map(|info| info.counts).unwrap_or_default();
        counts.rows += write.rows;
        counts.bytes += bytes;
        counts.batches += 1;
        let index = IndexEntry {
            rows: write.rows,
            bytes,
        };
        batch.insert(keys::index(&name, lsn), encode(&index)?);
        batch.insert(keys::table_counts(&name), encode(&counts)?);
        if schema_changed {
            batch.insert(keys::table(&name), encode(&*meta)?);
        }
        if let Some(p) = &write.producer {
            dedup::record(&self.inner.tree, batch, &p.producer_id, p.seq, lsn)?;
        }
        let info = TableInfo {
            schema,
            meta,
            counts,
        };
        *cache = Some(CacheChange::Put(name, info));
        Ok(CommandResponse::Written { lsn: Lsn(lsn) })
    }

    fn apply_create(
        &self,
        lsn: u64,
        name: &str,
        schema_ipc: &Bytes,
        batch: &mut sled::Batch,
        cache: &mut Option<CacheChange>,
    ) -> StateResult<CommandResponse> {
        let name = match TableName::parse(name) {
            Ok(n) => n,
            Err(reason) => return Ok(CommandResponse::Rejected { reason }),
        };
        let schema = match ipc::decode_schema(schema_ipc) {
            Ok(s) => s,
            Err(e) => {
                return Ok(CommandResponse::Rejected {
                    reason: format!("undecodable schema: {e}"),
                })
            }
        };
        if let Some(info) = self.table(&name) {
            return Ok(match fit_schema(&name, &info.schema, &schema) {
                Ok(SchemaFit::Same) => CommandResponse::TableCreated { created: false },
                _ => CommandResponse::Rejected {
                    reason: format!("table {name} exists with another schema"),
                },
            });
        }
        let meta = TableMeta {
            schema_ipc: schema_ipc.clone(),
            created_lsn: lsn,
        };
        batch.insert(keys::table(&name), encode(&meta)?);
        let info = table_info(&keys::table(&name), meta, Default::default())?;
        *cache = Some(CacheChange::Put(name, info));
        Ok(CommandResponse::TableCreated { created: true })
    }

    fn apply_drop(
        &self,
        name: &str,
        batch: &mut sled::Batch,
        cache: &mut Option<CacheChange>,
    ) -> StateResult<CommandResponse> {
        let Ok(name) = TableName::parse(name) else {
            return Ok(CommandResponse::TableDropped { existed: false });
        };
        let existed = self.table(&name).is_some();
        batch.remove(keys::table(&name));
        batch.remove(keys::table_counts(&name));
        for item in self.inner.tree.scan_prefix(keys::index_prefix(&name)) {
            let (key, _) = item?;
            batch.remove(key);
        }
        self.forget_tiered_files(&name, batch)?;
        *cache = Some(CacheChange::Remove(name));
        Ok(CommandResponse::TableDropped { existed })
    }
}

fn schema_bytes(schema: &arrow::datatypes::Schema) -> StateResult<Bytes> {
    ipc::encode_schema(schema).map_err(|e| super::StateError::Encode(e.to_string()))
}

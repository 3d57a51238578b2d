//! The whole replicated state, in memory: what applying the log up to `applied` produced.
//! Applying is deterministic and touches nothing but this value, so every replica that
//! applied the same entries holds an equal one, and a snapshot is a copy of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arka_cluster::types::{Entry, LogId, StoredMembership};
use arka_cluster::{Command, CommandResponse, Lsn, TieredFile, WriteCommand};
use bytes::Bytes;
use openraft::EntryPayload;

use super::catalog::{IndexEntry, TableCounts, TableInfo, TableMeta};
use super::chunk_map::ChunkMap;
use super::dedup::Dedup;
use super::error::{StateError, StateResult};
use super::lake_drops::{DroppedTable, LakeDrops};
use super::leaderships::Leaderships;
use super::sessions::Sessions;
use super::table_commits::TableCommits;
use super::tier::{Retention, TierState};
use crate::ipc;
use crate::table::{fit_schema, SchemaFit, TableError, TableName};

#[derive(Debug, Clone, Default)]
pub struct StateData {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub tables: BTreeMap<TableName, TableInfo>,
    /// Each table's writes still in the WAL: `lsn -> rows, bytes`. Writes below
    /// `index_floor` are found through the tiered-file list instead.
    pub index: BTreeMap<TableName, ChunkMap<u64, IndexEntry>>,
    /// Writes below this LSN were dropped from the index (the WAL no longer holds them).
    pub index_floor: u64,
    pub dedup: Dedup,
    pub sessions: Sessions,
    pub leaderships: Leaderships,
    pub tier: TierState,
    /// How far each table is committed to Iceberg; `tier.committed_lsn` is its watermark.
    pub commits: TableCommits,
    /// Each table's tiered files by their last LSN.
    pub tiered: BTreeMap<TableName, ChunkMap<u64, TieredFile>>,
    /// Dropped tables whose lake data the tier worker is to delete.
    pub lake_drops: LakeDrops,
    /// The last applied entry that is not a tier report.
    pub last_data_lsn: u64,
    /// Not state: the schema of the last write applied, so that a run of writes with one
    /// schema decodes it once.
    pub schema_memo: SchemaMemo,
}

/// The schema last decoded from a write, by the bytes of its schema message.
#[derive(Debug, Clone, Default)]
pub struct SchemaMemo {
    message: Bytes,
    schema: Option<arrow::datatypes::SchemaRef>,
}

impl SchemaMemo {
    /// The schema at the head of `write_ipc`, decoded unless it is the last one seen.
    fn schema_of(
        &mut self,
        write_ipc: &[u8],
    ) -> Result<arrow::datatypes::SchemaRef, arrow::error::ArrowError> {
        let message = ipc::schema_message(write_ipc);
        if let (Some(message), Some(schema)) = (message, &self.schema) {
            if message == self.message {
                return Ok(schema.clone());
            }
        }
        let schema = ipc::decode_schema(write_ipc)?;
        self.message = Bytes::copy_from_slice(message.unwrap_or_default());
        self.schema = Some(schema.clone());
        Ok(schema)
    }
}

impl StateData {
    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &Entry) -> StateResult<CommandResponse> {
        let lsn = entry.log_id.index;
        let response = match &entry.payload {
            EntryPayload::Blank => CommandResponse::TableCreated { created: false },
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                CommandResponse::TableCreated { created: false }
            }
            EntryPayload::Normal(cmd) => self.apply_command(lsn, cmd)?,
        };
        if !arka_cluster::is_tier_report(entry) {
            self.last_data_lsn = lsn;
        }
        self.applied = Some(entry.log_id);
        self.leaderships.note(&entry.log_id);
        Ok(response)
    }

    fn apply_command(&mut self, lsn: u64, cmd: &Command) -> StateResult<CommandResponse> {
        Ok(match cmd {
            Command::Write(write) => self.apply_write(lsn, write, None)?,
            Command::SessionWrite { epoch, write } => self.apply_write(lsn, write, Some(*epoch))?,
            Command::RegisterProducer { producer_id, .. } => {
                let written_next = self.dedup.next_seq(producer_id);
                let (epoch, next_seq) = self.sessions.register(producer_id, lsn, written_next);
                CommandResponse::ProducerRegistered { epoch, next_seq }
            }
            Command::CreateTable {
                name, schema_ipc, ..
            } => self.apply_create(lsn, name, schema_ipc)?,
            Command::DropTable { name, .. } => self.apply_drop(lsn, name),
            Command::AssignTierWorker { node_id, .. } => {
                self.tier.worker = Some(*node_id);
                CommandResponse::Done
            }
            Command::TierUploaded {
                worker,
                from_lsn,
                to_lsn,
                files,
                ..
            } => self.apply_tier_uploaded(lsn, *worker, (from_lsn.get(), to_lsn.get()), files),
            Command::TierCommitted {
                worker,
                committed_lsn,
                ..
            } => self.apply_tier_committed(*worker, committed_lsn.get(), &[]),
            Command::TierCommittedTables {
                worker,
                committed_lsn,
                held_back,
                ..
            } => self.apply_tier_committed(*worker, committed_lsn.get(), held_back),
            Command::TierTableDropped {
                worker,
                dropped_lsn,
                ..
            } => {
                if let Some(refused) = refuse_report(&self.tier, *worker) {
                    return Ok(refused);
                }
                self.lake_drops.done(*dropped_lsn);
                CommandResponse::Done
            }
            Command::SetRetention { bytes, ms, .. } => {
                self.tier.retention = Some(Retention {
                    bytes: *bytes,
                    ms: *ms,
                });
                CommandResponse::Done
            }
        })
    }

    /// `epoch`: the producer session the write belongs to; a write of a session that is not
    /// its producer's current one is fenced before anything else is looked at.
    fn apply_write(
        &mut self,
        lsn: u64,
        write: &WriteCommand,
        epoch: Option<u64>,
    ) -> StateResult<CommandResponse> {
        let name = match TableName::parse(&write.table) {
            Ok(n) => n,
            Err(e) => return Ok(rejected(e)),
        };
        if let Some(p) = &write.producer {
            if let Err(refused) = self.sessions.check(&p.producer_id, epoch) {
                let reason = refused.to_string();
                return Ok(CommandResponse::Fenced { reason });
            }
            match self.repeat_of(&p.producer_id, p.seq, &name) {
                Some(Ok(original)) => return Ok(CommandResponse::Duplicate { original }),
                Some(Err(gone)) => {
                    let reason = gone.to_string();
                    return Ok(CommandResponse::TableGone { reason });
                }
                None => {}
            }
        }
        let schema = match self.schema_memo.schema_of(&write.ipc) {
            Ok(s) => s,
            Err(e) => {
                return Ok(CommandResponse::Rejected {
                    reason: format!("undecodable batch: {e}"),
                })
            }
        };
        let info = match self.tables.get(&name) {
            None => TableInfo {
                meta: Arc::new(TableMeta {
                    schema_ipc: schema_bytes(&schema)?,
                    created_lsn: lsn,
                }),
                schema,
                counts: TableCounts::default(),
            },
            Some(info) => match fit_schema(&name, &info.schema, &schema) {
                Ok(SchemaFit::Same) => info.clone(),
                Ok(SchemaFit::Extends) => TableInfo {
                    meta: Arc::new(TableMeta {
                        schema_ipc: schema_bytes(&schema)?,
                        created_lsn: info.meta.created_lsn,
                    }),
                    schema,
                    counts: info.counts,
                },
                Err(e) => return Ok(rejected(e)),
            },
        };
        let bytes = write.ipc.len() as u64;
        let mut info = info;
        info.counts.rows += write.rows;
        info.counts.bytes += bytes;
        info.counts.batches += 1;
        let entry = IndexEntry {
            rows: write.rows,
            bytes,
        };
        self.index
            .entry(name.clone())
            .or_default()
            .insert(lsn, entry);
        self.tables.insert(name, info);
        if let Some(p) = &write.producer {
            self.dedup.record(&p.producer_id, p.seq, lsn);
            self.sessions.wrote(&p.producer_id, p.seq, lsn);
        }
        Ok(CommandResponse::Written { lsn: Lsn(lsn) })
    }

    /// How a repeat of `(producer_id, seq)` naming `table` is answered, when that write was
    /// applied before: its original LSN, or why not when the table it went to has been
    /// dropped since (the table is missing, or made again after the write). Decided from the
    /// replicated state alone, so every node and every restart answers the same.
    pub fn repeat_of(
        &self,
        producer_id: &str,
        seq: i64,
        table: &TableName,
    ) -> Option<Result<Lsn, TableGone>> {
        let original = self.dedup.lookup(producer_id, seq)?;
        let holds = (self.tables.get(table)).is_some_and(|t| t.meta.created_lsn <= original);
        Some(if holds {
            Ok(Lsn(original))
        } else {
            Err(TableGone {
                producer: crate::quote::quoted(producer_id),
                seq,
                original: Lsn(original),
                table: table.clone(),
            })
        })
    }

    fn apply_create(
        &mut self,
        lsn: u64,
        name: &str,
        schema_ipc: &Bytes,
    ) -> StateResult<CommandResponse> {
        let name = match TableName::parse(name) {
            Ok(n) => n,
            Err(e) => return Ok(rejected(e)),
        };
        let schema = match ipc::decode_schema(schema_ipc) {
            Ok(s) => s,
            Err(e) => {
                return Ok(CommandResponse::Rejected {
                    reason: format!("undecodable schema: {e}"),
                })
            }
        };
        if let Some(info) = self.tables.get(&name) {
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
        self.tables
            .insert(name, table_info(meta, TableCounts::default())?);
        Ok(CommandResponse::TableCreated { created: true })
    }

    fn apply_drop(&mut self, lsn: u64, name: &str) -> CommandResponse {
        let Ok(name) = TableName::parse(name) else {
            return CommandResponse::TableDropped { existed: false };
        };
        let Some(dropped) = self.tables.remove(&name) else {
            return CommandResponse::TableDropped { existed: false };
        };
        self.index.remove(&name);
        // No node reads its objects any longer; the tier worker deletes them.
        self.tiered.remove(&name);
        self.lake_drops.add(DroppedTable {
            table: name.to_string(),
            created_lsn: Lsn(dropped.meta.created_lsn),
            dropped_lsn: Lsn(lsn),
        });
        // Nor does it hold back the COMMITTED watermark any longer.
        self.commits.forget(name.as_str());
        self.tier.committed_lsn = self.tier.committed_lsn.max(self.commits.watermark());
        CommandResponse::TableDropped { existed: true }
    }

    fn apply_tier_uploaded(
        &mut self,
        lsn: u64,
        worker: arka_cluster::NodeId,
        (from_lsn, to_lsn): (u64, u64),
        files: &[TieredFile],
    ) -> CommandResponse {
        if let Some(refused) = refuse_report(&self.tier, worker) {
            return refused;
        }
        if from_lsn != self.tier.s3_lsn.get() || to_lsn <= from_lsn || to_lsn >= lsn {
            return CommandResponse::Rejected {
                reason: format!(
                    "tiered range ({from_lsn}, {to_lsn}] does not follow the OBJECT_STORAGE watermark {}",
                    self.tier.s3_lsn
                ),
            };
        }
        if let Some(reason) = self.uncovered_writes((from_lsn, to_lsn), files) {
            return CommandResponse::Rejected { reason };
        }
        for file in files {
            // A table dropped (and maybe made again) since the range was read: the file
            // belongs to no table now.
            let Ok(name) = TableName::parse(&file.table) else {
                continue;
            };
            let current = self.tables.get(&name);
            if current.is_some_and(|t| file.min_lsn.get() >= t.meta.created_lsn) {
                self.tiered
                    .entry(name)
                    .or_default()
                    .insert(file.max_lsn.get(), file.clone());
            }
        }
        self.tier.s3_lsn = Lsn(to_lsn);
        CommandResponse::Done
    }

    /// Why the report cannot stand, when a table has writes in `(from, to]` that its files
    /// do not span: moving the watermark past them would let every node purge writes that
    /// exist nowhere else.
    fn uncovered_writes(&self, (from, to): (u64, u64), files: &[TieredFile]) -> Option<String> {
        for (name, writes) in &self.index {
            let mut range = writes.range(from + 1..=to);
            let Some((&first, _)) = range.next() else {
                continue;
            };
            let last = range.next_back().map_or(first, |(l, _)| *l);
            let of_table = files.iter().filter(|f| f.table == name.as_str());
            let spanned = of_table.fold(None, |span: Option<(u64, u64)>, f| {
                let (min, max) = (f.min_lsn.get(), f.max_lsn.get());
                Some(span.map_or((min, max), |(lo, hi)| (lo.min(min), hi.max(max))))
            });
            if !spanned.is_some_and(|(lo, hi)| lo <= first && last <= hi) {
                return Some(format!(
                    "tiered range ({from}, {to}] names no file for the writes {first}..={last} of table {name}"
                ));
            }
        }
        None
    }

    fn apply_tier_committed(
        &mut self,
        worker: arka_cluster::NodeId,
        committed_lsn: u64,
        held_back: &[arka_cluster::HeldBackTable],
    ) -> CommandResponse {
        if let Some(refused) = refuse_report(&self.tier, worker) {
            return refused;
        }
        let tier = &mut self.tier;
        self.commits
            .commit(Lsn(committed_lsn).min(tier.s3_lsn), held_back);
        tier.committed_lsn = tier.committed_lsn.max(self.commits.watermark());
        CommandResponse::Done
    }

    /// Drops the index entries of writes below `first_in_wal` that are in object storage:
    /// the WAL no longer holds them, and reads find them through the tiered-file list. Each
    /// node does it when its own WAL is purged; what is above the OBJECT_STORAGE watermark
    /// stays on every node, so applying a tier report gives the same answer everywhere.
    pub fn forget_index_below(&mut self, first_in_wal: u64) {
        let floor = first_in_wal.min(self.tier.s3_lsn.get() + 1);
        if floor <= self.index_floor {
            return;
        }
        for writes in self.index.values_mut() {
            writes.retain_from(&floor);
        }
        self.index.retain(|_, writes| !writes.is_empty());
        self.index_floor = floor;
    }

    pub fn index_entries(&self) -> usize {
        self.index.values().map(ChunkMap::len).sum()
    }

    pub fn tiered_files(&self) -> usize {
        self.tiered.values().map(ChunkMap::len).sum()
    }
}

/// Refuses a report from a node that is no longer the tier worker.
fn refuse_report(tier: &TierState, worker: arka_cluster::NodeId) -> Option<CommandResponse> {
    (tier.worker != Some(worker)).then(|| CommandResponse::Rejected {
        reason: format!(
            "node {worker} is not the tier worker (the tier worker is {:?})",
            tier.worker
        ),
    })
}

pub(super) fn table_info(meta: TableMeta, counts: TableCounts) -> StateResult<TableInfo> {
    let schema = ipc::decode_schema(&meta.schema_ipc).map_err(|e| StateError::Decode {
        key: "table schema".into(),
        reason: e.to_string(),
    })?;
    Ok(TableInfo {
        schema,
        meta: Arc::new(meta),
        counts,
    })
}

fn schema_bytes(schema: &arrow::datatypes::Schema) -> StateResult<Bytes> {
    ipc::encode_schema(schema).map_err(|e| StateError::Encode(e.to_string()))
}

/// A repeat of a write whose table was dropped since the write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the write (producer {producer}, seq {seq}) was applied at LSN {original} to table {table}, which has been dropped since: nothing was written again")]
pub struct TableGone {
    /// Quoted.
    pub producer: String,
    pub seq: i64,
    pub original: Lsn,
    pub table: TableName,
}

/// The answer to a command whose table name or schema the table does not take.
fn rejected(e: TableError) -> CommandResponse {
    CommandResponse::Rejected {
        reason: e.to_string(),
    }
}

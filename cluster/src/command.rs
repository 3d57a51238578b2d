//! The replicated command set: what one Raft log entry asks the state machine to do.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{Entry, Lsn, NodeId, RequestId};

/// `(producer_id, seq)` of an idempotent write: a repeat writes nothing and returns the
/// original LSN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerSeq {
    pub producer_id: String,
    pub seq: i64,
}

/// One write of one record batch to one table.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteCommand {
    pub table: String,
    pub request: RequestId,
    pub producer: Option<ProducerSeq>,
    /// Number of rows in the batch (kept beside the payload so that metadata reads need not
    /// decode it).
    pub rows: u64,
    /// The batch as a self-describing Arrow IPC stream (schema message + one batch).
    pub ipc: Bytes,
}

impl fmt::Debug for WriteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteCommand")
            .field("table", &self.table)
            .field("request", &self.request)
            .field("producer", &self.producer)
            .field("rows", &self.rows)
            .field("ipc_bytes", &self.ipc.len())
            .finish()
    }
}

/// A data file the tier worker put in object storage: the rows of one table in one log range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TieredFile {
    pub table: String,
    /// The object's full URL (`s3://bucket/…`, `file:///…`).
    pub path: String,
    /// LSNs of the first and last write in the file.
    pub min_lsn: Lsn,
    pub max_lsn: Lsn,
    pub rows: u64,
    /// Size of the object.
    pub bytes: u64,
}

/// A table the tier worker holds back from Iceberg: its catalog commit kept failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBackTable {
    pub table: String,
    /// The last error of its commit, as the catalog gave it.
    pub reason: String,
}

/// The application data of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Append a batch to a table (creating the table with the batch's schema if needed).
    Write(WriteCommand),
    /// Create a table with a schema (Arrow IPC schema message).
    CreateTable {
        name: String,
        schema_ipc: Bytes,
        request: RequestId,
    },
    /// Drop a table and its index.
    DropTable { name: String, request: RequestId },
    /// Make `node_id` the tier worker (chosen by the leader).
    AssignTierWorker { node_id: NodeId, request: RequestId },
    /// The tier worker put the range `(from_lsn, to_lsn]` in object storage as `files`.
    /// Applied only if `worker` is still the tier worker and `from_lsn` is the current
    /// OBJECT_STORAGE watermark, so a deposed worker's late report changes nothing.
    TierUploaded {
        worker: NodeId,
        from_lsn: Lsn,
        to_lsn: Lsn,
        files: Vec<TieredFile>,
        request: RequestId,
    },
    /// The tier worker committed everything up to `committed_lsn` to Iceberg.
    TierCommitted {
        worker: NodeId,
        committed_lsn: Lsn,
        request: RequestId,
    },
    /// How much of the log each node keeps after it is in object storage.
    SetRetention {
        bytes: u64,
        ms: u64,
        request: RequestId,
    },
    /// Start a new session of `producer_id`: its epoch becomes this entry's LSN, which fences
    /// every write of an earlier epoch.
    RegisterProducer {
        producer_id: String,
        request: RequestId,
    },
    /// A write of a producer session, applied only while `epoch` is the producer's current
    /// epoch. A variant of its own rather than a field of [`WriteCommand`], so that log
    /// entries written before producer sessions existed still decode.
    SessionWrite { epoch: u64, write: WriteCommand },
    /// The tier worker committed every table but `held_back` up to `committed_lsn`; each
    /// held-back table stays where it was committed before. Supersedes
    /// [`Command::TierCommitted`] (which still decodes, as a report that holds nothing back).
    TierCommittedTables {
        worker: NodeId,
        committed_lsn: Lsn,
        held_back: Vec<HeldBackTable>,
        request: RequestId,
    },
    /// The tier worker deleted the lake data (Iceberg table, Parquet files) of the table
    /// dropped at `dropped_lsn`.
    TierTableDropped {
        worker: NodeId,
        dropped_lsn: Lsn,
        request: RequestId,
    },
}

/// The write a log entry carries, if it carries one.
pub fn write_of(entry: &Entry) -> Option<&WriteCommand> {
    match &entry.payload {
        openraft::EntryPayload::Normal(command) => command.as_write(),
        _ => None,
    }
}

/// True for the entries the tier worker itself causes: they hold no data to tier.
pub fn is_tier_report(entry: &Entry) -> bool {
    match &entry.payload {
        openraft::EntryPayload::Normal(command) => command.is_tier_report(),
        _ => false,
    }
}

impl Command {
    /// True for the tier worker's own reports.
    pub fn is_tier_report(&self) -> bool {
        matches!(
            self,
            Command::TierUploaded { .. }
                | Command::TierCommitted { .. }
                | Command::TierCommittedTables { .. }
                | Command::TierTableDropped { .. }
        )
    }

    /// The write this command carries, if it is one.
    pub fn as_write(&self) -> Option<&WriteCommand> {
        match self {
            Command::Write(write) | Command::SessionWrite { write, .. } => Some(write),
            _ => None,
        }
    }

    /// [`Command::as_write`], by value.
    pub fn into_write(self) -> Option<WriteCommand> {
        match self {
            Command::Write(write) | Command::SessionWrite { write, .. } => Some(write),
            _ => None,
        }
    }

    /// The request this command answers, for routing its acknowledgements.
    pub fn request(&self) -> RequestId {
        match self {
            Command::Write(w) | Command::SessionWrite { write: w, .. } => w.request,
            Command::CreateTable { request, .. }
            | Command::RegisterProducer { request, .. }
            | Command::DropTable { request, .. }
            | Command::AssignTierWorker { request, .. }
            | Command::TierUploaded { request, .. }
            | Command::TierCommitted { request, .. }
            | Command::TierCommittedTables { request, .. }
            | Command::TierTableDropped { request, .. }
            | Command::SetRetention { request, .. } => *request,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Write(w) | Command::SessionWrite { write: w, .. } => {
                write!(f, "write {} rows to {}", w.rows, w.table)
            }
            Command::RegisterProducer { producer_id, .. } => {
                write!(f, "register producer {producer_id:?}")
            }
            Command::CreateTable { name, .. } => write!(f, "create table {name}"),
            Command::DropTable { name, .. } => write!(f, "drop table {name}"),
            Command::AssignTierWorker { node_id, .. } => write!(f, "tier worker {node_id}"),
            Command::TierUploaded {
                from_lsn, to_lsn, ..
            } => write!(f, "tiered ({from_lsn}, {to_lsn}]"),
            Command::TierCommitted { committed_lsn, .. } => {
                write!(f, "committed to iceberg up to {committed_lsn}")
            }
            Command::TierCommittedTables {
                committed_lsn,
                held_back,
                ..
            } => {
                write!(f, "committed to iceberg up to {committed_lsn}")?;
                for held in held_back {
                    write!(f, ", {} held back", held.table)?;
                }
                Ok(())
            }
            Command::TierTableDropped { dropped_lsn, .. } => {
                write!(f, "lake data of the table dropped at {dropped_lsn} deleted")
            }
            Command::SetRetention { bytes, ms, .. } => {
                write!(f, "wal retention {bytes} bytes, {ms} ms")
            }
        }
    }
}

/// What the state machine answered when it applied a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The write is in the table at `lsn`.
    Written { lsn: Lsn },
    /// The `(producer_id, seq)` was seen before: nothing was written, the original LSN is given.
    Duplicate { original: Lsn },
    /// The table was created (`created == false`: it existed with the same schema).
    TableCreated { created: bool },
    /// The table was dropped (`existed == false`: there was no such table).
    TableDropped { existed: bool },
    /// The state machine refused the command (for example a schema that changed under a
    /// concurrent writer); nothing was changed.
    Rejected { reason: String },
    /// A tiering or retention command took effect.
    Done,
    /// A producer session started: writes must carry `epoch`; `next_seq` is one above the
    /// highest seq the producer wrote (0 for a new producer).
    ProducerRegistered { epoch: u64, next_seq: i64 },
    /// A write of a producer session that is no longer current (or never was): nothing was
    /// written.
    Fenced { reason: String },
    /// A repeat of a write whose table has been dropped since the write was applied: nothing
    /// was written, and the `(producer_id, seq)` stays used.
    TableGone { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log entries and snapshots written while LSN fields were bare `u64`s still decode, and
    /// the JSON of the actions is unchanged: an `Lsn` encodes as the number it holds.
    #[test]
    fn an_lsn_encodes_as_its_number() {
        for n in [0u64, 1, 300, u64::MAX] {
            let as_lsn = postcard::to_stdvec(&Lsn(n)).expect("encode");
            assert_eq!(as_lsn, postcard::to_stdvec(&n).expect("encode"));
            let json = serde_json::to_string(&Lsn(n)).expect("json");
            assert_eq!(json, n.to_string());
        }
    }
}

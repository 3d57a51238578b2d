//! The write path: validating a client's batch, proposing it through Raft on the leader, and
//! following it through the durability levels for the session that sent it.

mod ack_rows;
mod input;
mod producer;
mod session;

use std::sync::Arc;
use std::time::Duration;

use arka_cluster::{Command, CommandResponse, Lsn, ProducerSeq, WriteCommand};
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

pub use input::{decode_writes, table_from_path};
pub use producer::{parse_producer, PRODUCER_ID_BYTES_MAX};
pub use session::{run_session, AckEvent, SessionLimits};

use crate::acks::AckRouter;
use crate::disk::DiskFloor;
use crate::error::{Error, Result};
use crate::ipc;
use crate::lake::types::{check_columns, check_values, leaf_columns};
use crate::propose::{propose, Proposer};
use crate::raft::Raft;
use crate::state::StateMachine;
use crate::table::{fit_schema, SchemaFit, TableName};
use crate::tier::Tiering;

/// One batch a client asked to write.
#[derive(Debug)]
pub struct IncomingWrite {
    pub table: TableName,
    pub batch: RecordBatch,
    pub producer: Option<ProducerSeq>,
    /// The producer session of the write, if its producer registered one.
    pub epoch: Option<u64>,
    /// The batch as the client encoded it (schema + batch message), kept as it is; `None`
    /// when it must be encoded here.
    pub ipc: Option<Bytes>,
}

/// Bounds of the write path.
#[derive(Debug, Clone)]
pub struct WriteLimits {
    /// Largest encoded batch one write may carry.
    pub batch_bytes_max: usize,
    /// Encoded bytes that may be proposed but not yet replicated, across all sessions.
    pub node_inflight_bytes_max: usize,
    /// The same, for one session; past it the session stops reading its input.
    pub session_inflight_bytes_max: usize,
    /// Most Parquet (leaf) columns a table may have.
    pub table_columns_max: usize,
    /// Most tables the cluster holds; a write or `create_table` that would make one more is
    /// refused.
    pub tables_max: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            batch_bytes_max: 64 * 1024 * 1024,
            node_inflight_bytes_max: 512 * 1024 * 1024,
            session_inflight_bytes_max: 64 * 1024 * 1024,
            table_columns_max: 1000,
            tables_max: 1000,
        }
    }
}

/// The node memory bound is counted in KiB so that a semaphore can hold it.
const PERMIT_BYTES: usize = 1024;

/// A write proposed through Raft.
pub struct Proposal {
    /// Its log id, once the leader appended it.
    pub lsn: oneshot::Receiver<arka_cluster::types::LogId>,
    pub outcome: BoxFuture<'static, Result<CommandResponse>>,
    pub bytes: usize,
}

/// What became of a submitted write.
pub enum Submitted {
    Proposed(Proposal),
    /// `(producer_id, seq)` was applied before at `original`: nothing is written.
    Duplicate {
        original: Lsn,
    },
}

/// Holds, then refuses, writes while the WAL is over its bound (tiering fell behind).
pub struct WalGuard {
    pub tiering: Arc<Tiering>,
    pub wal_bytes_max: u64,
    /// How long a write is held while the WAL is over its bound before it is refused.
    pub hold: Duration,
}

pub struct WritePath {
    wal_guard: Option<WalGuard>,
    disk: Arc<DiskFloor>,
    raft: Raft,
    sm: StateMachine,
    acks: Arc<AckRouter>,
    /// The lease check and proposals of every write, made once.
    proposer: Proposer,
    limits: WriteLimits,
    inflight: Arc<Semaphore>,
}

impl WritePath {
    pub fn new(
        raft: Raft,
        sm: StateMachine,
        acks: Arc<AckRouter>,
        limits: WriteLimits,
        wal_guard: Option<WalGuard>,
        disk: Arc<DiskFloor>,
    ) -> Self {
        let permits = limits.node_inflight_bytes_max / PERMIT_BYTES;
        Self {
            wal_guard,
            disk,
            proposer: Proposer::new(raft.clone(), acks.clone()),
            raft,
            sm,
            acks,
            limits,
            inflight: Arc::new(Semaphore::new(permits)),
        }
    }

    pub fn acks(&self) -> &Arc<AckRouter> {
        &self.acks
    }

    /// Proposes commands other than writes, as the leader.
    pub fn proposer(&self) -> Proposer {
        self.proposer.clone()
    }

    /// Fails with a redirect unless this node is the leader.
    pub fn ensure_leader(&self) -> Result<()> {
        self.proposer.ensure_leader()
    }

    /// Proposes the command `make` builds for a request id, once this node leads with a
    /// quorum in its lease; see [`Proposer::propose_command`].
    pub async fn propose_command(
        &self,
        make: impl FnOnce(arka_cluster::RequestId) -> Command,
    ) -> Result<CommandResponse> {
        self.proposer.propose_command(make).await
    }

    pub fn state(&self) -> &StateMachine {
        &self.sm
    }

    pub fn limits(&self) -> &WriteLimits {
        &self.limits
    }

    /// Holds a write while this node's WAL is over `wal-bytes-max` (tiering fell behind),
    /// until tiering trims it back under, for `wal-full-hold-ms` at most; then refuses it.
    /// A writer that outpaces object storage is slowed to its pace, and sees an error only
    /// when the store has stopped taking data.
    async fn wait_for_wal_room(&self) -> Result<()> {
        let Some(guard) = &self.wal_guard else {
            return Ok(());
        };
        if guard
            .tiering
            .wait_for_wal_bytes_at_most(guard.wal_bytes_max, guard.hold)
            .await
        {
            return Ok(());
        }
        let tier = self.sm.tier();
        Err(Error::ResourceExhausted(format!(
            "the WAL holds {} bytes, over wal-bytes-max {}, and tiering did not trim it within {} ms: object storage is behind (OBJECT_STORAGE watermark {}, replicated {}; tier worker error: {}); writes resume once tiering catches up",
            guard.tiering.wal_bytes(),
            guard.wal_bytes_max,
            guard.hold.as_millis(),
            tier.s3_lsn,
            self.sm.applied_lsn(),
            guard.tiering.status().last_error.as_deref().unwrap_or("none"),
        )))
    }

    /// Checks, encodes and proposes one write. Waits (backpressure) while the node's
    /// in-flight bytes or its WAL are at their bounds.
    pub async fn submit(&self, write: IncomingWrite) -> Result<Submitted> {
        self.proposer.ensure_leader()?;
        if let Some(refusal) = self.disk.refusal() {
            return Err(Error::ResourceExhausted(refusal));
        }
        self.wait_for_wal_room().await?;
        self.proposer.ensure_writable_leader().await?;
        let rows = write.batch.num_rows() as u64;
        if let Some(p) = &write.producer {
            // The state machine decides again when it applies the write; this answers a
            // zombie or a repeat without putting it in the log.
            self.sm
                .check_session(&p.producer_id, write.epoch)
                .map_err(|refused| Error::FailedPrecondition(refused.to_string()))?;
            match self.sm.repeat_of(&p.producer_id, p.seq, &write.table) {
                Some(Ok(original)) => return Ok(Submitted::Duplicate { original }),
                Some(Err(gone)) => return Err(Error::NotFound(gone.to_string())),
                None => {}
            }
        }
        self.check_schema(&write.table, &write.batch.schema())?;
        check_values(&write.batch)
            .map_err(|e| Error::InvalidArgument(format!("table {}: {e}", write.table)))?;
        let ipc = match write.ipc {
            Some(ipc) => ipc,
            None => ipc::encode_batch(&write.batch)
                .map_err(|e| Error::InvalidArgument(format!("cannot encode batch: {e}")))?,
        };
        if ipc.len() > self.limits.batch_bytes_max {
            return Err(Error::ResourceExhausted(format!(
                "batch of {} bytes is over the limit of {} bytes per write; split it",
                ipc.len(),
                self.limits.batch_bytes_max
            )));
        }
        let permits = ipc.len().div_ceil(PERMIT_BYTES).max(1) as u32;
        let permit = self
            .inflight
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| Error::Shutdown)?;
        let bytes = ipc.len();
        let (request, lsn) = self
            .acks
            .register_write(bytes)
            .await
            .ok_or(Error::Shutdown)?;
        let command = WriteCommand {
            table: write.table.to_string(),
            request,
            producer: write.producer,
            rows,
            ipc,
        };
        let command = match write.epoch {
            Some(epoch) => Command::SessionWrite {
                epoch,
                write: command,
            },
            None => Command::Write(command),
        };
        let outcome = propose(&self.raft, self.acks.clone(), command).await?;
        Ok(Submitted::Proposed(Proposal {
            lsn,
            outcome: release_when_done(outcome, permit),
            bytes,
        }))
    }
}

impl WritePath {
    /// Checks the schema of a write to, or a `create_table` of, `name` against the table as
    /// it stands (none yet: the schema makes it). The columns it brings (all of a new
    /// table's, or those it adds) must be ones the lake can hold, the table must stay within
    /// `table-columns-max` and a new one within `tables-max`: refusing here, before the
    /// write is in the log, is what keeps the tier worker from meeting a table it cannot
    /// write, or one that costs it unbounded memory.
    pub fn check_schema(&self, name: &TableName, schema: &Schema) -> Result<()> {
        let new_columns = match self.sm.table(name) {
            None => {
                self.check_room_for_a_table(name)?;
                schema.fields().as_ref()
            }
            Some(table) => match fit_schema(name, &table.schema, schema).map_err(Error::from)? {
                SchemaFit::Same => return Ok(()),
                SchemaFit::Extends => &schema.fields()[table.schema.fields().len()..],
            },
        };
        check_columns(new_columns)
            .map_err(|e| Error::InvalidArgument(format!("table {name}: {e}")))?;
        let columns = leaf_columns(schema.fields());
        if columns > self.limits.table_columns_max {
            return Err(Error::InvalidArgument(format!(
                "table {name}: the schema has {columns} columns (nested fields counted), over this cluster's table-columns-max of {}",
                self.limits.table_columns_max
            )));
        }
        Ok(())
    }

    fn check_room_for_a_table(&self, name: &TableName) -> Result<()> {
        let tables = self.sm.table_count();
        if tables >= self.limits.tables_max {
            return Err(Error::ResourceExhausted(format!(
                "table {name} would be one more than this cluster's tables-max of {} (it holds {tables}); drop a table or raise the limit",
                self.limits.tables_max
            )));
        }
        Ok(())
    }
}

/// Drives `outcome` in its own task, which returns the node memory `permit` as soon as the
/// write is decided: the bound must not depend on the session that sent the write polling
/// it (a session waiting for a permit would otherwise hold its own permits forever).
fn release_when_done(
    outcome: BoxFuture<'static, Result<CommandResponse>>,
    permit: OwnedSemaphorePermit,
) -> BoxFuture<'static, Result<CommandResponse>> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let result = outcome.await;
        drop(permit);
        let _ = tx.send(result);
    });
    Box::pin(async move { rx.await.unwrap_or(Err(Error::Shutdown)) })
}

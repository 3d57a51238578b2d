//! One client write session (a DoExchange or DoPut call): reads writes while the session's
//! unreplicated bytes are under their bound, proposes them, and reports each write's
//! durability level as it rises, until every write reached the session's final level.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arka_cluster::types::{CommittedLeaderId, LogId};
use arka_cluster::CommandResponse;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::ack_rows::AckRows;
use super::{IncomingWrite, Submitted, WritePath};
use crate::durability::Level;
use crate::error::{Error, Result};
use crate::state::{HeldBack, TableCommits};

/// One acknowledgement row: write `write_no` of the session reached `level`.
#[derive(Debug, Clone)]
pub struct AckEvent {
    pub write_no: u64,
    pub lsn: u64,
    pub level: Level,
    pub is_update: bool,
    pub table: String,
    pub rows: u64,
    pub seq: Option<i64>,
    /// The leader that appended the write at `lsn`: the two name the write for good.
    pub appended_by: Option<CommittedLeaderId>,
}

/// Writes one session follows at most (waiting for OBJECT_STORAGE / COMMITTED, which can
/// take a commit interval); past it the session stops reading its input.
const TRACKED_WRITES_MAX: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub final_level: Level,
    pub inflight_bytes_max: usize,
}

struct WriteState {
    lsn: Option<u64>,
    appended_by: Option<CommittedLeaderId>,
    level: Option<Level>,
    table: String,
    rows: u64,
    seq: Option<i64>,
    /// Encoded bytes counted against the session's bound until the write is replicated.
    unreplicated_bytes: usize,
}

struct Session {
    path: Arc<WritePath>,
    limits: SessionLimits,
    writes: HashMap<u64, WriteState>,
    next_write_no: u64,
    inflight_bytes: usize,
    rows: AckRows,
    /// Replicated writes waiting for the OBJECT_STORAGE / COMMITTED watermark, as
    /// `(lsn, write_no)` (two writes of a session share an LSN when one repeats the other's
    /// producer seq).
    awaiting_s3: BTreeSet<(u64, u64)>,
    awaiting_commit: BTreeSet<(u64, u64)>,
    /// Writes with a known LSN below LOCAL_DISK, as `(lsn, write_no)`.
    awaiting_disk: BTreeSet<(u64, u64)>,
}

impl Session {
    /// Raises write `no` to `level` (at `lsn`) and queues the ack row if the level is new.
    fn raise(&mut self, no: u64, lsn: u64, level: Level) {
        let Some(w) = self.writes.get_mut(&no) else {
            return;
        };
        if w.level.is_some_and(|current| current >= level) {
            return;
        }
        let is_update = w.level.is_some();
        if let (Some(old_lsn), Some(old_level)) = (w.lsn, w.level) {
            if old_level < Level::LocalDisk {
                self.awaiting_disk.remove(&(old_lsn, no));
            }
        }
        w.level = Some(level);
        w.lsn = Some(lsn);
        if w.appended_by.is_none() && level >= Level::Replicated {
            // A repeat answered with its original, or an outcome that came before its
            // append: the entry is applied, so the state machine knows its leader.
            w.appended_by = self.path.state().leader_at(arka_cluster::Lsn(lsn));
        }
        if level < Level::LocalDisk {
            self.awaiting_disk.insert((lsn, no));
        }
        if level >= Level::Replicated {
            self.inflight_bytes -= std::mem::take(&mut w.unreplicated_bytes);
        }
        let event = AckEvent {
            write_no: no,
            lsn,
            level,
            is_update,
            table: w.table.clone(),
            rows: w.rows,
            seq: w.seq,
            appended_by: w.appended_by,
        };
        // A write stays tracked until it is replicated even when the session waits for less:
        // until then its bytes count against the session's bound on unreplicated data.
        if level >= self.limits.final_level.max(Level::Replicated) {
            self.writes.remove(&no);
        } else if level >= Level::Replicated {
            let next = if level < Level::ObjectStorage {
                &mut self.awaiting_s3
            } else {
                &mut self.awaiting_commit
            };
            next.insert((lsn, no));
        }
        self.rows.push(event);
    }

    /// Raises the writes the tier watermarks passed, in LSN order. A write whose table the
    /// tier worker holds back below it ends the session: it cannot reach COMMITTED until the
    /// catalog takes the table.
    fn raise_to_tier(&mut self, s3_lsn: u64, commits: &TableCommits) -> Result<()> {
        let above_s3 = self.awaiting_s3.split_off(&(s3_lsn + 1, 0));
        for (lsn, no) in std::mem::replace(&mut self.awaiting_s3, above_s3) {
            self.raise(no, lsn, Level::ObjectStorage);
        }
        let watermark = commits.watermark().get();
        let above_watermark = self.awaiting_commit.split_off(&(watermark + 1, 0));
        for (lsn, no) in std::mem::replace(&mut self.awaiting_commit, above_watermark) {
            self.raise(no, lsn, Level::Committed);
        }
        if commits.held().is_empty() {
            return Ok(());
        }
        // Above the watermark, each write's own table says.
        let mut reached = Vec::new();
        for &(lsn, no) in &self.awaiting_commit {
            let Some(table) = self.writes.get(&no).map(|w| w.table.as_str()) else {
                continue;
            };
            if let Some(held) = commits
                .held_back(table)
                .filter(|h| lsn > h.committed_lsn.get())
            {
                return Err(held_back_error(table, lsn, held));
            }
            if lsn <= commits.position(table).get() {
                reached.push((lsn, no));
            }
        }
        for (lsn, no) in reached {
            self.awaiting_commit.remove(&(lsn, no));
            self.raise(no, lsn, Level::Committed);
        }
        Ok(())
    }

    /// True when every write reached the session's final level.
    fn all_final(&self) -> bool {
        let final_level = self.limits.final_level;
        self.writes
            .values()
            .all(|w| w.level.is_some_and(|l| l >= final_level))
    }

    /// Raises the writes the leader's durable index passed, in LSN order.
    fn raise_to_disk(&mut self, disk_lsn: u64) {
        let above = self.awaiting_disk.split_off(&(disk_lsn + 1, 0));
        for (lsn, no) in std::mem::replace(&mut self.awaiting_disk, above) {
            self.raise(no, lsn, Level::LocalDisk);
        }
    }

    fn track(&mut self, write: &IncomingWrite) -> u64 {
        let no = self.next_write_no;
        self.next_write_no += 1;
        self.writes.insert(
            no,
            WriteState {
                lsn: None,
                appended_by: None,
                level: None,
                table: write.table.to_string(),
                rows: write.batch.num_rows() as u64,
                seq: write.producer.as_ref().map(|p| p.seq),
                unreplicated_bytes: 0,
            },
        );
        no
    }
}

/// What a writer waiting for COMMITTED is told when its table is held back.
fn held_back_error(table: &str, lsn: u64, held: &HeldBack) -> Error {
    Error::FailedPrecondition(format!(
        "{}; the write at LSN {lsn} is durable (REPLICATED) and reaches COMMITTED once the \
         catalog takes the table (see tier.held_back in status)",
        held.explain(table)
    ))
}

type LsnFuture = futures::future::BoxFuture<'static, (u64, Option<LogId>)>;
type OutcomeFuture = futures::future::BoxFuture<'static, (u64, Result<CommandResponse>)>;

/// Runs a session until its input ends and every write reached the final level, sending
/// batches of ack rows to `out`. An error ends the session and is sent as the last item.
pub async fn run_session<S>(
    path: Arc<WritePath>,
    input: S,
    limits: SessionLimits,
    out: mpsc::Sender<Result<Vec<AckEvent>>>,
) where
    S: Stream<Item = Result<IncomingWrite>> + Send + Unpin,
{
    if let Err(e) = drive(path, input, limits, &out).await {
        let _ = out.send(Err(e)).await;
    }
}

async fn drive<S>(
    path: Arc<WritePath>,
    mut input: S,
    limits: SessionLimits,
    out: &mpsc::Sender<Result<Vec<AckEvent>>>,
) -> Result<()>
where
    S: Stream<Item = Result<IncomingWrite>> + Send + Unpin,
{
    let mut disk = path.acks().subscribe_disk();
    let mut tier = path.state().subscribe_tier();
    let mut commits = path.state().subscribe_table_commits();
    let mut session = Session {
        path,
        limits,
        writes: HashMap::new(),
        next_write_no: 0,
        inflight_bytes: 0,
        rows: AckRows::default(),
        awaiting_s3: BTreeSet::new(),
        awaiting_commit: BTreeSet::new(),
        awaiting_disk: BTreeSet::new(),
    };
    let mut lsns: FuturesUnordered<LsnFuture> = FuturesUnordered::new();
    let mut outcomes: FuturesUnordered<OutcomeFuture> = FuturesUnordered::new();
    let mut input_done = false;
    loop {
        if input_done && session.all_final() {
            return Ok(());
        }
        let can_read = !input_done
            && session.inflight_bytes < limits.inflight_bytes_max
            && session.writes.len() < TRACKED_WRITES_MAX;
        tokio::select! {
            item = input.next(), if can_read => match item {
                None => input_done = true,
                Some(write) => submit(&mut session, write?, &mut lsns, &mut outcomes).await?,
            },
            Some((no, lsn)) = lsns.next() => on_lsn(&mut session, no, lsn),
            Some((no, outcome)) = outcomes.next() => on_outcome(&mut session, no, outcome)?,
            Ok(()) = tier.changed() => {}
            Ok(()) = commits.changed() => {}
            Ok(()) = disk.changed() => {}
        }
        // Everything else that is ready goes into the same ack batch: one batch per wake-up,
        // not one per write and level.
        while let Some(Some((no, lsn))) = lsns.next().now_or_never() {
            on_lsn(&mut session, no, lsn);
        }
        while let Some(Some((no, outcome))) = outcomes.next().now_or_never() {
            on_outcome(&mut session, no, outcome)?;
        }
        session.raise_to_disk(*disk.borrow_and_update());
        if !session.awaiting_s3.is_empty() || !session.awaiting_commit.is_empty() {
            let s3_lsn = tier.borrow_and_update().s3_lsn.get();
            let commits = commits.borrow_and_update().clone();
            if let Err(e) = session.raise_to_tier(s3_lsn, &commits) {
                // The acks the session earned go out before its error.
                if let Some(rows) = session.rows.take_batch() {
                    out.send(Ok(rows)).await.map_err(|_| Error::Shutdown)?;
                }
                return Err(e);
            }
        }
        if let Some(rows) = session.rows.take_batch() {
            out.send(Ok(rows)).await.map_err(|_| Error::Shutdown)?;
        }
    }
}

async fn submit(
    session: &mut Session,
    write: IncomingWrite,
    lsns: &mut FuturesUnordered<LsnFuture>,
    outcomes: &mut FuturesUnordered<OutcomeFuture>,
) -> Result<()> {
    let no = session.track(&write);
    match session.path.submit(write).await? {
        Submitted::Duplicate { original } => {
            // Already applied, so at least REPLICATED.
            session.raise(no, original.get(), Level::Replicated);
        }
        Submitted::Proposed(p) => {
            if let Some(w) = session.writes.get_mut(&no) {
                w.unreplicated_bytes = p.bytes;
            }
            session.inflight_bytes += p.bytes;
            let lsn = p.lsn;
            lsns.push(Box::pin(async move { (no, lsn.await.ok()) }));
            let outcome = p.outcome;
            outcomes.push(Box::pin(async move { (no, outcome.await) }));
        }
    }
    Ok(())
}

fn on_lsn(session: &mut Session, no: u64, log_id: Option<LogId>) {
    let Some(log_id) = log_id else { return };
    if let Some(w) = session.writes.get_mut(&no) {
        w.appended_by = Some(log_id.leader_id);
    }
    session.raise(no, log_id.index, Level::Memory);
}

fn on_outcome(session: &mut Session, no: u64, outcome: Result<CommandResponse>) -> Result<()> {
    match outcome {
        Ok(CommandResponse::Written { lsn }) => session.raise(no, lsn.0, Level::Replicated),
        Ok(CommandResponse::Duplicate { original }) => {
            session.raise(no, original.0, Level::Replicated)
        }
        Ok(CommandResponse::Rejected { reason }) => return Err(Error::InvalidArgument(reason)),
        Ok(CommandResponse::Fenced { reason }) => return Err(Error::FailedPrecondition(reason)),
        Ok(CommandResponse::TableGone { reason }) => return Err(Error::NotFound(reason)),
        Ok(other) => {
            return Err(Error::Internal(format!(
                "unexpected answer to a write: {other:?}"
            )))
        }
        Err(Error::Aborted { reason, .. }) => {
            // Everything of the session not yet replicated may be lost with this write.
            return Err(match first_lost(session) {
                Some(first_lost_lsn) => Error::Aborted {
                    first_lost_lsn,
                    reason,
                },
                None => Error::Unavailable(format!(
                    "leadership changed before the write was accepted ({reason}); retry on the new leader"
                )),
            });
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The lowest LSN of the session that is known and not yet replicated.
fn first_lost(session: &Session) -> Option<u64> {
    session
        .writes
        .values()
        .filter(|w| w.level.is_none_or(|l| l < Level::Replicated))
        .filter_map(|w| w.lsn)
        .min()
}

//! The tier worker loop. Every node runs it; it works only while the replicated state names
//! this node the tier worker. It never blocks writes: it only reads what is already applied,
//! and a failing object store or catalog shows up as a growing lag and `last_error` in
//! `status`, retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use arka_cluster::{Lsn, NodeId, TieredFile};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::failing::FailingTables;
use super::iceberg::IcebergTables;
use super::range::{self, EncodedFile};
use super::report::Reporter;
use super::{FlushError, FlushRequest, Step, TierError, TierNode, TierStage, Tiering};
use crate::internal::TierReport;
use crate::low_priority::LowPriorityThread;
use crate::state::{DroppedTable, StateMachine, TierState};
use crate::wal::LogReader;

/// Backoff between failed attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long the worker waits for its own report to be applied locally.
const APPLY_WAIT_MAX: Duration = Duration::from_secs(10);
/// A commit (catalog calls, manifests, the watermark report) that takes longer is given up.
const COMMIT_STEP_MAX: Duration = Duration::from_secs(60);

/// Works as the tier worker whenever this node is designated, until `shutdown`: then it
/// finishes the step under way (an upload, a commit, a lake drop) and returns. A step cut
/// short all the same (the node stops waiting for it) is safe: each one is idempotent, and
/// the next tier worker completes it.
pub async fn run(node: TierNode, shutdown: CancellationToken) {
    let TierNode {
        node_id,
        state,
        log,
        reporter,
        tiering,
    } = node;
    let Some(mut flush_rx) = tiering
        .flush_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    let sealer = match LowPriorityThread::start("arka-tier") {
        Ok(sealer) => sealer,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the tier worker's thread: this node will not tier");
            return;
        }
    };
    let mut worker = Worker {
        node_id,
        state,
        log,
        reporter,
        tiering,
        sealer,
        tables: None,
        flushes: Vec::new(),
        failing: FailingTables::default(),
        lake_drop_retry: Retry::default(),
        shutdown,
    };
    let mut backoff = BACKOFF_MIN;
    while !worker.shutdown.is_cancelled() {
        if !worker.is_worker() {
            worker.fail_flushes(FlushError::NoLongerWorker);
            // Its status would otherwise show, as the worker's, an error of a worker that
            // moved on.
            worker.tiering.clear_status();
            worker.wait_for_designation(&mut flush_rx).await;
            continue;
        }
        match worker.work(&mut flush_rx).await {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "tiering failed");
                worker.tiering.record(Step::Upload, Err(&e));
                let _ = worker
                    .shutdown
                    .run_until_cancelled(tokio::time::sleep(backoff))
                    .await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    worker.fail_flushes(FlushError::ShuttingDown(worker.node_id));
}

struct Worker {
    node_id: NodeId,
    state: StateMachine,
    log: LogReader,
    reporter: Reporter,
    tiering: Arc<Tiering>,
    /// Seals ranges (WAL reads and Parquet encoding) at a lower CPU priority.
    sealer: LowPriorityThread,
    /// Opened when this node first becomes the tier worker.
    tables: Option<IcebergTables>,
    /// Flushes waiting for the next commit.
    flushes: Vec<FlushRequest>,
    /// Tables whose last commit attempt failed, and since when.
    failing: FailingTables,
    /// When deleting a dropped table's lake data may be tried again.
    lake_drop_retry: Retry,
    /// Ends the work between steps.
    shutdown: CancellationToken,
}

/// The backoff of a step that fails without failing the others.
struct Retry {
    at: Instant,
    backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            at: Instant::now(),
            backoff: BACKOFF_MIN,
        }
    }
}

impl Retry {
    fn due(&self) -> bool {
        Instant::now() >= self.at
    }

    fn failed(&mut self) {
        self.at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// The name of a table's file of the range `first..=last`.
fn range_file_name(first: Lsn, last: Lsn) -> String {
    format!("{:020}-{:020}.parquet", first.get(), last.get())
}

/// The last LSN of the range a file named by [`range_file_name`] covers.
fn range_file_end(name: &str) -> Option<u64> {
    let (_, last) = name.strip_suffix(".parquet")?.split_once('-')?;
    last.parse().ok()
}

impl Worker {
    fn is_worker(&self) -> bool {
        self.state.tier().worker == Some(self.node_id)
    }

    fn fail_flushes(&mut self, failed: FlushError) {
        for flush in self.flushes.drain(..) {
            let _ = flush.done.send(Err(failed.clone()));
        }
    }

    async fn wait_for_designation(&mut self, flush_rx: &mut mpsc::Receiver<FlushRequest>) {
        let mut tier = self.state.subscribe_tier();
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            changed = tier.changed() => {
                if changed.is_err() {
                    // The state machine is gone: the node is stopping.
                    self.shutdown.cancelled().await;
                }
            }
            Some(flush) = flush_rx.recv() => {
                let _ = flush.done.send(Err(FlushError::NotWorker {
                    node: self.node_id,
                    worker: self.state.tier().worker,
                }));
            }
        }
    }

    /// Works as the tier worker until it is no longer designated (Ok) or an upload fails.
    /// A failing catalog holds back COMMITTED only: uploads go on while commits are retried.
    async fn work(&mut self, flush_rx: &mut mpsc::Receiver<FlushRequest>) -> Result<(), TierError> {
        let mut tick = tokio::time::interval(self.tiering.settings.tier_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A worker that takes over commits what its predecessor uploaded at once.
        let mut next_commit = Instant::now();
        let mut commit_backoff = BACKOFF_MIN;
        loop {
            if !self.is_worker() {
                return Ok(());
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
                Some(flush) = flush_rx.recv() => {
                    // Callers that gave up (their wait is bounded) are forgotten.
                    self.flushes.retain(|f| !f.done.is_closed());
                    self.flushes.push(flush);
                    // Commit now, unless commits are failing and wait for their retry.
                    if commit_backoff == BACKOFF_MIN {
                        next_commit = Instant::now();
                    }
                }
            }
            let upto = self
                .flushes
                .iter()
                .map(|f| f.upto)
                .max()
                .unwrap_or(Lsn::ZERO);
            self.wait_applied(upto).await;
            // Upload what is applied now, not what arrives meanwhile: under sustained load
            // new ranges never run out, and the commit below must still come in its time.
            let applied = self.state.applied_lsn();
            while self.state.tier().s3_lsn < applied
                && !self.shutdown.is_cancelled()
                && self.upload_next_range().await?
            {}
            self.drop_lake_table().await;
            if Instant::now() < next_commit {
                continue;
            }
            match self.commit_bounded().await {
                Ok(stage) => {
                    next_commit = Instant::now() + self.tiering.settings.commit_interval;
                    commit_backoff = BACKOFF_MIN;
                    let outcome = match stage {
                        Some(stage) => Err(FlushError::Paused(stage)),
                        None => Ok(()),
                    };
                    for flush in self.flushes.drain(..) {
                        let _ = flush.done.send(outcome.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?commit_backoff, "committing to iceberg failed");
                    self.tiering.record(Step::Commit, Err(&e));
                    // The next attempt connects afresh (a REST catalog's token may have
                    // expired). Waiting flushes are answered by a later attempt or time out.
                    self.tables = None;
                    next_commit = Instant::now() + commit_backoff;
                    commit_backoff = (commit_backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// [`Worker::commit`], given up after [`COMMIT_STEP_MAX`] so a catalog that never answers
    /// cannot hold up uploads. A commit cut short is completed by the next attempt, which
    /// reads `arka.lsn` back first.
    async fn commit_bounded(&mut self) -> Result<Option<TierStage>, TierError> {
        tokio::time::timeout(COMMIT_STEP_MAX, self.commit())
            .await
            .unwrap_or(Err(TierError::Timeout {
                what: "committing to the Iceberg catalog",
                after: COMMIT_STEP_MAX,
            }))
    }

    /// Waits (bounded) until this node has applied `lsn`, so a flush covers what the node
    /// that asked for it had applied.
    async fn wait_applied(&self, lsn: Lsn) {
        let mut applied = self.state.subscribe_applied();
        let reached = applied.wait_for(|a| *a >= lsn.get());
        let _ = tokio::time::timeout(APPLY_WAIT_MAX, reached).await;
    }

    /// Uploads the next range above the OBJECT_STORAGE watermark, if anything is applied
    /// there, and reports it. True when a range was tiered.
    async fn upload_next_range(&mut self) -> Result<bool, TierError> {
        let from = self.state.tier().s3_lsn;
        let applied = self.state.applied_lsn();
        if applied <= from {
            return Ok(false);
        }
        let (state, log) = (self.state.clone(), self.log.clone());
        let bytes_max = self.tiering.settings.range_bytes_max;
        let sealed = (self.sealer)
            .run(move || range::seal((&state, &log), from, applied, bytes_max))
            .await
            .ok_or_else(|| TierError::Log(format!("sealing the range above {from} panicked")))??;
        if !sealed.has_data {
            // Only the tier worker's own reports are above the watermark: there is nothing
            // to tier (reporting them would only add another report).
            return Ok(false);
        }
        let to = sealed.to;
        let mut files = Vec::new();
        for file in sealed.files {
            files.push(self.upload(file, from, to).await?);
        }
        let report = TierReport::Uploaded {
            worker: self.node_id,
            from_lsn: from,
            to_lsn: to,
            files,
        };
        self.report(report).await?;
        self.wait_tier(|t| t.s3_lsn >= to).await?;
        self.tiering.record(Step::Upload, Ok(()));
        Ok(true)
    }

    /// Puts a table's file of the range `(from, to]` into the object store.
    async fn upload(&self, file: EncodedFile, from: Lsn, to: Lsn) -> Result<TieredFile, TierError> {
        let path = self.tiering.storage.url_of(&format!(
            "data/{}/{}",
            file.table,
            range_file_name(from.next(), to)
        ));
        let bytes = file.bytes.len() as u64;
        self.tiering.storage.put(&path, file.bytes).await?;
        Ok(TieredFile {
            table: file.table.to_string(),
            path,
            min_lsn: Lsn(file.min_lsn),
            max_lsn: Lsn(file.max_lsn),
            rows: file.rows,
            bytes,
        })
    }

    /// Commits every table's uploaded files above its position to Iceberg, then reports the
    /// new position. A table whose commit has failed for `hold_table_after` is reported held
    /// back, so the others move on; until then its failure fails the attempt, which is retried.
    /// Returns the stage where a fault point stopped it, if one did.
    async fn commit(&mut self) -> Result<Option<TierStage>, TierError> {
        let tier = self.state.tier();
        let commits = self.state.table_commits();
        let upto = tier.s3_lsn;
        if upto <= tier.committed_lsn {
            return Ok(None);
        }
        if self.tiering.pause.stops_at(TierStage::BeforeCommit) {
            return Ok(Some(TierStage::BeforeCommit));
        }
        let state = self.state.clone();
        let tables = self.iceberg().await?;
        let mut failed = Vec::new();
        for (name, info) in state.tables() {
            let from = commits.position(name.as_str());
            let files = state.tiered_files(&name, from, upto);
            if files.is_empty() {
                continue;
            }
            let appended = tables
                .append(
                    name.as_str(),
                    &info.schema,
                    info.meta.created_lsn,
                    &files,
                    upto.get(),
                )
                .await;
            if let Err(e) = appended {
                tracing::warn!(table = %name, error = %e, "committing a table to iceberg failed");
                failed.push((name.to_string(), e));
            }
        }
        let hold_after = self.tiering.settings.hold_table_after;
        let held_back = (self.failing).update(failed, &commits, hold_after, Instant::now())?;
        let same_holds = (commits.held().keys()).eq(held_back.iter().map(|h| &h.table));
        if upto <= commits.upto() && same_holds {
            // Only held-back tables had anything to commit, and they still fail.
            return Ok(None);
        }
        if self.tiering.pause.stops_at(TierStage::BeforeWatermark) {
            return Ok(Some(TierStage::BeforeWatermark));
        }
        let held: Vec<String> = held_back.iter().map(|h| h.table.clone()).collect();
        let report = TierReport::Committed {
            worker: self.node_id,
            committed_lsn: upto,
            held_back,
        };
        self.report(report).await?;
        self.wait_applied_commits(upto, &held).await?;
        self.tiering.record(Step::Commit, Ok(()));
        Ok(None)
    }

    /// The catalog's tables, connecting to the catalog first if need be.
    async fn iceberg(&mut self) -> Result<&IcebergTables, TierError> {
        let tables = match self.tables.take() {
            Some(tables) => tables,
            None => {
                let s = &self.tiering.settings;
                let tables = IcebergTables::open(s, &self.tiering.storage).await?;
                tracing::info!(catalog = %s.catalog_url, "connected to the iceberg catalog");
                tables
            }
        };
        Ok(self.tables.insert(tables))
    }

    /// Deletes the lake data of the oldest dropped table that still has some, and reports it.
    /// A failure leaves the drop listed for a later attempt (here or at a successor) and holds
    /// up nothing else.
    async fn drop_lake_table(&mut self) {
        let (Some(dropped), _) = self.state.lake_drops() else {
            return;
        };
        if !self.lake_drop_retry.due() {
            return;
        }
        let deleted = tokio::time::timeout(COMMIT_STEP_MAX, self.delete_lake_data(&dropped))
            .await
            .unwrap_or(Err(TierError::Timeout {
                what: "deleting a dropped table's lake data",
                after: COMMIT_STEP_MAX,
            }));
        match deleted {
            Ok(()) => {
                self.lake_drop_retry = Retry::default();
                self.tiering.record(Step::LakeDrop, Ok(()));
            }
            Err(e) => {
                tracing::warn!(table = dropped.table, dropped_lsn = dropped.dropped_lsn.get(), error = %e, "deleting a dropped table's lake data failed");
                self.tiering.record(Step::LakeDrop, Err(&e));
                self.tables = None;
                self.lake_drop_retry.failed();
            }
        }
    }

    /// Drops the incarnation's Iceberg table, deletes its metadata and its range files (every
    /// one of them ends below the drop: no write of the incarnation is above it), then
    /// reports the drop done.
    async fn delete_lake_data(&mut self, dropped: &DroppedTable) -> Result<(), TierError> {
        if self.tiering.pause.stops_at(TierStage::BeforeLakeDrop) {
            return Ok(());
        }
        let storage = self.tiering.storage.clone();
        let tables = self.iceberg().await?;
        (tables.drop_incarnation(&dropped.table, dropped.created_lsn.get(), &storage)).await?;
        let dropped_lsn = dropped.dropped_lsn;
        let files = storage.url_of(&format!("data/{}", dropped.table));
        let deleted = storage
            .delete_under(&files, move |name| {
                range_file_end(name).is_some_and(|to| to < dropped_lsn.get())
            })
            .await?;
        tracing::info!(
            table = dropped.table,
            dropped_lsn = dropped_lsn.get(),
            files = deleted,
            "deleted a dropped table's lake data"
        );
        if self.tiering.pause.stops_at(TierStage::BeforeLakeDropReport) {
            return Ok(());
        }
        let report = TierReport::TableDropped {
            worker: self.node_id,
            dropped_lsn,
        };
        self.report(report).await?;
        let mut applied = self.state.subscribe_applied();
        let done = applied.wait_for(|_| {
            let (oldest, _) = self.state.lake_drops();
            oldest.is_none_or(|o| o.dropped_lsn != dropped_lsn)
        });
        self.applied_in_time(done).await
    }

    async fn report(&mut self, report: TierReport) -> Result<(), TierError> {
        self.reporter
            .send(report)
            .await
            .map_err(|e| TierError::Report(e.to_string()))
    }

    /// Waits until this node applied the effect of its upload report.
    async fn wait_tier(&self, reached: impl Fn(&TierState) -> bool) -> Result<(), TierError> {
        let mut tier = self.state.subscribe_tier();
        let applied = tier.wait_for(|t| reached(t));
        self.applied_in_time(applied).await
    }

    /// Waits until this node applied its commit report: up to `upto`, holding back `held`.
    async fn wait_applied_commits(&self, upto: Lsn, held: &[String]) -> Result<(), TierError> {
        let mut commits = self.state.subscribe_table_commits();
        let applied = commits.wait_for(|c| c.upto() >= upto && c.held().keys().eq(held.iter()));
        self.applied_in_time(applied).await
    }

    async fn applied_in_time<T, E>(
        &self,
        applied: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<(), TierError> {
        match tokio::time::timeout(APPLY_WAIT_MAX, applied).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(TierError::Report(format!(
                "the report was accepted but not applied on node {} within {APPLY_WAIT_MAX:?}",
                self.node_id
            ))),
        }
    }
}

//! An exactly-once producer. It starts by registering a producer session, which fences any
//! earlier instance with its id (a zombie's writes are refused from then on) and tells it the
//! sequence number to go on from, so a restarted process that keeps its id neither collides
//! with its old writes nor is answered with their LSNs. Every write carries the producer's id,
//! the session's epoch and a sequence number; after a lost connection, a leader change or `ABORTED` the producer reconnects to the
//! current leader and resends exactly the writes that have not reached the requested level,
//! and the server's deduplication turns a resend of a write it already has into its original
//! LSN. The caller sees no error unless the cluster stays unavailable past the retry deadline.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::cluster::{is_retryable, Backoff, ClusterClient, RetryPolicy};
use super::{Ack, ClientError, WriteItem};
use crate::durability::Level;

/// See [`ProducerConfig::ack_timeout`]: several election timeouts, so a new leader is known
/// by then, and below the seconds a lost lease holds writes on the old leader.
const ACK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Identifies the producer across reconnects and restarts; with the sequence numbers it
    /// makes resends idempotent. A restarted producer keeps its id: its session starts above
    /// the last sequence number the cluster applied, and the instance before it is fenced.
    pub producer_id: String,
    /// Writes sent but not yet at `ack_until`; `send` waits while the window is full.
    pub window: usize,
    /// The level at which a write is done and leaves the window.
    pub ack_until: Level,
    pub retry: RetryPolicy,
    /// A stream that brings no ack for this long while writes wait for one is given up, and
    /// its writes are resent (with their seqs) to whichever node leads by then: a leader
    /// that stops answering without closing the connection (paused, or cut off from its
    /// followers) would otherwise hold them for as long as it is silent.
    pub ack_timeout: Duration,
}

impl ProducerConfig {
    pub fn new(producer_id: impl Into<String>) -> Self {
        Self {
            producer_id: producer_id.into(),
            window: 1024,
            ack_until: Level::Replicated,
            retry: RetryPolicy::default(),
            ack_timeout: ACK_TIMEOUT_DEFAULT,
        }
    }
}

/// How far one write has come.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The write's LSN: final once `level` is REPLICATED or above; below that it is the LSN
    /// of the latest attempt, which a leader change may replace.
    pub lsn: Option<u64>,
    pub level: Option<Level>,
    /// Set when the producer gave up on the write.
    pub failed: Option<String>,
}

/// Resolves when its write reaches a level.
#[derive(Debug, Clone)]
pub struct WriteHandle {
    seq: i64,
    progress: watch::Receiver<Progress>,
}

impl WriteHandle {
    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits until the write reached `level` (at most the producer's `ack_until`, the highest
    /// level it tracks) and returns its LSN.
    pub async fn wait(&self, level: Level) -> Result<u64, ClientError> {
        let mut rx = self.progress.clone();
        let reached = rx
            .wait_for(|p| p.failed.is_some() || (p.level >= Some(level) && p.lsn.is_some()))
            .await
            .map_err(|_| {
                ClientError::Decode("producer stopped before the write finished".into())
            })?;
        if let Some(reason) = &reached.failed {
            return Err(ClientError::Decode(reason.clone()));
        }
        reached
            .lsn
            .ok_or_else(|| ClientError::Decode("write has no lsn".into()))
    }

    /// The write's final LSN (waits for REPLICATED).
    pub async fn lsn(&self) -> Result<u64, ClientError> {
        self.wait(Level::Replicated).await
    }
}

struct Pending {
    batch: RecordBatch,
    progress: watch::Sender<Progress>,
    /// Returned to the window when the write is done.
    _slot: OwnedSemaphorePermit,
}

type Submitted = (i64, Pending);

pub struct Producer {
    epoch: u64,
    submit: mpsc::Sender<Submitted>,
    window: Arc<Semaphore>,
    window_size: u32,
    next_seq: Mutex<i64>,
    failure: Arc<Mutex<Option<String>>>,
    task: JoinHandle<Result<(), ClientError>>,
}

impl Producer {
    /// Registers a new session of `config.producer_id` (retrying within the retry policy
    /// while the cluster has no leader) and starts the producer on it.
    pub async fn start(
        cluster: ClusterClient,
        table: &str,
        config: ProducerConfig,
    ) -> Result<Self, ClientError> {
        let session = cluster
            .action(
                "register_producer",
                &serde_json::json!({ "producer_id": config.producer_id }),
            )
            .await?;
        let (Some(epoch), Some(next_seq)) =
            (session["epoch"].as_u64(), session["next_seq"].as_i64())
        else {
            return Err(ClientError::Decode(format!(
                "register_producer answered without epoch and next_seq: {session}"
            )));
        };
        Ok(Self::in_session(cluster, table, config, epoch, next_seq))
    }

    fn in_session(
        cluster: ClusterClient,
        table: &str,
        config: ProducerConfig,
        epoch: u64,
        first_seq: i64,
    ) -> Self {
        let window_size = config.window.clamp(1, Semaphore::MAX_PERMITS) as u32;
        let (submit, submitted) = mpsc::channel(window_size as usize);
        let failure = Arc::new(Mutex::new(None));
        let driver = Driver {
            cluster,
            table: table.to_string(),
            pending: BTreeMap::new(),
            failure: failure.clone(),
            epoch,
            next_seq_expected: first_seq,
            config: config.clone(),
        };
        Self {
            epoch,
            submit,
            window: Arc::new(Semaphore::new(window_size as usize)),
            window_size,
            next_seq: Mutex::new(first_seq),
            failure,
            task: tokio::spawn(driver.run(submitted)),
        }
    }

    /// The epoch of this producer's session.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number the next `send` gets.
    pub fn next_seq(&self) -> i64 {
        *self.next_seq.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failed(&self) -> Option<ClientError> {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.clone().map(ClientError::Decode)
    }

    /// Queues a write; waits while the window is full. The handle resolves at each level.
    pub async fn send(&self, batch: RecordBatch) -> Result<WriteHandle, ClientError> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        let slot = self
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Decode("producer is closed".into()))?;
        let seq = {
            let mut next = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
            let seq = *next;
            *next += 1;
            seq
        };
        let (progress, rx) = watch::channel(Progress::default());
        let pending = Pending {
            batch,
            progress,
            _slot: slot,
        };
        if self.submit.send((seq, pending)).await.is_err() {
            return Err(self
                .failed()
                .unwrap_or_else(|| ClientError::Decode("producer is closed".into())));
        }
        Ok(WriteHandle { seq, progress: rx })
    }

    /// Waits until every write sent so far reached `ack_until`.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let all = self
            .window
            .acquire_many(self.window_size)
            .await
            .map_err(|_| ClientError::Decode("producer is closed".into()));
        drop(all);
        match self.failed() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Flushes and stops the producer.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await?;
        drop(self.submit);
        self.task
            .await
            .map_err(|e| ClientError::Decode(format!("producer task: {e}")))?
    }
}

struct Driver {
    cluster: ClusterClient,
    table: String,
    config: ProducerConfig,
    pending: BTreeMap<i64, Pending>,
    failure: Arc<Mutex<Option<String>>>,
    epoch: u64,
    next_seq_expected: i64,
}

/// Why a session ended.
enum SessionEnd {
    /// The caller closed the producer and every write is done.
    Finished,
    /// Something failed that a new session may fix; `progressed` if any ack arrived.
    Retry {
        error: ClientError,
        progressed: bool,
    },
}

impl Driver {
    async fn run(mut self, mut submitted: mpsc::Receiver<Submitted>) -> Result<(), ClientError> {
        let mut backoff = Backoff::new(&self.config.retry);
        let mut open = true;
        loop {
            let end = match self.cluster.leader().await {
                Ok(leader) => self.session(&leader, &mut submitted, &mut open).await,
                Err(error) => SessionEnd::Retry {
                    error,
                    progressed: false,
                },
            };
            match end {
                SessionEnd::Finished => return Ok(()),
                SessionEnd::Retry { error, progressed } => {
                    if progressed {
                        backoff.reset();
                    }
                    if !is_retryable(&error) {
                        return Err(self.fail(error));
                    }
                    tracing::debug!(error = %error, pending = self.pending.len(), "producer reconnects");
                    if let Err(error) = backoff.wait(error).await {
                        return Err(self.fail(error));
                    }
                }
            }
        }
    }

    /// Fails every pending write and the producer.
    fn fail(&mut self, error: ClientError) -> ClientError {
        let reason = format!("producer {} gave up: {error}", self.config.producer_id);
        for (_, pending) in std::mem::take(&mut self.pending) {
            pending
                .progress
                .send_modify(|p| p.failed = Some(reason.clone()));
        }
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        error
    }

    /// One write stream to `leader`: resends every pending write in order, then sends new
    /// ones as they come, and applies acks until the stream ends.
    async fn session(
        &mut self,
        leader: &super::Client,
        submitted: &mut mpsc::Receiver<Submitted>,
        open: &mut bool,
    ) -> SessionEnd {
        let (input, input_rx) = mpsc::channel::<WriteItem>(self.config.window.max(1));
        let acks = leader
            .write_stream(
                &self.table,
                ReceiverStream::new(input_rx),
                self.config.ack_until,
            )
            .await;
        let mut acks = match acks {
            Ok(acks) => Box::pin(acks),
            Err(error) => return self.retry(leader, error, false),
        };
        self.catch_up_levels(leader).await;
        let mut to_send: VecDeque<i64> = self.pending.keys().copied().collect();
        let mut input = Some(input);
        let mut progressed = false;
        // When the stream last showed it is alive (or writes began to wait on it).
        let mut heard = Instant::now();
        loop {
            if !*open && to_send.is_empty() {
                // Closing the input lets the server end the stream once all writes are done.
                input = None;
            }
            tokio::select! {
                item = submitted.recv(), if *open => match item {
                    Some((seq, pending)) => {
                        if self.pending.is_empty() {
                            heard = Instant::now();
                        }
                        debug_assert_eq!(seq, self.next_seq_expected);
                        self.next_seq_expected = seq + 1;
                        self.pending.insert(seq, pending);
                        to_send.push_back(seq);
                    }
                    None => *open = false,
                },
                slot = reserve(&input), if !to_send.is_empty() => {
                    let Some(slot) = slot else { continue };
                    if let Some(seq) = to_send.pop_front() {
                        if let Some(p) = self.pending.get(&seq) {
                            slot.send(WriteItem::idempotent(p.batch.clone(), &self.config.producer_id, seq).in_session(self.epoch));
                        }
                    }
                }
                batch = acks.next() => match batch {
                    Some(Ok(rows)) => {
                        progressed = true;
                        heard = Instant::now();
                        self.apply(&rows);
                    }
                    Some(Err(error)) => return self.retry(leader, error, progressed),
                    None if !*open && self.pending.is_empty() => return SessionEnd::Finished,
                    None => {
                        let error = ClientError::Status(tonic::Status::unavailable("write stream ended early"));
                        return self.retry(leader, error, progressed);
                    }
                },
                _ = tokio::time::sleep_until(heard + self.config.ack_timeout), if !self.pending.is_empty() => {
                    let error = ClientError::Status(tonic::Status::unavailable(format!(
                        "no ack from {} for {:?} while writes waited: trying the leader again",
                        leader.addr(),
                        self.config.ack_timeout
                    )));
                    return self.retry(leader, error, progressed);
                }
            }
        }
    }

    /// Writes known to be REPLICATED (their LSN is final) may have reached higher levels while
    /// no stream reported them: ask the leader's watermarks, and retire those now at
    /// `ack_until`. The rest are resent; deduplication answers them with their original LSN.
    async fn catch_up_levels(&mut self, leader: &super::Client) {
        let durable = |p: &Pending| {
            let progress = p.progress.borrow();
            progress
                .lsn
                .filter(|_| progress.level >= Some(Level::Replicated))
        };
        let Some(highest) = self.pending.values().filter_map(durable).max() else {
            return;
        };
        let body = serde_json::json!({ "last_known_lsn": highest });
        let Ok(watermarks) = leader.action("get_durability_status", &body).await else {
            return;
        };
        let reached = |lsn: u64| {
            [
                (Level::Committed, "committed_lsn"),
                (Level::ObjectStorage, "s3_lsn"),
                (Level::Replicated, "replicated_lsn"),
            ]
            .into_iter()
            .find(|(_, key)| watermarks[*key].as_u64().is_some_and(|w| w >= lsn))
            .map(|(level, _)| level)
        };
        let ack_until = self.config.ack_until;
        self.pending.retain(|_, p| {
            let Some(level) = durable(p).and_then(reached) else {
                return true;
            };
            p.progress
                .send_modify(|pr| pr.level = pr.level.max(Some(level)));
            level < ack_until
        });
    }

    fn retry(&self, leader: &super::Client, error: ClientError, progressed: bool) -> SessionEnd {
        if !self.cluster.note_redirect(&error) {
            self.cluster.forget_node(leader.addr());
        }
        SessionEnd::Retry { error, progressed }
    }

    /// Records acks; a write at `ack_until` leaves the window.
    fn apply(&mut self, rows: &[Ack]) {
        for ack in rows {
            let Some(seq) = ack.seq else { continue };
            let Some(pending) = self.pending.get(&seq) else {
                continue;
            };
            pending.progress.send_modify(|p| {
                if ack.level >= Level::Replicated || p.level < Some(Level::Replicated) {
                    p.lsn = Some(ack.lsn);
                }
                p.level = p.level.max(Some(ack.level));
            });
            if ack.level >= self.config.ack_until {
                self.pending.remove(&seq);
            }
        }
    }
}

async fn reserve(input: &Option<mpsc::Sender<WriteItem>>) -> Option<mpsc::Permit<'_, WriteItem>> {
    match input {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

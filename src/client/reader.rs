//! Reads spread over the live replicas of a table, with `min_lsn` fencing for
//! read-your-writes on any of them, and tails that move to another replica when theirs fails.

use std::sync::Mutex;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::cluster::{is_retryable, Backoff, ClusterClient};
use super::{ClientError, ReadItem};
use crate::wire::ReadTicket;

/// The replica list is asked for again after this long, or at once after a failure.
const REPLICAS_TTL: Duration = Duration::from_secs(5);
/// Batches a tail buffers ahead of its consumer.
const TAIL_BUFFER: usize = 16;

type TailSender = mpsc::Sender<Result<(u64, RecordBatch), ClientError>>;

/// One completed read and the node that served it.
#[derive(Debug)]
pub struct ReadResult {
    pub node: String,
    pub schema: Option<SchemaRef>,
    pub batches: Vec<(u64, RecordBatch)>,
}

pub struct Reader {
    cluster: ClusterClient,
    table: String,
    replicas: Mutex<Option<(Vec<String>, Instant)>>,
}

impl Reader {
    pub fn new(cluster: ClusterClient, table: &str) -> Self {
        Self {
            cluster,
            table: table.to_string(),
            replicas: Mutex::new(None),
        }
    }

    fn cached_replicas(&self) -> Option<Vec<String>> {
        let cache = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some((list, at)) if at.elapsed() < REPLICAS_TTL && !list.is_empty() => {
                Some(list.clone())
            }
            _ => None,
        }
    }

    fn forget_replicas(&self) {
        *self.replicas.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The next live replica, round robin.
    async fn pick(&self) -> Result<String, ClientError> {
        let list = match self.cached_replicas() {
            Some(list) => list,
            None => {
                let list = self.cluster.replicas(&self.table).await?;
                *self.replicas.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((list.clone(), Instant::now()));
                list
            }
        };
        if list.is_empty() {
            return Err(ClientError::Decode(format!(
                "table {} has no live replica",
                self.table
            )));
        }
        Ok(list[self.cluster.next_replica_index() % list.len()].clone())
    }

    fn ticket(&self, from: Option<u64>, to: Option<u64>, min_lsn: Option<u64>) -> ReadTicket {
        ReadTicket {
            table: self.table.clone(),
            from_lsn: from,
            to_lsn: to,
            min_lsn,
            ..Default::default()
        }
    }

    /// Reads LSNs `from..=to` (either open) from one live replica, which first waits until it
    /// has applied `min_lsn`; another replica is tried when one fails.
    pub async fn read(
        &self,
        from: Option<u64>,
        to: Option<u64>,
        min_lsn: Option<u64>,
    ) -> Result<ReadResult, ClientError> {
        let ticket = self.ticket(from, to, min_lsn);
        let mut backoff = Backoff::new(self.cluster.retry_policy());
        loop {
            let node = self.pick().await?;
            let attempt = async {
                let client = self.cluster.node(&node).await?;
                client.read(&ticket).await
            };
            let error = match attempt.await {
                Ok((schema, batches)) => {
                    return Ok(ReadResult {
                        node,
                        schema,
                        batches,
                    })
                }
                Err(e) => e,
            };
            self.after_failure(&node, error, &mut backoff).await?;
        }
    }

    /// After `node` failed: gives up on errors a retry cannot fix, else forgets the node and
    /// waits before the next attempt.
    async fn after_failure(
        &self,
        node: &str,
        error: ClientError,
        backoff: &mut Backoff,
    ) -> Result<(), ClientError> {
        if !is_retryable(&error) {
            return Err(error);
        }
        self.cluster.forget_node(node);
        self.forget_replicas();
        backoff.wait(error).await
    }

    /// Every batch from `from` on, then new ones as they commit. When the serving replica
    /// fails, the tail resumes after the last LSN it delivered on another one. Ends with an
    /// error once no replica answers within the retry deadline.
    pub fn tail(self, from: u64) -> impl Stream<Item = Result<(u64, RecordBatch), ClientError>> {
        let (tx, rx) = mpsc::channel(TAIL_BUFFER);
        tokio::spawn(async move {
            if let Err(e) = self.run_tail(from, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        ReceiverStream::new(rx)
    }

    async fn run_tail(&self, mut next: u64, out: &TailSender) -> Result<(), ClientError> {
        let mut backoff = Backoff::new(self.cluster.retry_policy());
        loop {
            let node = self.pick().await?;
            match self.tail_from(&node, &mut next, out, &mut backoff).await {
                Ok(()) => return Ok(()),
                Err(error) => self.after_failure(&node, error, &mut backoff).await?,
            }
        }
    }

    /// Follows the table on `node` from `next` on, advancing `next` past every batch sent to
    /// `out`. Ends with `Ok` when the consumer went away, else with the error that ended it.
    async fn tail_from(
        &self,
        node: &str,
        next: &mut u64,
        out: &TailSender,
        backoff: &mut Backoff,
    ) -> Result<(), ClientError> {
        let ticket = ReadTicket {
            follow: Some(true),
            ..self.ticket(Some(*next), None, None)
        };
        let bytes = serde_json::to_vec(&ticket).map_err(|e| ClientError::Decode(e.to_string()))?;
        let client = self.cluster.node(node).await?;
        let mut stream = Box::pin(client.read_stream(bytes).await?);
        while let Some(item) = stream.next().await {
            if let ReadItem::Batch(lsn, batch) = item? {
                backoff.reset();
                *next = lsn + 1;
                if out.send(Ok((lsn, batch))).await.is_err() {
                    return Ok(());
                }
            }
        }
        Err(ClientError::Status(tonic::Status::unavailable(
            "tail ended by the server",
        )))
    }
}

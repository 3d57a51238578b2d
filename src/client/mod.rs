//! Flight clients for arka.
//!
//! [`ClusterClient`] is the one to start from: it takes seed addresses, finds the leader,
//! follows redirects and retries; it makes exactly-once [`Producer`]s and [`Reader`]s that
//! spread reads over the live replicas. [`Client`] is one connection to one node, for calls
//! the cluster client does not wrap.
//!
//! ```no_run
//! # async fn demo() -> Result<(), arka::client::ClientError> {
//! use arka::client::{ClusterClient, ProducerConfig};
//! use arrow::array::Int64Array;
//! use arrow::record_batch::RecordBatch;
//! use std::sync::Arc;
//!
//! let cluster = ClusterClient::connect(&["grpc://10.0.0.1:8815", "grpc://10.0.0.2:8815"]).await?;
//! let producer = cluster.producer("events", ProducerConfig::new("ingest-1")).await?;
//! let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![1, 2])) as _)])
//!     .expect("batch");
//! // `send` waits while the in-flight window is full; the handle resolves per level.
//! let handle = producer.send(batch).await?;
//! let lsn = handle.lsn().await?; // REPLICATED: on a majority, fsynced
//! producer.close().await?;
//!
//! // Read it back on any live replica, which first waits until it has applied `lsn`.
//! let read = cluster.reader("events").read(Some(lsn), Some(lsn), Some(lsn)).await?;
//! println!("lsn {lsn} read from {}: {} batches", read.node, read.batches.len());
//! # Ok(()) }
//! ```
//!
//! A single node, without leader discovery:
//!
//! ```no_run
//! # async fn demo() -> Result<(), arka::client::ClientError> {
//! use arka::client::{Client, WriteItem};
//! use arka::durability::Level;
//! use arrow::array::Int64Array;
//! use arrow::record_batch::RecordBatch;
//! use std::sync::Arc;
//!
//! let client = Client::connect("grpc://127.0.0.1:8815").await?;
//! let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![1, 2])) as _)])
//!     .expect("batch");
//! let acks = client
//!     .write_all("events", vec![WriteItem::idempotent(batch, "producer-1", 0)], Level::Replicated)
//!     .await?;
//! println!("written at lsn {}", acks[0].lsn);
//! # Ok(()) }
//! ```

mod acks;
mod cluster;
mod connect;
mod producer;
mod reader;

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::{Action, FlightData, FlightDescriptor, Ticket};
use futures::{Stream, StreamExt, TryStreamExt};

pub use acks::Ack;
pub use cluster::{is_retryable, ClusterClient, RetryPolicy};
pub use connect::{ConnectOptions, Credentials, FlightClient};
pub use producer::{Producer, ProducerConfig, Progress, WriteHandle};
pub use reader::{ReadResult, Reader};

use crate::durability::Level;
use crate::wire::{BatchEncoder, ReadTicket, ACK_UNTIL_HEADER, LEADER_TRAILER};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("bad response: {0}")]
    Decode(String),
    #[error("cannot encode a write, so it and the writes after it were not sent: {0}")]
    Encode(String),
}

impl ClientError {
    /// The leader named by a redirect (`UNAVAILABLE` with an `x-arka-leader` trailer).
    pub fn leader(&self) -> Option<String> {
        let ClientError::Status(status) = self else {
            return None;
        };
        let value = status.metadata().get(LEADER_TRAILER)?.to_str().ok()?;
        (!value.is_empty()).then(|| value.to_string())
    }

    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// One batch to write, with optional idempotency metadata.
#[derive(Debug, Clone)]
pub struct WriteItem {
    pub batch: RecordBatch,
    pub producer: Option<(String, i64)>,
    /// The producer session the write belongs to (`register_producer`'s epoch).
    pub epoch: Option<u64>,
}

impl WriteItem {
    pub fn plain(batch: RecordBatch) -> Self {
        Self {
            batch,
            producer: None,
            epoch: None,
        }
    }

    pub fn idempotent(batch: RecordBatch, producer_id: &str, seq: i64) -> Self {
        Self {
            batch,
            producer: Some((producer_id.to_string(), seq)),
            epoch: None,
        }
    }

    /// The write as one of the producer session `epoch`.
    pub fn in_session(mut self, epoch: u64) -> Self {
        self.epoch = Some(epoch);
        self
    }
}

#[derive(Clone)]
pub struct Client {
    addr: String,
    inner: FlightClient,
}

impl Client {
    /// A plain connection, without credentials.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        Self::connect_with(addr, &ConnectOptions::default()).await
    }

    /// A connection with TLS and credentials as `options` say (signing in first when they
    /// hold a password).
    pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Self, ClientError> {
        Ok(Self {
            addr: addr.to_string(),
            inner: connect::connect(addr, options).await?,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The underlying Flight client, for calls this client does not wrap.
    pub fn flight(&self) -> FlightClient {
        self.inner.clone()
    }

    /// Streams `writes` into `table` and returns the stream of ack batches; it ends once every
    /// write reached `ack_until`.
    pub async fn write_stream<S>(
        &self,
        table: &str,
        writes: S,
        ack_until: Level,
    ) -> Result<impl Stream<Item = Result<Vec<Ack>, ClientError>> + Send + 'static, ClientError>
    where
        S: Stream<Item = WriteItem> + Send + 'static,
    {
        let descriptor = FlightDescriptor::new_path(vec!["streaming_write".into(), table.into()]);
        let failed = Arc::new(Mutex::new(None));
        let input = encode_writes(descriptor, writes, failed.clone());
        let mut request = tonic::Request::new(input);
        let level = tonic::metadata::MetadataValue::from_static(ack_until.as_str());
        request.metadata_mut().insert(ACK_UNTIL_HEADER, level);
        let response = self.inner.clone().do_exchange(request).await?.into_inner();
        let decoded = FlightDataDecoder::new(
            response.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
        );
        let acks = decoded.filter_map(|item| async move {
            match item {
                Ok(d) => match d.payload {
                    DecodedPayload::RecordBatch(batch) => Some(acks::from_batch(&batch)),
                    _ => None,
                },
                Err(e) => Some(Err(flight_error(e))),
            }
        });
        // Once the server has answered what was sent, a write that could not be sent is
        // the stream's last item.
        let unsent = futures::stream::once(async move {
            failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(|e| Err(ClientError::Encode(e)))
        })
        .filter_map(futures::future::ready);
        Ok(acks.chain(unsent))
    }

    /// Writes every item and waits until all reached `ack_until`; returns every ack row.
    pub async fn write_all(
        &self,
        table: &str,
        writes: Vec<WriteItem>,
        ack_until: Level,
    ) -> Result<Vec<Ack>, ClientError> {
        let stream = self
            .write_stream(table, futures::stream::iter(writes), ack_until)
            .await?;
        let batches: Vec<Vec<Ack>> = stream.try_collect().await?;
        Ok(batches.into_iter().flatten().collect())
    }

    /// Reads with a ticket; returns each batch with its LSN, and the schema.
    pub async fn read(
        &self,
        ticket: &ReadTicket,
    ) -> Result<(Option<SchemaRef>, Vec<(u64, RecordBatch)>), ClientError> {
        let bytes = serde_json::to_vec(ticket).map_err(|e| ClientError::Decode(e.to_string()))?;
        let mut stream = Box::pin(self.read_stream(bytes).await?);
        let mut schema = None;
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item? {
                ReadItem::Schema(s) => schema = Some(s),
                ReadItem::Batch(lsn, batch) => out.push((lsn, batch)),
            }
        }
        Ok((schema, out))
    }

    /// Reads with raw ticket bytes, as a stream (for `follow`).
    pub async fn read_stream(
        &self,
        ticket: Vec<u8>,
    ) -> Result<impl Stream<Item = Result<ReadItem, ClientError>> + Send + 'static, ClientError>
    {
        let response = self
            .inner
            .clone()
            .do_get(Ticket::new(ticket))
            .await?
            .into_inner();
        let decoded = FlightDataDecoder::new(
            response.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
        );
        Ok(decoded.filter_map(|item| async move {
            match item {
                Ok(d) => match d.payload {
                    DecodedPayload::Schema(s) => Some(Ok(ReadItem::Schema(s))),
                    DecodedPayload::RecordBatch(batch) => {
                        Some(lsn_of(&d.inner).map(|lsn| ReadItem::Batch(lsn, batch)))
                    }
                    DecodedPayload::None => None,
                },
                Err(e) => Some(Err(flight_error(e))),
            }
        }))
    }

    /// Runs an admin action and returns its JSON result.
    pub async fn action(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.action_bytes(name, action_body(body)).await
    }

    /// Runs an admin action with a body as given (JSON, or a bare table name).
    pub async fn action_bytes(
        &self,
        name: &str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        let results: Vec<arrow_flight::Result> = self
            .inner
            .clone()
            .do_action(Action::new(name.to_string(), body))
            .await?
            .into_inner()
            .try_collect()
            .await?;
        let first = results
            .first()
            .ok_or_else(|| ClientError::Decode(format!("{name}: no result")))?;
        serde_json::from_slice(&first.body).map_err(|e| ClientError::Decode(format!("{name}: {e}")))
    }
}

/// An action body: nothing for `null`, else the JSON text.
pub(crate) fn action_body(body: &serde_json::Value) -> Vec<u8> {
    if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    }
}

fn flight_error(e: arrow_flight::error::FlightError) -> ClientError {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => ClientError::Status(*status),
        other => ClientError::Decode(other.to_string()),
    }
}

/// An item of a read stream.
#[derive(Debug)]
pub enum ReadItem {
    Schema(SchemaRef),
    Batch(u64, RecordBatch),
}

fn lsn_of(data: &FlightData) -> Result<u64, ClientError> {
    let value: serde_json::Value = serde_json::from_slice(&data.app_metadata)
        .map_err(|e| ClientError::Decode(format!("batch app_metadata: {e}")))?;
    value["lsn"]
        .as_u64()
        .ok_or_else(|| ClientError::Decode("batch app_metadata has no lsn".into()))
}

/// The client's side of a write stream: the descriptor with the first batch's schema, then
/// each batch with its producer metadata. A batch that cannot be encoded ends the stream
/// there, its error left in `failed` for the caller to report: the writes before it are
/// acknowledged as usual, and no later write is sent past it.
fn encode_writes<S>(
    descriptor: FlightDescriptor,
    writes: S,
    failed: Arc<Mutex<Option<String>>>,
) -> impl Stream<Item = FlightData> + Send + 'static
where
    S: Stream<Item = WriteItem> + Send + 'static,
{
    let mut encoder = BatchEncoder::default();
    let mut descriptor = Some(descriptor);
    writes
        .map(move |item| {
            let mut messages = Vec::new();
            if let Some(d) = descriptor.take() {
                messages.push(encoder.schema(&item.batch.schema()).with_descriptor(d));
            }
            let meta = match (&item.producer, item.epoch) {
                (Some((id, seq)), None) => {
                    serde_json::json!({"producer_id": id, "seq": seq}).to_string()
                }
                (Some((id, seq)), Some(epoch)) => {
                    serde_json::json!({"producer_id": id, "seq": seq, "epoch": epoch}).to_string()
                }
                (None, _) => String::new(),
            };
            match encoder.batch(&item.batch, meta.into()) {
                Ok(data) => messages.extend(data),
                Err(e) => {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    return None;
                }
            }
            Some(messages)
        })
        .take_while(|encoded| futures::future::ready(encoded.is_some()))
        .flat_map(|encoded| futures::stream::iter(encoded.unwrap_or_default()))
}

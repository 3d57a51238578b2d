//! Decoding a client's Flight write stream into writes.

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, FlightDescriptor};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use super::{parse_producer, IncomingWrite};
use crate::error::{Error, Result};
use crate::ipc;
use crate::table::TableName;

/// The table a write descriptor names: `["streaming_write"]` (table `default`),
/// `["streaming_write", TABLE]` or `[TABLE]`.
pub fn table_from_path(descriptor: Option<&FlightDescriptor>) -> Result<TableName> {
    let Some(descriptor) = descriptor else {
        return Err(Error::InvalidArgument(
            "the first message must carry a flight descriptor with path [TABLE] or [\"streaming_write\", TABLE]".into(),
        ));
    };
    let path: Vec<&str> = descriptor.path.iter().map(String::as_str).collect();
    let name = match path.as_slice() {
        ["streaming_write"] => "default",
        ["streaming_write", table] | [table] => table,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "bad descriptor path {path:?}: expected [TABLE] or [\"streaming_write\", TABLE]"
            )))
        }
    };
    TableName::parse(name).map_err(Error::from)
}

fn flight_error(e: FlightError) -> Error {
    match e {
        // tonic's refusal of a message over the node's limit, from its length prefix.
        FlightError::Tonic(status) if status.code() == tonic::Code::OutOfRange => {
            Error::ResourceExhausted(format!(
                "a message of the write stream is over this node's limit (batch-bytes-max plus 1 MiB of framing); split the batch: {}",
                status.message()
            ))
        }
        FlightError::Tonic(status) => Error::Unavailable(format!("client stream failed: {status}")),
        FlightError::ExternalError(e) => match e.downcast::<Error>() {
            Ok(refused) => *refused,
            Err(other) => Error::InvalidArgument(format!("cannot decode the client's Arrow data: {other}")),
        },
        other => Error::InvalidArgument(format!("cannot decode the client's Arrow data: {other}")),
    }
}

/// Checks a message before arrow decodes it: a schema's types are ones arrow converts, its
/// buffers lie within its body, and a compressed batch decompresses to at most
/// `decoded_bytes_max`.
fn check_message(data: FlightData, decoded_bytes_max: usize) -> Result<FlightData, FlightError> {
    use ipc::UnfitMessage::{Malformed, OverLimit};
    match ipc::check_client_message(&data.data_header, &data.data_body, decoded_bytes_max) {
        Ok(()) => Ok(data),
        Err(Malformed(why)) => Err(FlightError::DecodeError(why)),
        Err(OverLimit(why)) => Err(FlightError::ExternalError(Box::new(
            Error::ResourceExhausted(why),
        ))),
    }
}

/// Reads the descriptor from the first message, then yields one write per record batch, each
/// at most `decoded_bytes_max` once decompressed.
pub async fn decode_writes<S>(
    mut stream: S,
    decoded_bytes_max: usize,
) -> Result<(
    TableName,
    impl Stream<Item = Result<IncomingWrite>> + Send + 'static,
)>
where
    S: Stream<Item = std::result::Result<FlightData, Status>> + Send + Unpin + 'static,
{
    let first = stream
        .next()
        .await
        .transpose()
        .map_err(|s| flight_error(FlightError::Tonic(Box::new(s))))?
        .ok_or_else(|| Error::InvalidArgument("empty write stream: no schema was sent".into()))?;
    let table = table_from_path(first.flight_descriptor.as_ref())?;
    let rest = stream.map_err(|status| FlightError::Tonic(Box::new(status)));
    // Messages without an IPC header carry only a descriptor or app_metadata (pyarrow sends
    // the descriptor alone first); they hold no data to decode.
    let all = futures::stream::once(async move { Ok(first) })
        .chain(rest)
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
        .and_then(move |data| futures::future::ready(check_message(data, decoded_bytes_max)));
    let target = table.clone();
    // The header of the schema message in force: each write keeps the client's messages.
    let mut schema_header = Bytes::new();
    let writes = contain_panics(FlightDataDecoder::new(all)).filter_map(move |item| {
        let write = match item {
            Err(e) => Some(Err(e)),
            Ok(decoded) => match decoded.payload {
                DecodedPayload::Schema(_) => {
                    schema_header = decoded.inner.data_header;
                    None
                }
                DecodedPayload::None => None,
                DecodedPayload::RecordBatch(batch) => {
                    let ipc = client_ipc(&schema_header, &decoded.inner, &batch);
                    Some(
                        parse_producer(&decoded.inner.app_metadata).map(|meta| IncomingWrite {
                            table: target.clone(),
                            batch,
                            producer: meta.producer,
                            epoch: meta.epoch,
                            ipc,
                        }),
                    )
                }
            },
        };
        futures::future::ready(write)
    });
    Ok((table, writes))
}

/// arrow's IPC reader, fed what a client sent. The checks before it (`check_message`) refuse
/// what is known to make it panic; for what they miss (its struct reader, for one, takes a
/// validity bitmap shorter than the column on trust), a panic is turned into an error that
/// ends the client's stream, so that no byte a client sends can take down more than its own
/// session.
fn contain_panics(
    decoder: FlightDataDecoder,
) -> impl Stream<Item = Result<arrow_flight::decode::DecodedFlightData>> + Send + 'static {
    std::panic::AssertUnwindSafe(decoder)
        .catch_unwind()
        .map(|item| match item {
            Ok(decoded) => decoded.map_err(flight_error),
            Err(panic) => {
                let why = (panic.downcast_ref::<String>().map(String::as_str))
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a malformed message");
                Err(Error::InvalidArgument(format!(
                    "cannot decode the client's Arrow data: {why}"
                )))
            }
        })
}

/// The client's own schema and batch messages framed as the write's IPC stream; `None` when
/// they cannot be kept as sent (dictionary columns, whose dictionaries travel in messages of
/// their own, compressed buffers, which not every reader decodes, or a body that is not what
/// its header declares): such a batch is re-encoded.
fn client_ipc(schema_header: &[u8], data: &FlightData, batch: &RecordBatch) -> Option<Bytes> {
    if ipc::is_compressed(&data.data_header) {
        return None;
    }
    if batch
        .schema()
        .fields()
        .iter()
        .any(|f| has_dictionary(f.data_type()))
    {
        return None;
    }
    ipc::frame_stream(schema_header, &data.data_header, &data.data_body)
}

fn has_dictionary(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(..) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => has_dictionary(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| has_dictionary(f.data_type())),
        DataType::Union(fields, _) => fields.iter().any(|(_, f)| has_dictionary(f.data_type())),
        DataType::RunEndEncoded(runs, values) => {
            has_dictionary(runs.data_type()) || has_dictionary(values.data_type())
        }
        _ => false,
    }
}

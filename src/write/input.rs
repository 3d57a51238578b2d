//! Decoding a client's Flight write stream into writes.

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Streaming;

use super::{parse_producer, IncomingWrite};
use crate::error::{Error, Result};
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
    TableName::parse(name).map_err(Error::InvalidArgument)
}

fn flight_error(e: FlightError) -> Error {
    match e {
        FlightError::Tonic(status) => Error::Unavailable(format!("client stream failed: {status}")),
        other => Error::InvalidArgument(format!("cannot decode the client's Arrow data: {other}")),
    }
}

/// Reads the descriptor from the first message, then yields one write per record batch.
pub async fn decode_writes(
    mut stream: Streaming<FlightData>,
) -> Result<(
    TableName,
    impl Stream<Item = Result<IncomingWrite>> + Send + 'static,
)> {
    let first = stream
        .message()
        .await
        .map_err(|s| Error::Unavailable(format!("client stream failed: {s}")))?
        .ok_or_else(|| Error::InvalidArgument("empty write stream: no schema was sent".into()))?;
    let table = table_from_path(first.flight_descriptor.as_ref())?;
    let rest = stream.map_err(|status| FlightError::Tonic(Box::new(status)));
    // Messages without an IPC header carry only a descriptor or app_metadata (pyarrow sends
    // the descriptor alone first); they hold no data to decode.
    let all = futures::stream::once(async move { Ok(first) })
        .chain(rest)
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()));
    let target = table.clone();
    let writes = FlightDataDecoder::new(all).filter_map(move |item| {
        let table = target.clone();
        async move {
            let decoded = match item {
                Ok(d) => d,
                Err(e) => return Some(Err(flight_error(e))),
            };
            let DecodedPayload::RecordBatch(batch) = decoded.payload else {
                return None;
            };
            Some(
                parse_producer(&decoded.inner.app_metadata).map(|producer| IncomingWrite {
                    table,
                    batch,
                    producer,
                }),
            )
        }
    });
    Ok((table, writes))
}

//! Arrow IPC encoding of what goes into the log: each write is a self-describing IPC stream
//! (schema message + one batch), so every log entry can be decoded on its own.

use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

mod schema_check;

pub use schema_check::UnfitSchema;

/// Encodes one batch as an IPC stream.
pub fn encode_batch(batch: &RecordBatch) -> Result<Bytes, ArrowError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 512);
    let mut writer = StreamWriter::try_new(&mut out, batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(Bytes::from(out))
}

/// Encodes a schema as an IPC stream without batches.
pub fn encode_schema(schema: &Schema) -> Result<Bytes, ArrowError> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, schema)?;
    writer.finish()?;
    drop(writer);
    Ok(Bytes::from(out))
}

/// Decodes the schema at the head of an IPC stream.
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef, ArrowError> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    Ok(reader.schema())
}

/// Decodes every batch of an IPC stream.
pub fn decode_batches(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Decodes a schema sent by a client as an encapsulated IPC schema message (what
/// `pyarrow.Schema.serialize()` produces) or as an IPC stream.
pub fn decode_client_schema(bytes: &[u8]) -> Result<SchemaRef, ArrowError> {
    check_encapsulated_schema(bytes).map_err(|e| ArrowError::ParseError(e.to_string()))?;
    match arrow::ipc::convert::try_schema_from_ipc_buffer(bytes) {
        Ok(schema) => Ok(Arc::new(schema)),
        Err(_) => decode_schema(bytes),
    }
}

/// Checks the schema of an encapsulated IPC message (`[continuation] length message`) as
/// both of arrow's readers take it: the message from its start to the end of `bytes`, and
/// cut at its length. A length beyond the bytes is refused here: arrow's stream reader would
/// allocate it (up to 2 GiB) before finding the bytes missing. Bytes too short to hold a
/// length pass: arrow refuses them itself.
fn check_encapsulated_schema(bytes: &[u8]) -> Result<(), UnfitSchema> {
    let rest = bytes.strip_prefix(&CONTINUATION).unwrap_or(bytes);
    let Some((len, message)) = rest.split_first_chunk::<4>() else {
        return Ok(());
    };
    let declared = i32::from_le_bytes(*len);
    let cut = usize::try_from(declared)
        .ok()
        .and_then(|len| message.get(..len))
        .ok_or_else(|| {
            UnfitSchema::from(format!(
                "the schema message declares {declared} bytes but {} follow",
                message.len()
            ))
        })?;
    for header in [message, cut] {
        if let Ok(message) = arrow::ipc::root_as_message(header) {
            schema_check::check_message_schema(&message)?;
        }
    }
    Ok(())
}

/// Continuation marker of an encapsulated IPC message.
const CONTINUATION: [u8; 4] = [0xff; 4];

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The body length an IPC message header declares, when it parses.
fn declared_body_len(header: &[u8]) -> Option<usize> {
    let message = arrow::ipc::root_as_message(header).ok()?;
    usize::try_from(message.bodyLength()).ok()
}

/// Checks a client's IPC message (Flight `data_header` and `data_body`) before arrow decodes
/// it, its header parsed once: a schema's types are ones arrow converts, its buffers lie
/// within its body, and a compressed batch decompresses to at most `decoded_max` bytes.
pub fn check_client_message(
    header: &[u8],
    body: &[u8],
    decoded_max: usize,
) -> Result<(), UnfitMessage> {
    let message = arrow::ipc::root_as_message(header).map_err(|e| {
        UnfitMessage::Malformed(format!("the IPC message header does not parse: {e}"))
    })?;
    schema_check::check_message_schema(&message)
        .map_err(|e| UnfitMessage::Malformed(e.to_string()))?;
    check_message_fits(&message, body)?;
    check_decompressed_size(&message, body, decoded_max)
}

/// Why [`check_client_message`] refused a message.
#[derive(Debug, thiserror::Error)]
pub enum UnfitMessage {
    #[error("{0}")]
    Malformed(String),
    /// Within its bytes, but over the node's limit once decompressed.
    #[error("{0}")]
    OverLimit(String),
}

/// Checks that a message asks only for bytes its body holds: the declared body length and
/// every buffer (offset + length) of a record batch or dictionary batch. Arrow's reader
/// slices buffers without such a check and panics on a short body; a panic must never be
/// reachable from client bytes.
fn check_message_fits(message: &arrow::ipc::Message, body: &[u8]) -> Result<(), UnfitMessage> {
    let declared = usize::try_from(message.bodyLength()).unwrap_or(usize::MAX);
    if declared > body.len() {
        return Err(UnfitMessage::Malformed(format!(
            "the IPC message declares a body of {declared} bytes but carries {}",
            body.len()
        )));
    }
    let Some(buffers) = message_batch(message).and_then(|b| b.buffers()) else {
        return Ok(());
    };
    for buffer in buffers {
        let end = u64::try_from(buffer.offset())
            .ok()
            .zip(u64::try_from(buffer.length()).ok())
            .and_then(|(offset, length)| offset.checked_add(length));
        if end.is_none_or(|end| end > body.len() as u64) {
            return Err(UnfitMessage::Malformed(format!(
                "the IPC message declares a buffer at offset {} of {} bytes, beyond its body of {} bytes",
                buffer.offset(),
                buffer.length(),
                body.len()
            )));
        }
    }
    Ok(())
}

/// Checks, before arrow decompresses anything, that a compressed record batch or dictionary
/// message decodes to at most `decoded_max` bytes: the sum of the sizes its buffers declare
/// (the 8-byte prefix of each), and for lz4, whose decoder arrow runs to the end of its input
/// rather than to the declared size, that no buffer decompresses to more than it declares.
/// A small message that would expand to gigabytes is refused unread. Run after
/// [`check_message_fits`], so every buffer lies within `body`.
fn check_decompressed_size(
    message: &arrow::ipc::Message,
    body: &[u8],
    decoded_max: usize,
) -> Result<(), UnfitMessage> {
    use arrow::ipc::CompressionType;
    use UnfitMessage::{Malformed, OverLimit};
    let Some(batch) = message_batch(message) else {
        return Ok(());
    };
    let (Some(compression), Some(buffers)) = (batch.compression(), batch.buffers()) else {
        return Ok(());
    };
    let lz4 = compression.codec() == CompressionType::LZ4_FRAME;
    let mut total = 0u64;
    for buffer in buffers {
        let start = usize::try_from(buffer.offset()).unwrap_or(usize::MAX);
        let length = usize::try_from(buffer.length()).unwrap_or(usize::MAX);
        let Some(bytes) = body.get(start..start.saturating_add(length)) else {
            return Err(Malformed("an IPC buffer lies beyond its body".into()));
        };
        if bytes.is_empty() {
            continue;
        }
        let Some((prefix, data)) = bytes.split_first_chunk::<8>() else {
            return Err(Malformed(format!(
                "a compressed IPC buffer of {} bytes is shorter than its 8-byte length prefix",
                bytes.len()
            )));
        };
        let declared = match i64::from_le_bytes(*prefix) {
            // This buffer was sent uncompressed.
            -1 => data.len() as u64,
            n => {
                let declared = u64::try_from(n).map_err(|_| {
                    Malformed(format!("a compressed IPC buffer declares {n} bytes"))
                })?;
                if lz4 {
                    check_lz4_buffer(data, declared)?;
                }
                declared
            }
        };
        total = total.saturating_add(declared);
    }
    if total > decoded_max as u64 {
        return Err(OverLimit(format!(
            "the compressed batch decompresses to {total} bytes, over this node's limit of {decoded_max} bytes (batch-bytes-max); split it"
        )));
    }
    Ok(())
}

/// Decompresses an lz4 frame into nothing, one byte past `declared` at most.
fn check_lz4_buffer(data: &[u8], declared: u64) -> Result<(), UnfitMessage> {
    use std::io::Read;
    let mut decoder = lz4_flex::frame::FrameDecoder::new(data).take(declared.saturating_add(1));
    let decoded = std::io::copy(&mut decoder, &mut std::io::sink()).map_err(|e| {
        UnfitMessage::Malformed(format!("an lz4 IPC buffer does not decompress: {e}"))
    })?;
    if decoded > declared {
        return Err(UnfitMessage::Malformed(format!(
            "an lz4 IPC buffer decompresses to more than the {declared} bytes it declares"
        )));
    }
    Ok(())
}

/// True when a record batch message's buffers are compressed: such a write is decoded and
/// logged uncompressed, so that every reader of the log can read it.
pub fn is_compressed(header: &[u8]) -> bool {
    arrow::ipc::root_as_message(header)
        .ok()
        .and_then(|m| message_batch(&m).and_then(|b| b.compression()).map(|_| ()))
        .is_some()
}

/// The record batch a record batch or dictionary batch message carries.
fn message_batch<'a>(message: &arrow::ipc::Message<'a>) -> Option<arrow::ipc::RecordBatch<'a>> {
    use arrow::ipc::MessageHeader;
    match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => {
            message.header_as_dictionary_batch().and_then(|d| d.data())
        }
        _ => None,
    }
}

/// Frames a client's schema message and batch message (Flight `data_header` / `data_body`)
/// as an IPC stream, bytes unchanged: what the log keeps of a write, so that nothing is
/// re-encoded between the client and a reader. `None` when the body is not exactly what the
/// header declares or is not 8-byte padded (such a stream would not be self-delimiting).
pub fn frame_stream(schema_header: &[u8], batch_header: &[u8], body: &[u8]) -> Option<Bytes> {
    if declared_body_len(batch_header)? != body.len() || body.len() % 8 != 0 {
        return None;
    }
    let mut out =
        Vec::with_capacity(16 + pad8(schema_header.len()) + pad8(batch_header.len()) + body.len());
    for (header, body) in [(schema_header, &[][..]), (batch_header, body)] {
        let len = pad8(header.len());
        out.extend_from_slice(&CONTINUATION);
        out.extend_from_slice(&(u32::try_from(len).ok()?).to_le_bytes());
        out.extend_from_slice(header);
        out.resize(out.len() + len - header.len(), 0);
        out.extend_from_slice(body);
    }
    // End of stream.
    out.extend_from_slice(&CONTINUATION);
    out.extend_from_slice(&[0; 4]);
    Some(Bytes::from(out))
}

/// The messages of a stored write, as slices of it.
#[derive(Debug, Clone)]
pub struct WriteMessages {
    /// The schema message (flatbuffer, padded).
    pub schema_header: Bytes,
    /// The record batch message (flatbuffer, padded) and its body.
    pub batch_header: Bytes,
    pub body: Bytes,
}

/// One encapsulated message at `at`: `(header, body, next offset)`.
fn message_at(ipc: &Bytes, at: usize) -> Option<(Bytes, Bytes, usize)> {
    let prefix = ipc.get(at..at + 8)?;
    if prefix[..4] != CONTINUATION {
        return None;
    }
    let len = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
    let header_end = at.checked_add(8 + len)?;
    let header = ipc.get(at + 8..header_end)?;
    let body_len = declared_body_len(header)?;
    let body_end = header_end.checked_add(body_len)?;
    if body_end > ipc.len() {
        return None;
    }
    Some((
        ipc.slice(at + 8..header_end),
        ipc.slice(header_end..body_end),
        body_end,
    ))
}

/// Splits a stored write into its schema and batch messages without decoding them. `None`
/// when it is not exactly one schema message and one record batch message (for example
/// when dictionaries come between them).
pub fn split_write(ipc: &Bytes) -> Option<WriteMessages> {
    use arrow::ipc::MessageHeader;
    let (schema_header, _, next) = message_at(ipc, 0)?;
    let (batch_header, body, _) = message_at(ipc, next)?;
    let kind = |h: &[u8]| arrow::ipc::root_as_message(h).ok().map(|m| m.header_type());
    if kind(&schema_header)? != MessageHeader::Schema
        || kind(&batch_header)? != MessageHeader::RecordBatch
    {
        return None;
    }
    Some(WriteMessages {
        schema_header,
        batch_header,
        body,
    })
}

/// The schema message at the head of a stored write (framed), to tell whether two writes
/// carry the same schema without decoding either.
pub fn schema_message(ipc: &[u8]) -> Option<&[u8]> {
    let prefix = ipc.get(..8)?;
    if prefix[..4] != CONTINUATION {
        return None;
    }
    let len = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
    ipc.get(..8usize.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_schema_that_declares_more_than_it_holds_is_refused_unread() {
        // 12 bytes that claim a 1.4 GB message: arrow's stream reader would allocate that
        // before finding the bytes missing.
        let mut bytes = CONTINUATION.to_vec();
        bytes.extend_from_slice(&0x5600_0138i32.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let refused = decode_client_schema(&bytes).expect_err("refused");
        let says = "declares 1442840888 bytes but 4 follow";
        assert!(refused.to_string().contains(says), "{refused}");
    }
}

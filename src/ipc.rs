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
    match arrow::ipc::convert::try_schema_from_ipc_buffer(bytes) {
        Ok(schema) => Ok(Arc::new(schema)),
        Err(_) => decode_schema(bytes),
    }
}

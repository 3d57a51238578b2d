//! Reading a table's batches back from the log, in LSN order.

use arka_cluster::{Lsn, TieredFile};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use openraft::EntryPayload;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::ipc;
use crate::lake::parquet_file;
use crate::lake::schema::conform;
use crate::state::StateMachine;
use crate::table::TableName;
use crate::tier::ObjectStorage;
use crate::wal::LogReader;

/// Index entries read per step of a scan (bounds the memory of one read step).
pub const READ_STEP_BATCHES: usize = 256;

/// A batch a read returns.
pub enum ReadBatch {
    Decoded(RecordBatch),
    /// The messages the client wrote, to be sent as they are: the write's schema is the
    /// read's.
    AsWritten(ipc::WriteMessages),
}

/// One step of a scan.
pub struct ReadStep {
    pub batches: Vec<(Lsn, ReadBatch)>,
    /// True when the step reached `to_lsn`: nothing more is indexed in the range now.
    pub exhausted: bool,
}

/// What a read remembers between steps: the last tiered file it fetched, decoded (reads go
/// through a file in order, so one is enough), and whether the last schema message seen in
/// the WAL is the read's schema.
#[derive(Default)]
pub struct ReadCache {
    file: Option<(String, Vec<(u64, RecordBatch)>)>,
    schema_message: Option<(Bytes, bool)>,
}

impl ReadCache {
    /// True when `message` (a write's schema message) decodes to `schema`.
    fn is_schema(&mut self, message: &Bytes, schema: &Schema) -> bool {
        if let Some((seen, same)) = &self.schema_message {
            if seen == message {
                return *same;
            }
        }
        let same = arrow::ipc::root_as_message(message)
            .ok()
            .and_then(|m| m.header_as_schema())
            .is_some_and(|s| arrow::ipc::convert::fb_to_schema(s) == *schema);
        self.schema_message = Some((message.clone(), same));
        same
    }
}

/// What a read reaches: the state machine's index of the writes, this node's WAL, and the
/// object store for writes the WAL no longer holds (when tiering is configured).
#[derive(Clone)]
pub struct ReadSources {
    pub state: StateMachine,
    pub log: LogReader,
    pub storage: Option<ObjectStorage>,
}

/// Reads the next step of `table` from `from_lsn` to `to_lsn` (inclusive): at most
/// [`READ_STEP_BATCHES`] writes, each batch with its LSN. Writes below the index floor are
/// read from their tiered files in order; indexed writes from the WAL, or from their tiered
/// file when this node's WAL no longer holds them.
pub async fn read_step(
    sources: &ReadSources,
    table: &TableName,
    schema: &SchemaRef,
    (from_lsn, to_lsn): (Lsn, Lsn),
    with_lsn: bool,
    cache: &mut ReadCache,
) -> Result<ReadStep> {
    let conformed = |writes: Vec<(Lsn, RecordBatch)>| -> Result<Vec<(Lsn, ReadBatch)>> {
        writes
            .into_iter()
            .map(|(lsn, batch)| {
                let batch = conform(batch, schema, with_lsn.then_some(lsn.get()))?;
                Ok((lsn, ReadBatch::Decoded(batch)))
            })
            .collect()
    };
    let floor = sources.state.index_floor();
    let mut from_lsn = from_lsn;
    if from_lsn < floor {
        let below_floor = Lsn(floor.get() - 1);
        let range = (from_lsn, to_lsn.min(below_floor));
        let below = tiered_writes(sources, (table, schema), range, cache).await?;
        if !below.is_empty() {
            return Ok(ReadStep {
                batches: conformed(below)?,
                exhausted: false,
            });
        }
        // Every write below the floor is in a tiered file: none is left in range there.
        from_lsn = floor;
    }
    let index = sources
        .state
        .index_range(table, from_lsn, to_lsn, READ_STEP_BATCHES);
    let exhausted = index.len() < READ_STEP_BATCHES;
    let mut out = Vec::with_capacity(index.len());
    for (lsn, _) in index {
        let batches = match sources.log.entries(lsn, lsn.next())?.pop() {
            Some(entry) => {
                let ipc = write_ipc(table, lsn, entry)?;
                match ipc::split_write(&ipc) {
                    Some(messages)
                        if !with_lsn && cache.is_schema(&messages.schema_header, schema) =>
                    {
                        out.push((lsn, ReadBatch::AsWritten(messages)));
                        continue;
                    }
                    _ => {
                        ipc::decode_batches(&ipc)
                            .map_err(|e| Error::internal(&format!("decode entry {lsn}"), e))?
                            .1
                    }
                }
            }
            None => vec![tiered_batch(sources, (table, schema), lsn, cache).await?],
        };
        out.extend(conformed(batches.into_iter().map(|b| (lsn, b)).collect())?);
    }
    Ok(ReadStep {
        batches: out,
        exhausted,
    })
}

/// The IPC stream of the write at `lsn`.
fn write_ipc(table: &TableName, lsn: Lsn, entry: arka_cluster::types::Entry) -> Result<Bytes> {
    let write = match entry.payload {
        EntryPayload::Normal(command) => command.into_write(),
        _ => None,
    };
    let Some(write) = write else {
        return Err(Error::Internal(format!(
            "index of table {table} points at entry {lsn}, which is not a write"
        )));
    };
    Ok(write.ipc)
}

/// The writes of `table` with `from <= lsn <= to` in the first tiered file that holds any
/// at or after `from`, at most [`READ_STEP_BATCHES`].
async fn tiered_writes(
    sources: &ReadSources,
    (table, schema): (&TableName, &SchemaRef),
    (from, to): (Lsn, Lsn),
    cache: &mut ReadCache,
) -> Result<Vec<(Lsn, RecordBatch)>> {
    let Some(file) = sources.state.first_tiered_file_from(table, from) else {
        return Ok(Vec::new());
    };
    if file.min_lsn > to {
        return Ok(Vec::new());
    }
    let writes = load(sources, (table, schema), file, cache).await?;
    let start = writes.partition_point(|(lsn, _)| *lsn < from.get());
    Ok(writes[start..]
        .iter()
        .take_while(|(lsn, _)| *lsn <= to.get())
        .take(READ_STEP_BATCHES)
        .map(|(lsn, batch)| (Lsn(*lsn), batch.clone()))
        .collect())
}

/// The write at `lsn` of `table`, from the tiered file that holds it.
async fn tiered_batch(
    sources: &ReadSources,
    (table, schema): (&TableName, &SchemaRef),
    lsn: Lsn,
    cache: &mut ReadCache,
) -> Result<RecordBatch> {
    let gone = || {
        Error::Unavailable(format!(
            "write {lsn} of table {table} is no longer in this node's WAL (first kept: {}) and not yet in object storage; read it from another replica or retry once it is tiered",
            sources.log.first_index()
        ))
    };
    let file = sources.state.tiered_file_at(table, lsn).ok_or_else(gone)?;
    let writes = load(sources, (table, schema), file, cache).await?;
    let at = writes
        .binary_search_by_key(&lsn.get(), |(l, _)| *l)
        .map_err(|_| gone())?;
    Ok(writes[at].1.clone())
}

/// The writes of a tiered file, decoded into the types of the read's `schema` (from the
/// cache when it holds that file).
async fn load<'c>(
    sources: &ReadSources,
    (table, schema): (&TableName, &SchemaRef),
    file: TieredFile,
    cache: &'c mut ReadCache,
) -> Result<&'c [(u64, RecordBatch)]> {
    if cache
        .file
        .as_ref()
        .is_none_or(|(path, _)| *path != file.path)
    {
        let storage = sources.storage.as_ref().ok_or_else(|| {
            Error::Internal(format!(
                "table {table} has tiered files but tiering is not configured on this node"
            ))
        })?;
        let bytes = storage.get(&file.path).await.map_err(|e| {
            Error::Unavailable(format!(
                "writes {}..={} of table {table} are in object storage, which did not answer: {e}",
                file.min_lsn, file.max_lsn
            ))
        })?;
        // A file holds up to a whole range: decoding it is kept off the runtime threads.
        let corrupt =
            |e: &dyn std::fmt::Display| Error::Internal(format!("tiered file {}: {e}", file.path));
        let schema = schema.clone();
        let writes = tokio::task::spawn_blocking(move || parquet_file::decode(bytes, &schema))
            .await
            .map_err(|e| corrupt(&e))?
            .map_err(|e| corrupt(&e))?;
        cache.file = Some((file.path, writes));
    }
    Ok(cache
        .file
        .as_ref()
        .map(|(_, w)| w.as_slice())
        .unwrap_or_default())
}

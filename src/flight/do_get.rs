//! DoGet: a table range in LSN order, optionally tailing (`follow`) and fenced by `min_lsn`.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::FlightData;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::status::{status_batch, status_json};
use super::ticket::Ticket;
use crate::wire::BatchEncoder;
use crate::wire::ReadTicket;
use arka_cluster::Lsn;

use super::served::Served;
use crate::error::{Error, Result};
use crate::lake::schema::output_schema;
use crate::read::{read_step, ReadBatch, ReadCache};
use crate::table::TableName;

/// Flight messages a read may have queued for a slow client.
const READ_QUEUE_MAX: usize = 8;

type Sender = mpsc::Sender<Result<FlightData, Status>>;

pub async fn do_get(
    ctx: Arc<Served>,
    ticket: Ticket,
) -> Result<BoxStream<'static, Result<FlightData, Status>>> {
    match ticket {
        Ticket::Status => {
            let batch = status_batch(&status_json(&ctx))?;
            let mut encoder = BatchEncoder::default();
            let mut messages = vec![encoder.schema(&batch.schema())];
            messages.extend(
                encoder
                    .batch(&batch, Default::default())
                    .map_err(|e| Error::internal("encode status", e))?,
            );
            Ok(futures::stream::iter(messages.into_iter().map(Ok)).boxed())
        }
        Ticket::Read { table, ticket } => read(ctx, table, ticket).await,
    }
}

async fn wait_for_min_lsn(ctx: &Served, min_lsn: u64) -> Result<()> {
    let mut applied = ctx.state.subscribe_applied();
    let reached =
        tokio::time::timeout(ctx.read_wait_max, applied.wait_for(|a| *a >= min_lsn)).await;
    match reached {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(Error::Shutdown),
        Err(_) => Err(Error::DeadlineExceeded(format!(
            "node {} has applied up to lsn {}; min_lsn {min_lsn} was not reached within {:?}",
            ctx.node_id,
            ctx.state.applied_lsn(),
            ctx.read_wait_max
        ))),
    }
}

fn table_not_found(table: &TableName) -> Error {
    Error::NotFound(format!("table {table} not found"))
}

async fn read(
    ctx: Arc<Served>,
    table: TableName,
    ticket: ReadTicket,
) -> Result<BoxStream<'static, Result<FlightData, Status>>> {
    if let Some(min_lsn) = ticket.min_lsn {
        wait_for_min_lsn(&ctx, min_lsn).await?;
    }
    let info = ctx
        .state
        .table(&table)
        .ok_or_else(|| table_not_found(&table))?;
    let schema = output_schema(&info.schema, ticket.with_lsn.unwrap_or(false));
    let (tx, rx) = mpsc::channel(READ_QUEUE_MAX);
    tokio::spawn(async move {
        if let Err(e) = stream_range(&ctx, &table, schema, &ticket, &tx).await {
            let _ = tx.send(Err(e.into())).await;
        }
    });
    Ok(ReceiverStream::new(rx).boxed())
}

async fn send(tx: &Sender, message: FlightData) -> Result<()> {
    // A closed channel means the client went away: stop reading.
    tx.send(Ok(message)).await.map_err(|_| Error::Shutdown)
}

async fn stream_range(
    ctx: &Served,
    table: &TableName,
    schema: SchemaRef,
    ticket: &ReadTicket,
    tx: &Sender,
) -> Result<()> {
    let mut encoder = BatchEncoder::default();
    send(tx, encoder.schema(&schema)).await?;
    let follow = ticket.follow.unwrap_or(false);
    let with_lsn = ticket.with_lsn.unwrap_or(false);
    let to_lsn = ticket.to_lsn.unwrap_or(u64::MAX);
    let mut from = ticket.from_lsn.unwrap_or(0);
    let mut applied = ctx.state.subscribe_applied();
    let mut tiered = ReadCache::default();
    let sources = ctx.read_sources();
    while from <= to_lsn {
        let upto = to_lsn.min(*applied.borrow_and_update());
        let range = (Lsn(from), Lsn(upto));
        let step = read_step(&sources, table, &schema, range, with_lsn, &mut tiered).await?;
        for (lsn, batch) in step.batches {
            let meta = bytes::Bytes::from(format!("{{\"lsn\": {lsn}}}"));
            match batch {
                ReadBatch::AsWritten(m) => {
                    let message = FlightData {
                        data_header: m.batch_header,
                        data_body: m.body,
                        app_metadata: meta,
                        flight_descriptor: None,
                    };
                    send(tx, message).await?;
                }
                ReadBatch::Decoded(batch) => {
                    let messages = encoder
                        .batch(&batch, meta)
                        .map_err(|e| Error::internal("encode batch", e))?;
                    for message in messages {
                        send(tx, message).await?;
                    }
                }
            }
            from = lsn.next().get();
        }
        if !step.exhausted {
            continue;
        }
        from = from.max(upto.saturating_add(1));
        if !follow || upto >= to_lsn {
            return Ok(());
        }
        tokio::select! {
            changed = applied.changed() => changed.map_err(|_| Error::Shutdown)?,
            _ = tx.closed() => return Ok(()),
        }
    }
    Ok(())
}

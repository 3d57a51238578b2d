//! DoExchange (streaming write with acks) and DoPut (batch upload): both run a write session
//! and differ only in how they report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow_flight::{FlightData, PutResult};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::ack_batch::{ack_batch, watermark_batch};
use super::served::Served;
use crate::durability::{parse_ack_until, Level};
use crate::error::{Error, Result};
use crate::wire::ack::{ACK_SCHEMA, ACK_SCHEMA_WITH_WATERMARKS};
use crate::wire::{BatchEncoder, ACK_UNTIL_HEADER, WATERMARKS_HEADER};
use crate::write::{decode_writes, run_session, AckEvent, SessionLimits};

/// Ack batches a session may have queued for a slow client before it stops reading input.
const ACK_QUEUE_MAX: usize = 16;

/// The level a session waits for: `x-arka-ack-until`, else `default`, never above what the
/// cluster delivers.
pub fn final_level(
    ctx: &Served,
    metadata: &tonic::metadata::MetadataMap,
    default: Level,
) -> Result<Level> {
    let value = match metadata.get(ACK_UNTIL_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Error::InvalidArgument(format!("{ACK_UNTIL_HEADER} is not ASCII")))?,
        ),
        None => None,
    };
    let highest = Level::highest(ctx.tiering.is_some());
    parse_ack_until(value, default, highest).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Refuses a table the caller has no grant for, once the stream names it.
pub type TableGrant = Box<dyn FnOnce(&str) -> Result<()> + Send>;

/// Starts a session in its own task; its ack batches arrive on the returned receiver. A
/// session that panics (a bug) ends the stream with an error, never with a silent end that a
/// client would take for success.
fn start_session(
    ctx: Arc<Served>,
    input: Streaming<FlightData>,
    final_level: Level,
    grant: TableGrant,
) -> mpsc::Receiver<Result<Vec<AckEvent>>> {
    let (tx, rx) = mpsc::channel(ACK_QUEUE_MAX);
    let on_panic = tx.clone();
    let session = tokio::spawn(session(ctx, input, final_level, grant, tx));
    tokio::spawn(async move {
        if let Err(e) = session.await {
            tracing::error!(error = %e, "a write session failed");
            let failed = Error::Internal(format!(
                "the write session failed ({e}); writes not acknowledged were not written"
            ));
            let _ = on_panic.send(Err(failed)).await;
        }
    });
    rx
}

async fn session(
    ctx: Arc<Served>,
    input: Streaming<FlightData>,
    final_level: Level,
    grant: TableGrant,
    tx: mpsc::Sender<Result<Vec<AckEvent>>>,
) {
    let batch_bytes_max = ctx.writes.limits().batch_bytes_max;
    let decoded = decode_writes(input, batch_bytes_max)
        .await
        .and_then(|(table, writes)| {
            grant(table.as_str())?;
            Ok(writes)
        });
    let writes = match decoded {
        Ok(writes) => writes,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    let limits = SessionLimits {
        final_level,
        inflight_bytes_max: ctx.writes.limits().session_inflight_bytes_max,
    };
    run_session(ctx.writes.clone(), Box::pin(writes), limits, tx).await;
}

/// How often a stream with watermark rows looks for moved watermarks: at most this many
/// watermark batches a second.
const WATERMARK_ROWS_INTERVAL: Duration = Duration::from_millis(250);

fn wants_watermarks(metadata: &tonic::metadata::MetadataMap) -> Result<bool> {
    match metadata.get(WATERMARKS_HEADER).map(|v| v.to_str()) {
        None => Ok(false),
        Some(Ok("true")) => Ok(true),
        Some(Ok("false")) => Ok(false),
        Some(_) => Err(Error::InvalidArgument(format!(
            "{WATERMARKS_HEADER} must be true or false"
        ))),
    }
}

/// What the ack stream sends next.
enum Outgoing {
    Acks(Result<Vec<AckEvent>>),
    Watermarks(Vec<(Level, u64)>),
    /// The session's writes are done: the watermarks that moved since the last look go out
    /// before the stream ends, so that its last rows show where they stood at the end.
    LastLook,
    /// The session ended: so does the stream, watermark rows with it.
    End,
}

/// The watermarks a stream has reported, so that it reports only those that moved.
#[derive(Default)]
struct Reported {
    seen: [u64; 5],
    /// The stream's table, once its first message named it.
    table: Arc<OnceLock<String>>,
}

impl Reported {
    fn moved(&mut self, ctx: &Served) -> Vec<(Level, u64)> {
        let mut watermarks = ctx.watermarks();
        if let Some(table) = self.table.get() {
            // A stream writes one table: its COMMITTED row says how far that table is in
            // Iceberg, so another table the tier worker holds back does not hold it down.
            let position = ctx.state.table_commits().position(table);
            watermarks.committed_lsn = watermarks.committed_lsn.max(position.get());
        }
        (watermarks.by_level().into_iter())
            .zip(self.seen.iter_mut())
            .filter_map(|((level, lsn), seen)| {
                (lsn > *seen).then(|| {
                    *seen = lsn;
                    (level, lsn)
                })
            })
            .collect()
    }
}

/// Every [`WATERMARK_ROWS_INTERVAL`], the watermarks that moved since the last look (all of
/// them, the first time).
fn moved_watermarks(
    ctx: Arc<Served>,
    reported: Arc<Mutex<Reported>>,
) -> impl futures::Stream<Item = Outgoing> + Send {
    let mut ticks = tokio::time::interval(WATERMARK_ROWS_INTERVAL);
    // A late look is not made up for: the bound on rows a second holds after a stall too.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold(ticks, move |mut ticks| {
        let (ctx, reported) = (ctx.clone(), reported.clone());
        async move {
            loop {
                ticks.tick().await;
                let moved = lock(&reported).moved(&ctx);
                if !moved.is_empty() {
                    return Some((Outgoing::Watermarks(moved), ticks));
                }
            }
        }
    })
}

fn lock(reported: &Mutex<Reported>) -> std::sync::MutexGuard<'_, Reported> {
    reported.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn do_exchange(
    ctx: Arc<Served>,
    metadata: &tonic::metadata::MetadataMap,
    input: Streaming<FlightData>,
    grant: TableGrant,
) -> Result<BoxStream<'static, Result<FlightData, Status>>> {
    let level = final_level(&ctx, metadata, Level::Committed)?;
    let watermarks = wants_watermarks(metadata)?;
    ctx.writes.ensure_leader()?;
    let reported = Reported::default();
    let table = reported.table.clone();
    let grant: TableGrant = Box::new(move |name| {
        grant(name)?;
        let _ = table.set(name.to_string());
        Ok(())
    });
    let reported = Arc::new(Mutex::new(reported));
    let acks = ReceiverStream::new(start_session(ctx.clone(), input, level, grant))
        .map(Outgoing::Acks)
        .chain(futures::stream::iter([Outgoing::LastLook, Outgoing::End]));
    let outgoing: BoxStream<'static, Outgoing> = if watermarks {
        futures::stream::select(acks, moved_watermarks(ctx.clone(), reported.clone())).boxed()
    } else {
        acks.boxed()
    };
    let mut encoder = BatchEncoder::default();
    let schema = encoder.schema(if watermarks {
        &ACK_SCHEMA_WITH_WATERMARKS
    } else {
        &ACK_SCHEMA
    });
    let body = outgoing
        .take_while(|item| futures::future::ready(!matches!(item, Outgoing::End)))
        .flat_map(move |item| {
            let batch = match item {
                Outgoing::Acks(Ok(events)) => ack_batch(&events, watermarks),
                Outgoing::Watermarks(moved) => watermark_batch(&moved),
                Outgoing::LastLook if watermarks => match lock(&reported).moved(&ctx) {
                    moved if moved.is_empty() => return futures::stream::iter(Vec::new()),
                    moved => watermark_batch(&moved),
                },
                Outgoing::Acks(Err(e)) => return futures::stream::iter(vec![Err(e.into())]),
                Outgoing::LastLook | Outgoing::End => return futures::stream::iter(Vec::new()),
            };
            let messages: Vec<Result<FlightData, Status>> =
                match batch.and_then(|b| encoder.batch(&b, Default::default())) {
                    Ok(data) => data.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(Error::internal("encode acks", e).into())],
                };
            futures::stream::iter(messages)
        });
    Ok(futures::stream::once(async move { Ok(schema) })
        .chain(body)
        .boxed())
}

/// Puts the writes that reached the final level back into the order they were sent, so that
/// the n-th PutResult answers the n-th batch (the only correlation DoPut offers). Holds at
/// most the session's in-flight writes.
#[derive(Default)]
struct InOrder {
    next_write_no: u64,
    done: BTreeMap<u64, AckEvent>,
}

impl InOrder {
    fn push(&mut self, events: Vec<AckEvent>, level: Level) -> Vec<AckEvent> {
        for event in events.into_iter().filter(|e| e.level >= level) {
            self.done.entry(event.write_no).or_insert(event);
        }
        let mut ready = Vec::new();
        while let Some(event) = self.done.remove(&self.next_write_no) {
            ready.push(event);
            self.next_write_no += 1;
        }
        ready
    }
}

pub fn do_put(
    ctx: Arc<Served>,
    metadata: &tonic::metadata::MetadataMap,
    input: Streaming<FlightData>,
    grant: TableGrant,
) -> Result<BoxStream<'static, Result<PutResult, Status>>> {
    let level = final_level(&ctx, metadata, Level::Replicated)?;
    ctx.writes.ensure_leader()?;
    let acks = ReceiverStream::new(start_session(ctx, input, level, grant));
    let mut in_order = InOrder::default();
    let results = acks.flat_map(move |item| {
        let results: Vec<Result<PutResult, Status>> = match item {
            Ok(events) => in_order
                .push(events, level)
                .iter()
                .map(|e| {
                    let meta = serde_json::json!({"lsn": e.lsn, "durability_level": e.level});
                    Ok(PutResult {
                        app_metadata: meta.to_string().into(),
                    })
                })
                .collect(),
            Err(e) => vec![Err(e.into())],
        };
        futures::stream::iter(results)
    });
    Ok(results.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(write_no: u64, level: Level) -> AckEvent {
        AckEvent {
            write_no,
            lsn: 10 + write_no,
            level,
            is_update: false,
            table: "t".into(),
            rows: 1,
            seq: None,
            appended_by: None,
        }
    }

    #[test]
    fn put_results_follow_the_order_of_the_batches() {
        let mut order = InOrder::default();
        let level = Level::Replicated;
        let ready = order.push(vec![event(1, level), event(0, Level::Memory)], level);
        assert!(ready.is_empty(), "batch 0 is not done yet");
        let ready = order.push(vec![event(2, level), event(0, level)], level);
        let nos: Vec<u64> = ready.iter().map(|e| e.write_no).collect();
        assert_eq!(nos, vec![0, 1, 2]);
    }
}

//! Tiering actions: `flush` and `set_retention`.

use std::time::Duration;

use arka_cluster::{Command, CommandResponse, Lsn, NodeId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::actions::parse_body;
use super::served::Served;
use super::status::held_back_json;
use crate::error::{Error, Result};
use crate::internal::{self, InternalRequest};
use crate::tier::Tiering;

/// How long `flush` waits for the tier worker (a store that is down fails it after this).
const FLUSH_WAIT_MAX: Duration = Duration::from_secs(120);
/// How long `flush` waits before it asks the tier worker again, at first and at most.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long `flush` waits for this node to apply the new watermarks.
const APPLY_WAIT_MAX: Duration = Duration::from_secs(10);

fn tiering(ctx: &Served) -> Result<&Tiering> {
    ctx.tiering.as_deref().ok_or_else(|| {
        Error::InvalidArgument(
            "tiering is not configured on this cluster (set object-store-url)".into(),
        )
    })
}

/// `flush` takes no arguments; `{}` is accepted as well as an empty body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Flush {}

/// Seals, uploads and commits everything this node has applied, at the tier worker, and
/// returns the watermarks once this node has applied them, with the tables held back from
/// Iceberg: one table the catalog refuses does not fail the flush of the others.
pub async fn flush(ctx: &Served, body: &[u8]) -> Result<Value> {
    let tiering = tiering(ctx)?;
    if !body.is_empty() {
        parse_body::<Flush>("flush", body)?;
    }
    let upto = ctx.state.applied_lsn();
    let worker = tokio::time::timeout(FLUSH_WAIT_MAX, flush_following_the_worker(ctx, upto))
        .await
        .unwrap_or_else(|_| {
            let last = tiering.status().last_error.unwrap_or_default();
            Err(Error::Unavailable(format!(
                "flush did not finish within {FLUSH_WAIT_MAX:?} at tier worker {:?} (this node's last tier error: {last})",
                ctx.state.tier().worker
            )))
        })?;
    // Tier reports above the last data entry are never tiered themselves.
    let target = upto.min(ctx.state.last_data_lsn());
    let mut commits = ctx.state.subscribe_table_commits();
    let reached = commits.wait_for(|c| c.upto() >= target);
    let _ = tokio::time::timeout(APPLY_WAIT_MAX, reached).await;
    let mut out =
        serde_json::to_value(ctx.watermarks()).map_err(|e| Error::internal("watermarks", e))?;
    out["flushed_lsn"] = json!(upto);
    out["tier_worker"] = json!(worker);
    // Every table is committed up to `flushed_lsn` but these, which stay where they are (and
    // so does `committed_lsn`, the lowest position) until the catalog takes them.
    out["held_back"] = held_back_json(ctx);
    Ok(out)
}

/// Has the tier worker flush up to `upto` and returns which node did. The worker may move
/// while a flush is under way (a new one is designated at start-up, when one dies, or when
/// membership changes), and a node may learn of it late: an answer that the work cannot be
/// done now (UNAVAILABLE) is retried, at the worker designated by then, with backoff; the
/// caller bounds the whole.
async fn flush_following_the_worker(ctx: &Served, upto: Lsn) -> Result<NodeId> {
    let mut tier = ctx.state.subscribe_tier();
    let mut backoff = RETRY_MIN;
    loop {
        let designated = tier.wait_for(|t| t.worker.is_some()).await;
        let Some(worker) = designated.ok().and_then(|t| t.worker) else {
            return Err(Error::Shutdown);
        };
        let flushed = if worker == ctx.node_id {
            flush_at_worker(ctx, upto).await
        } else {
            let request = InternalRequest::Flush { upto };
            internal::send(&ctx.raft, &ctx.internal, worker, &request, FLUSH_WAIT_MAX).await
        };
        match flushed {
            Ok(()) => return Ok(worker),
            Err(Error::Unavailable(reason)) => {
                tracing::debug!(%worker, %reason, "flush not done at the tier worker; retrying");
                // Retry at once when the designation moves, else after the backoff.
                let moved = tier.wait_for(|t| t.worker != Some(worker));
                let _ = tokio::time::timeout(backoff, moved).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            Err(other) => return Err(other),
        }
    }
}

/// The tier worker's side of a flush: everything up to `upto` is sealed, uploaded and
/// committed when this returns.
pub(crate) async fn flush_at_worker(ctx: &Served, upto: Lsn) -> Result<()> {
    let tiering = tiering(ctx)?;
    if ctx.state.tier().worker != Some(ctx.node_id) {
        return Err(Error::Unavailable(format!(
            "node {} is no longer the tier worker; retry the flush",
            ctx.node_id
        )));
    }
    tiering
        .flush_here(upto)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRetention {
    bytes: u64,
    ms: u64,
}

/// Sets the WAL retention of every node (replicated; overrides the configured values).
pub async fn set_retention(ctx: &Served, body: &[u8]) -> Result<Value> {
    tiering(ctx)?;
    let req: SetRetention = parse_body("set_retention", body)?;
    let (bytes, ms) = (req.bytes, req.ms);
    let command = |request| Command::SetRetention { bytes, ms, request };
    match ctx.writes.propose_command(command).await? {
        CommandResponse::Done => Ok(json!({"wal_retention_bytes": bytes, "wal_retention_ms": ms})),
        other => Err(Error::Internal(format!(
            "unexpected answer to set_retention: {other:?}"
        ))),
    }
}

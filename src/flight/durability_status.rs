//! `get_durability_status`: the watermarks, the level an LSN reached, and what became of one
//! idempotent write. A client that lost its stream with writes acknowledged only at MEMORY or
//! LOCAL_DISK asks this to learn, per write, whether to wait, resend, or look for it.

use arka_cluster::types::CommittedLeaderId;
use arka_cluster::{write_of, Lsn, NodeId, ProducerSeq};
use serde::Deserialize;
use serde_json::{json, Value};

use super::actions::parse_body;
use super::served::Served;
use crate::durability::{Level, Watermarks};
use crate::error::{Error, Result};
use crate::table::TableName;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DurabilityQuery {
    last_known_lsn: Option<u64>,
    /// With `seq`: ask about one idempotent write; without: list the producer's writes
    /// above `last_known_lsn`.
    producer_id: Option<String>,
    seq: Option<i64>,
    /// The most events one answer lists.
    limit: Option<usize>,
    /// With `last_known_lsn`: the leader that acknowledged the write there (the ack row's
    /// `term` and `leader_id`), to ask about that write rather than the position.
    term: Option<u64>,
    leader_id: Option<u64>,
}

/// Events one answer lists unless the query says fewer, and at most.
const EVENTS_PAGE_DEFAULT: usize = 1_000;
const EVENTS_PAGE_MAX: usize = 10_000;

/// What this node knows of one idempotent write.
enum WriteFate {
    /// Applied at this LSN.
    Written(u64),
    /// Not applied here, and its producer's window here covers its seq, so it would be
    /// known if it had been: still in flight, or never sent. Resending it cannot duplicate.
    NotWritten,
    /// The LSN it was acknowledged at holds another write: it was lost in a leader change.
    Lost(u64),
    /// This node no longer remembers: the seq is older than its producer's window (or the
    /// producer was forgotten) and the LSN, if given, is no longer in this node's WAL.
    Unknown,
}

pub fn answer(ctx: &Served, body: &[u8]) -> Result<Value> {
    let req: DurabilityQuery = if body.is_empty() {
        DurabilityQuery::default()
    } else {
        parse_body("get_durability_status", body)?
    };
    let w = ctx.watermarks();
    let mut out = serde_json::to_value(w).map_err(|e| Error::internal("watermarks", e))?;
    out["lag_seconds"] = super::status::tier_lag_seconds(ctx, w.s3_lsn);
    out["tier_worker"] = json!(ctx.state.tier().worker);
    if let Some(lsn) = req.last_known_lsn {
        out["last_known_lsn"] = json!(lsn);
        out["level"] = json!(level_of_write(ctx, &w, lsn));
    }
    if let Some(leader) = appended_by(&req)? {
        // Checked above: a leader comes with `last_known_lsn` and without `producer_id`.
        let lsn = req.last_known_lsn.unwrap_or_default();
        add_position_fate(ctx, &mut out, lsn, leader)?;
        return Ok(out);
    }
    if req.limit.is_some() && (req.producer_id.is_none() || req.seq.is_some()) {
        return Err(Error::InvalidArgument(
            "get_durability_status: limit pages the events of a producer_id given without seq"
                .into(),
        ));
    }
    let write = match (req.producer_id, req.seq) {
        (Some(producer_id), Some(seq)) => ProducerSeq { producer_id, seq },
        (Some(producer_id), None) => {
            let after = req.last_known_lsn.unwrap_or(0);
            add_events(ctx, (&w, &mut out), &producer_id, after, req.limit)?;
            return Ok(out);
        }
        (None, None) => return Ok(out),
        (None, Some(_)) => {
            return Err(Error::InvalidArgument(
                "get_durability_status: seq needs its producer_id".into(),
            ))
        }
    };
    let settled = req.last_known_lsn.filter(|l| *l <= w.replicated_lsn);
    match fate(ctx, &write, settled)? {
        WriteFate::Written(lsn) => {
            out["status"] = json!("written");
            out["lsn"] = json!(lsn);
            out["level"] = json!(level_of_write(ctx, &w, lsn));
        }
        WriteFate::NotWritten => {
            out["status"] = json!("not_written");
            out["level"] = Value::Null;
        }
        WriteFate::Lost(lsn) => {
            return Err(Error::Aborted {
                first_lost_lsn: lsn,
                reason: format!(
                    "producer {:?} seq {} was never committed; lsn {lsn} now holds other data",
                    write.producer_id, write.seq
                ),
            })
        }
        WriteFate::Unknown => {
            out["status"] = json!("unknown");
            out["level"] = Value::Null;
        }
    }
    Ok(out)
}

/// The level the write at `lsn` reached: the watermarks' answer, or COMMITTED where the tier
/// worker holds other tables back below it but its own table is committed past it.
fn level_of_write(ctx: &Served, w: &Watermarks, lsn: u64) -> Option<Level> {
    let level = w.level_of(lsn);
    let commits = ctx.state.table_commits();
    if level != Some(Level::ObjectStorage) || Lsn(lsn) > commits.upto() {
        return level;
    }
    match ctx.state.indexed_table_of(Lsn(lsn)) {
        Some(table) if Lsn(lsn) <= commits.position(table.as_str()) => Some(Level::Committed),
        _ => level,
    }
}

/// The leader the query names, if it names one, checked to come with the LSN it appended
/// and without a producer (whose writes are looked up by their seq).
fn appended_by(req: &DurabilityQuery) -> Result<Option<CommittedLeaderId>> {
    let (term, node) = match (req.term, req.leader_id) {
        (None, None) => return Ok(None),
        (Some(term), Some(node)) => (term, node),
        _ => return Err(Error::InvalidArgument(
            "get_durability_status: term and leader_id go together (both from the write's ack row)"
                .into(),
        )),
    };
    if req.last_known_lsn.is_none() || req.producer_id.is_some() {
        return Err(Error::InvalidArgument(
            "get_durability_status: term and leader_id name the write at last_known_lsn; give them with last_known_lsn and without producer_id"
                .into(),
        ));
    }
    Ok(Some(CommittedLeaderId {
        term,
        node_id: NodeId(node),
    }))
}

/// Adds what became of the write `leader` appended at `lsn`: `written` while the entry there
/// is still that one; ABORTED once this node applied another entry there; `pending` while
/// this node's log at `lsn` is not final and does not hold it (the entry a new leader appended
/// can still be overwritten by it); `unknown` when this node no longer knows who appended it.
fn add_position_fate(
    ctx: &Served,
    out: &mut Value,
    lsn: u64,
    leader: CommittedLeaderId,
) -> Result<()> {
    let settled = lsn <= ctx.state.applied_lsn().get();
    let held = if lsn >= ctx.log.first_index().get() {
        let entries = ctx
            .log
            .entries(Lsn(lsn), Lsn(lsn + 1))
            .map_err(|e| Error::internal("read the log for get_durability_status", e))?;
        entries.first().map(|e| e.log_id.leader_id)
    } else if settled {
        ctx.state.leader_at(Lsn(lsn))
    } else {
        None
    };
    let status = match held {
        Some(held) if held == leader => "written",
        Some(held) if settled => {
            return Err(Error::Aborted {
                first_lost_lsn: lsn,
                reason: format!(
                    "the write acknowledged at lsn {lsn} by leader {} in term {} was lost in a leader change: lsn {lsn} holds an entry of leader {} in term {}",
                    leader.node_id, leader.term, held.node_id, held.term
                ),
            })
        }
        _ if settled => "unknown",
        _ => "pending",
    };
    out["status"] = json!(status);
    if status != "written" {
        out["level"] = Value::Null;
    }
    Ok(())
}

/// Adds the page of `producer_id`'s applied writes above `after`, each with its level here,
/// and where the next page starts.
fn add_events(
    ctx: &Served,
    (w, out): (&Watermarks, &mut Value),
    producer_id: &str,
    after: u64,
    limit: Option<usize>,
) -> Result<()> {
    let limit = limit.unwrap_or(EVENTS_PAGE_DEFAULT);
    if !(1..=EVENTS_PAGE_MAX).contains(&limit) {
        return Err(Error::InvalidArgument(format!(
            "get_durability_status: limit must be 1 to {EVENTS_PAGE_MAX}, got {limit}"
        )));
    }
    let page = ctx
        .state
        .producer_writes_after(producer_id, Lsn(after), limit);
    let events: Vec<Value> = (page.writes.iter())
        .map(|(seq, lsn)| json!({"seq": seq, "lsn": lsn, "level": level_of_write(ctx, w, *lsn)}))
        .collect();
    let next = page
        .writes
        .last()
        .filter(|_| page.more)
        .map(|(_, lsn)| *lsn);
    out["events"] = Value::Array(events);
    out["next_last_known_lsn"] = json!(next);
    out["window_from_seq"] = json!(page.window_from_seq);
    Ok(())
}

/// `settled`: the LSN the write was acknowledged at, when this node has applied it (the log
/// there is final).
fn fate(ctx: &Served, write: &ProducerSeq, settled: Option<u64>) -> Result<WriteFate> {
    if let Some(lsn) = ctx.state.dedup_lookup(&write.producer_id, write.seq) {
        return Ok(WriteFate::Written(lsn.get()));
    }
    if let Some(lsn) = settled {
        // The idempotency table forgot it, or never had it: the log at its LSN says which.
        let first_kept = ctx.log.first_index().get();
        if lsn >= first_kept {
            let entries = ctx
                .log
                .entries(Lsn(lsn), Lsn(lsn + 1))
                .map_err(|e| Error::internal("read the log for get_durability_status", e))?;
            let held = entries.first().and_then(write_of);
            return Ok(match held {
                Some(w) if w.producer.as_ref() == Some(write) => {
                    let taken = TableName::parse(&w.table)
                        .is_ok_and(|table| ctx.state.holds_write(&table, Lsn(lsn)));
                    // In the log but refused when applied (a fenced session, or a repeat whose
                    // original this node no longer remembers): nothing says which.
                    if taken {
                        WriteFate::Written(lsn)
                    } else {
                        WriteFate::Unknown
                    }
                }
                _ => WriteFate::Lost(lsn),
            });
        }
    }
    if ctx.state.dedup_covers(&write.producer_id, write.seq) {
        return Ok(WriteFate::NotWritten);
    }
    Ok(WriteFate::Unknown)
}

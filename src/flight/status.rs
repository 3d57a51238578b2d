//! The node status (DESIGN §4 "Status JSON"), as JSON and as a one-row batch.

use std::sync::Arc;

use arka_cluster::NodeId;
use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use serde_json::{json, Value};

use super::served::Served;
use crate::error::{Error, Result};
use crate::raft::role_name;

/// One entry of `members`.
fn members(ctx: &Served) -> Vec<Value> {
    let metrics = crate::raft::metrics(&ctx.raft);
    let membership = metrics.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let matched = metrics.replication.clone().unwrap_or_default();
    membership
        .nodes()
        .map(|(id, node)| {
            let mut member = json!({
                "node_id": id,
                "voter": voters.contains(id),
                "raft_addr": node.raft_addr,
                "flight_location": node.flight_location(),
            });
            if let Some(log_id) = matched.get(id) {
                let index = log_id.as_ref().map(|l| l.index).unwrap_or(0);
                member["matched_lsn"] = json!(index);
                member["lag_entries"] =
                    json!(metrics.last_log_index.unwrap_or(0).saturating_sub(index));
            }
            member
        })
        .collect()
}

pub fn status_json(ctx: &Served) -> Value {
    let metrics = crate::raft::metrics(&ctx.raft);
    let w = ctx.watermarks();
    let leader_location = metrics
        .current_leader
        .and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
        })
        .map(|n| n.flight_location());
    json!({
        "node_id": ctx.node_id,
        "cluster_id": ctx.cluster_id.get(),
        "role": role_name(metrics.state),
        "term": metrics.current_term,
        "leader_id": metrics.current_leader,
        "leader_location": leader_location,
        "members": members(ctx),
        "memory_lsn": w.memory_lsn,
        "disk_lsn": w.disk_lsn,
        "replicated_lsn": w.replicated_lsn,
        "s3_lsn": w.s3_lsn,
        "committed_lsn": w.committed_lsn,
        "lag_seconds": tier_lag_seconds(ctx, w.s3_lsn),
        "tier_worker": ctx.state.tier().worker,
        "tier": tier_json(ctx),
        "disk": ctx.disk.status(),
        "state": ctx.state.sizes(),
        "gossip": {
            "states": ctx.gossip.states_known(),
            "states_max": arka_cluster::gossip::STATES_MAX,
            "forget_after_secs": arka_cluster::gossip::STATE_FORGET_AFTER.as_secs(),
        },
        "last_log_index": metrics.last_log_index,
        "snapshot_lsn": metrics.snapshot.map(|l| l.index),
        "uptime_seconds": ctx.started.elapsed().as_secs(),
        "pid": std::process::id(),
    })
}

/// How long the oldest applied entry not yet in object storage has waited (null without
/// tiering).
pub(super) fn tier_lag_seconds(ctx: &Served, s3_lsn: u64) -> Value {
    if ctx.tiering.is_none() {
        return Value::Null;
    }
    json!(ctx
        .apply_clock
        .lag_seconds(s3_lsn, std::time::Instant::now()))
}

/// This node's view of tiering: configuration, its tier worker's state, its WAL.
fn tier_json(ctx: &Served) -> Value {
    let Some(tiering) = &ctx.tiering else {
        return json!({"enabled": false});
    };
    let tier = ctx.state.tier();
    let worker = tiering.status();
    json!({
        "enabled": true,
        "object_store": tiering.storage.base_url(),
        "worker_last_error": worker.last_error,
        "worker_failures": worker.failures,
        "paused_at": tiering.pause.paused(),
        "wal_bytes": tiering.wal_bytes(),
        "wal_first_index": ctx.log.first_index(),
        "retention": tier.retention,
        "held_back": held_back_json(ctx),
        "lake_drops_pending": ctx.state.lake_drops().1,
    })
}

/// The tables the tier worker holds back from Iceberg: `[{table, committed_lsn, reason}]`.
pub(super) fn held_back_json(ctx: &Served) -> Value {
    let commits = ctx.state.table_commits();
    let held = commits.held().iter().map(|(table, held)| {
        json!({"table": table, "committed_lsn": held.committed_lsn, "reason": held.reason})
    });
    Value::Array(held.collect())
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str().map(str::to_string))
}

/// The status as a one-row batch; `members` is a JSON string column.
pub fn status_batch(status: &Value) -> Result<RecordBatch> {
    let ints = [
        "node_id",
        "term",
        "leader_id",
        "memory_lsn",
        "disk_lsn",
        "replicated_lsn",
        "s3_lsn",
        "committed_lsn",
        "tier_worker",
    ];
    let mut fields = vec![Field::new("role", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![text(status, "role")]))];
    for key in ints {
        fields.push(Field::new(key, DataType::Int64, true));
        columns.push(Arc::new(Int64Array::from(vec![int(status, key)])));
    }
    fields.push(Field::new("leader_location", DataType::Utf8, true));
    columns.push(Arc::new(StringArray::from(vec![text(
        status,
        "leader_location",
    )])));
    fields.push(Field::new("lag_seconds", DataType::Float64, true));
    columns.push(Arc::new(Float64Array::from(vec![status
        .get("lag_seconds")
        .and_then(Value::as_f64)])));
    fields.push(Field::new("members", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from(vec![
        status["members"].to_string()
    ])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::internal("status batch", e))
}

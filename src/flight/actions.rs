//! DoAction: admin and metadata actions. Bodies and results are JSON.

use std::collections::BTreeSet;
use std::time::Duration;

use arka_cluster::{Command, CommandResponse, NodeId, NodeInfo};
use arrow_flight::ActionType;
use base64::Engine;
use openraft::ChangeMembers;
use serde::Deserialize;
use serde_json::{json, Value};

use super::status::status_json;
use crate::context::NodeContext;
use crate::error::{Error, Result};
use crate::ipc;
use crate::table::TableName;
use crate::write::propose;

/// Every action with its description, as ListActions reports them.
pub const ACTIONS: &[(&str, &str)] = &[
    ("status", "This node's status: role, term, leader, members and watermarks. Body: none."),
    ("cluster_status", "Every member's role, voter/learner, replication progress and lag. Body: none."),
    ("list_tables", "Every table with its schema, rows, bytes and batches. Body: none."),
    ("create_table", "Create a table. Body: {\"name\": T, \"schema\": base64 Arrow IPC schema}."),
    ("drop_table", "Drop a table and its data. Body: {\"name\": T} or the bare name."),
    ("drop_dataset", "Alias of drop_table."),
    ("get_durability_status", "Watermarks and the level an LSN reached. Body: {\"last_known_lsn\": N, \"producer_id\"?: P, \"seq\"?: S}; with producer_id and seq, the write's LSN and level, or ABORTED if it was lost."),
    ("snapshot", "Build a Raft snapshot (metadata only) now. Body: none."),
    ("add_node", "Add a member. Body: {\"node_id\": N, \"raft_addr\": HOST:PORT, \"flight_addr\": HOST:PORT, \"voter\": bool (default true)}."),
    ("remove_node", "Remove a member. Body: {\"node_id\": N}."),
    ("transfer_leader", "Move leadership to a voter. Body: {\"node_id\": N}."),
];

pub fn action_types() -> Vec<ActionType> {
    ACTIONS
        .iter()
        .map(|(name, description)| ActionType {
            r#type: name.to_string(),
            description: description.to_string(),
        })
        .collect()
}

fn parse_body<T: for<'de> Deserialize<'de>>(action: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::InvalidArgument(format!("bad JSON body for action {action}: {e}")))
}

pub async fn do_action(ctx: &NodeContext, action: &str, body: &[u8]) -> Result<Value> {
    match action {
        "status" => Ok(status_json(ctx)),
        "cluster_status" => Ok(cluster_status(ctx)),
        "list_tables" => Ok(list_tables(ctx)),
        "create_table" => create_table(ctx, body).await,
        "drop_table" | "drop_dataset" => drop_table(ctx, body).await,
        "get_durability_status" => durability_status(ctx, body),
        "snapshot" => snapshot(ctx).await,
        "add_node" => add_node(ctx, body).await,
        "remove_node" => remove_node(ctx, body).await,
        "transfer_leader" => transfer_leader(ctx, body).await,
        other => {
            let known: Vec<&str> = ACTIONS.iter().map(|(n, _)| *n).collect();
            Err(Error::NotFound(format!(
                "unknown action {other:?}; actions: {}",
                known.join(", ")
            )))
        }
    }
}

fn cluster_status(ctx: &NodeContext) -> Value {
    let status = status_json(ctx);
    let healthy = status["leader_id"].is_u64();
    json!({ "healthy": healthy, "node": status })
}

fn list_tables(ctx: &NodeContext) -> Value {
    let tables: Vec<Value> = ctx
        .state
        .tables()
        .into_iter()
        .map(|(name, info)| {
            let fields: Vec<Value> = info
                .schema
                .fields()
                .iter()
                .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
                .collect();
            json!({
                "name": name.as_str(),
                "schema": fields,
                "rows": info.counts.rows,
                "bytes": info.counts.bytes,
                "batches": info.counts.batches,
                "created_lsn": info.meta.created_lsn,
            })
        })
        .collect();
    json!({ "tables": tables })
}

async fn submit_command(
    ctx: &NodeContext,
    make: impl FnOnce(arka_cluster::RequestId) -> Command,
) -> Result<CommandResponse> {
    ctx.writes.ensure_leader()?;
    let (request, _lsn) = ctx.acks().register();
    let command = make(request);
    propose(&ctx.raft, ctx.writes.acks().clone(), command)
        .await?
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTable {
    name: String,
    schema: String,
}

async fn create_table(ctx: &NodeContext, body: &[u8]) -> Result<Value> {
    let req: CreateTable = parse_body("create_table", body)?;
    let name = TableName::parse(&req.name).map_err(Error::InvalidArgument)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(req.schema.trim())
        .map_err(|e| Error::InvalidArgument(format!("create_table: schema is not base64: {e}")))?;
    let schema = ipc::decode_client_schema(&raw).map_err(|e| {
        Error::InvalidArgument(format!(
            "create_table: schema is not an Arrow IPC schema: {e}"
        ))
    })?;
    let schema_ipc =
        ipc::encode_schema(&schema).map_err(|e| Error::internal("encode schema", e))?;
    let table = name.to_string();
    match submit_command(ctx, move |request| Command::CreateTable {
        name: table,
        schema_ipc,
        request,
    })
    .await?
    {
        CommandResponse::TableCreated { created } => {
            Ok(json!({"name": name.as_str(), "created": created}))
        }
        CommandResponse::Rejected { reason } => Err(Error::InvalidArgument(reason)),
        other => Err(Error::Internal(format!(
            "unexpected answer to create_table: {other:?}"
        ))),
    }
}

fn table_from_body(action: &str, body: &[u8]) -> Result<TableName> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::InvalidArgument(format!("{action}: body is not UTF-8")))?;
    let name = if text.trim_start().starts_with('{') {
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        parse_body::<Named>(action, body)?.name
    } else {
        text.trim().to_string()
    };
    TableName::parse(&name).map_err(Error::InvalidArgument)
}

async fn drop_table(ctx: &NodeContext, body: &[u8]) -> Result<Value> {
    let name = table_from_body("drop_table", body)?;
    let table = name.to_string();
    match submit_command(ctx, move |request| Command::DropTable {
        name: table,
        request,
    })
    .await?
    {
        CommandResponse::TableDropped { existed: true } => {
            Ok(json!({"name": name.as_str(), "dropped": true}))
        }
        CommandResponse::TableDropped { existed: false } => {
            Err(Error::NotFound(format!("table {name} not found")))
        }
        other => Err(Error::Internal(format!(
            "unexpected answer to drop_table: {other:?}"
        ))),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DurabilityQuery {
    last_known_lsn: Option<u64>,
    /// With `seq`: ask about one idempotent write, so that a client that lost its stream can
    /// learn whether the write it holds a MEMORY/LOCAL_DISK ack for survived.
    producer_id: Option<String>,
    seq: Option<i64>,
}

fn durability_status(ctx: &NodeContext, body: &[u8]) -> Result<Value> {
    let req: DurabilityQuery = if body.is_empty() {
        DurabilityQuery::default()
    } else {
        parse_body("get_durability_status", body)?
    };
    let w = ctx.watermarks();
    let mut out = serde_json::to_value(w).map_err(|e| Error::internal("watermarks", e))?;
    if let Some(lsn) = req.last_known_lsn {
        out["last_known_lsn"] = json!(lsn);
        out["level"] = json!(w.level_of(lsn));
    }
    match (req.producer_id, req.seq) {
        (Some(producer), Some(seq)) => {
            if let Some(original) = ctx.state.dedup_lookup(&producer, seq)? {
                out["lsn"] = json!(original);
                out["level"] = json!(w.level_of(original));
            } else if let Some(lsn) = req.last_known_lsn.filter(|l| *l <= w.replicated_lsn) {
                return Err(Error::Aborted {
                    first_lost_lsn: lsn,
                    reason: format!("producer {producer:?} seq {seq} was never committed; lsn {lsn} now holds other data"),
                });
            } else {
                out["level"] = Value::Null;
            }
        }
        (None, None) => {}
        _ => {
            return Err(Error::InvalidArgument(
                "get_durability_status: give producer_id and seq together".into(),
            ))
        }
    }
    Ok(out)
}

async fn snapshot(ctx: &NodeContext) -> Result<Value> {
    ctx.raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| Error::internal("snapshot", e))?;
    Ok(json!({"triggered": true, "applied_lsn": ctx.state.applied_lsn()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRef {
    node_id: NodeId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNode {
    node_id: NodeId,
    raft_addr: String,
    flight_addr: String,
    #[serde(default = "default_true")]
    voter: bool,
}

/// How long `add_node` waits for a new node to catch up before giving up on promoting it.
const ADD_NODE_CATCH_UP_MAX: Duration = Duration::from_secs(60);

fn default_true() -> bool {
    true
}

fn membership_ids(ctx: &NodeContext) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let metrics = crate::raft::metrics(&ctx.raft);
    let membership = metrics.membership_config.membership();
    let all = membership.nodes().map(|(id, _)| *id).collect();
    let voters = membership.voter_ids().collect();
    (all, voters)
}

fn raft_failed(action: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{action} failed: {e}"))
}

async fn add_node(ctx: &NodeContext, body: &[u8]) -> Result<Value> {
    let req: AddNode = parse_body("add_node", body)?;
    ctx.writes.ensure_leader()?;
    let (members, _) = membership_ids(ctx);
    if members.contains(&req.node_id) {
        return Err(Error::InvalidArgument(format!(
            "node {} is already a member",
            req.node_id
        )));
    }
    let probe = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&req.raft_addr),
    )
    .await;
    if !matches!(probe, Ok(Ok(_))) {
        return Err(Error::Unavailable(format!(
            "cannot reach node {} at raft address {}; start it first",
            req.node_id, req.raft_addr
        )));
    }
    let node = NodeInfo {
        raft_addr: req.raft_addr,
        flight_addr: req.flight_addr,
    };
    // Blocking: returns once the learner has caught up, so that promoting it cannot stall
    // commits; bounded so that a node that dies while catching up does not hang the call.
    let added = tokio::time::timeout(
        ADD_NODE_CATCH_UP_MAX,
        ctx.raft.add_learner(req.node_id, node, true),
    )
    .await
    .map_err(|_| {
        Error::Unavailable(format!(
            "node {} joined as a learner but did not catch up within {ADD_NODE_CATCH_UP_MAX:?}; it was not promoted",
            req.node_id
        ))
    })?;
    added.map_err(|e| raft_failed("add_node", e))?;
    if req.voter {
        let ids = BTreeSet::from([req.node_id]);
        ctx.raft
            .change_membership(ChangeMembers::AddVoterIds(ids), true)
            .await
            .map_err(|e| raft_failed("add_node (promote)", e))?;
    }
    Ok(json!({"node_id": req.node_id, "voter": req.voter}))
}

async fn remove_node(ctx: &NodeContext, body: &[u8]) -> Result<Value> {
    let req: NodeRef = parse_body("remove_node", body)?;
    ctx.writes.ensure_leader()?;
    let (members, voters) = membership_ids(ctx);
    if !members.contains(&req.node_id) {
        return Err(Error::NotFound(format!(
            "node {} is not a member",
            req.node_id
        )));
    }
    if voters.contains(&req.node_id) && voters.len() == 1 {
        return Err(Error::InvalidArgument(format!(
            "node {} is the last voter; a cluster cannot remove its last voter",
            req.node_id
        )));
    }
    let ids = BTreeSet::from([req.node_id]);
    let change = if voters.contains(&req.node_id) {
        ChangeMembers::RemoveVoters(ids)
    } else {
        ChangeMembers::RemoveNodes(ids)
    };
    ctx.raft
        .change_membership(change, false)
        .await
        .map_err(|e| raft_failed("remove_node", e))?;
    Ok(json!({"node_id": req.node_id, "removed": true}))
}

async fn transfer_leader(ctx: &NodeContext, body: &[u8]) -> Result<Value> {
    let req: NodeRef = parse_body("transfer_leader", body)?;
    ctx.writes.ensure_leader()?;
    let (_, voters) = membership_ids(ctx);
    if !voters.contains(&req.node_id) {
        return Err(Error::InvalidArgument(format!(
            "node {} is not a voter; leadership can only move to a voter",
            req.node_id
        )));
    }
    ctx.raft
        .trigger()
        .transfer_leader(req.node_id)
        .await
        .map_err(|e| raft_failed("transfer_leader", e))?;
    Ok(json!({"node_id": req.node_id, "transferring": true}))
}

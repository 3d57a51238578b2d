//! DoAction: admin and metadata actions. Bodies and results are JSON.

use arka_cluster::{Command, CommandResponse};
use arrow_flight::ActionType;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::served::Served;
use super::status::status_json;
use super::{durability_status, members, tiering};
use crate::auth::{Caller, Right};
use crate::error::{Error, Result};
use crate::ipc;
use crate::membership::report::cluster_report;
use crate::table::TableName;
use crate::write::PRODUCER_ID_BYTES_MAX;

/// Every action with its description, as ListActions reports them.
pub const ACTIONS: &[(&str, &str)] = &[
    ("status", "This node's status: role, term, leader, members and watermarks. Body: none."),
    ("cluster_status", "Every member's role, voter/learner, replication progress and lag. Body: none."),
    ("list_tables", "Every table with its schema, rows, bytes and batches. Body: none."),
    ("create_table", "Create a table. Body: {\"name\": T, \"schema\": base64 Arrow IPC schema}."),
    ("drop_table", "Drop a table and its data. Body: {\"name\": T} or the bare name."),
    ("drop_dataset", "Alias of drop_table."),
    ("get_durability_status", "Watermarks and the level an LSN reached. Body: {\"last_known_lsn\": N, \"term\"?: T, \"leader_id\"?: L, \"producer_id\"?: P, \"seq\"?: S, \"limit\"?: L}; with term and leader_id (from the ack row), what became of the write that leader appended at N: written, pending, unknown, or ABORTED if it was lost; with producer_id and seq, what became of that write: written (its LSN and level), not_written, unknown, or ABORTED if it was lost; with producer_id alone, its writes above last_known_lsn with their levels, a page of at most limit."),
    ("register_producer", "Start a new session of a producer: fences every earlier instance with the same id and returns the epoch its writes must carry and the seq it goes on from. Body: {\"producer_id\": P}."),
    ("snapshot", "Build a Raft snapshot (metadata only) now. Body: none."),
    ("add_node", "Add a member as a learner and, with voter (default true), promote it once caught up. Body: {\"node_id\": N, \"raft_addr\"?: HOST:PORT, \"flight_addr\"?: HOST:PORT, \"voter\"?: bool}; addresses default to what gossip knows of the node."),
    ("remove_node", "Demote and remove a member; removing the leader moves leadership first. Body: {\"node_id\": N}."),
    ("transfer_leader", "Move leadership to a voter and wait until it took over. Body: {\"node_id\": N}."),
    ("flush", "Seal, upload and commit to Iceberg everything applied now, and return the watermarks. Body: none."),
    ("set_retention", "How much of the WAL every node keeps once it is in object storage. Body: {\"bytes\": N, \"ms\": N}."),
    ("inject_fault", "Cut this node off from its peers (Raft and gossip) or heal it, answer the leader's appends late, stall its WAL's group commits or make them skip fdatasync, or stop its tier worker at a stage; only with fault-injection on (which also makes SIGPWR a simulated power loss). Body: {\"isolate\"?: bool, \"answer_delay_ms\"?: int, \"wal_sync_delay_ms\"?: int, \"wal_skip_fsync\"?: bool, \"tier_pause\"?: \"before_commit\" | \"before_watermark\" | \"before_lake_drop\" | \"before_lake_drop_report\" | null}."),
];

/// The right each action needs (an unknown action needs only reading, and is then
/// `NOT_FOUND`).
pub fn right_of(action: &str) -> Right {
    match action {
        "create_table" | "register_producer" | "flush" => Right::Write,
        "drop_table" | "drop_dataset" | "snapshot" | "add_node" | "remove_node"
        | "transfer_leader" | "set_retention" | "inject_fault" => Right::Admin,
        _ => Right::Read,
    }
}

/// Actions whose target is a table, held to the caller's table grants.
pub fn targets_a_table(action: &str) -> bool {
    matches!(action, "create_table" | "drop_table" | "drop_dataset")
}

/// What an action is about, for the audit log and grants: its body's `name` (a table),
/// `node_id` or `producer_id`, or a bare name; empty when the body names none.
pub fn target_of(action: &str, body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        // `drop_table` takes a bare name.
        let text = String::from_utf8_lossy(body);
        return text.trim().chars().take(128).collect();
    };
    let key = match action {
        "add_node" | "remove_node" | "transfer_leader" => "node_id",
        "register_producer" => "producer_id",
        _ => "name",
    };
    match &value {
        Value::String(name) => name.chars().take(128).collect(),
        Value::Object(fields) => fields
            .get(key)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect(),
        _ => String::new(),
    }
}

/// Leaves in a `list_tables` answer only the tables `caller` has a grant for.
pub fn keep_granted_tables(list: &mut Value, caller: &Caller) {
    if let Some(tables) = list["tables"].as_array_mut() {
        tables.retain(|t| t["name"].as_str().is_some_and(|n| caller.may_use_table(n)));
    }
}

pub fn action_types() -> Vec<ActionType> {
    ACTIONS
        .iter()
        .map(|(name, description)| ActionType {
            r#type: name.to_string(),
            description: description.to_string(),
        })
        .collect()
}

pub(super) fn parse_body<T: for<'de> Deserialize<'de>>(action: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::InvalidArgument(format!("bad JSON body for action {action}: {e}")))
}

/// Longest action name; every action's is far shorter.
pub const ACTION_NAME_BYTES_MAX: usize = 64;
/// Largest action body a node parses (`create_table` carries a schema, base64).
pub const ACTION_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Refuses an action whose name or body is over its limit, before anything else reads it.
pub fn check_sizes(action: &str, body: &[u8]) -> Result<()> {
    if action.len() > ACTION_NAME_BYTES_MAX {
        return Err(Error::InvalidArgument(format!(
            "unknown action {}",
            crate::quote::quoted(action)
        )));
    }
    if body.len() > ACTION_BODY_BYTES_MAX {
        return Err(Error::ResourceExhausted(format!(
            "the body of {action} is {} bytes, over the limit of {ACTION_BODY_BYTES_MAX}",
            body.len()
        )));
    }
    Ok(())
}

pub async fn do_action(ctx: &Served, action: &str, body: &[u8]) -> Result<Value> {
    match action {
        "status" => Ok(status_json(ctx)),
        "cluster_status" => cluster_status(ctx),
        "list_tables" => Ok(list_tables(ctx)),
        "create_table" => create_table(ctx, body).await,
        "drop_table" | "drop_dataset" => drop_table(ctx, body).await,
        "get_durability_status" => durability_status::answer(ctx, body),
        "register_producer" => register_producer(ctx, body).await,
        "snapshot" => snapshot(ctx).await,
        "add_node" => members::add_node(ctx, body).await,
        "remove_node" => members::remove_node(ctx, body).await,
        "transfer_leader" => members::transfer_leader(ctx, body).await,
        "inject_fault" => members::inject_fault(ctx, body),
        "flush" => tiering::flush(ctx, body).await,
        "set_retention" => tiering::set_retention(ctx, body).await,
        other => {
            let known: Vec<&str> = ACTIONS.iter().map(|(n, _)| *n).collect();
            Err(Error::NotFound(format!(
                "unknown action {}; actions: {}",
                crate::quote::quoted(other),
                known.join(", ")
            )))
        }
    }
}

fn cluster_status(ctx: &Served) -> Result<Value> {
    serde_json::to_value(cluster_report(&ctx.member_node()))
        .map_err(|e| Error::internal("cluster_status", e))
}

fn list_tables(ctx: &Served) -> Value {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTable {
    name: String,
    schema: String,
}

async fn create_table(ctx: &Served, body: &[u8]) -> Result<Value> {
    let req: CreateTable = parse_body("create_table", body)?;
    let name = TableName::parse(&req.name).map_err(Error::from)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(req.schema.trim())
        .map_err(|e| Error::InvalidArgument(format!("create_table: schema is not base64: {e}")))?;
    let schema = ipc::decode_client_schema(&raw).map_err(|e| {
        Error::InvalidArgument(format!(
            "create_table: schema is not an Arrow IPC schema: {e}"
        ))
    })?;
    ctx.writes.check_schema(&name, &schema)?;
    let schema_ipc =
        ipc::encode_schema(&schema).map_err(|e| Error::internal("encode schema", e))?;
    let table = name.to_string();
    match ctx
        .writes
        .propose_command(move |request| Command::CreateTable {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterProducer {
    producer_id: String,
}

async fn register_producer(ctx: &Served, body: &[u8]) -> Result<Value> {
    let req: RegisterProducer = parse_body("register_producer", body)?;
    if req.producer_id.is_empty() || req.producer_id.len() > PRODUCER_ID_BYTES_MAX {
        return Err(Error::InvalidArgument(format!(
            "register_producer: producer_id must be a non-empty string of at most {PRODUCER_ID_BYTES_MAX} bytes"
        )));
    }
    let producer_id = req.producer_id.clone();
    match ctx
        .writes
        .propose_command(move |request| Command::RegisterProducer {
            producer_id,
            request,
        })
        .await?
    {
        CommandResponse::ProducerRegistered { epoch, next_seq } => Ok(json!({
            "producer_id": req.producer_id,
            "epoch": epoch,
            "next_seq": next_seq,
        })),
        other => Err(Error::Internal(format!(
            "unexpected answer to register_producer: {other:?}"
        ))),
    }
}

fn table_from_body(action: &str, body: &[u8]) -> Result<TableName> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::InvalidArgument(format!("{action}: body is not UTF-8")))?;
    let name = if text.trim_start().starts_with('{') {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            name: String,
        }
        parse_body::<Named>(action, body)?.name
    } else {
        text.trim().to_string()
    };
    TableName::parse(&name).map_err(Error::from)
}

async fn drop_table(ctx: &Served, body: &[u8]) -> Result<Value> {
    let name = table_from_body("drop_table", body)?;
    let table = name.to_string();
    match ctx
        .writes
        .propose_command(move |request| Command::DropTable {
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

async fn snapshot(ctx: &Served) -> Result<Value> {
    ctx.raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| Error::internal("snapshot", e))?;
    Ok(json!({"triggered": true, "applied_lsn": ctx.state.applied_lsn()}))
}

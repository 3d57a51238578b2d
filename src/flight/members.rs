//! The membership actions: add_node, remove_node, transfer_leader, inject_fault.

use std::time::Duration;

use arka_cluster::membership::MembershipError;
use arka_cluster::{NodeId, NodeInfo};
use serde::Deserialize;
use serde_json::{json, Value};

use super::actions::parse_body;
use super::served::Served;
use crate::error::{Error, Result};
use crate::internal::{self, InternalRequest};
use crate::tier::TierStage;

/// How long `add_node` waits for a new node to catch up before giving up on promoting it.
const ADD_NODE_CATCH_UP_MAX: Duration = Duration::from_secs(60);
/// How long the old leader waits for the new one to finish a removal it handed over.
const FORWARD_WAIT_MAX: Duration = Duration::from_secs(30);

fn membership_error(ctx: &Served, e: MembershipError) -> Error {
    match e {
        MembershipError::NotLeader => Error::NotLeader {
            leader: crate::raft::leader_location(&ctx.raft),
        },
        MembershipError::AlreadyMember(_)
        | MembershipError::LastVoter(_)
        | MembershipError::NotVoter(_)
        | MembershipError::WrongNode { .. }
        | MembershipError::ForeignCluster { .. } => Error::InvalidArgument(e.to_string()),
        MembershipError::NotMember(_) => Error::NotFound(e.to_string()),
        MembershipError::NoSuccessor(_)
        | MembershipError::Unreachable { .. }
        | MembershipError::CatchUpTimeout(..)
        | MembershipError::LeadershipMoved(_)
        | MembershipError::Unsettled(_)
        | MembershipError::Raft { .. } => Error::Unavailable(e.to_string()),
    }
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
    raft_addr: Option<String>,
    flight_addr: Option<String>,
    #[serde(default = "default_true")]
    voter: bool,
}

fn default_true() -> bool {
    true
}

/// The addresses to add a node at: the body's, else the membership's (to promote a
/// learner), else what gossip heard from the node.
fn addresses(ctx: &Served, req: &AddNode) -> Result<NodeInfo> {
    let known = crate::raft::member(&ctx.raft, req.node_id).or_else(|| {
        let view = ctx.gossip.view();
        view.peers.get(&req.node_id).map(|p| p.peer.node_info())
    });
    let raft_addr = req
        .raft_addr
        .clone()
        .or_else(|| known.as_ref().map(|n| n.raft_addr.clone()));
    let flight_addr = req
        .flight_addr
        .clone()
        .or_else(|| known.as_ref().map(|n| n.flight_addr.clone()));
    match (raft_addr, flight_addr) {
        (Some(raft_addr), Some(flight_addr)) => Ok(NodeInfo {
            raft_addr,
            flight_addr,
        }),
        _ => Err(Error::InvalidArgument(format!(
            "add_node: node {} is not known to gossip; give raft_addr and flight_addr",
            req.node_id
        ))),
    }
}

pub async fn add_node(ctx: &Served, body: &[u8]) -> Result<Value> {
    let req: AddNode = parse_body("add_node", body)?;
    ctx.writes.ensure_leader()?;
    let node = addresses(ctx, &req)?;
    ctx.membership()
        .add(req.node_id, node, req.voter, ADD_NODE_CATCH_UP_MAX)
        .await
        .map_err(|e| membership_error(ctx, e))?;
    Ok(json!({"node_id": req.node_id, "voter": req.voter}))
}

pub async fn remove_node(ctx: &Served, body: &[u8]) -> Result<Value> {
    let req: NodeRef = parse_body("remove_node", body)?;
    match ctx.membership().remove(req.node_id).await {
        Ok(()) => Ok(json!({"node_id": req.node_id, "removed": true})),
        Err(MembershipError::LeadershipMoved(new_leader)) => {
            forward_removal(ctx, new_leader, req.node_id).await
        }
        Err(e) => Err(membership_error(ctx, e)),
    }
}

/// The leader removing itself handed leadership to `new_leader`; asks it to finish.
async fn forward_removal(ctx: &Served, new_leader: NodeId, node_id: NodeId) -> Result<Value> {
    let request = InternalRequest::RemoveNode { node_id };
    internal::send(&ctx.raft, &ctx.internal, new_leader, &request, FORWARD_WAIT_MAX)
        .await
        .map_err(|e| {
            Error::Unavailable(format!(
                "leadership moved to node {new_leader}; removing node {node_id} there failed: {e}; retry"
            ))
        })?;
    Ok(json!({"node_id": node_id, "removed": true}))
}

/// The new leader's side of a forwarded removal.
pub(crate) async fn remove_here(ctx: &Served, node_id: NodeId) -> Result<()> {
    ctx.membership()
        .remove(node_id)
        .await
        .map_err(|e| membership_error(ctx, e))
}

pub async fn transfer_leader(ctx: &Served, body: &[u8]) -> Result<Value> {
    let req: NodeRef = parse_body("transfer_leader", body)?;
    ctx.membership()
        .transfer(req.node_id)
        .await
        .map_err(|e| membership_error(ctx, e))?;
    Ok(json!({"node_id": req.node_id, "leader_id": req.node_id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fault {
    isolate: Option<bool>,
    /// Answer the leader's AppendEntries this much late (0: at once).
    answer_delay_ms: Option<u64>,
    /// Hold each WAL group commit this long before it writes and syncs (0: not at all).
    wal_sync_delay_ms: Option<u64>,
    /// Skip the WAL's `fdatasync` and report writes durable anyway (a disk that lies).
    wal_skip_fsync: Option<bool>,
    /// Stop the tier worker at this stage (`null`: let it go on).
    #[serde(default, deserialize_with = "present")]
    tier_pause: Option<Option<TierStage>>,
}

/// Tells a `null` field apart from a missing one.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<TierStage>>, D::Error> {
    Option::<TierStage>::deserialize(d).map(Some)
}

pub fn inject_fault(ctx: &Served, body: &[u8]) -> Result<Value> {
    if !ctx.fault_injection {
        return Err(Error::PermissionDenied(
            "inject_fault: fault injection is off on this node (start it with --fault-injection)"
                .into(),
        ));
    }
    let req: Fault = parse_body("inject_fault", body)?;
    if let Some(isolate) = req.isolate {
        ctx.faults.set_isolated(isolate);
        tracing::warn!(isolated = isolate, "network fault injected");
    }
    if let Some(ms) = req.answer_delay_ms {
        ctx.faults
            .set_answer_delay(std::time::Duration::from_millis(ms));
        tracing::warn!(answer_delay_ms = ms, "raft answer delay injected");
    }
    if let Some(ms) = req.wal_sync_delay_ms {
        ctx.wal_faults
            .set_sync_delay(std::time::Duration::from_millis(ms));
        tracing::warn!(wal_sync_delay_ms = ms, "wal sync delay injected");
    }
    if let Some(skip) = req.wal_skip_fsync {
        ctx.wal_faults.set_skip_fsync(skip);
        tracing::warn!(wal_skip_fsync = skip, "wal fsync fault injected");
    }
    if let Some(stage) = req.tier_pause {
        let tiering = ctx.tiering.as_ref().ok_or_else(|| {
            Error::InvalidArgument("inject_fault: tiering is not configured on this node".into())
        })?;
        tiering.pause.set(stage);
    }
    Ok(json!({"node_id": ctx.node_id, "isolated": ctx.faults.is_isolated()}))
}

//! How the tier worker's results reach the Raft log: proposed directly when the worker is
//! the leader, otherwise sent to the leader (Flight action `tier_report`), which proposes
//! them. The state machine refuses reports of a node that is no longer the tier worker.

use arka_cluster::{Command, CommandResponse, NodeId, RequestId, TieredFile};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::context::NodeContext;
use crate::error::{Error, Result};

/// What the tier worker tells the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TierReport {
    /// The range `(from_lsn, to_lsn]` is in object storage as `files`.
    Uploaded {
        worker: NodeId,
        from_lsn: u64,
        to_lsn: u64,
        files: Vec<TieredFile>,
    },
    /// Everything up to `committed_lsn` is in committed Iceberg snapshots.
    Committed { worker: NodeId, committed_lsn: u64 },
}

impl TierReport {
    fn into_command(self, request: RequestId) -> Command {
        match self {
            TierReport::Uploaded {
                worker,
                from_lsn,
                to_lsn,
                files,
            } => Command::TierUploaded {
                worker,
                from_lsn,
                to_lsn,
                files,
                request,
            },
            TierReport::Committed {
                worker,
                committed_lsn,
            } => Command::TierCommitted {
                worker,
                committed_lsn,
                request,
            },
        }
    }
}

/// The leader's side of `tier_report`.
pub async fn accept(ctx: &NodeContext, report: TierReport) -> Result<()> {
    match ctx
        .writes
        .propose_command(|request| report.into_command(request))
        .await?
    {
        CommandResponse::Done => Ok(()),
        CommandResponse::Rejected { reason } => Err(Error::InvalidArgument(reason)),
        other => Err(Error::Internal(format!(
            "unexpected answer to a tier report: {other:?}"
        ))),
    }
}

/// Sends reports to the leader, keeping one connection while the leader stays the same.
#[derive(Default)]
pub struct Reporter {
    leader: Option<Client>,
}

impl Reporter {
    pub async fn send(&mut self, ctx: &NodeContext, report: TierReport) -> Result<()> {
        if ctx.raft.is_leader() {
            return accept(ctx, report).await;
        }
        let location = crate::raft::leader_location(&ctx.raft)
            .ok_or_else(|| Error::Unavailable("no leader known to report to".into()))?;
        if self.leader.as_ref().is_none_or(|c| c.addr() != location) {
            let client = Client::connect(&location)
                .await
                .map_err(|e| Error::Unavailable(format!("connect to leader {location}: {e}")))?;
            self.leader = Some(client);
        }
        let Some(client) = &self.leader else {
            return Err(Error::Unavailable("no leader connection".into()));
        };
        let body = serde_json::to_value(&report).map_err(|e| Error::internal("tier report", e))?;
        match client.action("tier_report", &body).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.leader = None;
                Err(Error::Unavailable(format!(
                    "tier report to {location}: {e}"
                )))
            }
        }
    }
}

//! How the tier worker's results reach the Raft log: proposed directly when the worker is
//! the leader, otherwise sent to the leader over the internal RPC, which proposes them. The
//! leader refuses files outside the configured object store; the state machine refuses
//! reports of a node that is no longer the tier worker, and ranges whose writes have no file.

use std::time::Duration;

use arka_cluster::network::InternalClient;
use arka_cluster::{Command, CommandResponse, RequestId, TieredFile};

use crate::error::{Error, Result};
use crate::internal::{self, InternalRequest, TierReport};
use crate::propose::Proposer;
use crate::raft::Raft;

use super::ObjectStorage;

/// The log entry a report becomes.
fn command_of(report: TierReport, request: RequestId) -> Command {
    match report {
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
            held_back,
        } => Command::TierCommittedTables {
            worker,
            committed_lsn,
            held_back,
            request,
        },
        TierReport::TableDropped {
            worker,
            dropped_lsn,
        } => Command::TierTableDropped {
            worker,
            dropped_lsn,
            request,
        },
    }
}

/// How long a report to the leader may take (a proposal and its commit).
const REPORT_WAIT_MAX: Duration = Duration::from_secs(30);

/// Carries the tier worker's reports to the Raft log (cheap to clone).
#[derive(Clone)]
pub struct Reporter {
    raft: Raft,
    internal: InternalClient,
    proposer: Proposer,
    /// This node's object store: a report may name files under it only.
    storage: Option<ObjectStorage>,
}

impl Reporter {
    pub fn new(
        raft: Raft,
        internal: InternalClient,
        proposer: Proposer,
        storage: Option<ObjectStorage>,
    ) -> Self {
        Self {
            raft,
            internal,
            proposer,
            storage,
        }
    }

    /// Sends a report to the leader: proposed here when this node leads, else over the
    /// internal RPC.
    pub async fn send(&self, report: TierReport) -> Result<()> {
        if self.raft.is_leader() {
            return self.accept(report).await;
        }
        let leader = crate::raft::leader_id(&self.raft)
            .ok_or_else(|| Error::Unavailable("no leader known to report to".into()))?;
        let request = InternalRequest::TierReport(report);
        internal::send(
            &self.raft,
            &self.internal,
            leader,
            &request,
            REPORT_WAIT_MAX,
        )
        .await
    }

    /// The leader's side of a tier report.
    pub async fn accept(&self, report: TierReport) -> Result<()> {
        if let TierReport::Uploaded { files, .. } = &report {
            self.check_files(files)?;
        }
        let proposed = self
            .proposer
            .propose_command(|request| command_of(report, request));
        match proposed.await? {
            CommandResponse::Done => Ok(()),
            CommandResponse::Rejected { reason } => Err(Error::InvalidArgument(reason)),
            other => Err(Error::Internal(format!(
                "unexpected answer to a tier report: {other:?}"
            ))),
        }
    }

    /// Every file must be one the tier worker writes: `data/<table>/<name>.parquet` under
    /// the configured object store, so that no report can point readers anywhere else.
    fn check_files(&self, files: &[TieredFile]) -> Result<()> {
        let storage = (self.storage.as_ref()).ok_or_else(|| {
            Error::InvalidArgument("tiering is not configured on the leader".into())
        })?;
        for file in files {
            let prefix = storage.url_of(&format!("data/{}/", file.table));
            let name = file.path.strip_prefix(&prefix).unwrap_or_default();
            let plain_name = !name.is_empty()
                && !name.contains(['/', '\\', '?', '#', '%'])
                && !name.starts_with('.')
                && name.ends_with(".parquet");
            if !plain_name || file.min_lsn > file.max_lsn {
                return Err(Error::InvalidArgument(format!(
                    "tiered file {:?} of table {:?} (lsn {}..={}) is not a file under {prefix}",
                    file.path, file.table, file.min_lsn, file.max_lsn
                )));
            }
        }
        Ok(())
    }
}

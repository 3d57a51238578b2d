//! Proposing commands through Raft as the leader: the lease check before a proposal, and
//! openraft's answers mapped to the node's errors. Writes, tier reports, table and
//! membership commands all go through here.

use std::sync::Arc;
use std::time::Duration;

use arka_cluster::{Command, CommandResponse, RequestId};
use futures::future::BoxFuture;
use openraft::errors::{ClientWriteError, ForwardReason};
use openraft::impls::ProgressResponder;
use openraft::type_config::async_runtime::{Instant as _, WatchReceiver};

use crate::acks::AckRouter;
use crate::error::{Error, Result};
use crate::raft::{leader_location, Raft};

/// How many leases a write waits for the leader to hear from a quorum before it is refused.
const LEASE_WAIT_LEASES: u32 = 10;

const LEASE_LOST: &str = "the leader has not heard from a quorum within its lease (the maximum election timeout), nor while the write waited for it; the write was not appended: retry";

/// Proposes commands as the leader (cheap to clone).
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    acks: Arc<AckRouter>,
}

impl Proposer {
    pub fn new(raft: Raft, acks: Arc<AckRouter>) -> Self {
        Self { raft, acks }
    }

    /// Fails with a redirect unless this node is the leader.
    pub fn ensure_leader(&self) -> Result<()> {
        if self.raft.is_leader() {
            return Ok(());
        }
        Err(Error::NotLeader {
            leader: leader_location(&self.raft),
        })
    }

    /// Fails with a redirect unless this node is the leader; waits while it leads but has not
    /// heard from a quorum recently enough for Raft to take a write. Raft refuses a proposal
    /// unless a quorum answered within its lease (the maximum election timeout): right after
    /// an election no follower has answered yet (openraft does not count the votes), and
    /// under saturating load a follower's answer can come later than that, while it works
    /// through what is in flight to it. Either way the leader can take the write a moment
    /// later, so the write waits (backpressure) instead of being refused, up to
    /// [`LEASE_WAIT_LEASES`] leases; past that the leader has lost its quorum and the write
    /// is refused as not appended. It proceeds only with half the lease left, so that Raft,
    /// which checks again when it takes the proposal from its queue, still finds it held.
    /// Awaited before each proposal of a session, so its writes keep their order.
    pub async fn ensure_writable_leader(&self) -> Result<()> {
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let fresh = lease / 2;
        let deadline = tokio::time::Instant::now() + lease * LEASE_WAIT_LEASES;
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_watched();
                if !m.state.is_leader() {
                    drop(m);
                    return self.ensure_leader();
                }
                if m.last_quorum_acked.is_some_and(|at| at.elapsed() < fresh) {
                    return Ok(());
                }
                // The only voter is its own quorum: nothing refreshes its lease while it is
                // idle, and nothing needs to.
                if m.membership_config.membership().voter_ids().eq([m.id]) {
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Shutdown),
                Err(_) => return Err(Error::Unavailable(LEASE_LOST.into())),
            }
        }
    }

    /// Proposes a non-write command (catalog, tiering, retention) on this node, which must
    /// be the leader, and waits until it is applied.
    pub async fn propose_command(
        &self,
        make: impl FnOnce(RequestId) -> Command,
    ) -> Result<CommandResponse> {
        self.ensure_writable_leader().await?;
        let (request, _lsn) = self.acks.register();
        propose(&self.raft, self.acks.clone(), make(request))
            .await?
            .await
    }
}

/// Hands a command to Raft now (so that a session's writes keep their order) and returns the
/// future of its outcome, with openraft's answer mapped to the node's errors.
pub async fn propose(
    raft: &Raft,
    acks: Arc<AckRouter>,
    command: Command,
) -> Result<BoxFuture<'static, Result<CommandResponse>>> {
    let request = command.request();
    let (responder, outcome) = ProgressResponder::complete_only();
    if let Err(fatal) = raft.client_write_ff(command, Some(responder)).await {
        acks.forget(request);
        return Err(Error::Unavailable(format!("raft is not running: {fatal}")));
    }
    Ok(Box::pin(async move {
        let Ok(result) = outcome.await else {
            acks.forget(request);
            return Err(Error::Shutdown);
        };
        match result {
            Ok(response) => Ok(response.data),
            Err(e) => {
                acks.forget(request);
                Err(match e {
                    ClientWriteError::ForwardToLeader(f)
                        if f.reason == ForwardReason::LeaseExpired =>
                    {
                        Error::Unavailable(LEASE_LOST.into())
                    }
                    ClientWriteError::ForwardToLeader(f) => Error::NotLeader {
                        leader: f.leader_node.map(|n| n.flight_location()),
                    },
                    ClientWriteError::LogEntryDiscarded(f) => Error::Aborted {
                        first_lost_lsn: 0,
                        reason: format!("the leader changed (now {:?})", f.leader_id),
                    },
                    other => Error::internal("raft write", other),
                })
            }
        }
    }))
}

//! The order in which a node stops (SIGTERM, or the end of `arka dev`):
//!
//! 1. the Flight service refuses new calls (`UNAVAILABLE`, naming this node as shutting
//!    down);
//! 2. a leader hands leadership to the most caught-up other voter and waits until it took
//!    over, so that the cluster does not wait an election timeout for a new leader; the
//!    writes its sessions had proposed are committed by the new leader or answered with a
//!    redirect;
//! 3. the streams still open end with `UNAVAILABLE` and the new leader's location (a
//!    producer resends what was not acknowledged, with its producer id and seqs, there);
//! 4. gossip tells the other members that this node leaves;
//! 5. the Flight server stops;
//! 6. the components stop: each finishes or abandons its step (every step of the tier
//!    worker and the purge is idempotent, so an abandoned one is completed later);
//! 7. Raft stops, then its server (the leader's AppendEntries keep a follower's connections
//!    busy until then, and there is nothing left for them to finish);
//! 8. the WAL makes every entry it was handed durable;
//! 9. the metadata store is flushed.
//!
//! Each wait is bounded, so that the node exits well within the few seconds a supervisor
//! gives it before SIGKILL.

use std::time::Duration;

use anyhow::Context;

use super::Parts;
use crate::membership::MemberNode;

/// How long a leader waits for another voter to take over.
const HAND_OVER_WAIT: Duration = Duration::from_secs(2);
/// How long the Flight server may take to close its connections.
const FLIGHT_STOP_WAIT: Duration = Duration::from_secs(1);
/// How long the components may take to finish their step.
const COMPONENTS_STOP_WAIT: Duration = Duration::from_secs(1);

pub(super) async fn in_order(parts: Parts) -> anyhow::Result<()> {
    let Parts {
        raft,
        members,
        drain,
        servers,
        components,
        flusher,
        db,
    } = parts;
    drain.refuse_new_calls();
    hand_over(&members).await;
    drain.end_open_streams();
    members.gossip.leave().await;
    servers.flight.stop(FLIGHT_STOP_WAIT).await;
    components.stop(COMPONENTS_STOP_WAIT).await;
    raft.shutdown().await.context("stop raft")?;
    servers.raft.abort().await;
    flusher.finish().await.context("make the wal durable")?;
    db.flush_async().await.context("flush metadata")?;
    tracing::info!("stopped");
    Ok(())
}

/// Hands leadership over when this node leads; a node that cannot (no other voter is caught
/// up, or none answers in time) stops all the same, and the others elect a leader once their
/// election timeout passes.
async fn hand_over(members: &MemberNode) {
    match members.ops().hand_over(HAND_OVER_WAIT).await {
        Ok(None) => {}
        Ok(Some(to)) => tracing::info!(to = %to, "handed leadership over"),
        Err(e) => {
            tracing::warn!(error = %e, "stopping without handing leadership over: the other voters elect a leader after their election timeout")
        }
    }
}

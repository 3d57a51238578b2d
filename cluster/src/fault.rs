//! Network fault points. Every Raft RPC (both ways) and every gossip datagram of a node goes
//! through one `NetworkFaults`, so a test or a chaos harness can cut a node off from its peers
//! at the same seam production traffic uses. Without an injected fault it is a single atomic
//! load per message.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct NetworkFaults {
    isolated: Arc<AtomicBool>,
    answer_delay_ms: Arc<AtomicU64>,
}

impl NetworkFaults {
    /// Drops (or stops dropping) all node-to-node traffic of this node: Raft RPCs it sends or
    /// receives and gossip datagrams. Client traffic (Flight) is not affected.
    pub fn set_isolated(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::Relaxed);
    }

    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }

    /// Holds each answer this node gives to AppendEntries (and heartbeats) for `delay` after
    /// Raft handled the request (zero: answer at once). The node still takes the leader's
    /// entries and heartbeats in time, so it does not campaign; only the leader hears back
    /// late, as from a follower busy with a backlog.
    pub fn set_answer_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.answer_delay_ms.store(ms, Ordering::Relaxed);
    }

    pub fn answer_delay(&self) -> Option<Duration> {
        let ms = self.answer_delay_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Waits out the injected answer delay, if any.
    pub async fn delay_answer(&self) {
        if let Some(delay) = self.answer_delay() {
            tokio::time::sleep(delay).await;
        }
    }
}

//! Network fault points. Every Raft RPC (both ways) and every gossip datagram of a node goes
//! through one `NetworkFaults`, so a test or a chaos harness can cut a node off from its peers
//! at the same seam production traffic uses. Without an injected fault it is a single atomic
//! load per message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct NetworkFaults {
    isolated: Arc<AtomicBool>,
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
}

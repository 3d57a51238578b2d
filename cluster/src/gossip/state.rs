//! The state each node disseminates about itself (role, leader, watermarks), as a foca custom
//! broadcast, and the book of the latest state heard from every node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// What a node says about itself. Newer `version`s replace older ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub node_id: NodeId,
    /// The publisher's gossip address, set by gossip when it publishes: states are kept per
    /// address, so two nodes that share an id (of different clusters) do not mix.
    pub gossip_addr: Option<SocketAddr>,
    pub version: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    /// Highest LSN applied to this node's state machine.
    pub applied_lsn: u64,
    /// Highest LSN in this node's log.
    pub last_log_index: u64,
    /// First index still in this node's WAL (the tier worker must hold the range to tier).
    pub wal_first_index: u64,
    /// Highest LSN at object storage / committed to the table format (0 until tiering runs).
    pub s3_lsn: u64,
    pub committed_lsn: u64,
    /// The node started with `--join` and is not in any membership yet: the leader should add
    /// it as a learner.
    pub join_requested: bool,
    /// The leader should promote this node to voter once it has caught up.
    pub auto_promote: bool,
    /// The cluster this node belongs to, once it knows. Nodes of other clusters that reach
    /// this one's gossip (a stale seed list, a reused address) are left out of its view.
    pub cluster_id: Option<String>,
}

/// The custom-broadcast key: one live state per gossip address, newer versions invalidate
/// older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey {
    addr: SocketAddr,
    version: u64,
}

impl foca::Invalidates for StateKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && self.version >= other.version
    }
}

#[derive(Debug, thiserror::Error)]
#[error("bad gossip state broadcast: {0}")]
pub struct BadState(String);

type States = HashMap<SocketAddr, (NodeState, Instant)>;

/// A state not heard for this long is forgotten: its node is gone (live nodes publish every
/// fraction of a second), and its address may be reused.
pub const STATE_FORGET_AFTER: Duration = Duration::from_secs(600);
/// At most this many addresses are remembered; the longest unheard go first.
pub const STATES_MAX: usize = 1024;

/// Keeps the book within its bounds, by age and by count.
fn forget_stale(states: &mut States, now: Instant) {
    states.retain(|_, (_, heard)| now.saturating_duration_since(*heard) < STATE_FORGET_AFTER);
    while states.len() > STATES_MAX {
        let Some(oldest) = states
            .iter()
            .min_by_key(|(_, (_, heard))| *heard)
            .map(|(a, _)| *a)
        else {
            break;
        };
        states.remove(&oldest);
    }
}

/// The latest state of each node, and when it was heard. foca owns one handle; the gossip
/// driver reads through another.
#[derive(Debug, Default, Clone)]
pub struct StateBook {
    states: Arc<Mutex<States>>,
}

impl StateBook {
    pub fn lock(&self) -> MutexGuard<'_, States> {
        // The map is left consistent by every holder, so a poisoned lock is still usable.
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn encode(state: &NodeState) -> Vec<u8> {
        // A struct of integers and short strings always encodes.
        postcard::to_stdvec(state).unwrap_or_default()
    }
}

impl<T> foca::BroadcastHandler<T> for StateBook {
    type Key = StateKey;
    type Error = BadState;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&T>,
    ) -> Result<Option<StateKey>, BadState> {
        let state: NodeState = postcard::from_bytes(data).map_err(|e| BadState(e.to_string()))?;
        let addr = state
            .gossip_addr
            .ok_or_else(|| BadState("state without a gossip address".into()))?;
        let key = StateKey {
            addr,
            version: state.version,
        };
        let mut states = self.lock();
        if let Some((known, _)) = states.get(&addr) {
            if known.version >= state.version {
                return Ok(None);
            }
        }
        let now = Instant::now();
        states.insert(addr, (state, now));
        forget_stale(&mut states, now);
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use foca::{BroadcastHandler, Invalidates};

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn state(node_id: u64, port: u16, version: u64, applied_lsn: u64) -> Vec<u8> {
        StateBook::encode(&NodeState {
            node_id: NodeId(node_id),
            gossip_addr: Some(addr(port)),
            version,
            applied_lsn,
            ..Default::default()
        })
    }

    #[test]
    fn the_book_forgets_addresses_gone_for_long_and_stays_within_its_count() {
        let now = Instant::now();
        let Some(long_ago) = now.checked_sub(STATE_FORGET_AFTER + Duration::from_secs(1)) else {
            return; // the clock started too recently to go back that far
        };
        let mut states = States::new();
        states.insert(addr(1), (NodeState::default(), long_ago));
        states.insert(addr(2), (NodeState::default(), now));
        forget_stale(&mut states, now);
        assert!(!states.contains_key(&addr(1)));
        assert!(states.contains_key(&addr(2)));

        for port in 0..(STATES_MAX as u16 + 10) {
            let heard = now - Duration::from_millis(u64::from(port));
            states.insert(addr(1000 + port), (NodeState::default(), heard));
        }
        forget_stale(&mut states, now);
        assert_eq!(states.len(), STATES_MAX);
        assert!(states.contains_key(&addr(2)), "the freshest stay");
    }

    #[test]
    fn only_newer_states_are_kept_and_passed_on() {
        let mut book = StateBook::default();
        let handler: &mut dyn BroadcastHandler<(), Key = StateKey, Error = BadState> = &mut book;
        let mut receive = |data: Vec<u8>| handler.receive_item(&data, None).expect("decode");
        assert!(receive(state(1, 7001, 5, 50)).is_some());
        assert!(
            receive(state(1, 7001, 5, 50)).is_none(),
            "a repeat is not passed on"
        );
        assert!(
            receive(state(1, 7001, 4, 40)).is_none(),
            "an older state is dropped"
        );
        let newer = receive(state(1, 7001, 6, 60)).expect("newer");
        assert!(
            receive(state(1, 7002, 1, 10)).is_some(),
            "same id, another node"
        );
        assert!(
            handler.receive_item(&[0xff, 0xff], None).is_err(),
            "garbage is an error, not a panic"
        );
        let applied = |port| book.lock().get(&addr(port)).map(|(s, _)| s.applied_lsn);
        assert_eq!(applied(7001), Some(60));
        assert_eq!(applied(7002), Some(10));
        let older = StateKey {
            addr: addr(7001),
            version: 5,
        };
        let other = StateKey {
            addr: addr(7002),
            version: 1,
        };
        assert!(newer.invalidates(&older));
        assert!(
            !newer.invalidates(&other),
            "states of different nodes are independent"
        );
    }
}

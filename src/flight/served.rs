//! What the Flight service uses of its node: the handles its calls (writes, reads, status
//! and admin actions) and the peers' internal requests reach. The node's other components
//! receive their own, smaller sets of handles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arka_cluster::fault::NetworkFaults;
use arka_cluster::gossip::Gossip;
use arka_cluster::membership::MembershipOps;
use arka_cluster::network::InternalClient;

use arka_cluster::ClusterId;
use arka_cluster::NodeId;

use crate::acks::AckRouter;
use crate::disk::DiskFloor;
use crate::durability::Watermarks;
use crate::membership::{ApplyClock, MemberNode};
use crate::raft::Raft;
use crate::read::ReadSources;
use crate::state::{StateMachine, StateMachineStore};
use crate::tier::report::Reporter;
use crate::tier::Tiering;
use crate::wal::{LogReader, WalFaults};
use crate::write::WritePath;

pub struct Served {
    pub node_id: NodeId,
    pub raft: Raft,
    pub state: StateMachine,
    pub log: LogReader,
    pub writes: Arc<WritePath>,
    /// How long a read waits for `min_lsn` at most.
    pub read_wait_max: Duration,
    pub started: Instant,
    pub gossip: Arc<Gossip>,
    pub apply_clock: Arc<ApplyClock>,
    /// The fault point all node-to-node traffic goes through.
    pub faults: NetworkFaults,
    /// The fault point of this node's WAL group commits.
    pub wal_faults: WalFaults,
    /// Whether the `inject_fault` action may change `faults` and `wal_faults` (config
    /// `fault-injection`).
    pub fault_injection: bool,
    pub cluster_id: ClusterId,
    /// Sends node-to-node requests that are not Raft messages.
    pub internal: InternalClient,
    /// Present when tiering is configured (`object-store-url`).
    pub tiering: Option<Arc<Tiering>>,
    /// The free-space floor of the data dir.
    pub disk: Arc<DiskFloor>,
}

impl Served {
    pub fn acks(&self) -> &AckRouter {
        self.writes.acks()
    }

    /// Membership changes, as this node (the leader) makes them.
    pub fn membership(&self) -> MembershipOps<StateMachineStore> {
        self.member_node().ops()
    }

    /// What membership uses of this node.
    pub fn member_node(&self) -> MemberNode {
        MemberNode {
            node_id: self.node_id,
            raft: self.raft.clone(),
            gossip: self.gossip.clone(),
            state: self.state.clone(),
            log: self.log.clone(),
            cluster_id: self.cluster_id.clone(),
            apply_clock: self.apply_clock.clone(),
            internal: self.internal.clone(),
            proposer: self.writes.proposer(),
            tiering: self.tiering.is_some(),
        }
    }

    /// Carries tier reports to the Raft log: the tier worker's, and its peers' as leader.
    pub fn tier_reporter(&self) -> Reporter {
        Reporter::new(
            self.raft.clone(),
            self.internal.clone(),
            self.writes.proposer(),
            self.tiering.as_ref().map(|t| t.storage.clone()),
        )
    }

    /// What this node's reads reach.
    pub fn read_sources(&self) -> ReadSources {
        ReadSources {
            state: self.state.clone(),
            log: self.log.clone(),
            storage: self.tiering.as_ref().map(|t| t.storage.clone()),
        }
    }

    pub fn watermarks(&self) -> Watermarks {
        let replicated_lsn = self.state.applied_lsn().get();
        let tier = self.state.tier();
        let acks = self.acks();
        Watermarks {
            memory_lsn: acks.memory_lsn().max(replicated_lsn),
            disk_lsn: acks.disk_lsn().max(replicated_lsn),
            replicated_lsn,
            s3_lsn: tier.s3_lsn.get(),
            committed_lsn: tier.committed_lsn.get(),
        }
    }
}

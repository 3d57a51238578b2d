//! The nemeses, one file each: they inject faults into the cluster on a schedule drawn from
//! the run's seed, and record each fault's window in the history.

mod degrade;
mod kill;
mod lake_outage;
mod membership;
mod partition;
mod pause;
mod power_loss;
mod wal_damage;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::history::{Function, Op, OpType, NEMESIS};
use crate::recorder::Recorder;

pub use degrade::Degrade;
pub use kill::Kill;
pub use lake_outage::LakeOutage;
pub use membership::Membership;
pub use partition::Partition;
pub use pause::Pause;
pub use power_loss::PowerLoss;
pub use wal_damage::WalDamage;

/// Every nemesis, by name.
pub const NAMES: [&str; 8] = [
    "kill",
    "pause",
    "partition",
    "power-loss",
    "degrade",
    "membership",
    "wal-damage",
    "lake-outage",
];

/// A small deterministic generator, so that a seed replays a run's fault schedule.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    /// A duration between `min` and `max`.
    pub fn between(&mut self, min: Duration, max: Duration) -> Duration {
        let span = max.saturating_sub(min).as_millis() as u64;
        min + Duration::from_millis(self.below(span + 1))
    }
}

/// One kind of fault.
pub trait Nemesis {
    /// Its name on the command line and in the report.
    fn name(&self) -> &'static str;

    /// Injects one fault, chosen with `rng` (`leader`: the node that leads now, if one
    /// does); returns what it did, for the history.
    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>>;

    /// Ends the fault it started.
    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Keeps the fault on for `length` (a flapping fault comes and goes meanwhile).
    fn hold<'a>(
        &'a mut self,
        _cluster: &'a mut Cluster,
        length: Duration,
        _rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(tokio::time::sleep(length).map(Ok))
    }

    /// Whether the cluster's lake must be on services of its own, for this nemesis to act on.
    fn needs_remote_lake(&self) -> bool {
        false
    }

    /// The shortest and the longest a fault lasts.
    fn fault_length(&self) -> (Duration, Duration) {
        (Duration::from_secs(2), Duration::from_secs(6))
    }
}

/// The leader (when one leads) or a node at random, with either chance; and which it is.
pub fn leader_or_any(
    cluster: &Cluster,
    leader: Option<usize>,
    rng: &mut Rng,
) -> (&'static str, usize) {
    match (rng.below(2), leader) {
        (0, Some(leader)) => ("the leader", leader),
        _ => ("a node", 1 + rng.below(cluster.nodes() as u64) as usize),
    }
}

/// Every node, the leader (when one leads) or a node at random, with equal chances; and
/// which it is.
pub fn every_leader_or_any(
    cluster: &Cluster,
    leader: Option<usize>,
    rng: &mut Rng,
) -> (&'static str, Vec<usize>) {
    let nodes = cluster.nodes();
    match (rng.below(3), leader) {
        (0, _) => ("every node", (1..=nodes).collect()),
        (1, Some(leader)) => ("the leader", vec![leader]),
        _ => ("a node", vec![1 + rng.below(nodes as u64) as usize]),
    }
}

/// `n1, n3` for the nodes 1 and 3, for fault descriptions.
pub fn node_names(nodes: &[usize]) -> String {
    let names: Vec<String> = nodes.iter().map(|n| format!("n{n}")).collect();
    names.join(", ")
}

/// The nemeses by name; `skip_fsync`: the run's disks skip their fsyncs.
pub fn by_name(name: &str, skip_fsync: bool) -> anyhow::Result<Box<dyn Nemesis + Send>> {
    match name {
        "power-loss" if skip_fsync => Ok(Box::new(PowerLoss::every_node_at_once())),
        "power-loss" => Ok(Box::new(PowerLoss::default())),
        "kill" => Ok(Box::new(Kill::default())),
        "degrade" => Ok(Box::new(Degrade::default())),
        "membership" => Ok(Box::new(Membership::default())),
        "wal-damage" => Ok(Box::new(WalDamage::default())),
        "lake-outage" => Ok(Box::new(LakeOutage::default())),
        "pause" => Ok(Box::new(Pause::default())),
        "partition" => Ok(Box::new(Partition::default())),
        other => anyhow::bail!("unknown nemesis {other:?} (known: {})", NAMES.join(", ")),
    }
}

/// Runs `nemesis` until `until`: a calm spell, a fault for a while, and again.
pub async fn run(
    nemesis: &mut (dyn Nemesis + Send),
    cluster: &mut Cluster,
    rng: &mut Rng,
    recorder: &Recorder,
    until: Instant,
) -> anyhow::Result<()> {
    let calm = (Duration::from_secs(2), Duration::from_secs(5));
    let fault = nemesis.fault_length();
    loop {
        tokio::time::sleep(rng.between(calm.0, calm.1)).await;
        if Instant::now() >= until {
            return Ok(());
        }
        let leader = cluster.leader_now().await;
        let what = nemesis.start(cluster, leader, rng).await?;
        record(recorder, Function::StartFault, &what);
        let length = rng.between(fault.0, fault.1);
        nemesis.hold(cluster, length, rng).await?;
        nemesis.stop(cluster).await?;
        record(recorder, Function::StopFault, &what);
    }
}

fn record(recorder: &Recorder, f: Function, what: &str) {
    let mut op = Op::new(NEMESIS, OpType::Info, f);
    op.fault = Some(what.to_string());
    recorder.record(op);
}

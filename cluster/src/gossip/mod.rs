//! SWIM gossip (foca) over a datagram transport: who is alive, where every node's Flight and
//! Raft services are, and each node's role, leader and watermarks.
//!
//! One task owns the `Foca` instance: it handles received datagrams, fires foca's timers in
//! deadline order, publishes this node's state as a custom broadcast and keeps a [`ClusterView`]
//! in a watch channel that the rest of the node reads without locking.

mod identity;
mod state;
mod transport;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, PeriodicParams, PostcardCodec, Timer};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use identity::Peer;
pub use state::NodeState;
pub use transport::{Datagrams, SealedDatagrams, UdpDatagrams};

use crate::secret::TAG_BYTES;
use crate::types::NodeId;
use state::StateBook;
pub use state::{STATES_MAX, STATE_FORGET_AFTER};

type Swim = Foca<Peer, PostcardCodec, StdRng, StateBook>;

/// Datagrams received but not yet handled; beyond this they are dropped, as UDP may drop them.
const RECEIVE_QUEUE_MAX: usize = 1024;
/// How often a node that knows no other member announces itself to its seeds again.
const REANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// How often the published [`ClusterView`] is rebuilt when something changed.
const VIEW_REFRESH_EVERY: Duration = Duration::from_millis(100);
/// Down members are remembered this long, so that `cluster_status` keeps reporting them dead.
const REMEMBER_DOWN_FOR: Duration = Duration::from_secs(24 * 3600);

/// Failure-detection timing. A member that stops answering is suspected once a probe of it
/// fails (each node probes every member in turn, one per `probe_period`, waiting `probe_rtt`
/// for the direct and then the indirect answers) and declared dead `suspect_to_down` later.
#[derive(Debug, Clone)]
pub struct GossipTiming {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
    /// How often this node publishes its state.
    pub publish_every: Duration,
}

impl Default for GossipTiming {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            suspect_to_down: Duration::from_secs(3),
            publish_every: Duration::from_millis(250),
        }
    }
}

impl GossipTiming {
    /// The longest a dead or cut-off member of a cluster of `members` nodes stays reported
    /// alive: every other node probes it within `members` probe periods, the probe times out
    /// after twice `probe_rtt` (direct, then indirect), and suspicion turns into death after
    /// `suspect_to_down`.
    pub fn dead_within(&self, members: u32) -> Duration {
        self.probe_period * members + self.probe_rtt * 2 + self.suspect_to_down
    }

    fn foca_config(&self) -> foca::Config {
        let mut config = foca::Config::new_lan(NonZeroU32::MIN.saturating_add(8));
        // Room for the tag [`SealedDatagrams`] appends, within the same datagram size.
        config.max_packet_size = NonZeroUsize::new(config.max_packet_size.get() - TAG_BYTES)
            .unwrap_or(config.max_packet_size);
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.suspect_to_down_after = self.suspect_to_down;
        config.remove_down_after = Some(REMEMBER_DOWN_FOR);
        // A member cut off and declared down rejoins within seconds of the cut healing.
        config.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: Duration::from_secs(2),
            num_members: NonZeroUsize::MIN.saturating_add(1),
        });
        config.periodic_announce = Some(PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: NonZeroUsize::MIN,
        });
        config
    }
}

pub struct GossipConfig {
    pub identity: Peer,
    /// Gossip addresses to announce this node to (`--join`).
    pub seeds: Vec<SocketAddr>,
    pub timing: GossipTiming,
    /// Seed of the randomness of probe order and gossip targets.
    pub rng_seed: u64,
}

/// What this node knows of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    Alive,
    Suspect,
    Dead,
}

#[derive(Debug, Clone)]
pub struct PeerView {
    pub peer: Peer,
    pub liveness: Liveness,
    /// The member's latest published state, and when this node heard it.
    pub state: Option<(NodeState, Instant)>,
}

/// Every node gossip has heard of (this node included), by node id.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub peers: BTreeMap<NodeId, PeerView>,
}

impl ClusterView {
    pub fn liveness(&self, node_id: NodeId) -> Option<Liveness> {
        self.peers.get(&node_id).map(|p| p.liveness)
    }

    pub fn state(&self, node_id: NodeId) -> Option<&NodeState> {
        self.peers
            .get(&node_id)?
            .state
            .as_ref()
            .map(|(state, _)| state)
    }
}

type Done = oneshot::Sender<()>;

/// A running gossip member. Dropping it stops the task without a goodbye; [`Gossip::leave`]
/// tells the others first.
pub struct Gossip {
    view: watch::Receiver<ClusterView>,
    book: StateBook,
    local: watch::Sender<NodeState>,
    stop: Mutex<Option<oneshot::Sender<Done>>>,
    task: JoinHandle<()>,
}

impl Gossip {
    pub fn start<D: Datagrams>(config: GossipConfig, datagrams: D, initial: NodeState) -> Self {
        let book = StateBook::default();
        let foca = Foca::with_custom_broadcast(
            config.identity,
            config.timing.foca_config(),
            StdRng::seed_from_u64(config.rng_seed),
            PostcardCodec,
            book.clone(),
        );
        let (view_tx, view) = watch::channel(ClusterView::default());
        let (local, local_rx) = watch::channel(initial);
        let (stop, stop_rx) = oneshot::channel();
        let driver = Driver {
            foca,
            book: book.clone(),
            datagrams: Arc::new(datagrams),
            seeds: config.seeds,
            timing: config.timing,
            timers: BTreeMap::new(),
            timer_seq: 0,
            version: 0,
            view_tx,
            view_dirty: true,
        };
        let task = tokio::spawn(driver.run(local_rx, stop_rx));
        Self {
            view,
            book,
            local,
            stop: Mutex::new(Some(stop)),
            task,
        }
    }

    /// How many gossip addresses this node keeps a state of (at most [`STATES_MAX`]).
    pub fn states_known(&self) -> usize {
        self.book.lock().len()
    }

    /// The latest view of the cluster.
    pub fn view(&self) -> ClusterView {
        self.view.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<ClusterView> {
        self.view.clone()
    }

    /// Changes the state this node publishes (sent with its next broadcast).
    pub fn update_local(&self, change: impl FnOnce(&mut NodeState)) {
        self.local.send_modify(change);
    }

    /// Tells the other members this node is leaving, then stops gossiping.
    pub async fn leave(&self) {
        let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stop) = stop {
            let (done, left) = oneshot::channel();
            if stop.send(done).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(2), left).await;
            }
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Driver<D> {
    foca: Swim,
    book: StateBook,
    datagrams: Arc<D>,
    seeds: Vec<SocketAddr>,
    timing: GossipTiming,
    /// foca's timers by deadline; the sequence number keeps equal deadlines in order.
    timers: BTreeMap<(tokio::time::Instant, u64), Timer<Peer>>,
    timer_seq: u64,
    version: u64,
    view_tx: watch::Sender<ClusterView>,
    view_dirty: bool,
}

impl<D: Datagrams> Driver<D> {
    async fn run(mut self, local: watch::Receiver<NodeState>, mut stop: oneshot::Receiver<Done>) {
        let (data_tx, mut data_rx) = mpsc::channel::<Bytes>(RECEIVE_QUEUE_MAX);
        // Aborted with the driver, however it ends (also when the driver task is aborted).
        let _receiver = AbortOnDrop(tokio::spawn(receive(self.datagrams.clone(), data_tx)));
        let mut runtime = AccumulatingRuntime::new();
        self.announce_to_seeds(&mut runtime);
        self.drain(&mut runtime).await;
        let mut publish = tokio::time::interval(self.timing.publish_every);
        let mut reannounce = tokio::time::interval(REANNOUNCE_EVERY);
        let mut refresh = tokio::time::interval(VIEW_REFRESH_EVERY);
        for timer in [&mut publish, &mut reannounce, &mut refresh] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            let next_timer = self.timers.first_key_value().map(|((at, _), _)| *at);
            let result = tokio::select! {
                done = &mut stop => {
                    let left = self.foca.leave_cluster(&mut runtime);
                    self.drain(&mut runtime).await;
                    if let Err(e) = left {
                        tracing::debug!(error = %e, "gossip: leave");
                    }
                    if let Ok(done) = done {
                        let _ = done.send(());
                    }
                    break;
                }
                data = data_rx.recv() => match data {
                    Some(data) => {
                        // The datagram may carry other nodes' states; the view is rebuilt on
                        // the next refresh tick.
                        self.view_dirty = true;
                        self.foca.handle_data(&data, &mut runtime)
                    }
                    None => break,
                },
                _ = sleep_until(next_timer) => match self.timers.pop_first() {
                    Some((_, timer)) => self.foca.handle_timer(timer, &mut runtime),
                    None => Ok(()),
                },
                _ = publish.tick() => self.publish(&local),
                _ = reannounce.tick() => {
                    if self.foca.num_members() == 0 {
                        self.announce_to_seeds(&mut runtime);
                    }
                    Ok(())
                }
                _ = refresh.tick() => {
                    self.refresh_view(&local);
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "gossip: ignored error");
            }
            self.drain(&mut runtime).await;
        }
    }

    fn announce_to_seeds(&mut self, runtime: &mut AccumulatingRuntime<Peer>) {
        let own = self.foca.identity().gossip_addr;
        for seed in self.seeds.iter().filter(|s| **s != own) {
            if let Err(e) = self.foca.announce(Peer::seed(*seed), &mut *runtime) {
                tracing::debug!(%seed, error = %e, "gossip: announce");
            }
        }
    }

    fn publish(&mut self, local: &watch::Receiver<NodeState>) -> Result<(), foca::Error> {
        // Versions follow the wall clock so that a restarted node's states replace the ones it
        // published before; `max` keeps them increasing when the clock steps back.
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.version = now_ms.max(self.version + 1);
        let mut state = local.borrow().clone();
        state.version = self.version;
        state.gossip_addr = Some(self.foca.identity().gossip_addr);
        self.foca.add_broadcast(&StateBook::encode(&state))?;
        self.view_dirty = true;
        Ok(())
    }

    /// Sends what foca queued, schedules its timers, and notes membership changes.
    async fn drain(&mut self, runtime: &mut AccumulatingRuntime<Peer>) {
        while let Some((to, data)) = runtime.to_send() {
            if let Err(e) = self.datagrams.send_to(&data, to.gossip_addr).await {
                tracing::debug!(to = %to.gossip_addr, error = %e, "gossip: send");
            }
        }
        let now = tokio::time::Instant::now();
        while let Some((after, timer)) = runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        while let Some(notification) = runtime.to_notify() {
            tracing::debug!(?notification, "gossip: membership changed");
            self.view_dirty = true;
        }
    }

    fn refresh_view(&mut self, local: &watch::Receiver<NodeState>) {
        if !std::mem::take(&mut self.view_dirty) {
            return;
        }
        let ours = local.borrow().cluster_id.clone();
        let book = self.book.lock();
        let mut peers = BTreeMap::new();
        let me = self.foca.identity().clone();
        let members = self
            .foca
            .iter_membership_state()
            .filter(|m| !m.id().seed)
            .map(|m| (m.id().clone(), liveness(m.state())));
        for (peer, liveness) in members.chain([(me, Liveness::Alive)]) {
            // A member is shown once its state has arrived (within a publish interval), so
            // that a node of another cluster is never shown before its cluster id is known.
            let Some(state) = book.get(&peer.gossip_addr).cloned() else {
                continue;
            };
            let theirs = state.0.cluster_id.as_ref();
            if matches!((&ours, theirs), (Some(ours), Some(theirs)) if ours != theirs) {
                continue;
            }
            let state = Some(state);
            let view = PeerView {
                peer,
                liveness,
                state,
            };
            // Two identities of one node id (a restart on another address): keep the live one.
            match peers.get(&view.peer.node_id) {
                Some(PeerView { liveness: l, .. }) if *l == Liveness::Alive => {}
                _ => {
                    peers.insert(view.peer.node_id, view);
                }
            }
        }
        drop(book);
        self.view_tx.send_replace(ClusterView { peers });
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn liveness(state: foca::State) -> Liveness {
    match state {
        foca::State::Alive => Liveness::Alive,
        foca::State::Suspect => Liveness::Suspect,
        foca::State::Down => Liveness::Dead,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads datagrams into the driver's queue; drops them when the queue is full.
async fn receive<D: Datagrams>(datagrams: Arc<D>, queue: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match datagrams.recv_from(&mut buf).await {
            Ok((len, _from)) => {
                if let Err(mpsc::error::TrySendError::Closed(_)) =
                    queue.try_send(Bytes::copy_from_slice(&buf[..len]))
                {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "gossip: receive");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

//! A running node. It starts storage, Raft, gossip, its two servers and its components in
//! that order, and stops them in the fixed order of [`stop`].

mod open;
mod serve;
mod stop;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arka_cluster::fault::NetworkFaults;
use arka_cluster::network::{EntryIntake, InternalClient, NetworkFactory, TcpConnector};
use arka_cluster::raft_config::{self, RaftTiming};
use arka_cluster::ClusterId;
use tokio_util::sync::CancellationToken;

use crate::acks::AckRouter;
use crate::config::NodeConfig;
use crate::disk::DiskFloor;
use crate::flight::drain::Drain;
use crate::flight::Served;
use crate::membership::agent::{Agent, JoinPolicy};
use crate::membership::{ApplyClock, MemberNode};
use crate::raft::snapshot_schedule::SnapshotSchedule;
use crate::raft::Raft;
use crate::state::{Retention, StateMachine, StateMachineStore};
use crate::tier::{self, Tiering};
use crate::tls::NodeTls;
use crate::wal::{Flusher, LogReader, LogStore, WalConfig, WalFaults};
use crate::write::{WalGuard, WriteLimits, WritePath};
use tasks::Tasks;

pub struct Node {
    pub flight_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    parts: Parts,
}

/// What a running node stops, in the order of [`stop`].
struct Parts {
    raft: Raft,
    members: MemberNode,
    drain: Drain,
    servers: serve::Servers,
    components: Tasks,
    flusher: Flusher,
    db: sled::Db,
}

/// The node's storage, opened: the metadata store, the WAL and the state machine.
struct Storage {
    db: sled::Db,
    log_store: LogStore,
    log: LogReader,
    flusher: Flusher,
    wal_faults: WalFaults,
    state: StateMachine,
    acks: Arc<AckRouter>,
}

impl Storage {
    async fn open(config: &NodeConfig) -> anyhow::Result<Storage> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
        let db = sled::open(config.data_dir.join("meta"))
            .with_context(|| format!("open metadata store in {}", config.data_dir.display()))?;
        let acks = Arc::new(AckRouter::new(config.node_id));
        let wal = WalConfig {
            dir: config.data_dir.join("wal"),
            segment_bytes_max: config.segment_bytes_max,
            faults: WalFaults::default(),
        };
        let wal_faults = wal.faults.clone();
        let mut log_store = LogStore::open(wal, db.clone(), acks.clone())
            .await
            .context("open wal")?
            .with_read_bytes_max(config.replication_bytes_max as usize);
        let flusher = log_store
            .take_flusher()
            .context("the wal's flusher was taken before the node started")?;
        let state =
            StateMachine::open(config.data_dir.join("snapshots")).context("open state machine")?;
        Ok(Storage {
            db,
            log: log_store.reader(),
            log_store,
            flusher,
            wal_faults,
            state,
            acks,
        })
    }
}

/// How this node reaches and is reached by the others.
struct Network {
    faults: NetworkFaults,
    cluster_id: ClusterId,
    tls: Option<NodeTls>,
    internal: InternalClient,
}

impl Network {
    fn open(config: &NodeConfig, db: &sled::Db) -> anyhow::Result<(Network, NetworkFactory)> {
        let faults = NetworkFaults::default();
        let cluster_id = open::open_cluster_id(db, open::load_secret(config)?)?;
        let tls = open::open_tls(config)?;
        let connector = Arc::new(
            tls.as_ref()
                .map_or_else(TcpConnector::plain, NodeTls::raft_client),
        );
        let factory = NetworkFactory::new(connector.clone(), faults.clone(), cluster_id.clone())
            .with_append_bytes_max(config.replication_bytes_max as usize);
        let internal = InternalClient::new(connector, faults.clone(), cluster_id.clone());
        let network = Network {
            faults,
            cluster_id,
            tls,
            internal,
        };
        Ok((network, factory))
    }
}

impl Node {
    /// Opens storage, starts Raft, gossip, both servers and the components, and bootstraps
    /// if configured.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        config.validate()?;
        let Storage {
            db,
            log_store,
            log,
            flusher,
            wal_faults,
            state,
            acks,
        } = Storage::open(&config).await?;
        let (network, factory) = Network::open(&config, &db)?;
        let store = StateMachineStore::new(state.clone(), Some(log.clone()));
        let raft = start_raft(&config, factory, log_store, store).await?;

        let listeners = serve::Listeners::bind(&config).await?;
        let raft_addr = listeners.raft.local_addr()?;
        let flight_addr = listeners.flight.local_addr()?;
        // A new cluster's id is made before gossip starts, so that this node never shows
        // another cluster's nodes that its seeds lead it to.
        let bootstrapping = config.bootstrap && !raft.is_initialized().await?;
        if bootstrapping {
            open::create_cluster_id(&config, &network.cluster_id)?;
        }
        let gossip =
            open::start_gossip(&config, network.faults.clone(), &network.cluster_id).await?;

        let tiering = open::open_tiering(&config)?;
        let intake = EntryIntake::default();
        let disk = DiskFloor::new(&config.data_dir, config.disk_free_bytes_min, intake.clone());
        let writes = Arc::new(WritePath::new(
            raft.clone(),
            state.clone(),
            acks,
            write_limits(&config),
            wal_guard(&config, tiering.as_ref()),
            disk.clone(),
        ));
        let ctx = Arc::new(Served {
            node_id: config.node_id,
            raft: raft.clone(),
            state,
            log,
            writes,
            read_wait_max: Duration::from_millis(config.read_wait_max_ms),
            started: Instant::now(),
            gossip: Arc::new(gossip),
            apply_clock: Arc::new(ApplyClock::default()),
            faults: network.faults.clone(),
            wal_faults,
            fault_injection: config.fault_injection,
            cluster_id: network.cluster_id.clone(),
            internal: network.internal.clone(),
            tiering: tiering.clone(),
            disk: disk.clone(),
        });

        let drain = Drain::new(raft.clone());
        let servers = serve::start(&ctx, &config, &network, listeners, intake, drain.clone())?;
        let components = start_components(&ctx, &config, tiering, disk);
        if bootstrapping {
            open::bootstrap(&raft, &config).await?;
        }
        Ok(Node {
            flight_addr,
            raft_addr,
            parts: Parts {
                raft,
                members: ctx.member_node(),
                drain,
                servers,
                components,
                flusher,
                db,
            },
        })
    }

    /// Stops the node in the order of [`stop`].
    pub async fn shutdown(self) -> anyhow::Result<()> {
        stop::in_order(self.parts).await
    }
}

async fn start_raft(
    config: &NodeConfig,
    network: NetworkFactory,
    log: LogStore,
    state: StateMachineStore,
) -> anyhow::Result<Raft> {
    let timing = RaftTiming {
        heartbeat_interval_ms: config.heartbeat_interval_ms,
        election_timeout_min_ms: config.election_timeout_min_ms,
        election_timeout_max_ms: config.election_timeout_max_ms,
    };
    let raft_config = raft_config::build(&timing)?;
    Raft::new(config.node_id, raft_config, network, log, state)
        .await
        .context("start raft")
}

fn write_limits(config: &NodeConfig) -> WriteLimits {
    WriteLimits {
        batch_bytes_max: config.batch_bytes_max,
        node_inflight_bytes_max: config.node_inflight_bytes_max,
        session_inflight_bytes_max: config.session_inflight_bytes_max,
        table_columns_max: config.table_columns_max,
        tables_max: config.tables_max,
    }
}

/// The WAL's bound of a node that tiers (one that does not never purges its WAL).
fn wal_guard(config: &NodeConfig, tiering: Option<&Arc<Tiering>>) -> Option<WalGuard> {
    tiering.map(|tiering| WalGuard {
        tiering: tiering.clone(),
        wal_bytes_max: config.wal_bytes_max,
        hold: Duration::from_millis(config.wal_full_hold_ms),
    })
}

/// Starts the node's long-running components, each with only the handles it uses.
fn start_components(
    ctx: &Served,
    config: &NodeConfig,
    tiering: Option<Arc<Tiering>>,
    disk: Arc<DiskFloor>,
) -> Tasks {
    let mut tasks = Tasks::new("node component");
    if config.fault_injection {
        let log = ctx.log.clone();
        tasks.spawn("power loss on SIGPWR", |stop| {
            lose_power_on_sigpwr(log, stop)
        });
    }
    let (clock, applied) = (ctx.apply_clock.clone(), ctx.state.subscribe_applied());
    tasks.spawn("apply clock", |stop| async move {
        clock.follow(applied, stop).await
    });
    let schedule = SnapshotSchedule {
        raft: ctx.raft.clone(),
        node_id: config.node_id,
        every: config.snapshot_every_entries,
    };
    tasks.spawn("snapshot schedule", |stop| schedule.run(stop));
    let agent = Agent {
        node: ctx.member_node(),
        policy: JoinPolicy {
            joining: !config.join.is_empty(),
            auto_promote: config.auto_promote,
            voters_max: config.voters_max,
        },
    };
    tasks.spawn("membership agent", |stop| agent.run(stop));
    tasks.spawn("disk floor", |stop| disk.watch(stop));
    if let Some(tiering) = tiering {
        let worker = tier::TierNode {
            node_id: ctx.node_id,
            state: ctx.state.clone(),
            log: ctx.log.clone(),
            reporter: ctx.tier_reporter(),
            tiering: tiering.clone(),
        };
        tasks.spawn("tier worker", |stop| tier::run_worker(worker, stop));
        let purge = tier::Purge {
            state: ctx.state.clone(),
            log: ctx.log.clone(),
            raft: ctx.raft.clone(),
            tiering,
            configured: Retention {
                bytes: config.wal_retention_bytes,
                ms: config.wal_retention_ms,
            },
        };
        tasks.spawn("wal purge", |stop| purge.run(stop));
    }
    tasks
}

/// With fault injection on, SIGPWR simulates a power loss: the WAL drops every byte it
/// had not made durable and the process dies (chaos runs and crash tests send it).
async fn lose_power_on_sigpwr(log: LogReader, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut power = match signal(SignalKind::from_raw(libc::SIGPWR)) {
        Ok(power) => power,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGPWR: power losses cannot be simulated");
            return;
        }
    };
    if let Some(Some(())) = stop.run_until_cancelled(power.recv()).await {
        tracing::warn!("SIGPWR: simulating a power loss");
        let _ = tokio::task::spawn_blocking(move || log.lose_power()).await;
    }
}

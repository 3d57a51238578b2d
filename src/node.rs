//! A running node: storage, Raft, the Raft RPC server and the Flight server, started in that
//! order and stopped in the reverse (stop ingress → stop Raft → flush sled).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arka_cluster::cluster_id::{ClusterId, Persist};
use arka_cluster::fault::NetworkFaults;
use arka_cluster::gossip::{
    Gossip, GossipConfig, GossipTiming, NodeState, Peer, SealedDatagrams, UdpDatagrams,
};
use arka_cluster::network::{
    EntryIntake, InternalClient, NetworkFactory, NodeGate, RaftRpcService, TcpConnector,
    GRPC_MESSAGE_BYTES_MAX,
};
use arka_cluster::raft_config::{self, RaftTiming};
use arka_cluster::{ClusterSecret, NodeId, NodeInfo};
use arka_proto::raft::raft_service_server::RaftServiceServer;
use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::ServerTlsConfig;

use crate::acks::AckRouter;
use crate::auth::{Audit, Authenticator, Users};
use crate::config::NodeConfig;
use crate::context::NodeContext;
use crate::disk::DiskFloor;
use crate::flight::auth::{Authenticate, Guard};
use crate::flight::peer_requests::InternalService;
use crate::flight::ArkaFlight;
use crate::listener::{self, accepted, ConnectionLimits};
use crate::membership::{self, ApplyClock};
use crate::raft::snapshot_schedule;
use crate::raft::Raft;
use crate::state::{Retention, StateMachine, StateMachineStore};
use crate::tier::{self, Tiering};
use crate::tls::NodeTls;
use crate::wal::{LogReader, LogStore, WalConfig, WalFaults};
use crate::write::{WalGuard, WriteLimits, WritePath};

/// Largest Flight message a node sends (a read's batches are bounded by what was written).
const FLIGHT_ANSWER_BYTES_MAX: usize = 1024 * 1024 * 1024;
/// What a Flight message may carry beyond a batch of `batch-bytes-max`: its IPC header,
/// app_metadata and descriptor.
const FLIGHT_FRAMING_BYTES_MAX: usize = 1024 * 1024;

pub struct Node {
    pub ctx: Arc<NodeContext>,
    pub flight_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    stop_tx: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// Tasks that only observe and gossip; aborted on shutdown.
    background: Vec<tokio::task::JoinHandle<()>>,
    db: sled::Db,
}

/// With fault injection on, SIGPWR simulates a power loss: the WAL drops every byte it
/// had not made durable and the process dies (chaos runs and crash tests send it).
fn lose_power_on_sigpwr(log: LogReader) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut power = signal(SignalKind::from_raw(libc::SIGPWR)).context("listen for SIGPWR")?;
    tokio::spawn(async move {
        if power.recv().await.is_some() {
            tracing::warn!("SIGPWR: simulating a power loss");
            let _ = tokio::task::spawn_blocking(move || log.lose_power()).await;
        }
    });
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Node {
    /// Opens storage, starts Raft and both servers, and bootstraps if configured.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        config.validate()?;
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
        let log_store = LogStore::open(wal, db.clone(), acks.clone())
            .await
            .context("open wal")?
            .with_read_bytes_max(config.replication_bytes_max as usize);
        let log = log_store.reader();
        if config.fault_injection {
            lose_power_on_sigpwr(log.clone())?;
        }
        let state =
            StateMachine::open(config.data_dir.join("snapshots")).context("open state machine")?;

        let timing = RaftTiming {
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            election_timeout_min_ms: config.election_timeout_min_ms,
            election_timeout_max_ms: config.election_timeout_max_ms,
        };
        let faults = NetworkFaults::default();
        let cluster_id = open_cluster_id(&db, load_secret(&config)?)?;
        let tls = open_tls(&config)?;
        let connector = Arc::new(
            tls.as_ref()
                .map_or_else(TcpConnector::plain, NodeTls::raft_client),
        );
        let network = NetworkFactory::new(connector.clone(), faults.clone(), cluster_id.clone())
            .with_append_bytes_max(config.replication_bytes_max as usize);
        let internal = InternalClient::new(connector, faults.clone(), cluster_id.clone());
        let raft = Raft::new(
            config.node_id,
            raft_config::build(&timing)?,
            network,
            log_store,
            StateMachineStore::new(state.clone(), Some(log.clone())),
        )
        .await
        .context("start raft")?;

        let raft_listener = TcpListener::bind(&config.raft_addr)
            .await
            .with_context(|| format!("bind raft address {}", config.raft_addr))?;
        let flight_listener = TcpListener::bind(&config.flight_addr)
            .await
            .with_context(|| format!("bind flight address {}", config.flight_addr))?;
        let raft_addr = raft_listener.local_addr()?;
        let flight_addr = flight_listener.local_addr()?;
        // A new cluster's id is made before gossip starts, so that this node never shows
        // another cluster's nodes that its seeds lead it to.
        let bootstrapping = config.bootstrap && !raft.is_initialized().await?;
        if bootstrapping {
            create_cluster_id(&config, &cluster_id)?;
        }
        let gossip = start_gossip(&config, faults.clone(), &cluster_id).await?;

        let limits = WriteLimits {
            batch_bytes_max: config.batch_bytes_max,
            node_inflight_bytes_max: config.node_inflight_bytes_max,
            session_inflight_bytes_max: config.session_inflight_bytes_max,
            table_columns_max: config.table_columns_max,
            tables_max: config.tables_max,
        };
        let tiering = open_tiering(&config)?;
        let wal_guard = tiering.clone().map(|tiering| WalGuard {
            tiering,
            wal_bytes_max: config.wal_bytes_max,
            hold: Duration::from_millis(config.wal_full_hold_ms),
        });
        let intake = EntryIntake::default();
        let disk = DiskFloor::new(&config.data_dir, config.disk_free_bytes_min, intake.clone());
        let writes = Arc::new(WritePath::new(
            raft.clone(),
            state.clone(),
            acks,
            limits,
            wal_guard,
            disk.clone(),
        ));
        let ctx = Arc::new(NodeContext {
            node_id: config.node_id,
            raft: raft.clone(),
            state,
            log,
            writes,
            read_wait_max: Duration::from_millis(config.read_wait_max_ms),
            started: Instant::now(),
            gossip: Arc::new(gossip),
            apply_clock: Arc::new(ApplyClock::default()),
            faults: faults.clone(),
            wal_faults,
            fault_injection: config.fault_injection,
            cluster_id: cluster_id.clone(),
            internal,
            tiering: tiering.clone(),
            disk: disk.clone(),
        });

        let (stop_tx, stop_rx) = watch::channel(false);
        let gate = NodeGate::new(cluster_id.secret());
        let raft_service = RaftServiceServer::new(RaftRpcService::new(
            raft.clone(),
            faults,
            cluster_id.clone(),
            Arc::new(InternalService::new(&ctx)),
            intake,
        ))
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let handshake = Duration::from_millis(config.handshake_timeout_ms);
        let raft_server = http2_server(tls.as_ref().map(NodeTls::raft_server), handshake)?
            .add_service(InterceptedService::new(raft_service, gate))
            .serve_with_incoming_shutdown(
                accepted(raft_listener, connection_limits(&config)),
                stopped(stop_rx.clone()),
            );
        let flight_service = flight_service(&ctx, &config, cluster_id.secret())?;
        let flight_server = http2_server(tls.as_ref().map(NodeTls::flight_server), handshake)?
            .add_service(flight_service)
            .serve_with_incoming_shutdown(
                accepted(flight_listener, connection_limits(&config)),
                stopped(stop_rx),
            );
        let applied = ctx.state.subscribe_applied();
        let clock = ctx.apply_clock.clone();
        let agent_node = ctx.member_node();
        let policy = membership::agent::JoinPolicy {
            joining: !config.join.is_empty(),
            auto_promote: config.auto_promote,
            voters_max: config.voters_max,
        };
        let mut background = vec![
            tokio::spawn(async move { clock.follow(applied).await }),
            tokio::spawn(snapshot_schedule::run(
                raft.clone(),
                config.node_id,
                config.snapshot_every_entries,
            )),
            tokio::spawn(membership::agent::run(agent_node, policy)),
            tokio::spawn(disk.watch()),
        ];
        if let Some(tiering) = tiering {
            background.extend(spawn_tiering(&ctx, tiering, &config));
        }
        let servers = vec![
            tokio::spawn(async move {
                if let Err(e) = raft_server.await {
                    tracing::error!(error = %e, "raft rpc server failed");
                }
            }),
            tokio::spawn(async move {
                if let Err(e) = flight_server.await {
                    tracing::error!(error = %e, "flight server failed");
                }
            }),
        ];

        if bootstrapping {
            bootstrap(&raft, &config).await?;
        }
        Ok(Node {
            ctx,
            flight_addr,
            raft_addr,
            stop_tx,
            servers,
            background,
            db,
        })
    }

    /// Stops ingress, then Raft, then makes the metadata store durable.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.ctx.gossip.leave().await;
        let _ = self.stop_tx.send(true);
        for task in self.background {
            task.abort();
        }
        for server in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        self.ctx.raft.shutdown().await.context("stop raft")?;
        self.db.flush_async().await.context("flush metadata")?;
        Ok(())
    }
}

/// Starts the tier worker and the WAL purge of a node that tiers.
fn spawn_tiering(
    ctx: &NodeContext,
    tiering: Arc<Tiering>,
    config: &NodeConfig,
) -> [tokio::task::JoinHandle<()>; 2] {
    let worker = tier::TierNode {
        node_id: ctx.node_id,
        state: ctx.state.clone(),
        log: ctx.log.clone(),
        reporter: ctx.tier_reporter(),
    };
    let purge = tier::Purge {
        state: ctx.state.clone(),
        log: ctx.log.clone(),
        raft: ctx.raft.clone(),
        tiering: tiering.clone(),
        configured: Retention {
            bytes: config.wal_retention_bytes,
            ms: config.wal_retention_ms,
        },
    };
    [
        tokio::spawn(tier::run_worker(worker, tiering)),
        tokio::spawn(purge.run()),
    ]
}

/// The node's tiering, when `object-store-url` is set.
fn open_tiering(config: &NodeConfig) -> anyhow::Result<Option<Arc<Tiering>>> {
    let Some(settings) = config.tier_settings() else {
        tracing::warn!("object-store-url is not set: tiering is off, the highest durability level is REPLICATED and the WAL is never purged");
        return Ok(None);
    };
    let tiering = Tiering::open(settings).context("open the object store")?;
    Ok(Some(Arc::new(tiering)))
}

type FlightService = InterceptedService<FlightServiceServer<ArkaFlight>, Authenticate>;

/// The Flight service behind its trust rule: the interceptor that reads every call's
/// credentials, the audit log of refusals and admin actions.
fn flight_service(
    ctx: &Arc<NodeContext>,
    config: &NodeConfig,
    secret: &ClusterSecret,
) -> anyhow::Result<FlightService> {
    let audit = Audit::to_file(config.data_dir.join("audit.log"));
    let authenticator = open_authenticator(config, secret)?;
    let flight = ArkaFlight::new(
        ctx.clone(),
        authenticator.clone(),
        Guard::new(audit.clone()),
    );
    Ok(InterceptedService::new(
        // A larger message is refused from its length prefix, before it is read: a batch over
        // `batch-bytes-max` never costs the node its size in memory.
        FlightServiceServer::new(flight)
            .max_decoding_message_size(config.batch_bytes_max + FLIGHT_FRAMING_BYTES_MAX)
            .max_encoding_message_size(FLIGHT_ANSWER_BYTES_MAX),
        Authenticate::new(authenticator, audit),
    ))
}

/// The users of the Flight port, when `auth-file` is set.
fn open_authenticator(
    config: &NodeConfig,
    secret: &ClusterSecret,
) -> anyhow::Result<Option<Arc<Authenticator>>> {
    let Some(path) = &config.auth_file else {
        tracing::warn!("auth-file is not set: Flight clients are not authenticated and every caller may do everything");
        return Ok(None);
    };
    let users = Users::from_file(path)?;
    let ttl = Duration::from_secs(config.auth_token_ttl_secs);
    Ok(Some(Arc::new(Authenticator::new(
        users,
        secret.clone(),
        ttl,
    ))))
}

/// The cluster secret from `cluster-secret-file`.
fn load_secret(config: &NodeConfig) -> anyhow::Result<ClusterSecret> {
    let path = config
        .cluster_secret_file
        .as_deref()
        .context("cluster-secret-file is not set")?;
    Ok(ClusterSecret::from_file(path)?)
}

/// The cluster id stored by an earlier run (none before this node joined or bootstrapped a
/// cluster), and how a new one is stored: in the metadata store, flushed before use.
fn open_cluster_id(db: &sled::Db, secret: ClusterSecret) -> anyhow::Result<ClusterId> {
    const KEY: &[u8] = b"cluster_id";
    let tree = db.open_tree("node").context("open node metadata")?;
    let known = tree
        .get(KEY)
        .context("read cluster id")?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let persist: Persist = Arc::new(move |id: &str| {
        tree.insert(KEY, id.as_bytes())
            .and_then(|_| tree.flush())
            .map(|_| ())
            .map_err(|e| format!("store cluster id: {e}"))
    });
    Ok(ClusterId::new(known, persist, secret))
}

/// Resolves `HOST:PORT`, for gossip, which speaks to socket addresses.
async fn resolve(what: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolve {what} {addr}"))?
        .next()
        .with_context(|| format!("{what} {addr} resolves to no address"))
}

/// Binds the gossip socket and announces this node to its `--join` seeds.
async fn start_gossip(
    config: &NodeConfig,
    faults: NetworkFaults,
    cluster_id: &ClusterId,
) -> anyhow::Result<Gossip> {
    let bind = resolve("gossip address", &config.gossip_addr).await?;
    let udp = UdpDatagrams::bind(bind, faults)
        .await
        .with_context(|| format!("bind gossip address {bind}"))?;
    let gossip_addr = udp.local_addr()?;
    let datagrams = SealedDatagrams::new(udp, cluster_id.secret().clone());
    let mut seeds = Vec::new();
    for seed in &config.join {
        seeds.push(resolve("join address", seed).await?);
    }
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let identity = Peer {
        node_id: config.node_id,
        gossip_addr,
        raft_addr: config.raft_addr.clone(),
        flight_addr: config.flight_addr.clone(),
        incarnation: since_epoch.as_millis() as u64,
        seed: false,
    };
    let gossip_config = GossipConfig {
        identity,
        seeds,
        timing: GossipTiming::default(),
        rng_seed: since_epoch.as_nanos() as u64 ^ u64::from(std::process::id()),
    };
    let initial = NodeState {
        node_id: config.node_id,
        cluster_id: cluster_id.get(),
        ..Default::default()
    };
    Ok(Gossip::start(gossip_config, datagrams, initial))
}

/// Gives the cluster this node is about to bootstrap its random id.
fn create_cluster_id(config: &NodeConfig, cluster_id: &ClusterId) -> anyhow::Result<()> {
    let random = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        (config.node_id, std::process::id()),
    );
    let id = cluster_id
        .create(random)
        .map_err(|e| anyhow::anyhow!("store the new cluster id: {e}"))?;
    tracing::info!(cluster_id = %id, "new cluster id");
    Ok(())
}

/// Initializes a new cluster on this node (its data dir holds none yet).
async fn bootstrap(raft: &Raft, config: &NodeConfig) -> anyhow::Result<()> {
    let mut members: BTreeMap<NodeId, NodeInfo> = config
        .initial_members
        .iter()
        .map(|m| {
            let info = NodeInfo {
                raft_addr: m.raft_addr.clone(),
                flight_addr: m.flight_addr.clone(),
            };
            (m.node_id, info)
        })
        .collect();
    members.entry(config.node_id).or_insert_with(|| NodeInfo {
        raft_addr: config.raft_addr.clone(),
        flight_addr: config.flight_addr.clone(),
    });
    tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "bootstrapping a new cluster");
    raft.initialize(members)
        .await
        .context("initialize cluster")?;
    // Campaign at once, so that the bootstrapping node is the first leader.
    raft.trigger()
        .elect(false)
        .await
        .context("start election")?;
    Ok(())
}

/// The connections `listener` accepts, with Nagle's algorithm off: tonic applies its own
/// `tcp_nodelay` only to listeners it binds itself, and with Nagle on, a small answer (an
/// ack, an AppendEntries answer) sent while an earlier one is unacknowledged waits for the
/// peer's delayed ACK, about 40 ms.
/// A gRPC server with arka's HTTP/2 windows and keep-alive pings, and TLS when `tls` is
/// given, whose handshake must end within `handshake`.
fn http2_server(
    tls: Option<ServerTlsConfig>,
    handshake: Duration,
) -> anyhow::Result<tonic::transport::Server> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls.timeout(handshake))
            .context("TLS configuration")?;
    }
    Ok(server
        .initial_stream_window_size(arka_cluster::network::HTTP2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(arka_cluster::network::HTTP2_CONNECTION_WINDOW_BYTES)
        .http2_keepalive_interval(Some(listener::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(listener::KEEPALIVE_TIMEOUT)))
}

fn connection_limits(config: &NodeConfig) -> ConnectionLimits {
    ConnectionLimits {
        max: config.connections_max,
        handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
    }
}

/// The node's TLS files, when TLS is on; the Flight locations it hands out then say
/// `grpc+tls://`.
fn open_tls(config: &NodeConfig) -> anyhow::Result<Option<NodeTls>> {
    let Some((ca, cert, key)) = config.tls_files() else {
        arka_cluster::types::advertise_flight_tls(false);
        return Ok(None);
    };
    arka_cluster::types::advertise_flight_tls(true);
    Ok(Some(NodeTls::load(ca, cert, key)?))
}

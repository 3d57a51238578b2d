//! What a node opens before it serves: its secret and cluster id, TLS, the object store and
//! catalog, the users of the Flight port, gossip, and, on a new cluster, the first membership.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arka_cluster::cluster_id::{ClusterId, Persist, PersistFailed};
use arka_cluster::fault::NetworkFaults;
use arka_cluster::gossip::{
    Gossip, GossipConfig, GossipTiming, NodeState, Peer, SealedDatagrams, UdpDatagrams,
};
use arka_cluster::{ClusterSecret, NodeId, NodeInfo};

use crate::auth::{Authenticator, Users};
use crate::config::NodeConfig;
use crate::raft::Raft;
use crate::tier::Tiering;
use crate::tls::NodeTls;

/// The cluster secret from `cluster-secret-file`.
pub(super) fn load_secret(config: &NodeConfig) -> anyhow::Result<ClusterSecret> {
    let path = config
        .cluster_secret_file
        .as_deref()
        .context("cluster-secret-file is not set")?;
    Ok(ClusterSecret::from_file(path)?)
}

/// The cluster id stored by an earlier run (none before this node joined or bootstrapped a
/// cluster), and how a new one is stored: in the metadata store, flushed before use.
pub(super) fn open_cluster_id(db: &sled::Db, secret: ClusterSecret) -> anyhow::Result<ClusterId> {
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
            .map_err(|e| PersistFailed(Box::new(e)))
    });
    Ok(ClusterId::new(known, persist, secret))
}

/// Resolves `HOST:PORT`, for gossip, which speaks to socket addresses.
pub(super) async fn resolve(what: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolve {what} {addr}"))?
        .next()
        .with_context(|| format!("{what} {addr} resolves to no address"))
}

/// Binds the gossip socket and announces this node to its `--join` seeds.
pub(super) async fn start_gossip(
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
pub(super) fn create_cluster_id(config: &NodeConfig, cluster_id: &ClusterId) -> anyhow::Result<()> {
    let random = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        (config.node_id, std::process::id()),
    );
    let id = cluster_id
        .create(random)
        .context("store the new cluster id")?;
    tracing::info!(cluster_id = %id, "new cluster id");
    Ok(())
}

/// Initializes a new cluster on this node (its data dir holds none yet).
pub(super) async fn bootstrap(raft: &Raft, config: &NodeConfig) -> anyhow::Result<()> {
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

/// The node's TLS files, when TLS is on; the Flight locations it hands out then say
/// `grpc+tls://`.
pub(super) fn open_tls(config: &NodeConfig) -> anyhow::Result<Option<NodeTls>> {
    let Some((ca, cert, key)) = config.tls_files() else {
        arka_cluster::types::advertise_flight_tls(false);
        return Ok(None);
    };
    arka_cluster::types::advertise_flight_tls(true);
    Ok(Some(NodeTls::load(ca, cert, key)?))
}

/// The node's tiering, when `object-store-url` is set.
pub(super) fn open_tiering(config: &NodeConfig) -> anyhow::Result<Option<Arc<Tiering>>> {
    let Some(settings) = config.tier_settings() else {
        tracing::warn!("object-store-url is not set: tiering is off, the highest durability level is REPLICATED and the WAL is never purged");
        return Ok(None);
    };
    let tiering = Tiering::open(settings).context("open the object store")?;
    Ok(Some(Arc::new(tiering)))
}

/// The users of the Flight port, when `auth-file` is set.
pub(super) fn open_authenticator(
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

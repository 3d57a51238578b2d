//! `arka server`: one node. Flags and `ARKA_*` variables override the config file.

use std::path::PathBuf;

use arka_cluster::NodeId;
use clap::Args;

use crate::config::{MemberSpec, NodeConfig};
use crate::node::Node;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML config file (kebab-case keys, see `NodeConfig`).
    #[arg(long, env = "ARKA_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (unique in the cluster, never reused).
    #[arg(long, env = "ARKA_NODE_ID")]
    node_id: Option<u64>,
    /// Directory for the WAL and metadata.
    #[arg(long, env = "ARKA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Flight listen address, HOST:PORT.
    #[arg(long, env = "ARKA_FLIGHT_ADDR")]
    flight_addr: Option<String>,
    /// Raft listen address, HOST:PORT.
    #[arg(long, env = "ARKA_RAFT_ADDR")]
    raft_addr: Option<String>,
    /// Gossip UDP address, HOST:PORT.
    #[arg(long, env = "ARKA_GOSSIP_ADDR")]
    gossip_addr: Option<String>,
    /// A voter of the initial cluster, ID@RAFT_ADDR@FLIGHT_ADDR (repeat for each).
    #[arg(long = "member", value_name = "ID@RAFT@FLIGHT")]
    members: Vec<MemberSpec>,
    /// Initialize a new cluster if the data dir holds none.
    #[arg(long, env = "ARKA_BOOTSTRAP")]
    bootstrap: bool,
    /// Gossip addresses of running members, HOST:PORT,… : join their cluster (as a learner,
    /// then a voter once caught up unless --no-auto-promote).
    #[arg(
        long,
        env = "ARKA_JOIN",
        value_delimiter = ',',
        value_name = "HOST:PORT,…"
    )]
    join: Vec<String>,
    /// Stay a learner after joining until `add_node` promotes this node.
    #[arg(long)]
    no_auto_promote: bool,
    /// Object store for tiered data and Iceberg metadata: file:///DIR, s3://BUCKET/PREFIX, …
    /// (options such as aws_endpoint go in the config file's object-store-options).
    #[arg(long, env = "ARKA_OBJECT_STORE_URL")]
    object_store_url: Option<String>,
    /// Iceberg catalog: sqlite:PATH?mode=rwc (default: a file in the data dir), or an
    /// Iceberg REST catalog's http(s):// URI (its options go in catalog-options).
    #[arg(long, env = "ARKA_CATALOG_URL")]
    catalog_url: Option<String>,
    /// How often the tier worker commits to Iceberg, in milliseconds.
    #[arg(long, env = "ARKA_COMMIT_INTERVAL_MS")]
    commit_interval_ms: Option<u64>,
    /// File holding the cluster secret (the same on every member).
    #[arg(long, env = "ARKA_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// The cluster CA certificate (PEM): turns TLS on, with --tls-cert-file and --tls-key-file.
    #[arg(long, env = "ARKA_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// This node's certificate (PEM).
    #[arg(long, env = "ARKA_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "ARKA_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// The users of the Flight port (TOML); unset, clients are not authenticated.
    #[arg(long, env = "ARKA_AUTH_FILE")]
    auth_file: Option<PathBuf>,
    /// Allow the `inject_fault` action (tests and chaos runs only).
    #[arg(long, env = "ARKA_FAULT_INJECTION")]
    fault_injection: bool,
}

impl ServerArgs {
    fn into_config(self) -> anyhow::Result<NodeConfig> {
        let mut config = match &self.config {
            Some(path) => NodeConfig::from_file(path)?,
            None => NodeConfig::default(),
        };
        if let Some(v) = self.node_id {
            config.node_id = NodeId(v);
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.flight_addr {
            config.flight_addr = v;
        }
        if let Some(v) = self.raft_addr {
            config.raft_addr = v;
        }
        if let Some(v) = self.gossip_addr {
            config.gossip_addr = v;
        }
        if !self.members.is_empty() {
            config.initial_members = self.members;
        }
        config.bootstrap |= self.bootstrap;
        if !self.join.is_empty() {
            config.join = self.join;
        }
        if self.no_auto_promote {
            config.auto_promote = false;
        }
        if self.cluster_secret_file.is_some() {
            config.cluster_secret_file = self.cluster_secret_file;
        }
        if self.auth_file.is_some() {
            config.auth_file = self.auth_file;
        }
        for (flag, key) in [
            (self.tls_ca_file, &mut config.tls_ca_file),
            (self.tls_cert_file, &mut config.tls_cert_file),
            (self.tls_key_file, &mut config.tls_key_file),
        ] {
            if flag.is_some() {
                *key = flag;
            }
        }
        config.fault_injection |= self.fault_injection;
        if self.object_store_url.is_some() {
            config.object_store_url = self.object_store_url;
        }
        if self.catalog_url.is_some() {
            config.catalog_url = self.catalog_url;
        }
        if let Some(v) = self.commit_interval_ms {
            config.commit_interval_ms = v;
        }
        config.validate()?;
        Ok(config)
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let node = Node::start(config.clone()).await?;
    println!(
        "arka node {} serving flight grpc://{} raft {} data {}",
        config.node_id,
        node.flight_addr,
        node.raft_addr,
        config.data_dir.display()
    );
    let signal = super::shutdown_signal().await?;
    tracing::info!(signal, "shutting down");
    node.shutdown().await
}

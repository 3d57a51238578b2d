//! `arka dev`: a local cluster of child `arka server` processes on consecutive ports.
//!
//! Node i (1-based) serves Flight on `base-port + i - 1`, Raft on `base-port + 100 + i - 1`
//! and gossip on `base-port + 200 + i - 1`. Node 1 bootstraps the group, so a fresh cluster's
//! first leader is on `base-port`. A child that dies is reported, never restarted silently.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use tokio::process::Command;
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Data directory; node i keeps its data in DIR/node-i. Reusing it brings the same
    /// cluster back with its data.
    #[arg(long, default_value = "arka-dev")]
    data_dir: PathBuf,
    /// Flight port of node 1.
    #[arg(long, default_value_t = 8815)]
    base_port: u16,
    /// Object store shared by the nodes (default: DIR/objects on the local filesystem).
    #[arg(long)]
    object_store_url: Option<String>,
    /// How often the tier worker commits to Iceberg, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    commit_interval_ms: u64,
    /// TLS on every port: makes a CA and node certificates under DATA_DIR/tls (clients trust
    /// DATA_DIR/tls/ca.pem and connect with grpc+tls://); the Raft port runs mutual TLS.
    #[arg(long)]
    tls: bool,
    /// The users of the Flight port (TOML, see `arka hash-password`): every call but the
    /// Handshake then needs a bearer token.
    #[arg(long, value_name = "FILE")]
    auth_file: Option<PathBuf>,
}

/// What the nodes of a dev cluster share: one object store, one Iceberg catalog, the
/// cluster secret, and the CA and users when secured.
pub struct DevShared {
    pub object_store_url: String,
    pub catalog_url: String,
    pub commit_interval_ms: u64,
    pub secret_file: PathBuf,
    pub tls: Option<super::dev_certs::DevCerts>,
    pub auth_file: Option<PathBuf>,
}

impl DevShared {
    /// Under the dev data dir, which is created (its path must be absolute in URLs).
    pub fn under(
        data_dir: &Path,
        object_store_url: Option<String>,
        commit_interval_ms: u64,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let root = data_dir.canonicalize()?;
        let object_store_url = object_store_url
            .unwrap_or_else(|| format!("file://{}", root.join("objects").display()));
        Ok(Self {
            object_store_url,
            catalog_url: crate::tier::default_catalog_url(&root),
            commit_interval_ms,
            secret_file: super::secrets::ensure_secret_file(&root.join("cluster.secret"))?,
            tls: None,
            auth_file: None,
        })
    }

    /// Secures the cluster: TLS certificates for `nodes` nodes on this machine under the
    /// data dir (`tls`), and the users of `auth_file`.
    pub fn secured(
        mut self,
        data_dir: &Path,
        nodes: usize,
        tls: bool,
        auth_file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        if tls {
            let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
            let dir = data_dir.canonicalize()?.join("tls");
            self.tls = Some(super::dev_certs::generate(&dir, nodes, &hosts)?);
        }
        self.auth_file = auth_file.map(|f| f.canonicalize()).transpose()?;
        Ok(self)
    }
}

/// The addresses of node `id` (1-based) of a dev cluster.
pub struct DevNode {
    pub id: u64,
    pub flight: String,
    pub raft: String,
    pub gossip: String,
}

pub fn dev_nodes(nodes: u64, base_port: u16) -> Vec<DevNode> {
    (1..=nodes)
        .map(|id| {
            let port =
                |offset: u64| format!("127.0.0.1:{}", u64::from(base_port) + offset + id - 1);
            DevNode {
                id,
                flight: port(0),
                raft: port(100),
                gossip: port(200),
            }
        })
        .collect()
}

pub fn server_args(
    node: &DevNode,
    all: &[DevNode],
    data_dir: &Path,
    tiering: &DevShared,
) -> Vec<String> {
    let mut args = vec![
        "server".to_string(),
        "--node-id".into(),
        node.id.to_string(),
        "--data-dir".into(),
        data_dir
            .join(format!("node-{}", node.id))
            .display()
            .to_string(),
        "--flight-addr".into(),
        node.flight.clone(),
        "--raft-addr".into(),
        node.raft.clone(),
        "--gossip-addr".into(),
        node.gossip.clone(),
        "--object-store-url".into(),
        tiering.object_store_url.clone(),
        "--catalog-url".into(),
        tiering.catalog_url.clone(),
        "--commit-interval-ms".into(),
        tiering.commit_interval_ms.to_string(),
        "--cluster-secret-file".into(),
        tiering.secret_file.display().to_string(),
    ];
    if let Some(tls) = &tiering.tls {
        let (cert, key) = &tls.nodes[(node.id - 1) as usize];
        for (flag, path) in [
            ("--tls-ca-file", &tls.ca),
            ("--tls-cert-file", cert),
            ("--tls-key-file", key),
        ] {
            args.push(flag.into());
            args.push(path.display().to_string());
        }
    }
    if let Some(auth_file) = &tiering.auth_file {
        args.push("--auth-file".into());
        args.push(auth_file.display().to_string());
    }
    let seeds: Vec<&str> = all
        .iter()
        .filter(|n| n.id != node.id)
        .map(|n| n.gossip.as_str())
        .collect();
    if !seeds.is_empty() {
        args.push("--join".into());
        args.push(seeds.join(","));
    }
    if node.id == 1 {
        args.push("--bootstrap".into());
        for member in all {
            args.push("--member".into());
            args.push(format!("{}@{}@{}", member.id, member.raft, member.flight));
        }
    }
    args
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on a child's pid has no memory effects.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The environment variable tokio reads for the number of runtime threads it starts.
const WORKER_THREADS_ENV: &str = "TOKIO_WORKER_THREADS";

/// Runtime threads for each of `nodes` nodes sharing `cores`: the nodes' share of the cores,
/// at least one. A node started alone takes one thread per core; three of them on one small
/// machine would then keep twice as many threads as cores waking each other for every write.
fn worker_threads_per_node(cores: usize, nodes: u64) -> usize {
    (cores / nodes.max(1) as usize).max(1)
}

/// `TOKIO_WORKER_THREADS` for the nodes, unless the user set it for them.
fn worker_threads_env(nodes: u64) -> Option<(&'static str, String)> {
    if std::env::var_os(WORKER_THREADS_ENV).is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((
        WORKER_THREADS_ENV,
        worker_threads_per_node(cores, nodes).to_string(),
    ))
}

pub async fn run(args: DevArgs) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let nodes = dev_nodes(args.nodes, args.base_port);
    let tiering = DevShared::under(
        &args.data_dir,
        args.object_store_url,
        args.commit_interval_ms,
    )?
    .secured(&args.data_dir, nodes.len(), args.tls, args.auth_file)?;
    if let Some(tls) = &tiering.tls {
        println!("arka dev: TLS on; clients trust {}", tls.ca.display());
    }
    println!(
        "arka dev: object store {}, iceberg catalog {}",
        tiering.object_store_url, tiering.catalog_url
    );
    let (exit_tx, mut exit_rx) = mpsc::channel::<(u64, String)>(nodes.len());
    let mut pids = Vec::new();
    let worker_threads = worker_threads_env(args.nodes);
    if let Some((_, threads)) = &worker_threads {
        println!("arka dev: {threads} runtime thread(s) per node ({WORKER_THREADS_ENV} overrides)");
    }
    for node in &nodes {
        let argv = server_args(node, &nodes, &args.data_dir, &tiering);
        println!("node {}: {} {}", node.id, exe.display(), argv.join(" "));
        let scheme = if tiering.tls.is_some() {
            "grpc+tls"
        } else {
            "grpc"
        };
        println!("node {}: flight {scheme}://{}", node.id, node.flight);
        let mut child = Command::new(&exe)
            .args(&argv)
            .envs(worker_threads.clone())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        pids.push((node.id, child.id().unwrap_or(0)));
        let tx = exit_tx.clone();
        let id = node.id;
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            let _ = tx.send((id, status)).await;
        });
    }
    drop(exit_tx);
    println!("arka dev: {} nodes running; Ctrl-C stops them", nodes.len());

    let mut alive = nodes.len();
    let signal_name = loop {
        tokio::select! {
            sig = super::shutdown_signal() => break sig?,
            Some((id, status)) = exit_rx.recv() => {
                alive -= 1;
                eprintln!("arka dev: node {id} exited ({status}); it is not restarted. Restart `arka dev` to bring it back.");
                if alive == 0 {
                    eprintln!("arka dev: every node has exited");
                    return Ok(1);
                }
            }
        }
    };
    println!("arka dev: {signal_name}: stopping {alive} nodes");
    for (_, pid) in &pids {
        signal(*pid, libc::SIGTERM);
    }
    let deadline = tokio::time::sleep(Duration::from_secs(15));
    tokio::pin!(deadline);
    while alive > 0 {
        tokio::select! {
            Some((id, status)) = exit_rx.recv() => {
                alive -= 1;
                println!("arka dev: node {id} stopped ({status})");
            }
            _ = &mut deadline => {
                eprintln!("arka dev: {alive} nodes did not stop within 15 s; killing them");
                for (_, pid) in &pids {
                    signal(*pid, libc::SIGKILL);
                }
                break;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::worker_threads_per_node;

    #[test]
    fn nodes_share_the_cores_and_each_keeps_at_least_one_thread() {
        assert_eq!(worker_threads_per_node(2, 3), 1);
        assert_eq!(worker_threads_per_node(16, 3), 5);
        assert_eq!(worker_threads_per_node(8, 1), 8);
        assert_eq!(worker_threads_per_node(1, 9), 1);
    }
}

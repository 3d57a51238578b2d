//! A cluster of real `arka server` processes, one per host of the test network, with its
//! data and logs in the run's folder, and its lake there too (a local object store and an
//! SQLite catalog) or on services of its own on the network ([`RemoteLake`]).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::Context;
use arka::client::{ConnectOptions, Credentials};
use tokio::time::Instant;

use crate::net::Network;
use crate::remote_lake::RemoteLake;

const FLIGHT_PORT: u16 = 8815;
const RAFT_PORT: u16 = 7815;
const GOSSIP_PORT: u16 = 6815;
/// How long a node may take to drop its unsynced bytes and die at a power loss.
const POWER_LOSS_WAIT_MAX: Duration = Duration::from_secs(10);

pub struct Cluster {
    /// The lake's services, when the lake is remote. Declared before the network, so that
    /// they stop before their address goes.
    pub lake: Option<RemoteLake>,
    pub net: Network,
    arka: PathBuf,
    dir: PathBuf,
    children: Vec<Option<Child>>,
    /// Node 1 bootstrapped the cluster: from now on it starts without `bootstrap`, so that
    /// a node 1 whose data was wiped joins this cluster rather than founding another.
    bootstrapped: bool,
    security: Security,
}

/// Every run is secured as production is: TLS on both ports (one CA, one certificate for
/// all the run's hosts) and an auth file whose one admin user the harness signs in as.
struct Security {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    auth_file: PathBuf,
}

/// The harness's user.
const USER: &str = "jepsen";

impl Security {
    fn create(dir: &Path, hosts: Vec<String>) -> anyhow::Result<Self> {
        let certs = arka::cli::dev_certs::generate(&dir.join("tls"), 1, &hosts)?;
        let (cert, key) = certs.nodes[0].clone();
        let password = format!("{:016x}", rand_secret());
        let hash = arka::auth::hash_password(&password).map_err(anyhow::Error::msg)?;
        let auth_file = dir.join("users.toml");
        std::fs::write(
            &auth_file,
            format!("[[user]]\nname = \"{USER}\"\nrole = \"admin\"\npassword-hash = \"{hash}\"\n"),
        )
        .with_context(|| format!("write {}", auth_file.display()))?;
        let options = ConnectOptions::default()
            .with_tls_ca_file(&certs.ca)
            .context("read the run's CA")?
            .with_credentials(Credentials::Password {
                user: USER.into(),
                password,
            });
        crate::connect::set(options);
        Ok(Self {
            ca: certs.ca,
            cert,
            key,
            auth_file,
        })
    }

    fn node_config(&self) -> String {
        let line = |key: &str, path: &Path| format!("{key} = {:?}\n", path.display().to_string());
        [
            line("tls-ca-file", &self.ca),
            line("tls-cert-file", &self.cert),
            line("tls-key-file", &self.key),
            line("auth-file", &self.auth_file),
        ]
        .concat()
    }
}

impl Cluster {
    /// Starts `nodes` nodes of a new cluster, each on its own host, and waits for a leader;
    /// `remote_lake`: with the lake on services of its own.
    pub async fn start(
        arka: &Path,
        dir: &Path,
        nodes: usize,
        remote_lake: bool,
    ) -> anyhow::Result<Self> {
        let net = Network::create(nodes)?;
        let hosts = (1..=nodes).map(|id| net.addr(id)).collect();
        let security = Security::create(dir, hosts)?;
        let lake = match remote_lake {
            true => Some(RemoteLake::start(&net.bridge_addr(), dir)?),
            false => None,
        };
        let mut cluster = Cluster {
            lake,
            net,
            arka: arka.to_path_buf(),
            dir: dir.to_path_buf(),
            children: (0..nodes).map(|_| None).collect(),
            bootstrapped: false,
            security,
        };
        for id in 1..=nodes {
            cluster.spawn(id)?;
        }
        cluster.wait_for_leader(Duration::from_secs(60)).await?;
        cluster.bootstrapped = true;
        Ok(cluster)
    }

    pub fn nodes(&self) -> usize {
        self.children.len()
    }

    /// Node `id`'s Flight address, as clients give it.
    pub fn flight_addr(&self, id: usize) -> String {
        format!("grpc+tls://{}:{FLIGHT_PORT}", self.net.addr(id))
    }

    /// Node `id`'s Flight address as `host:port`, as the membership names it.
    pub fn flight_socket_addr(&self, id: usize) -> String {
        format!("{}:{FLIGHT_PORT}", self.net.addr(id))
    }

    /// Node `id`'s Raft address as `host:port`.
    pub fn raft_addr(&self, id: usize) -> String {
        format!("{}:{RAFT_PORT}", self.net.addr(id))
    }

    pub fn flight_addrs(&self) -> Vec<String> {
        (1..=self.nodes()).map(|id| self.flight_addr(id)).collect()
    }

    /// Starts (or restarts) node `id` on its data dir.
    pub fn spawn(&mut self, id: usize) -> anyhow::Result<()> {
        let config = self.write_config(id)?;
        let log = self.dir.join(format!("node-{id}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?;
        let child = (self.net.command_on(id, &self.arka))
            .arg("server")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start node {id}"))?;
        self.children[id - 1] = Some(child);
        Ok(())
    }

    /// kill -9 of node `id`, reaped; a node that is down already is left alone.
    pub fn kill9(&mut self, id: usize) {
        if let Some(mut child) = self.children[id - 1].take() {
            // `ip netns exec` execs the server: the child is the node itself.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A power loss of the nodes `ids` at once (SIGPWR: each drops what its WAL had not
    /// fsynced and dies); returns once every one of them is gone.
    pub fn power_loss(&mut self, ids: &[usize]) -> anyhow::Result<()> {
        for id in ids {
            self.signal(*id, libc::SIGPWR);
        }
        let deadline = std::time::Instant::now() + POWER_LOSS_WAIT_MAX;
        for id in ids {
            let Some(mut child) = self.children[id - 1].take() else {
                continue;
            };
            while child.try_wait()?.is_none() {
                if std::time::Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    anyhow::bail!(
                        "node {id} did not stop within {POWER_LOSS_WAIT_MAX:?} of its power loss"
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to node `id`, if it is running.
    pub fn signal(&self, id: usize, signal: i32) {
        let Some(child) = &self.children[id - 1] else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our own child process.
            unsafe { libc::kill(pid, signal) };
        }
    }

    pub fn is_running(&self, id: usize) -> bool {
        self.children[id - 1].is_some()
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// Waits until node `id` answers `status` (true) or its process has ended by itself,
    /// as a node that refuses its data does (false, and it is no longer running).
    pub async fn wait_up_or_exited(&mut self, id: usize, within: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.children[id - 1].as_mut() {
                if child.try_wait()?.is_some() {
                    self.children[id - 1] = None;
                    return Ok(false);
                }
            }
            if self.leader_seen_by(id).await.is_some() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("node {id} neither came up nor stopped within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts every node that is down.
    pub fn restart_stopped(&mut self) -> anyhow::Result<()> {
        for id in 1..=self.nodes() {
            if !self.is_running(id) {
                self.spawn(id)?;
            }
        }
        Ok(())
    }

    /// Waits until a running node names a leader; returns its id.
    pub async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            for id in (1..=self.nodes()).filter(|id| self.is_running(*id)) {
                if let Some(leader) = self.leader_seen_by(id).await {
                    return Ok(leader);
                }
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "no leader within {within:?}; see the node logs in {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node a running node names as leader, if one does.
    pub async fn leader_now(&self) -> Option<usize> {
        for id in (1..=self.nodes()).filter(|id| self.is_running(*id)) {
            if let Some(leader) = self.leader_seen_by(id).await {
                return usize::try_from(leader)
                    .ok()
                    .filter(|l| (1..=self.nodes()).contains(l));
            }
        }
        None
    }

    /// Makes every node's WAL skip its fsyncs from now on (until it restarts).
    pub async fn skip_fsync(&self) -> anyhow::Result<()> {
        for id in 1..=self.nodes() {
            let client = crate::connect::client(&self.flight_addr(id))
                .await
                .with_context(|| format!("connect to node {id}"))?;
            let fault = serde_json::json!({ "wal_skip_fsync": true });
            (client.action("inject_fault", &fault).await)
                .with_context(|| format!("make node {id} skip its fsyncs"))?;
        }
        Ok(())
    }

    /// The arguments of `iceberg_read.py` that read the cluster's lake: catalog, warehouse,
    /// then the reader's properties.
    pub fn lake_reader_args(&self) -> Vec<String> {
        match &self.lake {
            Some(lake) => lake.reader_args(),
            None => vec![
                self.dir.join("catalog.db").display().to_string(),
                format!("file://{}/warehouse", self.dir.join("objects").display()),
            ],
        }
    }

    async fn leader_seen_by(&self, id: usize) -> Option<u64> {
        let ask = async {
            let client = crate::connect::client(&self.flight_addr(id)).await.ok()?;
            let status = client
                .action("status", &serde_json::Value::Null)
                .await
                .ok()?;
            status["leader_id"].as_u64()
        };
        tokio::time::timeout(Duration::from_secs(2), ask)
            .await
            .ok()
            .flatten()
    }

    /// The run's cluster secret, made on first use.
    fn secret_file(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("cluster.secret");
        if !path.exists() {
            let secret = format!("jepsen secret {:016x}", rand_secret());
            std::fs::write(&path, secret).with_context(|| format!("write {}", path.display()))?;
        }
        Ok(path)
    }

    fn write_config(&self, id: usize) -> anyhow::Result<PathBuf> {
        let addr = self.net.addr(id);
        let mut text = format!(
            "node-id = {id}\ndata-dir = {:?}\nflight-addr = \"{addr}:{FLIGHT_PORT}\"\nraft-addr = \"{addr}:{RAFT_PORT}\"\ngossip-addr = \"{addr}:{GOSSIP_PORT}\"\nfault-injection = true\n",
            self.data_dir(id).display().to_string(),
        );
        match &self.lake {
            Some(lake) => text.push_str(&lake.node_config()),
            None => {
                let objects = format!("file://{}", self.dir.join("objects").display());
                let catalog = format!("sqlite:{}?mode=rwc", self.dir.join("catalog.db").display());
                text.push_str(&format!(
                    "object-store-url = {objects:?}\ncatalog-url = {catalog:?}\n"
                ));
            }
        }
        text.push_str("commit-interval-ms = 1000\n");
        text.push_str(&self.security.node_config());
        text.push_str(&format!(
            "cluster-secret-file = {:?}\n",
            self.secret_file()?.display().to_string()
        ));
        let seeds: Vec<String> = (1..=self.nodes())
            .filter(|other| *other != id)
            .map(|other| format!("\"{}:{GOSSIP_PORT}\"", self.net.addr(other)))
            .collect();
        text.push_str(&format!("join = [{}]\n", seeds.join(", ")));
        if id == 1 && !self.bootstrapped {
            text.push_str("bootstrap = true\ninitial-members = [\n");
            for member in 1..=self.nodes() {
                let addr = self.net.addr(member);
                text.push_str(&format!(
                    "  {{ node-id = {member}, raft-addr = \"{addr}:{RAFT_PORT}\", flight-addr = \"{addr}:{FLIGHT_PORT}\" }},\n"
                ));
            }
            text.push_str("]\n");
        }
        let path = self.dir.join(format!("node-{id}.toml"));
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes() {
            self.kill9(id);
        }
    }
}

/// A secret for one run (its strength is not the point: only the run's nodes see it).
fn rand_secret() -> u64 {
    std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        std::process::id(),
    )
}

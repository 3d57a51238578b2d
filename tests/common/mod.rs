//! A real cluster for integration tests: every node is its own `arka server` process on
//! 127.0.0.1 ports, so tests can kill -9, stop and restart nodes.

#![allow(dead_code)]

pub mod crash;
pub mod data;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arka::client::{Client, WriteItem};
use arka::durability::Level;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::time::{sleep, Instant};

/// The LSNs of the acks at `level`, in order.
pub fn lsns_at(acks: &[arka::client::Ack], level: arka::durability::Level) -> Vec<u64> {
    let mut lsns: Vec<u64> = acks
        .iter()
        .filter(|a| a.level == level)
        .map(|a| a.lsn)
        .collect();
    lsns.sort_unstable();
    lsns
}

/// The cluster secret of test clusters.
pub const TEST_SECRET: &str = "test cluster secret, 32 bytes..";

/// A node-to-node message signed as a holder of `secret` that belongs to cluster
/// `cluster_id` ("" for none) signs it.
pub fn node_message(
    secret: &str,
    cluster_id: &str,
    data: Vec<u8>,
) -> arka_proto::raft::RaftPayload {
    let secret = arka_cluster::ClusterSecret::new(secret.as_bytes()).expect("secret");
    let persist: arka_cluster::cluster_id::Persist = std::sync::Arc::new(|_| Ok(()));
    arka_cluster::ClusterId::new(Some(cluster_id.to_string()), persist, secret).seal(data)
}

/// A client of the Raft port at `raft_addr` that presents the gate key of `secret` (a
/// member's key with [`TEST_SECRET`]).
pub async fn raft_port_client(raft_addr: &str, secret: &str) -> arka_cluster::network::RaftClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{raft_addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the raft port");
    let secret = arka_cluster::ClusterSecret::new(secret.as_bytes()).expect("secret");
    arka_cluster::network::NodeKey::new(&secret).client(channel)
}

/// How long a cluster condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Small WAL segments, so that whole segments can be purged.
pub const TRIM_CONFIG: &str = "segment-bytes-max = 16384\n";

/// All of `table`, read once the node has applied `min_lsn`.
pub fn read_all(table: &str, min_lsn: u64) -> arka::wire::ReadTicket {
    arka::wire::ReadTicket {
        table: table.into(),
        min_lsn: Some(min_lsn),
        ..Default::default()
    }
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// A port that is free now, below the kernel's ephemeral range (32768 and up) so that no
/// outgoing connection can take it before the node binds it. Concurrent test processes start
/// at different points of the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + (seed.wrapping_add(n) % 22_000) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if tcp && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A table as PyIceberg reads it: `(arka.lsn of the current snapshot, rows in _lsn order)`,
/// nothing for a table the catalog does not have. `catalog` is an SQLite catalog file or a
/// REST catalog's `http://` URI; `warehouse` is the object store URL + `/warehouse`; `props`
/// are PyIceberg catalog properties.
pub fn iceberg_table_in(
    catalog: &str,
    warehouse: &str,
    table: &str,
    props: &[String],
) -> Option<(u64, Vec<Value>)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/iceberg_read.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(catalog)
        .arg(warehouse)
        .arg(table)
        .args(props)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "pyiceberg read failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("pyiceberg json");
    if v["exists"] == false {
        return None;
    }
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    Some((v["snapshot_lsn"].as_u64().unwrap_or(0), rows))
}

/// [`iceberg_table_in`] of a table that must exist.
pub fn iceberg_rows_in(
    catalog: &str,
    warehouse: &str,
    table: &str,
    props: &[String],
) -> (u64, Vec<Value>) {
    iceberg_table_in(catalog, warehouse, table, props)
        .unwrap_or_else(|| panic!("the catalog has no table {table}"))
}

pub struct NodeProc {
    pub id: u64,
    pub flight: String,
    pub raft: String,
    pub gossip: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Started with `join` (the gossip addresses of the other nodes).
    pub joins: bool,
    child: Option<Child>,
}

impl NodeProc {
    pub fn addr(&self) -> String {
        format!("grpc://{}", self.flight)
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

pub struct Cluster {
    pub dir: TempDir,
    pub nodes: Vec<NodeProc>,
    extra_config: String,
    /// Nodes of the bootstrap membership (those started by `start`).
    initial_size: usize,
    /// How the harness's own clients connect (TLS, credentials).
    pub options: arka::client::ConnectOptions,
}

impl Cluster {
    /// Starts `n` nodes; node 1 bootstraps the group. Waits until node 1 leads.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with_config(n, "").await
    }

    /// Starts `n` nodes that tier to `object_store_url` (`None`: a local directory of the
    /// cluster) with an SQLite Iceberg catalog in the cluster's directory (`catalog.db`),
    /// committing every `commit_interval_ms`. `extra_config` is appended.
    pub async fn start_tiered(
        n: u64,
        object_store_url: Option<&str>,
        commit_interval_ms: u64,
        extra_config: &str,
    ) -> Cluster {
        let catalog = "sqlite:{dir}/catalog.db?mode=rwc";
        Self::start_tiered_with_catalog(
            n,
            object_store_url,
            catalog,
            commit_interval_ms,
            extra_config,
        )
        .await
    }

    /// [`Cluster::start_tiered`] with the Iceberg catalog at `catalog_url`.
    pub async fn start_tiered_with_catalog(
        n: u64,
        object_store_url: Option<&str>,
        catalog_url: &str,
        commit_interval_ms: u64,
        extra_config: &str,
    ) -> Cluster {
        let url = object_store_url.unwrap_or("file://{dir}/objects");
        let config = format!(
            "object-store-url = {url:?}\ncatalog-url = {catalog_url:?}\ncommit-interval-ms = {commit_interval_ms}\ntier-interval-ms = 100\n{extra_config}"
        );
        Self::start_with_config(n, &config).await
    }

    /// `n` tiered nodes with small WAL segments that keep, once in object storage, only the
    /// newest `bytes` of WAL younger than `ms` (set with `set_retention`).
    pub async fn start_trimming(n: u64, bytes: u64, ms: u64) -> Cluster {
        let cluster = Self::start_tiered(n, None, 500, TRIM_CONFIG).await;
        let retention = json!({"bytes": bytes, "ms": ms});
        cluster
            .client(1)
            .await
            .action("set_retention", &retention)
            .await
            .expect("set_retention");
        cluster
    }

    /// Like [`Cluster::start`], with extra TOML lines in every node's config file; `{dir}`
    /// stands for the cluster's directory.
    pub async fn start_with_config(n: u64, extra_config: &str) -> Cluster {
        let dir = TempDir::new().expect("tempdir");
        Self::start_in(
            dir,
            n,
            extra_config,
            arka::client::ConnectOptions::default(),
        )
        .await
    }

    /// Like [`Cluster::start_with_config`] in `dir` (which may hold files the config names),
    /// the harness's clients connecting as `options` say.
    pub async fn start_in(
        dir: TempDir,
        n: u64,
        extra_config: &str,
        options: arka::client::ConnectOptions,
    ) -> Cluster {
        let nodes = (1..=n)
            .map(|id| NodeProc {
                id,
                flight: format!("127.0.0.1:{}", free_port()),
                raft: format!("127.0.0.1:{}", free_port()),
                gossip: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("node-{id}")),
                log: dir.path().join(format!("node-{id}.log")),
                joins: true,
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            dir,
            nodes,
            extra_config: extra_config.to_string(),
            initial_size: n as usize,
            options,
        };
        for id in 1..=n {
            cluster.spawn(id);
        }
        cluster.wait_for_leader().await;
        cluster
    }

    /// Starts a new, empty node that is not a member yet and does not ask to join (it joins
    /// with `add_node`).
    pub fn add_process(&mut self) -> u64 {
        self.new_process(false)
    }

    /// Starts a new, empty node with `join` pointing at every other node: it asks the leader
    /// through gossip to add it.
    pub fn join_process(&mut self) -> u64 {
        self.new_process(true)
    }

    fn new_process(&mut self, joins: bool) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        self.nodes.push(NodeProc {
            id,
            flight: format!("127.0.0.1:{}", free_port()),
            raft: format!("127.0.0.1:{}", free_port()),
            gossip: format!("127.0.0.1:{}", free_port()),
            data_dir: self.dir.path().join(format!("node-{id}")),
            log: self.dir.path().join(format!("node-{id}.log")),
            joins,
            child: None,
        });
        self.spawn(id);
        id
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[(id - 1) as usize]
    }

    pub fn addr(&self, id: u64) -> String {
        self.node(id).addr()
    }

    /// The cluster's secret file, made on first use.
    pub fn secret_file(&self) -> PathBuf {
        let path = self.dir.path().join("cluster.secret");
        if !path.exists() {
            std::fs::write(&path, TEST_SECRET).expect("write cluster secret");
        }
        path
    }

    fn config_file(&self, id: u64) -> PathBuf {
        let node = self.node(id);
        let mut text = format!(
            "node-id = {id}\ndata-dir = {:?}\nflight-addr = {:?}\nraft-addr = {:?}\ngossip-addr = {:?}\n",
            node.data_dir.display().to_string(),
            node.flight,
            node.raft,
            node.gossip
        );
        text.push_str("fault-injection = true\n");
        text.push_str(&format!(
            "cluster-secret-file = {:?}\n",
            self.secret_file().display().to_string()
        ));
        // The suite runs many clusters at once on a small machine. The default Raft timing
        // (tuned for sub-second failover) lets a starved follower start an election now and
        // then; tests that address a fixed leader want elections only when they cause them.
        text.push_str(
            "heartbeat-interval-ms = 100\nelection-timeout-min-ms = 400\nelection-timeout-max-ms = 800\n",
        );
        if node.joins && self.nodes.len() > 1 {
            let seeds: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.id != id)
                .map(|n| format!("{:?}", n.gossip))
                .collect();
            text.push_str(&format!("join = [{}]\n", seeds.join(", ")));
        }
        if id == 1 {
            text.push_str("bootstrap = true\ninitial-members = [\n");
            for n in self.nodes.iter().take(self.initial_size) {
                text.push_str(&format!(
                    "  {{ node-id = {}, raft-addr = {:?}, flight-addr = {:?} }},\n",
                    n.id, n.raft, n.flight
                ));
            }
            text.push_str("]\n");
        }
        text.push_str(
            &self
                .extra_config
                .replace("{dir}", &self.dir.path().display().to_string()),
        );
        let path = self.dir.path().join(format!("node-{id}.toml"));
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Starts (or restarts) node `id` on its data dir.
    pub fn spawn(&mut self, id: u64) {
        let config = self.config_file(id);
        let node = &mut self.nodes[(id - 1) as usize];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_arka"))
            .arg("server")
            .arg("--config")
            .arg(&config)
            // ARKA_TEST_LOG (a RUST_LOG filter) shows more of the nodes' logs when a test fails.
            .env(
                "RUST_LOG",
                std::env::var("ARKA_TEST_LOG").unwrap_or("info,openraft=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn arka server");
        node.child = Some(child);
    }

    fn signal(&self, id: u64, sig: i32) {
        let pid = self.node(id).pid().expect("node is running");
        // SAFETY: kill(2) on our own child process.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "signal {sig} to node {id}");
    }

    /// kill -9 node `id` and reap it.
    pub fn kill9(&mut self, id: u64) {
        self.signal(id, libc::SIGKILL);
        if let Some(mut child) = self.nodes[(id - 1) as usize].child.take() {
            let _ = child.wait();
        }
    }

    /// SIGTERM to node `id`; waits for it to exit and returns how it exited and how long
    /// that took.
    pub async fn sigterm(&mut self, id: u64) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        self.signal(id, libc::SIGTERM);
        let mut child = self.nodes[(id - 1) as usize]
            .child
            .take()
            .expect("node is running");
        let status = eventually(&format!("node {id} exits after SIGTERM"), DEADLINE, || {
            let exited = child.try_wait().expect("wait for node");
            async move { exited }
        })
        .await;
        (status, started.elapsed())
    }

    /// A power loss of every node in `ids` at once (SIGPWR, which nodes with fault
    /// injection take as one: the WAL drops what it had not fsynced and the process dies);
    /// returns once every one of them is gone.
    pub async fn power_loss(&mut self, ids: &[u64]) {
        for id in ids {
            self.signal(*id, libc::SIGPWR);
        }
        for id in ids {
            let node = &mut self.nodes[(*id - 1) as usize];
            let mut child = node.child.take().expect("node is running");
            eventually(
                &format!("node {id} stops at its power loss"),
                DEADLINE,
                || {
                    let exited = child.try_wait().expect("wait for node").is_some();
                    async move { exited.then_some(()) }
                },
            )
            .await;
        }
    }

    /// kill -9 of every node, then every node started again; returns once they agree on a
    /// leader.
    pub async fn kill9_all_and_restart(&mut self) -> u64 {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in &ids {
            self.kill9(*id);
        }
        for id in &ids {
            self.spawn(*id);
        }
        self.wait_for_leader().await
    }

    /// Has every running node take a snapshot now, so that what follows a restart comes
    /// from the snapshot rather than from the WAL entries above it.
    pub async fn snapshot_every_node(&self) {
        for id in self.running() {
            let client = self.client(id).await;
            let taken = client.action("snapshot", &Value::Null).await;
            taken.unwrap_or_else(|e| panic!("snapshot on node {id}: {e}"));
        }
    }

    /// Writes the control table (`control`, seqs 0, 1, 2) through node 1 and returns its
    /// last LSN: what a test of bad input checks is left as it was.
    pub async fn write_control(&self) -> u64 {
        let writes = (0..3)
            .map(|s| WriteItem::plain(data::batch(1, s, 2)))
            .collect();
        let acks = (self.client(1).await)
            .write_all("control", writes, Level::Replicated)
            .await
            .unwrap_or_else(|e| panic!("control writes: {e}"));
        acks.iter().map(|a| a.lsn).max().expect("an ack")
    }

    /// Every running node reads the control table back as written, once it applied `last`.
    pub async fn assert_control_everywhere(&self, last: u64) {
        for id in self.running() {
            let seqs = self.seqs_on(id, "control", last).await;
            assert_eq!(seqs, vec![0, 1, 2], "the control table on node {id}");
        }
    }

    /// The seq (second key column of `data::batch`) of each write node `id` holds in `table`,
    /// one per LSN, in LSN order, read once it applied `min_lsn`.
    pub async fn seqs_on(&self, id: u64, table: &str, min_lsn: u64) -> Vec<i64> {
        let (_, batches) = self
            .client(id)
            .await
            .read(&read_all(table, min_lsn))
            .await
            .unwrap_or_else(|e| panic!("read from node {id}: {e}\n{}", self.log_tails()));
        let mut writes: Vec<(u64, i64)> = batches
            .iter()
            .map(|(lsn, b)| (*lsn, data::keys([b])[0].1))
            .collect();
        // A large write may come back in several batches at its one LSN.
        writes.dedup_by_key(|(lsn, _)| *lsn);
        writes.into_iter().map(|(_, seq)| seq).collect()
    }

    pub fn pause(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    pub fn resume(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub async fn client(&self, id: u64) -> Client {
        let addr = self.addr(id);
        eventually(&format!("connect to node {id}"), DEADLINE, || {
            let addr = addr.clone();
            async move { Client::connect_with(&addr, &self.options).await.ok() }
        })
        .await
    }

    /// The table as PyIceberg reads it from the cluster's catalog: `(arka.lsn of the current
    /// snapshot, rows in _lsn order)`. `warehouse` is the object store URL + `/warehouse`;
    /// `props` are PyIceberg catalog properties.
    pub fn iceberg_rows(
        &self,
        warehouse: &str,
        table: &str,
        props: &[String],
    ) -> (u64, Vec<Value>) {
        let db = self.dir.path().join("catalog.db");
        iceberg_rows_in(&db.display().to_string(), warehouse, table, props)
    }

    /// True when the cluster's SQLite catalog holds the Iceberg table of `table`.
    pub fn iceberg_has_table(&self, table: &str) -> bool {
        let db = self.dir.path().join("catalog.db");
        let warehouse = format!("{}/warehouse", self.local_store_url());
        iceberg_table_in(&db.display().to_string(), &warehouse, table, &[]).is_some()
    }

    /// The local object store of a cluster started with `start_tiered(_, None, …)`.
    pub fn local_store_url(&self) -> String {
        format!("file://{}/objects", self.dir.path().display())
    }

    /// Node `id`'s status, or `None` when it does not answer within a second (down or paused).
    pub async fn status(&self, id: u64) -> Option<Value> {
        self.ask(id, "status").await
    }

    /// Waits for the leader `leader` to move the tier worker onto a follower, which it does
    /// once one is caught up, and returns that follower.
    pub async fn follower_tier_worker(&self, leader: u64) -> u64 {
        eventually("a follower as tier worker", DEADLINE, || async {
            let worker = self.status(leader).await?["tier_worker"].as_u64()?;
            (worker != leader).then_some(worker)
        })
        .await
    }

    /// Node `id`'s `cluster_status` report, or `None` when it does not answer within a second.
    pub async fn cluster_status(&self, id: u64) -> Option<Value> {
        self.ask(id, "cluster_status").await
    }

    async fn ask(&self, id: u64, action: &str) -> Option<Value> {
        let ask = async {
            let client = Client::connect_with(&self.addr(id), &self.options)
                .await
                .ok()?;
            client.action(action, &Value::Null).await.ok()
        };
        tokio::time::timeout(Duration::from_secs(1), ask)
            .await
            .ok()
            .flatten()
    }

    /// Waits until every running node names the same leader, which is running; returns it.
    pub async fn wait_for_leader(&self) -> u64 {
        self.wait_for_leader_among(&self.running()).await
    }

    /// Waits until the nodes `among` all name the same leader, one of them, and know its
    /// address (so a follower can redirect a write to it); returns it. On timeout the test
    /// fails with the tail of every node's log.
    pub async fn wait_for_leader_among(&self, among: &[u64]) -> u64 {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(leader) = self.agreed_leader(among).await {
                return leader;
            }
            assert!(
                Instant::now() < end,
                "no leader agreed on by nodes {among:?} within {DEADLINE:?}; node logs:\n{}",
                self.log_tails()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    async fn agreed_leader(&self, among: &[u64]) -> Option<u64> {
        let mut leaders = Vec::new();
        for id in among {
            let status = self.status(*id).await?;
            // A follower learns the leader's id from a heartbeat before the membership
            // entry that holds its address; until then it cannot redirect.
            status["leader_location"].as_str()?;
            leaders.push(status["leader_id"].as_u64()?);
        }
        let first = *leaders.first()?;
        let agreed = leaders.iter().all(|l| *l == first) && among.contains(&first);
        let leads = self.status(first).await?["role"] == json!("leader");
        (agreed && leads).then_some(first)
    }

    /// The last lines of every node's log.
    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = self.log_of(n.id);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("--- node {} ({})\n{tail}\n", n.id, n.flight)
            })
            .collect()
    }

    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // SAFETY: kill(2) on our own child process; SIGCONT first in case it is paused.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

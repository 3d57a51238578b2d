//! Node configuration: defaults, then a TOML file (kebab-case keys), then `ARKA_*` environment
//! variables and command-line flags (applied by the CLI), then `validate()`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arka_cluster::NodeId;
use serde::{Deserialize, Serialize};

use crate::tier::TierSettings;

/// A member of the initial cluster, written `ID@RAFT_ADDR@FLIGHT_ADDR` on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MemberSpec {
    pub node_id: NodeId,
    pub raft_addr: String,
    pub flight_addr: String,
}

impl std::str::FromStr for MemberSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('@').collect();
        let [id, raft, flight] = parts.as_slice() else {
            return Err(format!(
                "bad member {s:?}: expected ID@RAFT_HOST:PORT@FLIGHT_HOST:PORT"
            ));
        };
        let node_id = id
            .parse()
            .map_err(|_| format!("bad member {s:?}: node id {id:?} is not a number"))?;
        Ok(Self {
            node_id,
            raft_addr: raft.to_string(),
            flight_addr: flight.to_string(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's id: unique in the cluster and never reused for another node.
    pub node_id: NodeId,
    /// Directory of the WAL segments and the metadata store.
    pub data_dir: PathBuf,
    /// `HOST:PORT` the public Flight service listens on (and is advertised at).
    pub flight_addr: String,
    /// `HOST:PORT` the node-to-node Raft service listens on (and is advertised at).
    pub raft_addr: String,
    /// UDP `HOST:PORT` for gossip membership (listened on and advertised).
    pub gossip_addr: String,
    /// Gossip addresses (`HOST:PORT`) of running members. A node that is in no membership yet
    /// asks the leader, through gossip, to add it.
    pub join: Vec<String>,
    /// When this node joins through gossip, the leader promotes it to voter once it has caught
    /// up; off, it stays a learner until `add_node` promotes it.
    pub auto_promote: bool,
    /// The leader promotes learners that asked for it (`auto-promote`) by itself only up to
    /// this many voters, only learners that are replicating, and only to an odd count (in
    /// pairs). An odd number; `add_node` can still add voters explicitly.
    pub voters_max: usize,
    /// File holding the cluster secret: at least 16 bytes (surrounding whitespace is not
    /// part of it), the same on every member. Every node-to-node message (Raft, internal
    /// requests, gossip) is signed with it, and a node refuses what is not, so that only
    /// holders of the secret can join or speak to the cluster. Required. Make one with
    /// `head -c 32 /dev/urandom | base64 > cluster.secret` and keep it readable only by the
    /// node's user.
    pub cluster_secret_file: Option<PathBuf>,
    /// TLS on the Flight and Raft ports: the cluster CA (PEM). With `tls-cert-file` and
    /// `tls-key-file` (this node's certificate and key, PEM, good for server and client use):
    /// clients connect with `grpc+tls://` and trust the CA; peers on the Raft port must
    /// present a certificate signed by it (mutual TLS). All three or none.
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The users of the Flight port (TOML, one `[[user]]` table each: `name`,
    /// `password-hash` from `arka hash-password`, `role` = reader | writer | admin, optional
    /// `tables` name prefixes and `token-sha256` of a static service token). Set: every call
    /// but the Handshake needs a bearer token. Unset: clients are not authenticated.
    pub auth_file: Option<PathBuf>,
    /// How long a bearer token from the Handshake is good for.
    pub auth_token_ttl_secs: u64,
    /// Allow the `inject_fault` action (isolate this node from its peers). For tests and
    /// chaos runs only.
    pub fault_injection: bool,
    /// The voters of a new cluster. Needed only on the node that bootstraps.
    pub initial_members: Vec<MemberSpec>,
    /// Initialize a new cluster with `initial-members` (or this node alone) if this node's
    /// data dir holds no cluster yet.
    pub bootstrap: bool,
    /// A WAL segment is sealed and a new one started at this size.
    pub segment_bytes_max: u64,
    /// Bytes of entries in one AppendEntries message at most (a single larger entry still
    /// goes alone).
    pub replication_bytes_max: u64,
    /// The node snapshots its state every this many applied entries (at a phase of its
    /// own, so that the members do not all snapshot at once): bounds what a restart applies
    /// again from the WAL.
    pub snapshot_every_entries: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Largest encoded batch one write may carry.
    pub batch_bytes_max: usize,
    /// Write bytes proposed but not yet replicated, across all sessions of the node.
    pub node_inflight_bytes_max: usize,
    /// The same for one write session; past it the session stops reading.
    pub session_inflight_bytes_max: usize,
    /// Most Parquet columns (nested fields counted) a table may have.
    pub table_columns_max: usize,
    /// Most tables the cluster holds.
    pub tables_max: usize,
    /// Open connections each port (Flight, Raft) takes at most.
    pub connections_max: usize,
    /// How long a new connection has to send its HTTP/2 preface (or TLS hello).
    pub handshake_timeout_ms: u64,
    /// Free space the data dir's disk keeps: below it the node takes no new writes, until
    /// space is freed. 0: no floor.
    pub disk_free_bytes_min: u64,
    /// How long a read waits for its `min_lsn` at most.
    pub read_wait_max_ms: u64,
    /// Where tiered Parquet files and Iceberg metadata go: `file:///DIR`,
    /// `s3://BUCKET/PREFIX`, or any other URL `object_store` opens. Unset: no tiering (the
    /// highest durability level is REPLICATED and the WAL is never purged).
    pub object_store_url: Option<String>,
    /// `object_store` options, e.g. `aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_allow_http`, `aws_virtual_hosted_style_request`.
    pub object_store_options: BTreeMap<String, String>,
    /// The Iceberg catalog: an SQLite catalog, `sqlite:PATH?mode=rwc` (default: a file in
    /// the data dir), or the base URI of an Iceberg REST catalog, `http(s)://…`.
    pub catalog_url: Option<String>,
    /// REST catalog properties, e.g. `warehouse`, `credential`, `token`, `oauth2-server-uri`,
    /// `scope`, `prefix`, `header.NAME`.
    pub catalog_options: BTreeMap<String, String>,
    /// The tier worker commits uploaded files to Iceberg this often (and on `flush`).
    pub commit_interval_ms: u64,
    /// The tier worker seals and uploads a range this often.
    pub tier_interval_ms: u64,
    /// A table whose Iceberg commit has failed for this long is held back: the other tables
    /// go on reaching COMMITTED, and its writers waiting for COMMITTED get an error.
    pub tier_hold_table_after_ms: u64,
    /// A range holds at most about this many bytes of encoded batches.
    pub tier_range_bytes_max: u64,
    /// Once in object storage, log entries beyond the newest this many bytes are purged...
    pub wal_retention_bytes: u64,
    /// ...and so are entries older than this.
    pub wal_retention_ms: u64,
    /// Writes are held, then refused (RESOURCE_EXHAUSTED), while the WAL holds more than
    /// this, which happens only when object storage falls behind.
    pub wal_bytes_max: u64,
    /// How long a write is held while the WAL is over `wal_bytes_max` before it is refused.
    pub wal_full_hold_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: NodeId(1),
            data_dir: PathBuf::from("arka-data"),
            flight_addr: "127.0.0.1:8815".into(),
            raft_addr: "127.0.0.1:7815".into(),
            gossip_addr: "127.0.0.1:6815".into(),
            join: Vec::new(),
            auto_promote: true,
            voters_max: arka_cluster::membership::VOTERS_MAX_DEFAULT,
            cluster_secret_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            auth_file: None,
            auth_token_ttl_secs: 3600,
            fault_injection: false,
            initial_members: Vec::new(),
            bootstrap: false,
            segment_bytes_max: 64 * 1024 * 1024,
            replication_bytes_max: arka_cluster::network::APPEND_BYTES_MAX as u64,
            snapshot_every_entries: crate::raft::snapshot_schedule::SNAPSHOT_EVERY_ENTRIES,
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            batch_bytes_max: 64 * 1024 * 1024,
            node_inflight_bytes_max: 512 * 1024 * 1024,
            session_inflight_bytes_max: 64 * 1024 * 1024,
            table_columns_max: 1000,
            tables_max: 1000,
            disk_free_bytes_min: 1024 * 1024 * 1024,
            connections_max: 4096,
            handshake_timeout_ms: 10_000,
            read_wait_max_ms: 10_000,
            object_store_url: None,
            object_store_options: BTreeMap::new(),
            catalog_url: None,
            catalog_options: BTreeMap::new(),
            commit_interval_ms: 60_000,
            tier_interval_ms: 200,
            tier_hold_table_after_ms: 60_000,
            tier_range_bytes_max: 64 * 1024 * 1024,
            wal_retention_bytes: 1024 * 1024 * 1024,
            wal_retention_ms: 60 * 60 * 1000,
            wal_bytes_max: 16 * 1024 * 1024 * 1024,
            wal_full_hold_ms: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// The tiering settings, when `object-store-url` is set (tiering is off otherwise).
    pub fn tier_settings(&self) -> Option<TierSettings> {
        let store_url = self.object_store_url.clone()?;
        let catalog_url = (self.catalog_url.clone())
            .unwrap_or_else(|| crate::tier::default_catalog_url(&self.data_dir));
        Some(TierSettings {
            store_url,
            store_options: self.object_store_options.clone(),
            catalog_url,
            catalog_options: self.catalog_options.clone(),
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            tier_interval: Duration::from_millis(self.tier_interval_ms),
            range_bytes_max: self.tier_range_bytes_max,
            hold_table_after: Duration::from_millis(self.tier_hold_table_after_ms),
        })
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<(&Path, &Path, &Path)> {
        Some((
            self.tls_ca_file.as_deref()?,
            self.tls_cert_file.as_deref()?,
            self.tls_key_file.as_deref()?,
        ))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.cluster_secret_file.is_none() {
            return invalid(
                "cluster-secret-file is not set: every member needs the same secret file (make one with `head -c 32 /dev/urandom | base64 > cluster.secret`)".into(),
            );
        }
        let tls_files = [&self.tls_ca_file, &self.tls_cert_file, &self.tls_key_file];
        let tls_set = tls_files.iter().filter(|f| f.is_some()).count();
        if tls_set != 0 && tls_set != 3 {
            return invalid("TLS needs all of tls-ca-file, tls-cert-file and tls-key-file".into());
        }
        if self.auth_token_ttl_secs == 0 {
            return invalid("auth-token-ttl-secs must be above 0".into());
        }
        if self.voters_max % 2 == 0 {
            return invalid(format!(
                "voters-max ({}) must be odd: an even count of voters tolerates no more failures than one fewer",
                self.voters_max
            ));
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return invalid(format!(
                "election-timeout-min-ms ({}) must be above heartbeat-interval-ms ({})",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return invalid("election-timeout-max-ms must be above election-timeout-min-ms".into());
        }
        if self.replication_bytes_max < 4096 {
            return invalid("replication-bytes-max must be at least 4096".into());
        }
        if self.segment_bytes_max < 4096 {
            return invalid("segment-bytes-max must be at least 4096".into());
        }
        if self.batch_bytes_max > self.session_inflight_bytes_max
            || self.session_inflight_bytes_max > self.node_inflight_bytes_max
        {
            return invalid(
                "need batch-bytes-max <= session-inflight-bytes-max <= node-inflight-bytes-max"
                    .into(),
            );
        }
        if self.object_store_url.is_some() && self.wal_bytes_max <= self.wal_retention_bytes {
            return invalid(format!(
                "wal-bytes-max ({}) must be above wal-retention-bytes ({})",
                self.wal_bytes_max, self.wal_retention_bytes
            ));
        }
        crate::tier::check_catalog_options(self.catalog_url.as_deref(), &self.catalog_options)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.connections_max == 0 || self.handshake_timeout_ms == 0 {
            return invalid("connections-max and handshake-timeout-ms must be above 0".into());
        }
        if self.table_columns_max == 0 || self.tables_max == 0 {
            return invalid("table-columns-max and tables-max must be above 0".into());
        }
        if self.snapshot_every_entries == 0 {
            return invalid("snapshot-every-entries must be above 0".into());
        }
        if self.commit_interval_ms == 0 || self.tier_interval_ms == 0 {
            return invalid("commit-interval-ms and tier-interval-ms must be above 0".into());
        }
        let mut ids: Vec<NodeId> = self.initial_members.iter().map(|m| m.node_id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.initial_members.len() {
            return invalid("initial-members has a node id twice".into());
        }
        if self.bootstrap && !self.initial_members.is_empty() && !ids.contains(&self.node_id) {
            return invalid(format!(
                "bootstrap node {} must be one of initial-members",
                self.node_id
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kebab_case_toml_and_validates() {
        let config: NodeConfig = toml::from_str(
            r#"
            node-id = 2
            data-dir = "d"
            cluster-secret-file = "s"
            bootstrap = true
            initial-members = [{ node-id = 2, raft-addr = "h:1", flight-addr = "h:2" }]
            "#,
        )
        .expect("parse");
        assert_eq!(config.node_id, NodeId(2));
        config.validate().expect("valid");
        assert!(
            toml::from_str::<NodeConfig>("nodeid = 1").is_err(),
            "unknown keys are errors"
        );
    }

    #[test]
    fn catalog_settings_are_checked() {
        let config = |text: &str| {
            let text = format!("cluster-secret-file = \"s\"\n{text}");
            toml::from_str::<NodeConfig>(&text).expect("parse")
        };
        let rest = config("catalog-url = \"http://cat:8181\"\ncatalog-options = { token = \"t\" }");
        rest.validate().expect("REST catalog with options");
        let err = config("catalog-url = \"sqlite:c.db\"\ncatalog-options = { token = \"t\" }")
            .validate()
            .expect_err("options for SQLite");
        assert!(err.to_string().contains("catalog-options"), "{err}");
        let err = config("catalog-options = { token = \"t\" }")
            .validate()
            .expect_err("options for the default SQLite catalog");
        assert!(err.to_string().contains("catalog-options"), "{err}");
        let err = config("catalog-url = \"http://a\"\ncatalog-options = { uri = \"http://b\" }")
            .validate()
            .expect_err("a second URI");
        assert!(err.to_string().contains("uri"), "{err}");
        let err = config("catalog-url = \"thrift://hive:9083\"")
            .validate()
            .expect_err("unknown catalog");
        assert!(err.to_string().contains("catalog-url"), "{err}");
    }

    #[test]
    fn voters_max_is_odd() {
        let config = |text: &str| {
            let text = format!("cluster-secret-file = \"s\"\n{text}");
            toml::from_str::<NodeConfig>(&text).expect("parse")
        };
        config("voters-max = 3").validate().expect("odd");
        let err = config("voters-max = 4").validate().expect_err("even");
        assert!(
            err.to_string().contains("voters-max (4) must be odd"),
            "{err}"
        );
    }

    #[test]
    fn a_node_needs_a_cluster_secret() {
        let err = NodeConfig::default().validate().expect_err("no secret");
        assert!(err.to_string().contains("cluster-secret-file"), "{err}");
    }

    #[test]
    fn member_specs_parse() {
        let m: MemberSpec = "3@127.0.0.1:7817@127.0.0.1:8817".parse().expect("parse");
        assert_eq!(
            (m.node_id, m.raft_addr.as_str()),
            (NodeId(3), "127.0.0.1:7817")
        );
        assert!("x@a@b".parse::<MemberSpec>().is_err());
        assert!("1@a".parse::<MemberSpec>().is_err());
    }
}

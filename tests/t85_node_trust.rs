//! The node-to-node trust boundary: only holders of the cluster secret speak on the Raft
//! port and in gossip. A stranger who can reach the ports (term and leader id are public in
//! `status`) can neither append to a follower's log, nor steal leadership, nor add or
//! disguise a member, nor join.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use arka::client::WriteItem;
use arka::durability::Level;
use arka_cluster::codec;
use arka_cluster::fault::NetworkFaults;
use arka_cluster::gossip::{
    Gossip, GossipConfig, GossipTiming, NodeState, Peer, SealedDatagrams, UdpDatagrams,
};
use arka_cluster::network::{NodeKey, RaftClient};
use arka_cluster::types::{Entry, LogId, Vote};
use arka_cluster::{ClusterSecret, NodeId, TypeConfig};
use arka_proto::raft::RaftPayload;
use common::{
    data, eventually, free_port, lsns_at, node_message, raft_port_client, Cluster, DEADLINE,
};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::EntryPayload;
use serde_json::Value;

const STRANGER_SECRET: &str = "the stranger's own secret, not the cluster's";

/// The stranger's clients of node `id`'s Raft port: one with a gate key of its own (refused
/// from its headers), and one presenting the cluster's gate key (as someone who saw it on a
/// cleartext wire could), whose messages must still be refused for their tags.
async fn stranger_clients(cluster: &Cluster, id: u64) -> Vec<RaftClient> {
    let raft = &cluster.node(id).raft;
    vec![
        raft_port_client(raft, STRANGER_SECRET).await,
        raft_port_client(raft, common::TEST_SECRET).await,
    ]
}

/// What a stranger sends: unsigned and without a cluster id (the attack as it worked before
/// the secret), and signed with another secret but naming the right cluster.
fn forgeries(cluster_id: &str, data: Vec<u8>) -> Vec<RaftPayload> {
    let unsigned = RaftPayload {
        version: codec::WIRE_VERSION,
        data: data.clone(),
        cluster_id: String::new(),
        auth: Vec::new(),
    };
    vec![unsigned, node_message(STRANGER_SECRET, cluster_id, data)]
}

fn u64_of(status: &Value, key: &str) -> u64 {
    status[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {status}"))
}

async fn write_some(
    cluster: &Cluster,
    leader: u64,
    table: &str,
    seqs: std::ops::Range<i64>,
) -> u64 {
    let writes = seqs
        .map(|s| WriteItem::plain(data::batch(1, s, 2)))
        .collect();
    let acks = cluster
        .client(leader)
        .await
        .write_all(table, writes, Level::Replicated)
        .await
        .expect("write");
    *lsns_at(&acks, Level::Replicated).last().expect("acked")
}

/// Every node reads `table` back as the leader does.
async fn every_node_holds_the_leaders_table(
    cluster: &Cluster,
    leader: u64,
    table: &str,
    last: u64,
) {
    let on_leader = cluster.seqs_on(leader, table, last).await;
    for id in 1..=3 {
        assert_eq!(
            cluster.seqs_on(id, table, last).await,
            on_leader,
            "node {id} holds the leader's data"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_append_entries_is_refused_and_every_replica_keeps_the_leaders_log() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    write_some(&cluster, leader, "victim", 0..3).await;
    let status = cluster.status(leader).await.expect("leader status");
    let (term, cluster_id) = (
        u64_of(&status, "term"),
        status["cluster_id"].as_str().expect("id"),
    );
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let last_index = u64_of(
        &cluster.status(follower).await.expect("status"),
        "last_log_index",
    );

    // The leader's own vote and the follower's last log id: the forged entry would sit
    // where the leader's next write goes.
    let log_id = |index| {
        LogId::new(
            LeaderId {
                term,
                node_id: NodeId(leader),
            },
            index,
        )
    };
    let forged = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, NodeId(leader)),
        prev_log_id: Some(log_id(last_index)),
        leader_commit: None,
        entries: vec![Entry {
            log_id: log_id(last_index + 1),
            payload: EntryPayload::Blank,
        }],
    };
    let bytes = codec::encode("append_entries", &forged).expect("encode");
    for mut client in stranger_clients(&cluster, follower).await {
        for message in forgeries(cluster_id, bytes.clone()) {
            let refused = client
                .append_entries(message)
                .await
                .expect_err("a forged AppendEntries is refused");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        }
    }

    let last = write_some(&cluster, leader, "victim", 3..6).await;
    every_node_holds_the_leaders_table(&cluster, leader, "victim", last).await;
    assert!(
        cluster
            .log_of(follower)
            .contains("refused node-to-node messages"),
        "the refusal is logged for the operator"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_leadership_transfer_vote_is_refused_and_the_leader_keeps_its_term() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let status = cluster.status(leader).await.expect("leader status");
    let (term, cluster_id) = (
        u64_of(&status, "term"),
        status["cluster_id"].as_str().expect("id"),
    );
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let candidate = (1..=3)
        .find(|id| *id != leader && *id != follower)
        .expect("a third");
    let steal = VoteRequest::<TypeConfig> {
        vote: Vote::new(term + 198, NodeId(candidate)),
        last_log_id: Some(LogId::new(
            LeaderId {
                term: term + 198,
                node_id: NodeId(candidate),
            },
            u64::MAX / 2,
        )),
        leadership_transfer: true,
    };
    let bytes = codec::encode("vote", &steal).expect("encode");
    for mut client in stranger_clients(&cluster, follower).await {
        for message in forgeries(cluster_id, bytes.clone()) {
            let refused = client.vote(message.clone()).await.expect_err("forged vote");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
            let refused = client.pre_vote(message).await.expect_err("forged pre-vote");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        }
    }
    for id in 1..=3 {
        let status = cluster.status(id).await.expect("status");
        assert_eq!(
            (u64_of(&status, "term"), u64_of(&status, "leader_id")),
            (term, leader),
            "node {id}"
        );
    }
    let last = write_some(&cluster, leader, "kept", 0..3).await;
    every_node_holds_the_leaders_table(&cluster, leader, "kept", last).await;
}

/// A gossip member run by a stranger from this test process: `datagrams` unsigned, or
/// signed with a secret that is not the cluster's.
fn stranger<D: arka_cluster::gossip::Datagrams>(
    datagrams: D,
    addr: SocketAddr,
    node_id: u64,
    seeds: Vec<SocketAddr>,
    cluster_id: &str,
) -> Gossip {
    let identity = Peer {
        node_id: NodeId(node_id),
        gossip_addr: addr,
        raft_addr: format!("127.0.0.1:{}", free_port()),
        flight_addr: format!("127.0.0.1:{}", free_port()),
        incarnation: u64::MAX / 2,
        seed: false,
    };
    let config = GossipConfig {
        identity,
        seeds,
        timing: GossipTiming::default(),
        rng_seed: node_id,
    };
    // A state that, were it believed, adds a learner (`join_requested`) or shows the node
    // it claims to be as shut down with nothing applied.
    let state = NodeState {
        node_id: NodeId(node_id),
        role: "shutdown".into(),
        join_requested: true,
        auto_promote: true,
        cluster_id: Some(cluster_id.to_string()),
        ..Default::default()
    };
    Gossip::start(config, datagrams, state)
}

/// A cluster of three with its leader, its id and its members' gossip addresses.
async fn gossiping_cluster() -> (Cluster, u64, String, Vec<SocketAddr>) {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let cluster_id = cluster.status(leader).await.expect("status")["cluster_id"]
        .as_str()
        .expect("id")
        .to_string();
    let seeds = (1..=3)
        .map(|id| cluster.node(id).gossip.parse().expect("gossip addr"))
        .collect();
    (cluster, leader, cluster_id, seeds)
}

async fn udp(port: u16) -> (UdpDatagrams, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let socket = UdpDatagrams::bind(addr, NetworkFaults::default())
        .await
        .expect("bind udp");
    (socket, addr)
}

fn member(report: &Value, id: u64) -> Option<&Value> {
    report["members"]
        .as_array()?
        .iter()
        .find(|m| m["node_id"] == id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_gossip_neither_adds_a_member_nor_changes_one_and_a_node_without_the_secret_stays_out(
) {
    let (mut cluster, leader, cluster_id, seeds) = gossiping_cluster().await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");

    // Unsigned datagrams asking to join as node 41; datagrams signed with another secret
    // claiming to be the follower.
    let (plain, plain_addr) = udp(free_port()).await;
    let _joiner = stranger(plain, plain_addr, 41, seeds.clone(), &cluster_id);
    let (other, other_addr) = udp(free_port()).await;
    let sealed = SealedDatagrams::new(
        other,
        ClusterSecret::new(STRANGER_SECRET.as_bytes()).expect("secret"),
    );
    let _impostor = stranger(sealed, other_addr, victim, seeds, &cluster_id);

    // A real server with its own secret, joining through gossip: it stays out.
    let outsider = OutsiderNode::start(&cluster, 42);

    // The control: a node with the secret, started after the strangers, joins.
    let joined = cluster.join_process();
    eventually("the node with the secret joins", DEADLINE, || async {
        member(&cluster.cluster_status(leader).await?, joined).map(|_| ())
    })
    .await;
    eventually(
        "the strangers' datagrams arrive and are refused",
        DEADLINE,
        || async {
            cluster
                .log_of(leader)
                .contains("refused gossip datagrams")
                .then_some(())
        },
    )
    .await;

    for id in 1..=3 {
        let report = cluster.cluster_status(id).await.expect("cluster status");
        for stranger in [41, 42] {
            assert!(
                member(&report, stranger).is_none(),
                "node {id} lists {stranger}: {report}"
            );
        }
        let seen = member(&report, victim).expect("the follower is listed");
        assert_eq!(seen["liveness"], "alive", "node {id}: {seen}");
        assert_ne!(seen["role"], "shutdown", "node {id}: {seen}");
    }
    let status = cluster.status(leader).await.expect("status");
    let voters: Vec<&Value> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .collect();
    assert!(
        voters
            .iter()
            .all(|m| m["node_id"] != 41 && m["node_id"] != 42),
        "no stranger in the Raft membership: {status}"
    );
    assert_eq!(
        outsider.cluster_id().await,
        None,
        "the outsider never learned the cluster id"
    );
}

/// `arka server --join` with a secret of its own, on an empty data dir.
struct OutsiderNode {
    child: std::process::Child,
    flight: String,
    _dir: tempfile::TempDir,
}

impl OutsiderNode {
    fn start(cluster: &Cluster, node_id: u64) -> Self {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, STRANGER_SECRET).expect("write secret");
        let flight = format!("127.0.0.1:{}", free_port());
        let join: Vec<String> = (1..=3).map(|id| cluster.node(id).gossip.clone()).collect();
        let child = Command::new(env!("CARGO_BIN_EXE_arka"))
            .args(["server", "--node-id", &node_id.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--flight-addr", &flight])
            .args(["--raft-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--gossip-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--join", &join.join(",")])
            .arg("--cluster-secret-file")
            .arg(&secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the outsider");
        Self {
            child,
            flight,
            _dir: dir,
        }
    }

    /// The cluster id the outsider reports (none: it never joined).
    async fn cluster_id(&self) -> Option<String> {
        let addr = format!("grpc://{}", self.flight);
        let client = eventually("the outsider serves", DEADLINE, || {
            let addr = addr.clone();
            async move { arka::client::Client::connect(&addr).await.ok() }
        })
        .await;
        let status = client.action("status", &Value::Null).await.expect("status");
        status["cluster_id"].as_str().map(str::to_string)
    }
}

impl Drop for OutsiderNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_a_secret_refuses_to_start() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_arka"))
        .args(["server", "--node-id", "1", "--bootstrap"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("ARKA_CLUSTER_SECRET_FILE")
        .output()
        .expect("run arka server");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster-secret-file"), "{stderr}");
}

async fn voters_and_learners(cluster: &Cluster, leader: u64) -> Option<(Vec<u64>, Vec<u64>)> {
    let status = cluster.status(leader).await?;
    let (mut voters, mut learners) = (Vec::new(), Vec::new());
    for m in status["members"].as_array()? {
        let id = m["node_id"].as_u64()?;
        match m["voter"].as_bool()? {
            true => voters.push(id),
            false => learners.push(id),
        }
    }
    Some((voters, learners))
}

/// A member that holds the secret but never answers Raft (the fake learner of a young
/// cluster that used to count as caught up): never promoted, always removable; voters grow
/// only in pairs of replicating learners, and voters that stop answering can be removed.
#[tokio::test(flavor = "multi_thread")]
async fn only_replicating_learners_are_promoted_in_pairs_and_silent_members_can_be_removed() {
    let (mut cluster, leader, cluster_id, seeds) = gossiping_cluster().await;
    let (socket, addr) = udp(free_port()).await;
    let secret = ClusterSecret::new(common::TEST_SECRET.as_bytes()).expect("secret");
    let _silent = stranger(
        SealedDatagrams::new(socket, secret),
        addr,
        41,
        seeds,
        &cluster_id,
    );
    let first = cluster.join_process();
    eventually(
        "the silent node and the first joiner become learners",
        DEADLINE,
        || async {
            let (_, learners) = voters_and_learners(&cluster, leader).await?;
            (learners.contains(&41) && learners.contains(&first)).then_some(())
        },
    )
    .await;

    // One replicating learner is not promoted alone (four voters would be even); a second
    // one makes a pair.
    let second = cluster.join_process();
    let (voters, learners) = eventually("the pair of joiners becomes voters", DEADLINE, || async {
        let (voters, learners) = voters_and_learners(&cluster, leader).await?;
        (voters.contains(&first) && voters.contains(&second)).then_some((voters, learners))
    })
    .await;
    assert_eq!(voters.len(), 5, "{voters:?}");
    assert_eq!(learners, vec![41], "the silent node stays a learner");

    cluster
        .client(leader)
        .await
        .action("remove_node", &serde_json::json!({"node_id": 41}))
        .await
        .expect("a learner that never answered is removed");
    // Voters that stopped answering are removed too, while a majority is alive.
    cluster.kill9(first);
    cluster.kill9(second);
    // A removal that meets another membership change under way (the leader adding the
    // silent learner back, which still asks to join) is UNAVAILABLE: retried, as a client
    // retries it.
    for id in [first, second] {
        let client = cluster.client(leader).await;
        let body = serde_json::json!({"node_id": id});
        eventually(&format!("silent voter {id} removed"), DEADLINE, || async {
            match client.action("remove_node", &body).await {
                Ok(_) => Some(()),
                Err(e) if e.code() == Some(tonic::Code::Unavailable) => None,
                Err(e) => panic!("remove silent voter {id}: {e}"),
            }
        })
        .await;
    }
    // The last removal's second phase may still be committing when the call returns. The
    // silent node still asks to join through gossip, so the leader may add it back as a
    // learner (a removed node is added back when it asks, docs/api.md), never as a voter.
    eventually("the voters are the three first nodes", DEADLINE, || async {
        let (voters, learners) = voters_and_learners(&cluster, leader).await?;
        (voters == vec![1, 2, 3] && learners.iter().all(|id| *id == 41)).then_some(())
    })
    .await;
    write_some(&cluster, leader, "after", 0..2).await;
}

/// The gate key a member presents.
fn member_key() -> NodeKey {
    NodeKey::new(&ClusterSecret::new(common::TEST_SECRET.as_bytes()).expect("secret"))
}

/// Asks the node at `raft_addr` who it is, over a connection made by `connector`, with a
/// message signed with the cluster secret (so only the transport can refuse it).
async fn identify_through(
    connector: &arka_cluster::network::TcpConnector,
    raft_addr: &str,
    cluster_id: &str,
) -> Result<(), String> {
    use arka_cluster::network::ChannelConnector;
    let channel = connector.channel(raft_addr).map_err(|e| e.to_string())?;
    let message = node_message(common::TEST_SECRET, cluster_id, Vec::new());
    member_key()
        .client(channel)
        .identify(message)
        .await
        .map(|_| ())
        .map_err(|status| status.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tls_the_raft_port_serves_only_peers_with_a_certificate_of_the_cluster_ca() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let hosts = vec!["127.0.0.1".to_string()];
    let ours =
        arka::cli::dev_certs::generate(&dir.path().join("tls"), 1, &hosts).expect("certificates");
    let theirs =
        arka::cli::dev_certs::generate(&dir.path().join("other-ca"), 1, &hosts).expect("others");
    let (cert, key) = &ours.nodes[0];
    let line =
        |key: &str, path: &std::path::Path| format!("{key} = {:?}\n", path.display().to_string());
    let config = [
        line("tls-ca-file", &ours.ca),
        line("tls-cert-file", cert),
        line("tls-key-file", key),
    ]
    .concat();
    let options = arka::client::ConnectOptions::default()
        .with_tls_ca_file(&ours.ca)
        .expect("read the CA");
    let cluster = Cluster::start_in(dir, 3, &config, options).await;
    let leader = cluster.wait_for_leader().await;
    let last = write_some(&cluster, leader, "over_tls", 0..3).await;
    every_node_holds_the_leaders_table(&cluster, leader, "over_tls", last).await;
    let status = cluster.status(leader).await.expect("status");
    assert!(
        status["leader_location"]
            .as_str()
            .is_some_and(|l| l.starts_with("grpc+tls://")),
        "{status}"
    );
    let cluster_id = status["cluster_id"].as_str().expect("id").to_string();

    let read = |path: &std::path::Path| std::fs::read(path).expect("read a PEM");
    let (ca, cert, key) = (read(&ours.ca), read(cert), read(key));
    let (their_cert, their_key) = (read(&theirs.nodes[0].0), read(&theirs.nodes[0].1));
    let raft = &cluster.node(leader).raft;
    use arka_cluster::network::TcpConnector;
    identify_through(
        &TcpConnector::mutual_tls(&ca, &cert, &key),
        raft,
        &cluster_id,
    )
    .await
    .expect("a peer with the cluster's certificate is served");
    let refused = [
        ("plaintext", TcpConnector::plain()),
        (
            "a certificate of another CA",
            TcpConnector::mutual_tls(&ca, &their_cert, &their_key),
        ),
    ];
    for (what, connector) in refused {
        let result = identify_through(&connector, raft, &cluster_id).await;
        assert!(result.is_err(), "{what} must not reach the Raft service");
    }
    // TLS that trusts the cluster CA but shows no certificate of its own.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca));
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{raft}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config");
    let answered = match endpoint.connect().await {
        Ok(channel) => member_key()
            .client(channel)
            .identify(node_message(common::TEST_SECRET, &cluster_id, Vec::new()))
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(
        !answered,
        "a peer without a certificate must not reach the Raft service"
    );
}

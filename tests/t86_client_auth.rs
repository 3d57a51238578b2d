//! Client authentication and roles on the Flight port: with an auth file, every call but the
//! Handshake needs a bearer token; a reader reads, a writer also writes (within its table
//! grants), an admin does everything; refusals and admin actions are in the audit log.

mod common;

use arka::client::{Client, ClusterClient, ConnectOptions, Credentials, RetryPolicy, WriteItem};
use arka::durability::Level;
use common::{data, read_all, Cluster, DEADLINE};
use serde_json::{json, Value};
use tonic::Code;

const PASSWORDS: [(&str, &str, &str); 3] = [
    ("root", "admin", "root-pw"),
    ("ingest", "writer", "ingest-pw"),
    ("viewer", "reader", "viewer-pw"),
];

fn password_of(user: &str) -> Credentials {
    let (_, _, password) = PASSWORDS
        .iter()
        .find(|(name, _, _)| *name == user)
        .expect("a user of the test");
    Credentials::Password {
        user: user.into(),
        password: password.to_string(),
    }
}

/// An auth file with the three users; `ingest` may touch only tables starting with `ev`.
fn auth_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (name, role, password) in PASSWORDS {
        let hash = arka::auth::hash_password(password).expect("hash");
        text.push_str(&format!(
            "[[user]]\nname = \"{name}\"\nrole = \"{role}\"\npassword-hash = \"{hash}\"\n"
        ));
        if name == "ingest" {
            text.push_str("tables = [\"ev\"]\n");
        }
    }
    let path = dir.join("users.toml");
    std::fs::write(&path, text).expect("write auth file");
    path
}

async fn secured_cluster(n: u64) -> Cluster {
    secured_cluster_with(n, "").await
}

async fn secured_cluster_with(n: u64, extra_config: &str) -> Cluster {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let users = auth_file(dir.path());
    let config = format!(
        "auth-file = {:?}\n{extra_config}",
        users.display().to_string()
    );
    let admin = ConnectOptions::default().with_credentials(password_of("root"));
    Cluster::start_in(dir, n, &config, admin).await
}

async fn as_user(cluster: &Cluster, id: u64, user: &str) -> Client {
    let options = ConnectOptions::default().with_credentials(password_of(user));
    Client::connect_with(&cluster.addr(id), &options)
        .await
        .unwrap_or_else(|e| panic!("{user} signs in: {e}"))
}

fn code_of<T>(result: Result<T, arka::client::ClientError>) -> Option<Code> {
    result.err().expect("refused").code()
}

async fn write(
    client: &Client,
    table: &str,
) -> Result<Vec<arka::client::Ack>, arka::client::ClientError> {
    let writes = vec![WriteItem::plain(data::batch(1, 0, 2))];
    client.write_all(table, writes, Level::Replicated).await
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_valid_credentials_are_unauthenticated() {
    let cluster = secured_cluster(1).await;
    let anonymous = Client::connect(&cluster.addr(1)).await.expect("connect");
    assert_eq!(
        code_of(anonymous.action("status", &Value::Null).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code_of(anonymous.read(&read_all("t", 0)).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code_of(write(&anonymous, "events").await),
        Some(Code::Unauthenticated)
    );

    let wrong = ConnectOptions::default().with_credentials(Credentials::Password {
        user: "root".into(),
        password: "guess".into(),
    });
    let refused = Client::connect_with(&cluster.addr(1), &wrong).await;
    assert_eq!(code_of(refused), Some(Code::Unauthenticated));
    let unknown = ConnectOptions::default().with_credentials(Credentials::Password {
        user: "nobody".into(),
        password: "root-pw".into(),
    });
    assert_eq!(
        code_of(Client::connect_with(&cluster.addr(1), &unknown).await),
        Some(Code::Unauthenticated)
    );

    let made_up = ConnectOptions::default()
        .with_credentials(Credentials::Token("arka1.cm9vdA.99999999999.AAAA".into()));
    let client = Client::connect_with(&cluster.addr(1), &made_up)
        .await
        .expect("connect");
    let err = client
        .action("status", &Value::Null)
        .await
        .expect_err("forged token");
    assert_eq!(err.code(), Some(Code::Unauthenticated), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_is_held_to_its_rights_and_the_audit_log_names_who_did_what() {
    let cluster = secured_cluster(3).await;
    let leader = cluster.wait_for_leader().await;
    let viewer = as_user(&cluster, leader, "viewer").await;
    let ingest = as_user(&cluster, leader, "ingest").await;
    let root = as_user(&cluster, leader, "root").await;

    // The writer writes to its tables, not to others; the reader reads and cannot write.
    let acks = write(&ingest, "events").await.expect("the writer writes");
    let lsn = acks.last().expect("acks").lsn;
    let err = write(&ingest, "orders")
        .await
        .expect_err("no grant for orders");
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    assert!(
        err.to_string().contains("no grant for table \"orders\""),
        "{err}"
    );
    let err = write(&viewer, "events")
        .await
        .expect_err("a reader cannot write");
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    assert!(err.to_string().contains("role reader"), "{err}");
    let (_, rows) = viewer
        .read(&read_all("events", lsn))
        .await
        .expect("the reader reads");
    assert_eq!(rows.len(), 1);
    viewer
        .action("status", &Value::Null)
        .await
        .expect("the reader sees status");

    // Admin actions: refused to the reader and the writer, done by the admin.
    let retention = json!({"bytes": 0, "ms": 0});
    for (client, role) in [(&viewer, "reader"), (&ingest, "writer")] {
        for (action, body) in [
            ("set_retention", retention.clone()),
            ("remove_node", json!({"node_id": 3})),
            ("drop_table", json!({"name": "events"})),
            ("snapshot", Value::Null),
        ] {
            let err = client.action(action, &body).await.expect_err(action);
            assert_eq!(
                err.code(),
                Some(Code::PermissionDenied),
                "{action} as {role}: {err}"
            );
            let message = err.to_string();
            assert!(
                message.contains(action) && message.contains(role),
                "{message}"
            );
        }
    }
    ingest
        .action("register_producer", &json!({"producer_id": "p"}))
        .await
        .expect("a writer opens a producer session");
    root.action("snapshot", &Value::Null)
        .await
        .expect("the admin takes a snapshot");
    root.action("drop_table", &json!({"name": "events"}))
        .await
        .expect("the admin drops a table");

    // A token from one node is good on every node.
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in followers {
        as_user(&cluster, id, "viewer")
            .await
            .action("status", &Value::Null)
            .await
            .expect("a follower takes the token");
    }

    let log = cluster.node(leader).data_dir.join("audit.log");
    let lines = common::eventually("the audit lines are written", DEADLINE, || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).ok()?;
            let lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let done = lines
                .iter()
                .any(|l| l["action"] == "drop_table" && l["outcome"] == "ok");
            done.then_some(lines)
        }
    })
    .await;
    let has = |user: &str, action: &str, outcome: &str| {
        lines.iter().any(|l| {
            l["user"] == user
                && l["action"] == action
                && l["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(outcome))
                && l["source"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("127.0.0.1:"))
        })
    };
    assert!(has("viewer", "set_retention", "refused"), "{lines:?}");
    assert!(has("ingest", "DoExchange", "refused"), "{lines:?}");
    assert!(has("root", "snapshot", "ok"), "{lines:?}");
    assert!(has("root", "drop_table", "ok"), "{lines:?}");
    let dropped = lines
        .iter()
        .find(|l| l["action"] == "drop_table" && l["user"] == "root");
    assert_eq!(dropped.map(|l| l["target"].clone()), Some(json!("events")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_client_signs_in_again_once_its_token_expired() {
    let cluster = secured_cluster_with(1, "auth-token-ttl-secs = 1\n").await;
    let options = ConnectOptions::default().with_credentials(password_of("ingest"));
    let addr = cluster.addr(1);
    let client =
        ClusterClient::connect_with_options(&[&addr], RetryPolicy::default(), options.clone())
            .await
            .expect("connect");
    client
        .action("status", &Value::Null)
        .await
        .expect("signed in");
    // A connection made now holds a token that expires within two seconds; so does the
    // cluster client's.
    let probe = Client::connect_with(&addr, &options)
        .await
        .expect("connect");
    let expired = common::eventually("the token expires", DEADLINE, || async {
        probe.action("status", &Value::Null).await.err()
    })
    .await;
    assert_eq!(expired.code(), Some(Code::Unauthenticated), "{expired}");
    assert!(expired.to_string().contains("expired"), "{expired}");
    client
        .action("status", &Value::Null)
        .await
        .expect("the cluster client signs in again");
}

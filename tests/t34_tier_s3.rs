//! Tiering to a real S3-compatible server (moto, started by the test) with the Iceberg
//! warehouse in the bucket too, whose objects a drop deletes; and the object store going down: writes keep being acked
//! REPLICATED while the tiering lag grows, and tiering catches up once the store is back.
//!
//! The nodes reach the server through a TCP proxy owned by the test; stopping the proxy
//! takes the store down for the nodes (connections refused) while the server keeps its data.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arka::client::{Ack, WriteItem};
use arka::durability::Level;
use common::{data, eventually, lsns_at, Cluster, DEADLINE};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const BUCKET: &str = "arka-test";

/// A moto S3 server on a free port, killed when dropped.
struct S3Server {
    child: Child,
    addr: SocketAddr,
}

impl S3Server {
    async fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto server (pip install 'moto[server]')");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        eventually("the S3 server to listen", DEADLINE, || async {
            TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        let server = S3Server { child, addr };
        server.python(&format!("s3.create_bucket(Bucket={BUCKET:?})"));
        server
    }

    /// Runs a line of Python with `s3`, a boto3 client of this server, and returns stdout.
    fn python(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='http://{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n{code}\n",
            self.addr
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self) -> Vec<String> {
        let out = self.python(&format!(
            "p = s3.get_paginator('list_objects_v2')\nfor page in p.paginate(Bucket={BUCKET:?}):\n    for o in page.get('Contents', []): print(o['Key'])"
        ));
        out.lines().map(str::to_string).collect()
    }

    fn pyiceberg_props(&self) -> Vec<String> {
        vec![
            format!("s3.endpoint=http://{}", self.addr),
            "s3.access-key-id=test".into(),
            "s3.secret-access-key=test".into(),
            "s3.region=us-east-1".into(),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy to the S3 server that the test can stop and start again on the same port.
struct Proxy {
    listen: SocketAddr,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let listen = listener.local_addr().expect("proxy addr");
        let mut proxy = Proxy {
            listen,
            target,
            task: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            // Connections are tasks of this set, so stopping the proxy cuts them too.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn up(&mut self) {
        let listener = TcpListener::bind(self.listen).await.expect("rebind proxy");
        self.serve(listener);
    }
}

async fn tiered_cluster(proxy: &Proxy, extra_config: &str) -> Cluster {
    let options = format!(
        "{extra_config}object-store-options = {{ aws_endpoint = \"http://{}\", aws_region = \"us-east-1\", aws_access_key_id = \"test\", aws_secret_access_key = \"test\", aws_allow_http = \"true\" }}\n",
        proxy.listen
    );
    let url = format!("s3://{BUCKET}/cluster");
    Cluster::start_tiered(3, Some(&url), 500, &options).await
}

async fn write(cluster: &Cluster, seqs: std::ops::Range<i64>, level: Level) -> Vec<Ack> {
    let writes: Vec<WriteItem> = seqs
        .map(|s| WriteItem::plain(data::batch(1, s, 4)))
        .collect();
    cluster
        .client(1)
        .await
        .write_all("events", writes, level)
        .await
        .expect("write")
}

fn last_at(acks: &[Ack], level: Level) -> u64 {
    *lsns_at(acks, level).last().expect("acked")
}

#[tokio::test(flavor = "multi_thread")]
async fn tiers_to_an_s3_server() {
    let s3 = S3Server::start().await;
    let proxy = Proxy::start(s3.addr).await;
    let cluster = tiered_cluster(&proxy, "").await;
    let acks = write(&cluster, 0..10, Level::Committed).await;
    let last = last_at(&acks, Level::Committed);
    assert_eq!(last, last_at(&acks, Level::ObjectStorage));

    let keys = s3.keys();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("cluster/data/events/") && k.ends_with(".parquet")),
        "parquet files in the bucket: {keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("cluster/warehouse/arka/events/")
                && k.ends_with(".metadata.json")),
        "iceberg metadata in the bucket: {keys:?}"
    );
    let warehouse = format!("s3://{BUCKET}/cluster/warehouse");
    let (snapshot_lsn, rows) = cluster.iceberg_rows(&warehouse, "events", &s3.pyiceberg_props());
    assert!(snapshot_lsn >= last);
    assert_eq!(rows.len(), 40, "PyIceberg reads every row from the bucket");

    // Dropping the table deletes its objects from the bucket (S3's bulk delete).
    (cluster.client(1).await)
        .action("drop_table", &json!({"name": "events"}))
        .await
        .expect("drop_table");
    eventually("the dropped table's objects deleted", DEADLINE, || async {
        let keys = s3.keys();
        let left: Vec<&String> = (keys.iter())
            .filter(|k| {
                k.starts_with("cluster/data/events/")
                    || k.starts_with("cluster/warehouse/arka/events/")
            })
            .collect();
        left.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_go_on_while_the_store_is_down_and_tiering_catches_up() {
    let s3 = S3Server::start().await;
    let mut proxy = Proxy::start(s3.addr).await;
    let cluster = tiered_cluster(&proxy, "").await;
    let before = write(&cluster, 0..5, Level::Committed).await;
    let tiered_before = last_at(&before, Level::Committed);

    proxy.down().await;
    let during = write(&cluster, 5..25, Level::Replicated).await;
    let last = last_at(&during, Level::Replicated);
    let lagging: Value = eventually("the tiering lag to grow", DEADLINE, || async {
        let status = cluster.status(1).await?;
        let lag = status["lag_seconds"].as_f64()?;
        (lag >= 2.0).then_some(status)
    })
    .await;
    assert!(
        lagging["s3_lsn"].as_u64() < Some(last),
        "nothing new reaches object storage while it is down: {lagging}"
    );
    assert!(lagging["s3_lsn"].as_u64() >= Some(tiered_before));
    let first_lag = lagging["lag_seconds"].as_f64().expect("lag");
    eventually("the tiering lag to keep growing", DEADLINE, || async {
        let lag = cluster.status(1).await?["lag_seconds"].as_f64()?;
        (lag >= first_lag + 1.0).then_some(())
    })
    .await;
    let worker = lagging["tier_worker"].as_u64().expect("tier worker");
    let worker_status = cluster.status(worker).await.expect("worker status");
    assert!(
        worker_status["tier"]["worker_last_error"].is_string(),
        "the tier worker reports why: {worker_status}"
    );
    // The write path is unaffected while the store is down.
    let more = write(&cluster, 25..30, Level::Replicated).await;
    let last = last.max(last_at(&more, Level::Replicated));

    proxy.up().await;
    eventually("tiering to catch up", Duration::from_secs(60), || async {
        let status = cluster.status(1).await?;
        let committed = status["committed_lsn"].as_u64()?;
        let lag = status["lag_seconds"].as_f64()?;
        (committed >= last && lag < 1.0).then_some(())
    })
    .await;
    let warehouse = format!("s3://{BUCKET}/cluster/warehouse");
    let (_, rows) = cluster.iceberg_rows(&warehouse, "events", &s3.pyiceberg_props());
    assert_eq!(
        rows.len(),
        30 * 4,
        "every row is in Iceberg once tiering caught up"
    );
}

/// WAL bounds small enough for a test to go past: 128 KiB at most, 32 KiB kept once tiered.
const SMALL_WAL: &str =
    "segment-bytes-max = 16384\nwal-retention-bytes = 32768\nwal-bytes-max = 131072\n";

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_refused_past_the_wal_bound_until_the_store_is_back() {
    let s3 = S3Server::start().await;
    let mut proxy = Proxy::start(s3.addr).await;
    let cluster = tiered_cluster(&proxy, SMALL_WAL).await;
    write(&cluster, 0..2, Level::Committed).await;

    proxy.down().await;
    let client = cluster.client(1).await;
    let mut seq = 2;
    let refused = eventually("writes to be refused", DEADLINE, || {
        seq += 1;
        let writes = vec![WriteItem::plain(data::batch(1, seq, 100))];
        let client = client.clone();
        async move {
            client
                .write_all("events", writes, Level::Replicated)
                .await
                .err()
        }
    })
    .await;
    assert_eq!(
        refused.code(),
        Some(tonic::Code::ResourceExhausted),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("wal-bytes-max"),
        "the error says why: {refused}"
    );

    proxy.up().await;
    eventually(
        "writes to be accepted again",
        Duration::from_secs(60),
        || {
            let writes = vec![WriteItem::plain(data::batch(1, 1_000_000, 1))];
            let client = client.clone();
            async move {
                client
                    .write_all("events", writes, Level::Replicated)
                    .await
                    .ok()
            }
        },
    )
    .await;
}

/// A writer faster than object storage is slowed, not failed: a write that finds the WAL over
/// its bound waits until tiering trims it, and is then taken.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_is_held_while_the_wal_is_over_its_bound_and_taken_once_tiering_trims_it() {
    let s3 = S3Server::start().await;
    let mut proxy = Proxy::start(s3.addr).await;
    let bounds = format!("{SMALL_WAL}wal-full-hold-ms = 120000\n");
    let cluster = tiered_cluster(&proxy, &bounds).await;
    write(&cluster, 0..2, Level::Committed).await;

    proxy.down().await;
    let client = cluster.client(1).await;
    // One write of about 200 KB is taken (the WAL was under its bound) and puts it over.
    let over = vec![WriteItem::plain(data::batch(1, 2, 7_000))];
    client
        .write_all("events", over, Level::Replicated)
        .await
        .expect("the write that fills the WAL");
    eventually("the WAL to be over its bound", DEADLINE, || async {
        let wal_bytes = cluster.status(1).await?["tier"]["wal_bytes"].as_u64()?;
        (wal_bytes > 131_072).then_some(())
    })
    .await;

    let held = {
        let client = client.clone();
        tokio::spawn(async move {
            let writes = vec![WriteItem::plain(data::batch(1, 3, 4))];
            client.write_all("events", writes, Level::Replicated).await
        })
    };
    // A node that refused the write at once would have answered by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !held.is_finished(),
        "the write is held while the WAL is over its bound: {:?}",
        held.await
    );
    proxy.up().await;
    let acks = held
        .await
        .expect("join")
        .expect("the held write is taken once tiering trimmed the WAL");
    assert_eq!(lsns_at(&acks, Level::Replicated).len(), 1, "{acks:?}");
}

/// The status of a node the tier worker's designation left does not keep, as the worker's,
/// the error it had while it was the worker.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_is_no_longer_the_tier_worker_shows_no_worker_error() {
    let s3 = S3Server::start().await;
    let mut proxy = Proxy::start(s3.addr).await;
    let cluster = tiered_cluster(&proxy, "").await;
    write(&cluster, 0..2, Level::Committed).await;
    let worker = cluster.follower_tier_worker(1).await;

    proxy.down().await;
    write(&cluster, 2..4, Level::Replicated).await;
    eventually(
        "the worker to report the store's failure",
        DEADLINE,
        || async {
            let status = cluster.status(worker).await?;
            status["tier"]["worker_last_error"].as_str().map(|_| ())
        },
    )
    .await;
    let cluster = &cluster;
    let isolate = |on: bool| async move {
        cluster
            .client(worker)
            .await
            .action("inject_fault", &json!({ "isolate": on }))
            .await
            .expect("inject_fault");
    };
    isolate(true).await;
    eventually("another node to be designated", DEADLINE, || async {
        let designated = cluster.status(1).await?["tier_worker"].as_u64()?;
        (designated != worker).then_some(())
    })
    .await;
    isolate(false).await;
    eventually(
        "the former worker to show no worker error",
        DEADLINE,
        || async {
            let status = cluster.status(worker).await?;
            let moved = status["tier_worker"].as_u64() != Some(worker);
            (moved && status["tier"]["worker_last_error"].is_null()).then_some(())
        },
    )
    .await;
}

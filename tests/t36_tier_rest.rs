//! Tiering through an Iceberg REST catalog (`catalog-url = "http://…"`): a REST catalog
//! service started by the test (PyIceberg's catalog behind the REST protocol) receives the
//! tables, snapshots and schema changes, and PyIceberg's REST client reads the rows back.
//! While the catalog is down, writes still reach OBJECT_STORAGE (also through a tier worker
//! chosen meanwhile) and COMMITTED waits; once it is back, every row is committed exactly
//! once. A commit the catalog carried out but whose answer was lost is not made twice.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arka::client::WriteItem;
use arka::durability::Level;
use arrow::record_batch::RecordBatch;
use common::{data, eventually, free_port, iceberg_rows_in, lsns_at, Cluster, DEADLINE};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The REST catalog service on a fixed port, with its state in its own directory, so it can
/// be stopped and started again with its tables kept. Killed when dropped.
struct RestCatalog {
    dir: TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl RestCatalog {
    async fn start() -> RestCatalog {
        let mut catalog = RestCatalog {
            dir: TempDir::new().expect("tempdir"),
            addr: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
            child: None,
        };
        catalog.up().await;
        catalog
    }

    fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn up(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/rest_catalog.py");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("rest.log"))
            .expect("log file");
        let child = Command::new("python3")
            .arg(script)
            .arg(self.addr.port().to_string())
            .arg(self.dir.path().join("catalog.db"))
            .arg(format!("file://{}/warehouse", self.dir.path().display()))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start the REST catalog (pip install pyiceberg)");
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect(self.addr).await.is_err() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "the REST catalog did not listen within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn assert_running(&mut self) {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            let log = std::fs::read_to_string(self.dir.path().join("rest.log")).unwrap_or_default();
            panic!("the REST catalog exited ({status}):\n{log}");
        }
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RestCatalog {
    fn drop(&mut self) {
        self.down();
    }
}

async fn start_cluster(catalog: &RestCatalog) -> Cluster {
    Cluster::start_tiered_with_catalog(3, None, &catalog.uri(), 500, "").await
}

/// An HTTP/1.1 proxy to the catalog that, while `losing` is set, passes a table commit
/// (`POST …/tables/NAME`) on to the catalog and then closes the client's connection instead
/// of giving it the answer: the commit happened, its sender sees a broken connection.
struct AnswerLosingProxy {
    addr: SocketAddr,
    losing: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
}

impl AnswerLosingProxy {
    async fn start(target: SocketAddr) -> AnswerLosingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = AnswerLosingProxy {
            addr: listener.local_addr().expect("proxy addr"),
            losing: Arc::default(),
            lost: Arc::default(),
        };
        let (losing, lost) = (proxy.losing.clone(), proxy.lost.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (losing, lost) = (losing.clone(), lost.clone());
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        relay(inbound, outbound, &losing, &lost).await;
                    }
                });
            }
        });
        proxy
    }

    fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Relays one connection until either side closes it, or until the answer to a commit sent
/// while `losing` arrives: then the connection is dropped with the answer.
async fn relay(
    mut inbound: TcpStream,
    mut outbound: TcpStream,
    losing: &AtomicBool,
    lost: &AtomicUsize,
) {
    let (mut from_client, mut to_client) = inbound.split();
    let (mut from_catalog, mut to_catalog) = outbound.split();
    let commit_sent = AtomicBool::new(false);
    let requests = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_client.read(&mut buf).await.unwrap_or(0);
            if n == 0 || to_catalog.write_all(&buf[..n]).await.is_err() {
                return;
            }
            let request = String::from_utf8_lossy(&buf[..n]);
            if losing.load(Ordering::SeqCst)
                && request.starts_with("POST /v1/namespaces/arka/tables/")
            {
                commit_sent.store(true, Ordering::SeqCst);
            }
        }
    };
    let answers = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_catalog.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            if commit_sent.load(Ordering::SeqCst) {
                lost.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = answers => {}
    }
}

/// Writes `batches` to `events`, acked at `level`; returns their LSNs.
async fn write(cluster: &Cluster, batches: &[RecordBatch], level: Level) -> Vec<u64> {
    let writes = batches.iter().cloned().map(WriteItem::plain).collect();
    let client = cluster.client(1).await;
    let acks = tokio::time::timeout(DEADLINE, client.write_all("events", writes, level))
        .await
        .unwrap_or_else(|_| panic!("no {level:?} acks within {DEADLINE:?}"))
        .expect("write");
    let lsns = lsns_at(&acks, level);
    assert_eq!(lsns.len(), batches.len(), "{acks:?}");
    lsns
}

/// Waits until COMMITTED reaches the last of `lsns`, then asserts that Iceberg holds each of
/// `batches` (written at `lsns`) exactly once.
async fn committed_exactly_once(
    cluster: &Cluster,
    catalog: &RestCatalog,
    lsns: Vec<u64>,
    batches: Vec<RecordBatch>,
) {
    let last = *lsns.last().expect("lsn");
    eventually("COMMITTED to reach the last write", DEADLINE, || async {
        let status = cluster.status(1).await?;
        (status["committed_lsn"].as_u64()? >= last).then_some(())
    })
    .await;
    let (_, rows) = read_back(cluster, catalog);
    let expected = data::rows_of(&lsns.into_iter().zip(batches).collect::<Vec<_>>());
    assert_eq!(rows, expected, "every row is in Iceberg exactly once");
}

fn read_back(cluster: &Cluster, catalog: &RestCatalog) -> (u64, Vec<Value>) {
    let warehouse = format!("{}/warehouse", cluster.local_store_url());
    iceberg_rows_in(&catalog.uri(), &warehouse, "events", &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_writes_read_back_through_the_rest_catalog() {
    let catalog = RestCatalog::start().await;
    let cluster = start_cluster(&catalog).await;
    let mut batches: Vec<RecordBatch> = (0..8).map(|s| data::batch(1, s, 2)).collect();
    let mut lsns = write(&cluster, &batches, Level::Committed).await;
    // A nullable column added to the arka table is added through the catalog too.
    let evolved: Vec<RecordBatch> = (8..11).map(data::evolved_batch).collect();
    lsns.extend(write(&cluster, &evolved, Level::Committed).await);
    batches.extend(evolved);

    let (snapshot_lsn, rows) = read_back(&cluster, &catalog);
    let last = *lsns.last().expect("lsn");
    assert!(snapshot_lsn >= last, "arka.lsn {snapshot_lsn} < {last}");
    let expected = data::rows_of(&lsns.into_iter().zip(batches).collect::<Vec<_>>());
    assert_eq!(rows, expected, "PyIceberg reads what was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn commits_wait_for_a_catalog_that_is_down_and_resume_exactly_once() {
    let mut catalog = RestCatalog::start().await;
    let mut cluster = start_cluster(&catalog).await;
    let mut batches: Vec<RecordBatch> = (0..5).map(|s| data::batch(1, s, 2)).collect();
    let mut lsns = write(&cluster, &batches, Level::Committed).await;
    let worker = cluster.follower_tier_worker(1).await;

    catalog.down();
    let uploaded: Vec<RecordBatch> = (5..10).map(|s| data::batch(1, s, 2)).collect();
    lsns.extend(write(&cluster, &uploaded, Level::ObjectStorage).await);
    batches.extend(uploaded);
    let stuck = eventually(
        "the tier worker to report the catalog",
        DEADLINE,
        || async {
            let status = cluster.status(worker).await?;
            let error = status["tier"]["worker_last_error"].as_str()?;
            error.contains("iceberg").then_some(status)
        },
    )
    .await;
    let committed = cluster.status(1).await.expect("status")["committed_lsn"].as_u64();
    assert!(
        committed < lsns.last().copied(),
        "COMMITTED waits for the catalog: {stuck}"
    );

    // A tier worker chosen while the catalog is down uploads all the same.
    cluster.kill9(worker);
    eventually("a new tier worker", DEADLINE, || async {
        let now = cluster.status(1).await?["tier_worker"].as_u64()?;
        (now != worker).then_some(())
    })
    .await;
    let more: Vec<RecordBatch> = (10..15).map(|s| data::batch(1, s, 2)).collect();
    lsns.extend(write(&cluster, &more, Level::ObjectStorage).await);
    batches.extend(more);

    catalog.up().await;
    committed_exactly_once(&cluster, &catalog, lsns, batches).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_whose_answer_is_lost_is_not_made_twice() {
    let catalog = RestCatalog::start().await;
    let proxy = AnswerLosingProxy::start(catalog.addr).await;
    let cluster = Cluster::start_tiered_with_catalog(3, None, &proxy.uri(), 500, "").await;
    let mut batches: Vec<RecordBatch> = (0..5).map(|s| data::batch(1, s, 2)).collect();
    let mut lsns = write(&cluster, &batches, Level::Committed).await;

    proxy.losing.store(true, Ordering::SeqCst);
    let more: Vec<RecordBatch> = (5..10).map(|s| data::batch(1, s, 2)).collect();
    lsns.extend(write(&cluster, &more, Level::ObjectStorage).await);
    batches.extend(more);
    let last = *lsns.last().expect("lsn");
    // The catalog holds the new rows (read past the proxy) while their commit's answer was
    // lost to the tier worker.
    eventually(
        "a commit carried out with its answer lost",
        DEADLINE,
        || async {
            let lost = proxy.lost.load(Ordering::SeqCst) > 0;
            (lost && read_back(&cluster, &catalog).0 >= last).then_some(())
        },
    )
    .await;

    proxy.losing.store(false, Ordering::SeqCst);
    committed_exactly_once(&cluster, &catalog, lsns, batches).await;
}

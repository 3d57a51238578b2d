//! A disk that fills up: below `disk-free-bytes-min` a node takes no new writes
//! (`RESOURCE_EXHAUSTED`, naming the disk) and no new entries as follower, stays alive and
//! readable with no election, and takes writes again by itself once space is freed; every
//! acknowledged write is then read back once from every node. Data dirs sit on small tmpfs
//! mounts made by the test (it needs root, as CI has).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use arka::client::{Client, ClientError, WriteItem};
use arka::durability::Level;
use common::{data, eventually, Cluster, DEADLINE};
use serde_json::{json, Value};
use tempfile::TempDir;
use tonic::Code;

const MIB: u64 = 1024 * 1024;
/// The floor of every node.
const FLOOR: u64 = 32 * MIB;
/// Rows of one write: about 290 KB.
const ROWS: usize = 8192;

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: u64) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "mounting a tmpfs needs root");
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs at {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the mount with a file until `free` bytes are left; the file is the space to free.
    fn fill_to(&self, free: u64) -> PathBuf {
        let filler = self.0.join("filler");
        let now = free_bytes(&self.0) + std::fs::metadata(&filler).map_or(0, |m| m.len());
        let size = now.saturating_sub(free);
        std::fs::write(&filler, vec![0u8; size as usize]).expect("write the filler");
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: statvfs writes only the struct passed in; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
    stat.f_bavail * stat.f_frsize
}

fn config() -> String {
    format!("disk-free-bytes-min = {FLOOR}\n")
}

async fn write(client: &Client, seq: i64) -> Result<u64, ClientError> {
    let item = WriteItem::plain(data::batch(1, seq, ROWS));
    let acks = client
        .write_all("filled", vec![item], Level::Replicated)
        .await?;
    Ok(acks
        .iter()
        .find(|a| a.level == Level::Replicated)
        .map(|a| a.lsn)
        .expect("a REPLICATED ack"))
}

async fn term_and_leader(cluster: &Cluster, id: u64) -> (u64, u64) {
    let status = cluster.status(id).await.expect("status");
    (
        status["term"].as_u64().expect("term"),
        status["leader_id"].as_u64().expect("leader_id"),
    )
}

fn below_floor(status: &Value) -> bool {
    status["disk"]["below_floor"] == true
}

/// Every node holds exactly `seqs` in `filled`, once it applied `last`.
async fn every_node_holds(cluster: &Cluster, seqs: &[i64], last: u64) {
    for id in 1..=3 {
        assert_eq!(cluster.seqs_on(id, "filled", last).await, seqs, "node {id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_whose_disk_fills_refuses_writes_and_resumes_once_space_is_freed() {
    let dir = TempDir::new().expect("tempdir");
    let disk = Tmpfs::mount(dir.path(), 160 * MIB);
    let cluster = Cluster::start_in(dir, 3, &config(), Default::default()).await;
    let leader = cluster.wait_for_leader().await;
    let client = cluster.client(leader).await;
    let mut acked = Vec::new();
    let mut last = 0;
    for seq in 0..3 {
        last = write(&client, seq)
            .await
            .expect("a write before the disk fills");
        acked.push(seq);
    }
    let before = term_and_leader(&cluster, leader).await;

    // About 12 MiB above the floor, shared by three nodes' WALs: writes are refused soon.
    let filler = disk.fill_to(FLOOR + 12 * MIB);
    let refused = loop {
        let seq = acked.len() as i64;
        assert!(seq < 200, "writes never refused");
        match write(&client, seq).await {
            Ok(lsn) => {
                last = lsn;
                acked.push(seq);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refused.code(), Some(Code::ResourceExhausted), "{refused}");
    assert!(
        refused.to_string().contains("disk-free-bytes-min"),
        "{refused}"
    );

    // The leader says why; every node is alive and serves reads; no election happened.
    let status = cluster.status(leader).await.expect("the leader answers");
    assert!(below_floor(&status), "{status}");
    for id in 1..=3 {
        assert!(cluster.status(id).await.is_some(), "node {id} answers");
    }
    every_node_holds(&cluster, &acked, last).await;
    assert_eq!(term_and_leader(&cluster, leader).await, before);

    // Space is freed: writes resume with no restart.
    std::fs::remove_file(&filler).expect("free the space");
    let seq = acked.len() as i64;
    last = eventually("writes to resume", DEADLINE, || async {
        write(&client, seq).await.ok()
    })
    .await;
    acked.push(seq);
    every_node_holds(&cluster, &acked, last).await;
    assert_eq!(term_and_leader(&cluster, leader).await, before);
    drop(cluster);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_whose_disk_fills_falls_behind_and_catches_up_once_space_is_freed() {
    let dir = TempDir::new().expect("tempdir");
    let disk = Tmpfs::mount(&dir.path().join("node-3"), 96 * MIB);
    let cluster = Cluster::start_in(dir, 3, &config(), Default::default()).await;
    if cluster.wait_for_leader().await == 3 {
        let client = cluster.client(3).await;
        (client
            .action("transfer_leader", &json!({"node_id": 1}))
            .await)
            .expect("transfer");
    }
    let leader = eventually("a leader other than node 3", DEADLINE, || async {
        let leader = cluster.wait_for_leader().await;
        (leader != 3).then_some(leader)
    })
    .await;
    let client = cluster.client(leader).await;
    let mut last = write(&client, 0).await.expect("a first write");
    let before = term_and_leader(&cluster, leader).await;

    // Below half the floor a follower takes no entries.
    let filler = disk.fill_to(FLOOR / 2 - MIB);
    eventually("node 3 to stop taking entries", DEADLINE, || async {
        let status = cluster.status(3).await?;
        (status["disk"]["taking_entries"] == false).then_some(())
    })
    .await;
    let held_back_at = cluster.status(3).await.expect("status")["replicated_lsn"]
        .as_u64()
        .expect("replicated_lsn");

    // The other two keep writing; node 3 takes no entries but answers and serves reads.
    for seq in 1..20 {
        last = write(&client, seq)
            .await
            .expect("the other two take writes");
    }
    let status = cluster.status(3).await.expect("node 3 answers");
    assert!(status["replicated_lsn"].as_u64() < Some(last), "{status}");
    assert!(
        status["replicated_lsn"].as_u64() >= Some(held_back_at),
        "{status}"
    );
    assert_eq!(cluster.seqs_on(3, "filled", 0).await.first(), Some(&0));
    assert_eq!(term_and_leader(&cluster, leader).await, before);
    assert_eq!(term_and_leader(&cluster, 3).await, before);

    // Space is freed: node 3 catches up by itself.
    std::fs::remove_file(&filler).expect("free the space");
    eventually("node 3 to catch up", DEADLINE, || async {
        let status = cluster.status(3).await?;
        (status["replicated_lsn"].as_u64()? >= last).then_some(())
    })
    .await;
    let seqs: Vec<i64> = (0..20).collect();
    every_node_holds(&cluster, &seqs, last).await;
    assert_eq!(term_and_leader(&cluster, leader).await, before);
    drop(cluster);
    drop(disk);
}

/// With no floor, fills the disk under `cluster`'s writes until one waits (or is refused as
/// unavailable, when every node's log waits); returns the seqs acked and the one cut off.
async fn write_until_the_disk_is_full(cluster: &Cluster, client: &Client) -> (Vec<i64>, i64) {
    let mut acked = vec![0];
    let mut seq = 1;
    loop {
        assert!(seq < 200, "the disk never filled");
        let pending = write(client, seq);
        match tokio::time::timeout(std::time::Duration::from_secs(3), pending).await {
            Ok(Ok(_)) => acked.push(seq),
            Ok(Err(e)) if e.code() == Some(Code::Unavailable) => return (acked, seq),
            Ok(Err(e)) => panic!("write {seq} failed: {e}\n{}", cluster.log_tails()),
            Err(_) => return (acked, seq),
        }
        seq += 1;
    }
}

/// Every node holds each write of `acked` once, in order, and perhaps `cut_off` (a write
/// whose answer the test stopped waiting for), once `last` is applied.
async fn every_node_holds_acked(cluster: &Cluster, acked: &[i64], cut_off: i64, last: u64) {
    for id in 1..=3 {
        let held = cluster.seqs_on(id, "filled", last).await;
        let others: Vec<i64> = held.iter().copied().filter(|&s| s != cut_off).collect();
        assert_eq!(others, acked, "node {id}");
        assert!(held.len() - others.len() <= 1, "node {id}: {held:?}");
    }
}

/// Writes once more (the cluster takes it within the deadline), then checks that every node
/// holds each acked write once, in order, and perhaps `cut_off`.
async fn resume_and_check(cluster: &Cluster, client: &Client, mut acked: Vec<i64>, cut_off: i64) {
    let last = eventually("writes to resume", DEADLINE, || async {
        write(client, cut_off + 1).await.ok()
    })
    .await;
    acked.push(cut_off + 1);
    every_node_holds_acked(cluster, &acked, cut_off, last).await;
}

async fn start_without_a_floor(dir: TempDir) -> (Cluster, Client) {
    let cluster = Cluster::start_in(dir, 3, "disk-free-bytes-min = 0\n", Default::default()).await;
    let leader = cluster.wait_for_leader().await;
    let client = cluster.client(leader).await;
    write(&client, 0)
        .await
        .expect("a write before the disk fills");
    (cluster, client)
}

/// With no floor the disk fills in the middle of writes: the WAL waits for room rather than
/// dying. The writes in flight wait (and, with every node's disk full, so does Raft: the
/// leader's heartbeats are answered once the followers' logs are written), every node keeps
/// answering, and once space is freed the writes complete and new ones are taken, with no
/// restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_disk_filled_under_writes_is_waited_out_not_a_dead_wal() {
    let dir = TempDir::new().expect("tempdir");
    // The nodes' logs are on the disk that fills too: logging to a full disk must not take
    // a node down.
    let disk = Tmpfs::mount(dir.path(), 128 * MIB);
    let (cluster, client) = start_without_a_floor(dir).await;
    let filler = disk.fill_to(4 * MIB);
    let (acked, cut_off) = write_until_the_disk_is_full(&cluster, &client).await;
    for id in 1..=3 {
        let status = cluster
            .status(id)
            .await
            .expect("a node whose disk is full answers");
        assert!(
            status["disk"]["free_bytes"].as_u64() < Some(MIB),
            "node {id}: {status}"
        );
    }

    std::fs::remove_file(&filler).expect("free the space");
    resume_and_check(&cluster, &client, acked, cut_off).await;
    drop(cluster);
    drop(disk);
}

/// kill -9 of every node while their WALs wait for room on a full disk: after space is
/// freed and they restart, every acknowledged write is there once, on every node.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_killed_while_their_wal_waits_for_room_keep_every_acknowledged_write() {
    let dir = TempDir::new().expect("tempdir");
    let disk = Tmpfs::mount(dir.path(), 128 * MIB);
    let (mut cluster, client) = start_without_a_floor(dir).await;
    let filler = disk.fill_to(4 * MIB);
    let (acked, cut_off) = write_until_the_disk_is_full(&cluster, &client).await;

    for id in 1..=3 {
        cluster.kill9(id);
    }
    std::fs::remove_file(&filler).expect("free the space");
    for id in 1..=3 {
        cluster.spawn(id);
    }
    let leader = cluster.wait_for_leader().await;
    let client = cluster.client(leader).await;
    resume_and_check(&cluster, &client, acked, cut_off).await;
    drop(cluster);
    drop(disk);
}

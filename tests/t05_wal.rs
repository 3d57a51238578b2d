//! The WAL as openraft's log storage: openraft's own conformance suite, torn tails, mid-log
//! corruption, and reopening after crashes at every point of an append.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arka::state::{StateMachine, StateMachineStore};
use arka::wal::{LogStore, NoopObserver, WalConfig, WalFaults};
use arka_cluster::types::{Entry, LogId};
use arka_cluster::{NodeId, TypeConfig};
use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{RaftLogReader, StorageError};
use tempfile::TempDir;

struct WalBuilder {
    segment_bytes_max: u64,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for WalBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = TempDir::new().expect("tempdir");
        let (log, sm) = open(dir.path(), self.segment_bytes_max).await;
        Ok((dir, log, sm))
    }
}

/// Opens the metadata store. A log store dropped just before still holds it until its
/// flusher task has seen the drop, so a reopen waits (bounded) for sled's file lock.
async fn open_db(dir: &Path) -> Result<sled::Db, String> {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(dir.join("meta")) {
            Ok(db) => return Ok(db),
            Err(e) if e.to_string().contains("could not acquire lock") => {
                if tokio::time::Instant::now() > end {
                    return Err(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn open(dir: &Path, segment_bytes_max: u64) -> (LogStore, StateMachineStore) {
    let db = open_db(dir).await.expect("sled");
    let config = WalConfig {
        dir: dir.join("wal"),
        segment_bytes_max,
        faults: Default::default(),
    };
    let log = LogStore::open(config, db.clone(), Arc::new(NoopObserver))
        .await
        .expect("open wal");
    let sm = StateMachine::open(dir.join("snapshots")).expect("state machine");
    let sm = StateMachineStore::new(sm, None);
    (log, sm)
}

async fn open_log(dir: &Path, segment_bytes_max: u64) -> Result<LogStore, String> {
    open_log_with(dir, segment_bytes_max, WalFaults::default()).await
}

/// Opens the log with disk fault points the test holds.
async fn open_log_with(
    dir: &Path,
    segment_bytes_max: u64,
    faults: WalFaults,
) -> Result<LogStore, String> {
    let db = open_db(dir).await?;
    let config = WalConfig {
        dir: dir.join("wal"),
        segment_bytes_max,
        faults,
    };
    LogStore::open(config, db, Arc::new(NoopObserver))
        .await
        .map_err(|e| e.to_string())
}

fn blank(term: u64, index: u64) -> Entry {
    Entry::new_blank(LogId::new(
        LeaderId {
            term,
            node_id: NodeId(1),
        },
        index,
    ))
}

async fn append_durably(log: &mut LogStore, entries: Vec<Entry>) {
    // Returns only after the flush callback reported the entries durable.
    log.blocking_append(entries).await.expect("append");
}

/// Appends `entries` as a crash finds a group commit in flight: written to the segment but
/// not yet made durable (the fsync is skipped, so the WAL does not count them durable).
async fn append_in_flight(log: &mut LogStore, faults: &WalFaults, entries: Vec<Entry>) {
    faults.set_skip_fsync(true);
    append_durably(log, entries).await;
    faults.set_skip_fsync(false);
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(0..u64::MAX)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn passes_openraft_storage_suite() {
    Suite::test_all(WalBuilder {
        segment_bytes_max: 64 * 1024 * 1024,
    })
    .await
    .expect("openraft storage suite");
}

#[tokio::test]
async fn passes_openraft_storage_suite_with_tiny_segments() {
    // Every few records start a new segment, so purge and truncation cross segment bounds.
    Suite::test_all(WalBuilder {
        segment_bytes_max: 64,
    })
    .await
    .expect("openraft storage suite");
}

#[tokio::test]
async fn torn_tail_is_truncated_to_the_last_valid_record() {
    let dir = TempDir::new().expect("tempdir");
    {
        let faults = WalFaults::default();
        let mut log = open_log_with(dir.path(), 1 << 20, faults.clone())
            .await
            .expect("open");
        append_in_flight(&mut log, &faults, (1..=10).map(|i| blank(1, i)).collect()).await;
    }
    let file = segments(dir.path()).pop().expect("segment");
    let len = std::fs::metadata(&file).expect("meta").len();
    // Cut the last record in half, as a crash during a write would.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    f.set_len(len - 5).expect("truncate");
    drop(f);

    let mut log = open_log(dir.path(), 1 << 20)
        .await
        .expect("reopen repairs the tail");
    assert_eq!(indexes(&mut log).await, (1..=9).collect::<Vec<_>>());
    // The log continues where the valid records end.
    append_durably(&mut log, vec![blank(1, 10), blank(1, 11)]).await;
    drop(log);
    let mut log = open_log(dir.path(), 1 << 20).await.expect("reopen");
    assert_eq!(indexes(&mut log).await, (1..=11).collect::<Vec<_>>());
}

#[tokio::test]
async fn garbage_after_the_tail_is_truncated() {
    let dir = TempDir::new().expect("tempdir");
    {
        let mut log = open_log(dir.path(), 1 << 20).await.expect("open");
        append_durably(&mut log, (1..=3).map(|i| blank(1, i)).collect()).await;
    }
    let file = segments(dir.path()).pop().expect("segment");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    std::fs::write(&file, bytes).expect("write");
    let mut log = open_log(dir.path(), 1 << 20).await.expect("reopen");
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3]);
}

/// Two groups of five records: the first made durable, the second in flight when the
/// crash comes; the second group's records vouch that the first was fsynced.
async fn two_durable_groups(dir: &Path) -> (std::path::PathBuf, usize) {
    let faults = WalFaults::default();
    let mut log = open_log_with(dir, 1 << 20, faults.clone())
        .await
        .expect("open");
    append_durably(&mut log, (1..=5).map(|i| blank(1, i)).collect()).await;
    append_in_flight(&mut log, &faults, (6..=10).map(|i| blank(1, i)).collect()).await;
    drop(log);
    let file = segments(dir).pop().expect("segment");
    let len = std::fs::metadata(&file).expect("meta").len() as usize;
    (file, len / 10)
}

fn flip(file: &Path, offset: usize) {
    let mut bytes = std::fs::read(file).expect("read");
    bytes[offset] ^= 0x01;
    std::fs::write(file, bytes).expect("write");
}

#[tokio::test]
async fn flipped_byte_in_an_fsynced_record_is_reported_not_skipped() {
    let dir = TempDir::new().expect("tempdir");
    let (file, record) = two_durable_groups(dir.path()).await;
    flip(&file, 3 * record + 25); // inside the payload of the fourth record
    let err = open_log(dir.path(), 1 << 20)
        .await
        .err()
        .expect("corruption is an error");
    assert!(err.contains("corrupt wal record"), "{err}");
    assert!(
        err.contains(&file.display().to_string()),
        "names the file: {err}"
    );
    assert!(
        err.contains(&format!("offset {}", 3 * record)),
        "names the offset: {err}"
    );
}

#[tokio::test]
async fn damaged_length_of_an_fsynced_record_is_reported_not_taken_for_a_torn_tail() {
    let dir = TempDir::new().expect("tempdir");
    let (file, record) = two_durable_groups(dir.path()).await;
    flip(&file, 2 * record + 1); // the length field of the third record
    let err = open_log(dir.path(), 1 << 20)
        .await
        .err()
        .expect("a damaged length is corruption, not a torn tail");
    assert!(err.contains(&format!("offset {}", 2 * record)), "{err}");
    assert!(err.contains("fsynced"), "{err}");
}

/// Damage in the last group, which no later record vouches for, is what a torn write leaves
/// (the disk may have kept later pages of the write and not earlier ones): it is cut.
#[tokio::test]
async fn damage_in_the_last_group_is_cut_as_a_torn_tail() {
    let dir = TempDir::new().expect("tempdir");
    let (file, record) = two_durable_groups(dir.path()).await;
    flip(&file, 6 * record + 25); // the seventh record, in the second group
    let mut log = open_log(dir.path(), 1 << 20).await.expect("reopen");
    assert_eq!(indexes(&mut log).await, (1..=6).collect::<Vec<_>>());
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_reported() {
    let dir = TempDir::new().expect("tempdir");
    {
        let mut log = open_log(dir.path(), 128).await.expect("open");
        append_durably(&mut log, (1..=20).map(|i| blank(1, i)).collect()).await;
    }
    let files = segments(dir.path());
    assert!(files.len() > 2, "small segments roll: {files:?}");
    let sealed = &files[0];
    let len = std::fs::metadata(sealed).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(sealed)
        .expect("open");
    f.set_len(len - 3).expect("truncate");
    drop(f);
    let err = open_log(dir.path(), 128)
        .await
        .err()
        .expect("corruption is an error");
    assert!(err.contains(&sealed.display().to_string()), "{err}");
}

/// A log cut below what it had made durable (a damaged or truncated disk, not a crash) is
/// refused, naming the loss, rather than reopened without the acknowledged entries.
#[tokio::test]
async fn a_log_cut_below_its_durable_end_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    {
        let mut log = open_log(dir.path(), 1 << 20).await.expect("open");
        append_durably(&mut log, (1..=3).map(|i| blank(1, i)).collect()).await;
    }
    let file = segments(dir.path()).pop().expect("segment");
    let len = std::fs::metadata(&file).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let err = open_log(dir.path(), 1 << 20)
        .await
        .err()
        .expect("a lost durable tail is an error");
    assert!(
        err.contains("ends at entry 1") && err.contains("entries up to 3 had been made durable"),
        "{err}"
    );
}

/// Simulates a crash after every prefix of a group of appended records not yet durable:
/// whatever the cut, reopening yields exactly the records that were whole, and never an
/// error.
#[tokio::test]
async fn reopens_after_a_crash_at_every_byte_of_the_last_append() {
    let dir = TempDir::new().expect("tempdir");
    {
        let faults = WalFaults::default();
        let mut log = open_log_with(dir.path(), 1 << 20, faults.clone())
            .await
            .expect("open");
        append_in_flight(&mut log, &faults, (1..=3).map(|i| blank(1, i)).collect()).await;
    }
    let file = segments(dir.path()).pop().expect("segment");
    let full = std::fs::read(&file).expect("read");
    let record = full.len() / 3;
    for cut in (2 * record)..full.len() {
        std::fs::write(&file, &full[..cut]).expect("write prefix");
        let mut log = open_log(dir.path(), 1 << 20)
            .await
            .expect("reopen after crash");
        let whole = cut / record;
        assert_eq!(
            indexes(&mut log).await,
            (1..=whole as u64).collect::<Vec<_>>(),
            "cut at {cut}"
        );
    }
}

/// A damaged byte anywhere, headers included: in the fsynced first group it is refused with
/// the record's offset; in the last group it is cut there, keeping every record before it.
#[tokio::test]
async fn reopens_or_refuses_with_a_damaged_byte_anywhere() {
    let dir = TempDir::new().expect("tempdir");
    let (file, record) = two_durable_groups(dir.path()).await;
    let full = std::fs::read(&file).expect("read");
    for at in 0..full.len() {
        let mut damaged = full.clone();
        damaged[at] ^= 0x80;
        std::fs::write(&file, &damaged).expect("write damaged");
        let damaged_record = at / record;
        match open_log(dir.path(), 1 << 20).await {
            Ok(mut log) => {
                assert!(
                    damaged_record >= 5,
                    "byte {at} of an fsynced record was cut"
                );
                assert_eq!(
                    indexes(&mut log).await,
                    (1..=damaged_record as u64).collect::<Vec<_>>(),
                    "byte {at}"
                );
            }
            Err(e) => {
                assert!(
                    damaged_record < 5,
                    "byte {at} of the last group refused: {e}"
                );
                let offset = damaged_record * record;
                assert!(e.contains(&format!("offset {offset}")), "byte {at}: {e}");
            }
        }
    }
}

#[tokio::test]
async fn purge_removes_whole_segments_and_survives_reopen() {
    let dir = TempDir::new().expect("tempdir");
    {
        let mut log = open_log(dir.path(), 128).await.expect("open");
        append_durably(&mut log, (1..=30).map(|i| blank(1, i)).collect()).await;
        let before = segments(dir.path()).len();
        log.purge(LogId::new(
            LeaderId {
                term: 1,
                node_id: NodeId(1),
            },
            20,
        ))
        .await
        .expect("purge");
        // Files are deleted in the background, off the Raft storage task.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while segments(dir.path()).len() >= before {
            assert!(
                std::time::Instant::now() < deadline,
                "purged segments are deleted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let mut log = open_log(dir.path(), 128).await.expect("reopen");
    assert_eq!(indexes(&mut log).await, (21..=30).collect::<Vec<_>>());
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(20));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(30));
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term,
            node_id: NodeId(1),
        },
        index,
    )
}

/// openraft purges up to a snapshot's log id when it installs it, even past the end of the
/// log; the log then continues right after it, and must reopen cleanly every time.
#[tokio::test]
async fn reopens_after_a_snapshot_install_purged_past_the_end() {
    let dir = TempDir::new().expect("tempdir");
    let mut next = 1;
    for round in 1..=3u64 {
        let mut log = open_log(dir.path(), 1 << 20).await.expect("open");
        append_durably(
            &mut log,
            (next..next + 7).map(|i| blank(round, i)).collect(),
        )
        .await;
        let snapshot = next + 130;
        log.purge(log_id(round, snapshot)).await.expect("purge");
        next = snapshot + 1;
        append_durably(
            &mut log,
            (next..next + 5).map(|i| blank(round, i)).collect(),
        )
        .await;
        drop(log);
        let mut log = open_log(dir.path(), 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("reopen after install {round}: {e}"));
        assert_eq!(
            indexes(&mut log).await,
            (next..next + 5).collect::<Vec<_>>()
        );
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(snapshot));
        next += 5;
    }
}

/// A log written before the fix: the stale records of the tail segment are followed by the
/// entries after a purge past the end. It reopens, keeping the entries after the purge.
#[tokio::test]
async fn reopens_a_tail_that_holds_stale_records_before_the_purged_id() {
    // The stale records 1..=7, as the tail segment held them.
    let stale = TempDir::new().expect("tempdir");
    {
        let mut log = open_log(stale.path(), 1 << 20).await.expect("open");
        append_durably(&mut log, (1..=7).map(|i| blank(1, i)).collect()).await;
    }
    let stale_records = std::fs::read(&segments(stale.path())[0]).expect("read");
    // The log after the purge past its end: 132..=135.
    let dir = TempDir::new().expect("tempdir");
    {
        let mut log = open_log(dir.path(), 1 << 20).await.expect("open");
        log.purge(log_id(1, 131)).await.expect("purge");
        append_durably(&mut log, (132..=135).map(|i| blank(1, i)).collect()).await;
    }
    let file = segments(dir.path()).pop().expect("segment");
    let new_records = std::fs::read(&file).expect("read");
    std::fs::write(&file, [stale_records, new_records].concat()).expect("write");
    let mut log = open_log(dir.path(), 1 << 20).await.expect("reopen");
    assert_eq!(indexes(&mut log).await, (132..=135).collect::<Vec<_>>());
}

/// LOCAL_DISK comes from the disk watermark: after a truncation it must not still cover the
/// cut indexes, which the next entries take before they are fsynced.
#[tokio::test]
async fn truncation_lowers_the_disk_watermark() {
    let dir = TempDir::new().expect("tempdir");
    let db = open_db(dir.path()).await.expect("sled");
    let acks = Arc::new(arka::acks::AckRouter::new(NodeId(1)));
    let config = WalConfig {
        dir: dir.path().join("wal"),
        segment_bytes_max: 1 << 20,
        faults: Default::default(),
    };
    let mut log = LogStore::open(config, db, acks.clone())
        .await
        .expect("open wal");
    append_durably(&mut log, (1..=10).map(|i| blank(1, i)).collect()).await;
    assert_eq!(acks.disk_lsn(), 10);
    log.truncate_after(Some(log_id(1, 5)))
        .await
        .expect("truncate");
    assert_eq!(acks.disk_lsn(), 5, "the cut entries are no longer on disk");
    assert_eq!(acks.memory_lsn(), 5);
    append_durably(&mut log, vec![blank(2, 6)]).await;
    assert_eq!(acks.disk_lsn(), 6);
}

/// A data dir of the first WAL format (no header checksum) is refused by name: it must never
/// be taken for a torn tail and cut.
#[tokio::test]
async fn a_segment_of_the_first_format_is_refused_not_cut() {
    let dir = TempDir::new().expect("tempdir");
    drop(open_log(dir.path(), 1 << 20).await.expect("open"));
    let mut old = Vec::new();
    for index in 1..=3u64 {
        let mut payload = index.to_le_bytes().to_vec();
        payload.extend(postcard::to_stdvec(&blank(1, index)).expect("encode"));
        old.extend((payload.len() as u32).to_le_bytes());
        old.extend(crc32c::crc32c(&payload).to_le_bytes());
        old.extend(payload);
    }
    let file = segments(dir.path()).pop().expect("segment");
    std::fs::write(&file, &old).expect("write");
    let err = open_log(dir.path(), 1 << 20)
        .await
        .err()
        .expect("the old format is refused");
    assert!(err.contains("first WAL format"), "{err}");
    assert_eq!(std::fs::read(&file).expect("read"), old, "nothing was cut");
}

#[tokio::test]
async fn a_segment_left_pending_by_a_crash_is_not_part_of_the_log() {
    let dir = TempDir::new().expect("tempdir");
    {
        let mut log = open_log(dir.path(), 128).await.expect("open");
        append_durably(&mut log, (1..=5).map(|i| blank(1, i)).collect()).await;
    }
    // A crash after the next segment's file was made and before the flusher published it
    // (the segment before was not yet durable): its bytes are not part of the log.
    let last = segments(dir.path()).pop().expect("a segment");
    let last_id: u64 = last
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("segment id");
    let pending = dir
        .path()
        .join("wal")
        .join(format!("{:020}.wal.pending", last_id + 1));
    std::fs::write(&pending, b"records never made durable").expect("write pending");
    {
        let mut log = open_log(dir.path(), 128).await.expect("reopen");
        assert_eq!(indexes(&mut log).await, (1..=5).collect::<Vec<_>>());
        // The log goes on into that segment, made anew.
        append_durably(&mut log, (6..=12).map(|i| blank(1, i)).collect()).await;
    }
    let mut log = open_log(dir.path(), 128).await.expect("reopen again");
    assert_eq!(indexes(&mut log).await, (1..=12).collect::<Vec<_>>());
    assert!(
        !segments(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".pending")),
        "every segment with records is published: {:?}",
        segments(dir.path())
    );
}

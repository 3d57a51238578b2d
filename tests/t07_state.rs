//! The state machine under a random mix of commands (writes with and without producers,
//! schema evolutions, rejected writes, table creates and drops, tier worker changes, tier
//! reports, retention): a snapshot is the state at exactly its log id even while entries
//! keep being applied, a node that installs it holds that state, and a restart (newest
//! snapshot file + the log above it, as openraft replays it) rebuilds the state exactly.

use std::collections::BTreeMap;
use std::sync::Arc;

use arka::state::{StateData, StateMachine, StateMachineStore};
use arka_cluster::types::{Entry, LogId};
use arka_cluster::{Command, Lsn, NodeId, ProducerSeq, RequestId, TieredFile, WriteCommand};
use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use tempfile::TempDir;

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn schema(evolved: bool) -> Arc<Schema> {
    let mut fields = vec![Field::new("id", DataType::Int64, false)];
    if evolved {
        fields.push(Field::new("note", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

fn batch_ipc(evolved: bool, rows: usize) -> bytes::Bytes {
    let ids = Arc::new(Int64Array::from((0..rows as i64).collect::<Vec<_>>()));
    let columns: Vec<arrow::array::ArrayRef> = if evolved {
        vec![ids, Arc::new(StringArray::from(vec![Some("n"); rows]))]
    } else {
        vec![ids]
    };
    let batch = RecordBatch::try_new(schema(evolved), columns).expect("batch");
    arka::ipc::encode_batch(&batch).expect("ipc")
}

/// Generates commands and keeps what a tier worker would know: the writes since the last
/// tier report, per table.
struct Workload {
    rng: Rng,
    next_lsn: u64,
    s3_lsn: u64,
    worker: NodeId,
    untiered: BTreeMap<String, (u64, u64)>,
    evolved: BTreeMap<String, bool>,
}

impl Workload {
    fn entry(&mut self) -> Entry {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        let request = RequestId {
            origin: NodeId(1),
            seq: lsn,
        };
        let table = format!("t{}", self.rng.below(3));
        let pick = if lsn == 1 { 2 } else { self.rng.below(20) };
        let cmd = match pick {
            0 => Command::DropTable {
                name: table.clone(),
                request,
            },
            1 => Command::CreateTable {
                name: table.clone(),
                schema_ipc: arka::ipc::encode_schema(&schema(false)).expect("schema"),
                request,
            },
            2 => {
                self.worker = NodeId(1 + self.rng.below(3));
                Command::AssignTierWorker {
                    node_id: self.worker,
                    request,
                }
            }
            3 | 4 if lsn > self.s3_lsn + 1 => self.tier_report(lsn, request),
            5 => Command::TierCommitted {
                worker: self.worker,
                committed_lsn: Lsn(self.s3_lsn),
                request,
            },
            6 => Command::SetRetention {
                bytes: self.rng.below(1 << 20),
                ms: self.rng.below(10_000),
                request,
            },
            _ => self.write(lsn, &table, request),
        };
        if let Command::DropTable { name, .. } = &cmd {
            self.untiered.remove(name);
            self.evolved.remove(name);
        }
        let log_id = LogId::new(
            LeaderId {
                term: 1,
                node_id: NodeId(1),
            },
            lsn,
        );
        Entry {
            log_id,
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn write(&mut self, lsn: u64, table: &str, request: RequestId) -> Command {
        // Now and then a table's schema evolves; a write with its old schema is then refused.
        let evolved = self.evolved.entry(table.to_string()).or_default();
        if self.rng.below(30) == 0 {
            *evolved = true;
        }
        let with_note = *evolved && self.rng.below(10) != 0;
        let producer = (self.rng.below(2) == 0).then(|| ProducerSeq {
            producer_id: format!("p{}", self.rng.below(4)),
            seq: self.rng.below(200) as i64,
        });
        let span = self.untiered.entry(table.to_string()).or_insert((lsn, lsn));
        span.1 = lsn;
        Command::Write(WriteCommand {
            table: table.to_string(),
            request,
            producer,
            rows: 1 + self.rng.below(5),
            ipc: batch_ipc(with_note, 1 + self.rng.below(5) as usize),
        })
    }

    fn tier_report(&mut self, lsn: u64, request: RequestId) -> Command {
        let to_lsn = lsn - 1;
        let files = std::mem::take(&mut self.untiered)
            .into_iter()
            .map(|(table, (min_lsn, max_lsn))| TieredFile {
                path: format!("file:///store/data/{table}/{min_lsn:020}-{max_lsn:020}.parquet"),
                table,
                min_lsn: Lsn(min_lsn),
                max_lsn: Lsn(max_lsn),
                rows: 1,
                bytes: 1,
            })
            .collect();
        let from_lsn = self.s3_lsn;
        self.s3_lsn = to_lsn;
        Command::TierUploaded {
            worker: self.worker,
            from_lsn: Lsn(from_lsn),
            to_lsn: Lsn(to_lsn),
            files,
            request,
        }
    }
}

fn workload(seed: u64, entries: usize) -> Vec<Entry> {
    let mut w = Workload {
        rng: Rng(seed),
        next_lsn: 1,
        s3_lsn: 0,
        worker: NodeId(1),
        untiered: BTreeMap::new(),
        evolved: BTreeMap::new(),
    };
    (0..entries).map(|_| w.entry()).collect()
}

async fn apply(store: &mut StateMachineStore, entries: &[Entry]) {
    let items = entries.iter().cloned().map(|e| Ok((e, None)));
    store
        .apply(futures::stream::iter(items))
        .await
        .expect("apply");
}

/// The state after applying `entries` to nothing.
fn state_after(entries: &[Entry]) -> arka::state::Image {
    let mut data = StateData::default();
    for entry in entries {
        data.apply(entry).expect("apply");
    }
    data.image()
}

fn open(dir: &std::path::Path) -> (StateMachine, StateMachineStore) {
    let sm = StateMachine::open(dir.to_path_buf()).expect("state machine");
    (sm.clone(), StateMachineStore::new(sm, None))
}

#[tokio::test]
async fn snapshots_are_a_point_in_time_and_restarts_rebuild_the_state() {
    for seed in [7, 1234, 99991] {
        let entries = workload(seed, 1500);
        let leader_dir = TempDir::new().expect("tempdir");
        let (leader, mut store) = open(leader_dir.path());
        apply(&mut store, &entries[..600]).await;

        // The builder takes the state between two applies; more entries are applied before
        // the snapshot is encoded and written.
        let mut builder = store.get_snapshot_builder().await;
        apply(&mut store, &entries[600..900]).await;
        let snapshot = builder.build_snapshot().await.expect("build");
        assert_eq!(snapshot.meta.last_log_id, entries[599].log_id.into());
        let at_600 = state_after(&entries[..600]);

        // A new node installs it and holds exactly the state at its log id.
        let new_dir = TempDir::new().expect("tempdir");
        let (new_node, mut new_store) = open(new_dir.path());
        new_store
            .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
            .await
            .expect("install");
        assert!(new_node.image() == at_600, "seed {seed}: installed state");

        // The leader goes on, then restarts: newest snapshot file, then the log above it.
        apply(&mut store, &entries[900..]).await;
        let before = leader.image();
        assert!(
            before == state_after(&entries),
            "seed {seed}: applied state"
        );
        // The mix reached every part of the state.
        let sizes = leader.sizes();
        assert!(sizes.tables > 0 && sizes.index_entries > 0, "{sizes:?}");
        assert!(
            sizes.dedup_entries > 0 && sizes.tiered_files > 0,
            "{sizes:?}"
        );
        assert!(
            leader.tier().s3_lsn > Lsn::ZERO,
            "tier reports were accepted"
        );
        drop(store);
        let (restarted, mut store) = open(leader_dir.path());
        let current = store
            .get_current_snapshot()
            .await
            .expect("read snapshot")
            .expect("a snapshot file");
        assert_eq!(current.meta, snapshot.meta);
        store
            .install_snapshot(&current.meta, current.snapshot)
            .await
            .expect("restore");
        apply(&mut store, &entries[600..]).await;
        assert!(restarted.image() == before, "seed {seed}: rebuilt state");
    }
}

#[tokio::test]
async fn a_damaged_snapshot_file_is_refused() {
    let entries = workload(5, 200);
    let dir = TempDir::new().expect("tempdir");
    let (_, mut store) = open(dir.path());
    apply(&mut store, &entries).await;
    store
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let file = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("snapshot file");
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&file, bytes).expect("write");
    let (_, mut store) = open(dir.path());
    let err = store
        .get_current_snapshot()
        .await
        .expect_err("damage is an error");
    assert!(err.to_string().contains("checksum"), "{err}");
}

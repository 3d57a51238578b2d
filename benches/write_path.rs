//! Micro-benchmarks of the write path's hot pieces, so that a change shows its cost:
//! WAL record framing, IPC pass-through against re-encoding, and ack batch encoding.
//!
//! `cargo bench --bench write_path`

use std::sync::Arc;

use arka::durability::Level;
use arka::wire::BatchEncoder;
use arka::write::AckEvent;
use arka_cluster::types::{Entry, LogId};
use arka_cluster::{Command, NodeId, ProducerSeq, RequestId, WriteCommand};
use arrow::array::{BinaryArray, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::EntryPayload;

const SIZES: [usize; 3] = [1024, 64 * 1024, 1024 * 1024];

/// A batch of about `bytes` bytes, as the bench client writes it.
fn batch(bytes: usize) -> RecordBatch {
    let rows = (bytes / 64).max(1);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("payload", DataType::Binary, false),
    ]));
    let payload = [0xabu8; 56];
    let ids = Int64Array::from_iter_values(0..rows as i64);
    let data = BinaryArray::from_iter_values((0..rows).map(|_| &payload[..]));
    RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(data)]).expect("batch")
}

/// The Flight messages a client sends for `batch`: schema, then the batch.
fn client_messages(batch: &RecordBatch) -> (FlightData, FlightData) {
    let mut encoder = BatchEncoder::default();
    let schema = encoder.schema(&batch.schema());
    let mut messages = encoder.batch(batch, Default::default()).expect("encode");
    (schema, messages.pop().expect("batch message"))
}

fn write_entry(bytes: usize) -> Entry {
    entry_at(42, bytes, None)
}

/// A write entry at log index `lsn`, idempotent when `producer` is given.
fn entry_at(lsn: u64, bytes: usize, producer: Option<ProducerSeq>) -> Entry {
    let (schema, data) = client_messages(&batch(bytes));
    let ipc = arka::ipc::frame_stream(&schema.data_header, &data.data_header, &data.data_body)
        .expect("frame");
    let write = WriteCommand {
        table: "bench".into(),
        request: RequestId {
            origin: NodeId(1),
            seq: 7,
        },
        producer,
        rows: 16,
        ipc,
    };
    let leader = LeaderId {
        term: 1,
        node_id: NodeId(1),
    };
    Entry {
        log_id: LogId::new(leader, lsn),
        payload: EntryPayload::Normal(Command::Write(write)),
    }
}

fn record_framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_record");
    for size in SIZES {
        let entry = write_entry(size);
        group.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::new();
        group.bench_with_input(BenchmarkId::new("encode", size), &entry, |b, entry| {
            b.iter(|| {
                out.clear();
                arka::wal::record::encode_into(entry, 0, &mut out).expect("encode");
            })
        });
        out.clear();
        arka::wal::record::encode_into(&entry, 0, &mut out).expect("encode");
        let payload = out[arka::wal::record::HEADER_BYTES..].to_vec();
        group.bench_with_input(BenchmarkId::new("decode", size), &payload, |b, payload| {
            b.iter(|| arka::wal::record::decode(payload).expect("decode"))
        });
    }
    group.finish();
}

fn ipc_pass_through(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_ipc");
    for size in SIZES {
        let batch = batch(size);
        let (schema, data) = client_messages(&batch);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("keep_client_messages", size), |b| {
            b.iter(|| {
                arka::ipc::frame_stream(&schema.data_header, &data.data_header, &data.data_body)
                    .expect("frame")
            })
        });
        group.bench_function(BenchmarkId::new("re_encode", size), |b| {
            b.iter(|| arka::ipc::encode_batch(&batch).expect("encode"))
        });
        let stored =
            arka::ipc::frame_stream(&schema.data_header, &data.data_header, &data.data_body)
                .expect("frame");
        group.bench_function(BenchmarkId::new("read_as_written", size), |b| {
            b.iter(|| arka::ipc::split_write(&stored).expect("split"))
        });
        group.bench_function(BenchmarkId::new("read_decoded", size), |b| {
            b.iter(|| arka::ipc::decode_batches(&stored).expect("decode"))
        });
    }
    group.finish();
}

fn ack_batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("ack_batch");
    for rows in [1usize, 64, 1024] {
        let events: Vec<AckEvent> = (0..rows as u64)
            .map(|n| AckEvent {
                write_no: n,
                lsn: 1000 + n,
                level: Level::Replicated,
                is_update: true,
                table: "bench".into(),
                rows: 16,
                seq: Some(n as i64),
                appended_by: Some(LeaderId {
                    term: 3,
                    node_id: NodeId(1),
                }),
            })
            .collect();
        group.throughput(Throughput::Elements(rows as u64));
        let mut encoder = BatchEncoder::default();
        group.bench_with_input(BenchmarkId::new("encode", rows), &events, |b, events| {
            b.iter(|| {
                let batch = arka::flight::ack_batch(events, false).expect("ack batch");
                encoder.batch(&batch, Default::default()).expect("encode")
            })
        });
    }
    group.finish();
}

/// The copy of the state a snapshot takes between two applies, while writers wait for their
/// acks: with a full WAL's index and a producer's dedup window. `btreemap_clone` is the
/// per-entry copy the state made before it kept those maps in shared chunks.
fn snapshot_copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_copy");
    group.sample_size(20);
    for writes in [100_000u64, 700_000] {
        let template = entry_at(1, 1024, None);
        let mut state = arka::state::StateData::default();
        for lsn in 1..=writes {
            let mut entry = template.clone();
            entry.log_id.index = lsn;
            if let EntryPayload::Normal(Command::Write(w)) = &mut entry.payload {
                w.producer = Some(ProducerSeq {
                    producer_id: "bench".into(),
                    seq: lsn as i64,
                });
            }
            state.apply(&entry).expect("apply");
        }
        group.bench_with_input(BenchmarkId::new("state_image", writes), &state, |b, s| {
            b.iter(|| s.image())
        });
        let index: std::collections::BTreeMap<u64, (u64, u64)> =
            (1..=writes).map(|l| (l, (16, 1024))).collect();
        group.bench_with_input(
            BenchmarkId::new("btreemap_clone", writes),
            &index,
            |b, m| b.iter(|| m.clone()),
        );
    }
    group.finish();
}

criterion_group!(
    benches,
    record_framing,
    ipc_pass_through,
    ack_batches,
    snapshot_copy
);
criterion_main!(benches);

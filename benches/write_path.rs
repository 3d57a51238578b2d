//! Micro-benchmarks of the write path's hot pieces, so that a change shows its cost:
//! WAL record framing, IPC pass-through against re-encoding, and ack batch encoding.
//!
//! `cargo bench --bench write_path`

use std::sync::Arc;

use arka::durability::Level;
use arka::flight::encode::BatchEncoder;
use arka::write::AckEvent;
use arka_cluster::types::{Entry, LogId};
use arka_cluster::{Command, NodeId, RequestId, WriteCommand};
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
    let (schema, data) = client_messages(&batch(bytes));
    let ipc = arka::ipc::frame_stream(&schema.data_header, &data.data_header, &data.data_body)
        .expect("frame");
    let write = WriteCommand {
        table: "bench".into(),
        request: RequestId {
            origin: NodeId(1),
            seq: 7,
        },
        producer: None,
        rows: 16,
        ipc,
    };
    let leader = LeaderId {
        term: 1,
        node_id: NodeId(1),
    };
    Entry {
        log_id: LogId::new(leader, 42),
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
            })
            .collect();
        group.throughput(Throughput::Elements(rows as u64));
        let mut encoder = BatchEncoder::default();
        group.bench_with_input(BenchmarkId::new("encode", rows), &events, |b, events| {
            b.iter(|| {
                let batch = arka::flight::ack_batch(events).expect("ack batch");
                encoder.batch(&batch, Default::default()).expect("encode")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, record_framing, ipc_pass_through, ack_batches);
criterion_main!(benches);

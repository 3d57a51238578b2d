//! Fuzzing the parsers of what a client sends: the Flight write stream (IPC headers and
//! bodies, plain and compressed, through the checks and arrow's decoder), DoGet tickets, and
//! action bodies (JSON, and the IPC schema `create_table` carries). Whatever the bytes, the
//! answer is a value or an error, never a panic. Each property runs a bounded number of
//! cases (`CASES`), so the suite's time stays fixed.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, StructArray};
use arrow::datatypes::Field;
use arrow::ipc::writer::IpcWriteOptions;
use arrow::ipc::CompressionType;
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::StreamExt;
use proptest::prelude::*;

use super::actions::{check_sizes, parse_body};
use super::ticket;
use crate::ipc;
use crate::wire::BatchEncoder;
use crate::write::decode_writes;

const CASES: u32 = 1500;

/// One row group of the kinds of columns clients send: integers, strings, a struct.
fn sample_batch() -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from((0..64).collect::<Vec<i64>>()));
    let names: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..64).map(|i| format!("n{i}")),
    ));
    let inner = Arc::new(Field::new("x", arrow::datatypes::DataType::Int64, false));
    let nested: ArrayRef = Arc::new(StructArray::from(vec![(inner, ids.clone())]));
    RecordBatch::try_from_iter([("id", ids), ("name", names), ("s", nested)]).expect("batch")
}

/// The schema message and batch message of `sample_batch`, compressed with `codec`.
fn messages(codec: Option<CompressionType>) -> Vec<FlightData> {
    let options = IpcWriteOptions::default()
        .try_with_compression(codec)
        .expect("options");
    let mut encoder = BatchEncoder::with_options(options);
    let batch = sample_batch();
    let descriptor = FlightDescriptor::new_path(vec!["fuzzed".into()]);
    let mut out = vec![encoder.schema(&batch.schema()).with_descriptor(descriptor)];
    out.extend(encoder.batch(&batch, Default::default()).expect("encode"));
    out
}

/// A change to a byte string: set bytes, cut it, or extend it.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
    ]
}

fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for m in mutations {
        match m {
            Mutation::Set(at, b) if !out.is_empty() => {
                let at = at % out.len();
                out[at] = *b;
            }
            Mutation::Set(..) => {}
            Mutation::Truncate(at) => out.truncate(at % (out.len() + 1)),
            Mutation::Extend(more) => out.extend_from_slice(more),
        }
    }
    out
}

/// Runs the write path's decoding over `messages` to its end; every item is a write or an
/// error.
fn decode_all(messages: Vec<FlightData>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let stream = futures::stream::iter(messages.into_iter().map(Ok));
        if let Ok((_, writes)) = decode_writes(stream, 1024 * 1024).await {
            let mut writes = Box::pin(writes);
            while let Some(write) = writes.next().await {
                if let Ok(write) = write {
                    let _ = crate::lake::types::check_values(&write.batch);
                }
            }
        }
    });
}

fn codec() -> impl Strategy<Value = Option<CompressionType>> {
    prop_oneof![
        Just(None),
        Just(Some(CompressionType::LZ4_FRAME)),
        Just(Some(CompressionType::ZSTD)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_write_stream_is_refused_never_a_panic(
        codec in codec(),
        target in 0usize..4,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut sent = messages(codec);
        let batch = sent.len() - 1;
        let message = &mut sent[if target < 2 { batch } else { 0 }];
        if target % 2 == 0 {
            message.data_header = mutate(&message.data_header, &mutations).into();
        } else {
            message.data_body = mutate(&message.data_body, &mutations).into();
        }
        decode_all(sent);
    }

    #[test]
    fn random_write_messages_are_refused_never_a_panic(
        header in proptest::collection::vec(any::<u8>(), 0..512),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut sent = messages(None);
        sent.truncate(1);
        sent.push(FlightData { data_header: header.into(), data_body: body.into(), ..Default::default() });
        decode_all(sent);
    }

    #[test]
    fn any_ticket_is_parsed_or_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        mutations in proptest::collection::vec(mutation(), 0..4),
        json in any::<bool>(),
    ) {
        let base: &[u8] = br#"{"table": "t", "min_lsn": 5, "from_lsn": 1, "to_lsn": 9, "with_lsn": true}"#;
        let ticket = if json { mutate(base, &mutations) } else { bytes };
        let _ = ticket::parse(&ticket);
    }

    #[test]
    fn any_action_body_is_parsed_or_refused(
        name in "[a-z_]{0,80}",
        body in proptest::collection::vec(any::<u8>(), 0..512),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let _ = check_sizes(&name, &body);
        let _ = parse_body::<serde_json::Value>(&name, &body);
        // create_table's schema: an IPC schema message, here damaged.
        let schema = ipc::encode_schema(&sample_batch().schema()).expect("schema");
        let _ = ipc::decode_client_schema(&mutate(&schema, &mutations));
        let _ = ipc::decode_client_schema(&body);
    }
}

//! The bytes a client wrote are the bytes a reader gets back: a write is kept as the client's
//! own IPC messages, not decoded and encoded again, on every node.

mod common;

use std::sync::Arc;

use arka::wire::BatchEncoder;
use arrow::array::{Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightData, FlightDescriptor, Ticket};
use common::{read_all, Cluster};
use futures::StreamExt;

/// The body bytes of `header`'s message that lie in no buffer: padding, which an encoder
/// writes as zeros.
fn padding_ranges(header: &[u8], body_len: usize) -> Vec<std::ops::Range<usize>> {
    let message = arrow::ipc::root_as_message(header).expect("message");
    let batch = message.header_as_record_batch().expect("record batch");
    let mut covered: Vec<(usize, usize)> = batch
        .buffers()
        .expect("buffers")
        .iter()
        .map(|b| (b.offset() as usize, (b.offset() + b.length()) as usize))
        .collect();
    covered.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = 0;
    for (start, end) in covered {
        if start > at {
            gaps.push(at..start);
        }
        at = at.max(end);
    }
    if at < body_len {
        gaps.push(at..body_len);
    }
    gaps
}

/// A batch's Flight messages with every padding byte set to 0x5a: still a valid batch, but
/// one no encoder would produce, so only a copy of what was sent carries them.
fn marked_messages(batch: &RecordBatch) -> (FlightData, FlightData) {
    let mut encoder = BatchEncoder::default();
    let schema = encoder.schema(&batch.schema());
    let mut data = encoder
        .batch(batch, Default::default())
        .expect("encode")
        .pop()
        .expect("batch message");
    let mut body = data.data_body.to_vec();
    let gaps = padding_ranges(&data.data_header, body.len());
    assert!(!gaps.is_empty(), "the batch has padding to mark");
    for gap in gaps {
        body[gap].fill(0x5a);
    }
    data.data_body = body.into();
    (schema, data)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_is_read_back_from_every_node_as_the_bytes_the_client_sent() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    // Three rows: 12 bytes of ids and 16 of offsets, so both buffers are padded.
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])),
        ],
    )
    .expect("batch");
    let (schema_message, sent) = marked_messages(&batch);

    let mut flight = cluster.client(leader).await.flight();
    let first = schema_message.with_descriptor(FlightDescriptor::new_path(vec!["raw".into()]));
    let input = futures::stream::iter(vec![first, sent.clone()]);
    let mut results = flight.do_put(input).await.expect("do_put").into_inner();
    let mut lsns = Vec::new();
    while let Some(result) = results.next().await {
        let meta: serde_json::Value =
            serde_json::from_slice(&result.expect("put result").app_metadata).expect("json");
        lsns.push(meta["lsn"].as_u64().expect("lsn"));
    }
    assert_eq!(lsns.len(), 1, "the write was acknowledged");

    let ticket = serde_json::to_vec(&read_all("raw", lsns[0])).expect("ticket");
    for id in cluster.running() {
        let mut flight = cluster.client(id).await.flight();
        let mut messages = flight
            .do_get(Ticket::new(ticket.clone()))
            .await
            .expect("do_get")
            .into_inner();
        let mut batches = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.expect("read message");
            if !message.data_body.is_empty() {
                batches.push(message);
            }
        }
        assert_eq!(batches.len(), 1, "node {id} returns the one write");
        assert_eq!(
            batches[0].data_body, sent.data_body,
            "node {id} returns the body bytes the client sent, padding included"
        );
        let got = arrow::ipc::root_as_message(&batches[0].data_header).expect("header");
        let want = arrow::ipc::root_as_message(&sent.data_header).expect("header");
        let buffers = |m: arrow::ipc::Message| -> Vec<(i64, i64)> {
            let b = m.header_as_record_batch().expect("batch");
            b.buffers()
                .expect("buffers")
                .iter()
                .map(|x| (x.offset(), x.length()))
                .collect()
        };
        assert_eq!(buffers(got), buffers(want), "node {id}: same buffer layout");
    }
}

//! Bad input gets the right gRPC code and a message a person can act on; the node keeps
//! serving and nothing written before is lost.

mod common;

use std::sync::Arc;

use arka::client::{Client, WriteItem};
use arka::durability::Level;
use arka::flight::ReadTicket;
use arrow::array::{Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightData, FlightDescriptor, Ticket};
use common::{data, Cluster};
use serde_json::json;
use tonic::Code;

async fn get(cluster: &Cluster, ticket: &[u8]) -> tonic::Status {
    let mut client = cluster.client(1).await.flight();
    let result = match client.do_get(Ticket::new(ticket.to_vec())).await {
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            }
        }
        Err(status) => Err(status),
    };
    result.expect_err("bad ticket is refused")
}

fn expect(err: impl std::fmt::Display, code: Option<Code>, want: Code, says: &[&str]) {
    assert_eq!(code, Some(want), "{err}");
    let text = err.to_string();
    for s in says {
        assert!(text.contains(s), "message {text:?} should mention {s:?}");
    }
}

async fn write(
    client: &Client,
    table: &str,
    item: WriteItem,
) -> Result<(), arka::client::ClientError> {
    client
        .write_all(table, vec![item], Level::Replicated)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_class_is_answered_and_the_node_keeps_serving() {
    let cluster = Cluster::start_with_config(3, "batch-bytes-max = 65536\n").await;
    let client = cluster.client(1).await;
    let acks = client
        .write_all(
            "kept",
            (0..5)
                .map(|s| WriteItem::plain(data::batch(0, s, 2)))
                .collect(),
            Level::Replicated,
        )
        .await
        .expect("write before");
    let last = acks.iter().map(|a| a.lsn).max().expect("lsn");

    // Tickets.
    let s = get(&cluster, b"{not json").await;
    expect(
        s.message(),
        Some(s.code()),
        Code::InvalidArgument,
        &["bad ticket", "invalid JSON"],
    );
    let s = get(&cluster, br#"{"table": "kept", "bogus": 1}"#).await;
    expect(
        s.message(),
        Some(s.code()),
        Code::InvalidArgument,
        &["bad ticket", "bogus"],
    );
    let s = get(&cluster, b"\x00\xff").await;
    expect(
        s.message(),
        Some(s.code()),
        Code::InvalidArgument,
        &["bad ticket"],
    );
    let s = get(&cluster, br#"{"table": "missing"}"#).await;
    expect(
        s.message(),
        Some(s.code()),
        Code::NotFound,
        &["table missing not found"],
    );

    // Table names and schemas.
    let err = write(&client, "Bad-Name", WriteItem::plain(data::batch(0, 0, 1)))
        .await
        .expect_err("bad name");
    expect(
        &err,
        err.code(),
        Code::InvalidArgument,
        &["invalid table name", "[a-z][a-z0-9_]"],
    );
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "writer",
            DataType::Int32,
            false,
        )])),
        vec![Arc::new(Int32Array::from(vec![1]))],
    )
    .expect("batch");
    let err = write(&client, "kept", WriteItem::plain(other))
        .await
        .expect_err("schema mismatch");
    expect(
        &err,
        err.code(),
        Code::InvalidArgument,
        &["schema mismatch", "expected", "got", "writer: Int32"],
    );

    // Metadata and sizes.
    let err = raw_write_with_metadata(&cluster, br#"{"producer_id": 5}"#).await;
    expect(
        err.message(),
        Some(err.code()),
        Code::InvalidArgument,
        &["bad producer metadata", "producer_id"],
    );
    let big: Vec<String> = (0..2000).map(|i| format!("{i:0>64}")).collect();
    let huge = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(big))],
    )
    .expect("batch");
    let err = write(&client, "huge", WriteItem::plain(huge))
        .await
        .expect_err("oversized");
    expect(
        &err,
        err.code(),
        Code::ResourceExhausted,
        &["over the limit", "65536"],
    );

    // Actions.
    let err = client
        .action("nope", &json!({}))
        .await
        .expect_err("unknown action");
    expect(
        &err,
        err.code(),
        Code::NotFound,
        &["unknown action \"nope\"", "status"],
    );
    let err = client
        .action("create_table", &json!({"name": 5}))
        .await
        .expect_err("bad json");
    expect(
        &err,
        err.code(),
        Code::InvalidArgument,
        &["bad JSON body for action create_table"],
    );
    let err = client
        .action("drop_table", &json!({"name": "missing"}))
        .await
        .expect_err("unknown table");
    expect(
        &err,
        err.code(),
        Code::NotFound,
        &["table missing not found"],
    );
    let err = client
        .action("remove_node", &json!({"node_id": 42}))
        .await
        .expect_err("unknown node");
    expect(
        &err,
        err.code(),
        Code::NotFound,
        &["node 42 is not a member"],
    );
    let err = client
        .action("transfer_leader", &json!({"node_id": 42}))
        .await
        .expect_err("not a voter");
    expect(&err, err.code(), Code::InvalidArgument, &["not a voter"]);
    let err = client
        .action(
            "add_node",
            &json!({"node_id": 2, "raft_addr": "127.0.0.1:1", "flight_addr": "127.0.0.1:1"}),
        )
        .await
        .expect_err("existing id");
    expect(
        &err,
        err.code(),
        Code::InvalidArgument,
        &["already a member"],
    );

    // Still serving, nothing lost.
    let status = client.action("status", &json!(null)).await.expect("status");
    assert_eq!(status["role"], "leader");
    let ticket = ReadTicket {
        table: "kept".into(),
        min_lsn: Some(last),
        ..Default::default()
    };
    let (_, batches) = client.read(&ticket).await.expect("read");
    assert_eq!(batches.len(), 5, "the earlier writes are intact");
}

/// A write whose app_metadata is not the producer JSON.
async fn raw_write_with_metadata(cluster: &Cluster, metadata: &[u8]) -> tonic::Status {
    let mut client = cluster.client(1).await.flight();
    let batch = data::batch(0, 0, 1);
    let mut encoder = arka::flight::encode::BatchEncoder::default();
    let descriptor = FlightDescriptor::new_path(vec!["kept".into()]);
    let mut messages: Vec<FlightData> =
        vec![encoder.schema(&batch.schema()).with_descriptor(descriptor)];
    messages.extend(
        encoder
            .batch(&batch, metadata.to_vec().into())
            .expect("encode"),
    );
    let response = client.do_exchange(futures::stream::iter(messages)).await;
    match response {
        Err(status) => status,
        Ok(r) => {
            let mut stream = r.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("bad metadata was accepted"),
                    Err(status) => break status,
                }
            }
        }
    }
}

//! Node-to-node requests are not public API: no Flight action moves a tier watermark, the
//! internal RPC serves only members of the cluster, and even a member's report cannot move
//! the OBJECT_STORAGE watermark past writes without a file under the configured store.

mod common;

use arka::client::WriteItem;
use arka::durability::Level;
use arka::internal::{InternalRequest, TierReport};
use arka_cluster::{codec, Lsn, NodeId, TieredFile};
use common::{data, lsns_at, node_message, raft_port_client, read_all, Cluster, TEST_SECRET};
use serde_json::{json, Value};

/// Tiering on, but the tier worker uploads only when asked (`flush`) or once an hour, so the
/// writes below stay above the OBJECT_STORAGE watermark.
const CONFIG: &str = "object-store-url = \"file://{dir}/objects\"\n\
                      catalog-url = \"sqlite:{dir}/catalog.db?mode=rwc\"\n\
                      commit-interval-ms = 3600000\n\
                      tier-interval-ms = 3600000\n";

/// Sends `request` signed with `secret` as a node of `cluster_id`; returns the refusal.
async fn internal(
    raft_addr: &str,
    secret: &str,
    cluster_id: &str,
    request: &InternalRequest,
) -> tonic::Status {
    let mut client = raft_port_client(raft_addr, secret).await;
    let data = codec::encode("internal request", request).expect("encode");
    let payload = node_message(secret, cluster_id, data);
    client
        .internal(payload)
        .await
        .expect_err("the request is refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn no_client_can_move_the_tier_watermark_past_untiered_writes() {
    let cluster = Cluster::start_with_config(3, CONFIG).await;
    let leader = cluster.client(1).await;
    // Once a follower took over the tier work and flushed, it tiers nothing more for an hour.
    cluster.follower_tier_worker(1).await;
    leader
        .action("flush", &Value::Null)
        .await
        .expect("first flush");
    let writes: Vec<WriteItem> = (0..5)
        .map(|s| WriteItem::plain(data::batch(1, s, 3)))
        .collect();
    let written: Vec<_> = writes.iter().map(|w| w.batch.clone()).collect();
    let acks = leader
        .write_all("victim", writes, Level::Replicated)
        .await
        .expect("write");
    let last = *lsns_at(&acks, Level::Replicated).last().expect("acked");

    // The old public action is gone.
    let report =
        json!({"kind": "uploaded", "worker": 1, "from_lsn": 0, "to_lsn": last, "files": []});
    let err = leader
        .action("tier_report", &report)
        .await
        .expect_err("tier_report is not an action");
    assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");

    let status = cluster.status(1).await.expect("status");
    let worker = NodeId(status["tier_worker"].as_u64().expect("a tier worker"));
    let s3_lsn = status["s3_lsn"].as_u64().expect("s3_lsn");
    assert!(s3_lsn < last, "the writes are not tiered yet: {status}");
    let cluster_id = status["cluster_id"]
        .as_str()
        .expect("cluster id")
        .to_string();
    let raft_addr = &cluster.node(1).raft;
    let uploaded = |files: Vec<TieredFile>| {
        InternalRequest::TierReport(TierReport::Uploaded {
            worker,
            from_lsn: Lsn(s3_lsn),
            to_lsn: Lsn(last),
            files,
        })
    };

    // Without the cluster secret, even naming the right cluster: refused before it is
    // decoded.
    let stranger = "a secret that is not the cluster's";
    let refused = internal(raft_addr, stranger, &cluster_id, &uploaded(Vec::new())).await;
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    // With the secret but outside the cluster: refused before it is decoded.
    for id in ["", "0000000000000bad"] {
        let refused = internal(raft_addr, TEST_SECRET, id, &uploaded(Vec::new())).await;
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    }
    // A member: a report without files for the writes, or with a file outside the object
    // store, is refused.
    let refused = internal(raft_addr, TEST_SECRET, &cluster_id, &uploaded(Vec::new())).await;
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("names no file"), "{refused:?}");
    let elsewhere = TieredFile {
        table: "victim".into(),
        path: "file:///etc/passwd".into(),
        min_lsn: Lsn(1),
        max_lsn: Lsn(last),
        rows: 15,
        bytes: 1,
    };
    let refused = internal(
        raft_addr,
        TEST_SECRET,
        &cluster_id,
        &uploaded(vec![elsewhere]),
    )
    .await;
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("is not a file under"),
        "{refused:?}"
    );

    // Nothing moved: with retention 0 no node purges the writes, and every node reads them.
    leader
        .action("set_retention", &json!({"bytes": 0, "ms": 0}))
        .await
        .expect("set_retention");
    for id in 1..=3 {
        let status = cluster.status(id).await.expect("status");
        assert_eq!(
            status["s3_lsn"].as_u64(),
            Some(s3_lsn),
            "node {id}: {status}"
        );
        let ticket = read_all("victim", last);
        let (_, batches) = cluster.client(id).await.read(&ticket).await.expect("read");
        let got: Vec<_> = batches.into_iter().map(|(_, b)| b).collect();
        assert_eq!(got, written, "node {id}");
    }

    // The real path still works: a flush at a follower is forwarded to the tier worker over
    // the internal RPC and tiers every write.
    let flushed: Value = cluster
        .client(2)
        .await
        .action("flush", &Value::Null)
        .await
        .expect("flush");
    assert!(flushed["s3_lsn"].as_u64() >= Some(last), "{flushed}");
}

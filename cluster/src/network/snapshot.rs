//! Snapshots travel in bounded chunks on one client stream, so that no gRPC message carries
//! more than a chunk, whatever the snapshot's size: first a header (vote, meta, total bytes),
//! then the bytes in order. The receiver holds at most the announced total, which is bounded.

use arka_proto::raft::RaftPayload;
use futures::{Stream, StreamExt};
use tonic::Status;

use crate::cluster_id::ClusterId;
use crate::codec;
use crate::types::{SnapshotMeta, Vote};

/// Bytes of snapshot in one message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Largest snapshot a node accepts.
pub const SNAPSHOT_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;

type Header = (Vote, SnapshotMeta, u64);

/// The messages that carry `data`: the header, then the chunks.
pub fn messages(
    vote: &Vote,
    meta: &SnapshotMeta,
    data: &[u8],
    cluster_id: &ClusterId,
) -> Result<Vec<RaftPayload>, codec::CodecError> {
    let header: Header = (*vote, meta.clone(), data.len() as u64);
    let mut out = vec![cluster_id.seal(codec::encode("snapshot header", &header)?)];
    out.extend(
        data.chunks(SNAPSHOT_CHUNK_BYTES)
            .map(|c| cluster_id.seal(c.to_vec())),
    );
    Ok(out)
}

/// Reads a snapshot stream. `admit` checks the first message (fault point, tag, cluster
/// id); every chunk after it must carry a valid tag too.
pub async fn receive<S>(
    mut stream: S,
    cluster_id: &ClusterId,
    admit: impl FnOnce(&RaftPayload) -> Result<(), Status>,
) -> Result<(Vote, SnapshotMeta, Vec<u8>), Status>
where
    S: Stream<Item = Result<RaftPayload, Status>> + Unpin,
{
    let first = stream
        .next()
        .await
        .ok_or_else(|| Status::invalid_argument("snapshot stream without a header"))??;
    admit(&first)?;
    let (vote, meta, total): Header = codec::decode("snapshot header", &first.data)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    if total > SNAPSHOT_BYTES_MAX {
        return Err(Status::resource_exhausted(format!(
            "snapshot of {total} bytes is over the limit of {SNAPSHOT_BYTES_MAX}"
        )));
    }
    let mut data = Vec::with_capacity(total as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        cluster_id.authenticate(&chunk)?;
        if chunk.data.len() > SNAPSHOT_CHUNK_BYTES || (data.len() + chunk.data.len()) as u64 > total
        {
            return Err(Status::invalid_argument(format!(
                "snapshot stream carries more than the {total} bytes its header announced"
            )));
        }
        data.extend_from_slice(&chunk.data);
    }
    if data.len() as u64 != total {
        return Err(Status::invalid_argument(format!(
            "snapshot stream ended after {} of {total} bytes",
            data.len()
        )));
    }
    Ok((vote, meta, data))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secret::ClusterSecret;

    fn cluster(id: &str, secret: &str) -> ClusterId {
        let secret = ClusterSecret::new(secret.as_bytes()).expect("secret");
        ClusterId::new(Some(id.to_string()), Arc::new(|_| Ok(())), secret)
    }

    fn stream(
        messages: Vec<RaftPayload>,
    ) -> impl Stream<Item = Result<RaftPayload, Status>> + Unpin {
        futures::stream::iter(messages.into_iter().map(Ok))
    }

    #[tokio::test]
    async fn a_snapshot_larger_than_a_chunk_round_trips_in_bounded_messages() {
        let data: Vec<u8> = (0..SNAPSHOT_CHUNK_BYTES * 2 + 12345)
            .map(|i| i as u8)
            .collect();
        let vote = Vote::new(3, crate::types::NodeId(1));
        let meta = SnapshotMeta::default();
        let c1 = cluster("c1", "0123456789abcdef");
        let sent = messages(&vote, &meta, &data, &c1).expect("messages");
        assert_eq!(sent.len(), 4, "a header and three chunks");
        assert!(sent.iter().all(|m| m.data.len() <= SNAPSHOT_CHUNK_BYTES));
        let (got_vote, got_meta, got) = receive(stream(sent), &c1, |first| {
            assert_eq!(first.cluster_id, "c1");
            Ok(())
        })
        .await
        .expect("receive");
        assert_eq!((got_vote, got_meta), (vote, meta));
        assert!(got == data);
    }

    #[tokio::test]
    async fn a_stream_that_does_not_match_its_header_is_refused() {
        let data = vec![7u8; 1000];
        let vote = Vote::new(1, crate::types::NodeId(1));
        let c = cluster("", "0123456789abcdef");
        let mut short = messages(&vote, &SnapshotMeta::default(), &data, &c).expect("messages");
        short.pop();
        let err = receive(stream(short), &c, |_| Ok(()))
            .await
            .expect_err("short");
        assert!(err.message().contains("ended after 0 of 1000"), "{err}");

        let mut long = messages(&vote, &SnapshotMeta::default(), &data, &c).expect("messages");
        long.push(long[1].clone());
        let err = receive(stream(long), &c, |_| Ok(()))
            .await
            .expect_err("long");
        assert!(err.message().contains("more than the 1000 bytes"), "{err}");

        let refused = receive(stream(Vec::new()), &c, |_| Ok(()))
            .await
            .expect_err("empty");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_chunk_not_signed_with_the_secret_is_refused() {
        let vote = Vote::new(1, crate::types::NodeId(1));
        let ours = cluster("c", "0123456789abcdef");
        let theirs = cluster("c", "fedcba9876543210");
        let mut sent = messages(&vote, &SnapshotMeta::default(), &[7u8; 10], &ours).expect("ours");
        sent[1] = theirs.seal(vec![9u8; 10]);
        let err = receive(stream(sent), &ours, |_| Ok(()))
            .await
            .expect_err("forged chunk");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
}

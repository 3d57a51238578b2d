//! Connections within bounds: 2,000 raw TCP connections, half sending only the HTTP/2
//! preface, once all stayed open for ever. Now a port holds at most `connections-max` (past
//! it a connection is closed at once, and once some close, new ones are taken again), and a
//! connection that has not sent its preface and first frame within `handshake-timeout-ms` is
//! closed; real clients are served throughout and the data written before reads back.

mod common;

use std::time::Duration;

use common::{Cluster, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// True once the server closed `stream` (a read ends or fails); false while it is open.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // Frames the server sent (its SETTINGS): read on.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Waits until the server closed `stream`, failing the test after [`DEADLINE`].
async fn wait_until_closed(stream: &mut TcpStream, what: &str) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !closed(stream).await {
        assert!(
            tokio::time::Instant::now() < end,
            "{what} not closed within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(cluster: &Cluster, id: u64) -> TcpStream {
    let addr = cluster.addr(id).trim_start_matches("grpc://").to_string();
    TcpStream::connect(&addr).await.expect("tcp connect")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_takes_at_most_connections_max_and_takes_more_once_some_close() {
    // Room for the harness's own connections (its status and write calls, some of which may
    // still be closing when the raw ones arrive) below the bound.
    let config = "connections-max = 32\nhandshake-timeout-ms = 600000\n";
    let cluster = Cluster::start_with_config(3, config).await;
    let last = cluster.write_control().await;
    // The harness's client holds one of node 1's 32: of 40 raw connections, at most 31 stay
    // open (fewer while connections the harness dropped are still closing), and the server
    // closes the rest.
    let held = cluster.client(1).await;
    let mut raw = Vec::new();
    for _ in 0..40 {
        raw.push(Some(connect(&cluster, 1).await));
    }
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        for slot in raw.iter_mut() {
            if let Some(stream) = slot {
                if closed(stream).await {
                    *slot = None;
                }
            }
        }
        let open = raw.iter().flatten().count();
        if open <= 31 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "{open} of 40 raw connections stay open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    drop(raw);
    cluster.assert_control_everywhere(last).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_do_not_finish_their_handshake_are_closed_at_the_deadline() {
    let cluster = Cluster::start_with_config(3, "handshake-timeout-ms = 500\n").await;
    let last = cluster.write_control().await;
    let mut raw = Vec::new();
    for i in 0..40 {
        let mut stream = connect(&cluster, 1).await;
        if i % 2 == 0 {
            stream.write_all(PREFACE).await.expect("send the preface");
        }
        raw.push(stream);
    }
    for (i, stream) in raw.iter_mut().enumerate() {
        wait_until_closed(stream, &format!("raw connection {i}")).await;
    }
    cluster.assert_control_everywhere(last).await;
}

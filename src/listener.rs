//! Accepting connections on the Flight and Raft ports, within bounds: at most
//! `connections-max` open at once per port (past it a new connection is closed as soon as it
//! is accepted), and a handshake deadline: a connection that has not sent the HTTP/2 preface
//! and its first frame (or, with TLS, a hello) within `handshake-timeout-ms` is closed. Past
//! the handshake, HTTP/2 keep-alive pings close a connection whose peer stops answering.
//! Without these, raw TCP connections that send nothing would each hold a file descriptor
//! and a task for ever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use arka_cluster::refusals::RefusalLog;

/// The HTTP/2 client preface (24 bytes) and the header of the frame that must follow it (9):
/// what a client sends at once, and what a connection must have sent by its deadline.
const HANDSHAKE_BYTES: usize = 24 + 9;

/// Keep-alive pings every this long on an open connection, answered within the timeout.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Connections refused for the limit, or closed at their deadline (logged at most every 10 s).
static REFUSED: RefusalLog = RefusalLog::new("connections");

/// Bounds of one port.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max: usize,
    pub handshake_timeout: Duration,
}

/// The connections `listener` accepts, within `limits`.
pub fn accepted(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl Stream<Item = io::Result<BoundedConnection>> + Send + 'static {
    let open = Arc::new(Semaphore::new(limits.max));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .filter_map(move |accepted| {
            let admitted = accepted.map(|stream| {
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    REFUSED.note(
                        &format!("port {port}"),
                        &format!("over connections-max {}", limits.max),
                    );
                    return None;
                };
                Some(BoundedConnection {
                    stream,
                    _open: permit,
                    handshake: Some(Box::pin(tokio::time::sleep(limits.handshake_timeout))),
                    received: 0,
                })
            });
            futures::future::ready(admitted.transpose())
        })
}

/// An accepted connection: holds its place under the limit while open, and fails its reads
/// once its handshake deadline passes before it sent [`HANDSHAKE_BYTES`].
pub struct BoundedConnection {
    stream: TcpStream,
    _open: OwnedSemaphorePermit,
    /// Until the handshake bytes arrived.
    handshake: Option<Pin<Box<Sleep>>>,
    received: usize,
}

impl AsyncRead for BoundedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        let this = &mut *self;
        let Some(deadline) = this.handshake.as_mut() else {
            return read;
        };
        this.received += buf.filled().len() - before;
        if this.received >= HANDSHAKE_BYTES {
            this.handshake = None;
            return read;
        }
        if read.is_pending() && deadline.as_mut().poll(cx).is_ready() {
            let peer = this
                .stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            REFUSED.note(
                &peer,
                "no HTTP/2 or TLS handshake within handshake-timeout-ms",
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no handshake within handshake-timeout-ms",
            )));
        }
        read
    }
}

impl AsyncWrite for BoundedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for BoundedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn limits(max: usize) -> ConnectionLimits {
        ConnectionLimits {
            max,
            handshake_timeout: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn accepted_connections_send_small_messages_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut incoming = Box::pin(accepted(listener, limits(1)));
        let _client = TcpStream::connect(addr).await.expect("connect");
        let connection = incoming.next().await.expect("one").expect("accept");
        assert!(connection.stream.nodelay().expect("read TCP_NODELAY"));
    }

    #[tokio::test]
    async fn a_connection_past_the_limit_is_closed_and_a_silent_one_fails_at_its_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut incoming = Box::pin(accepted(listener, limits(1)));
        let _first = TcpStream::connect(addr).await.expect("connect");
        let mut admitted = incoming.next().await.expect("one").expect("accept");
        let mut second = TcpStream::connect(addr).await.expect("connect");
        // The second is accepted and dropped: the stream waits for a third.
        let third = tokio::time::timeout(Duration::from_millis(100), incoming.next()).await;
        assert!(third.is_err(), "nothing admitted past the limit");
        let mut byte = [0u8; 1];
        assert_eq!(second.read(&mut byte).await.expect("read"), 0, "closed");

        let mut buf = [0u8; 64];
        let failed = admitted
            .read(&mut buf)
            .await
            .expect_err("the deadline passed");
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut);
    }
}

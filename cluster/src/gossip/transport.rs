//! The datagram seam gossip runs on: UDP in production; tests and simulations supply their own.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::fault::NetworkFaults;
use crate::refusals::RefusalLog;
use crate::secret::ClusterSecret;

pub trait Datagrams: Send + Sync + 'static {
    fn send_to(&self, data: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<()>> + Send;
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
}

/// UDP, with datagrams both ways dropped while the node is isolated by an injected fault.
pub struct UdpDatagrams {
    socket: UdpSocket,
    faults: NetworkFaults,
}

impl UdpDatagrams {
    pub async fn bind(addr: SocketAddr, faults: NetworkFaults) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(Self { socket, faults })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Datagrams for UdpDatagrams {
    async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        if !self.faults.is_isolated() {
            self.socket.send_to(data, to).await?;
        }
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let received = self.socket.recv_from(buf).await?;
            if !self.faults.is_isolated() {
                return Ok(received);
            }
        }
    }
}

/// Gossip datagrams signed with the cluster secret: each one sent ends with its tag, and a
/// received one whose tag does not verify is dropped before foca sees it, so that a stranger
/// can neither announce a member nor change one's state.
pub struct SealedDatagrams<D> {
    inner: D,
    secret: ClusterSecret,
    refused: RefusalLog,
}

impl<D: Datagrams> SealedDatagrams<D> {
    pub fn new(inner: D, secret: ClusterSecret) -> Self {
        Self {
            inner,
            secret,
            refused: RefusalLog::new("gossip datagrams"),
        }
    }
}

impl<D: Datagrams> Datagrams for SealedDatagrams<D> {
    async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        self.inner
            .send_to(&self.secret.seal_datagram(data), to)
            .await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.inner.recv_from(buf).await?;
            match self.secret.open_datagram(&buf[..len]) {
                Some(datagram) => return Ok((datagram.len(), from)),
                None => self
                    .refused
                    .note(&from, "not signed with this cluster's secret"),
            }
        }
    }
}

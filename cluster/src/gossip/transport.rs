//! The datagram seam gossip runs on: UDP in production; tests and simulations supply their own.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::fault::NetworkFaults;

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

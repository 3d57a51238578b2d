//! TLS on both TCP ports: the Flight port presents the node's certificate to clients, and the
//! Raft port runs mutual TLS: a peer is served (and a peer is called) only with a certificate
//! signed by the cluster CA. `arka dev --tls` makes a CA and node certificates with
//! [`crate::cli::dev_certs::generate`].

use std::path::Path;

use anyhow::Context;
use arka_cluster::network::TcpConnector;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The PEM files of a node with TLS on, read at start (a new certificate needs a restart).
#[derive(Clone)]
pub struct NodeTls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn read(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read the {what} {}", path.display()))
}

impl NodeTls {
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            ca: read("CA certificate (tls-ca-file)", ca)?,
            cert: read("node certificate (tls-cert-file)", cert)?,
            key: read("node key (tls-key-file)", key)?,
        })
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }

    /// The Flight port: the node's certificate; clients are authenticated by token.
    pub fn flight_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(self.identity())
    }

    /// The Raft port: the node's certificate, and a client certificate signed by the CA is
    /// required of every peer.
    pub fn raft_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// How this node calls its peers: mutual TLS.
    pub fn raft_client(&self) -> TcpConnector {
        TcpConnector::mutual_tls(&self.ca, &self.cert, &self.key)
    }
}

//! The CA and node certificates `arka dev --tls` makes for its nodes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::secrets::write_private;

/// Where [`generate`] wrote a CA and each node's certificate and key.
pub struct DevCerts {
    pub ca: PathBuf,
    /// `(cert, key)` of node i at index i - 1.
    pub nodes: Vec<(PathBuf, PathBuf)>,
}

/// A new CA (`ca.pem`, its key kept only in memory) and, for each of `nodes` nodes, a
/// certificate for `hosts` (names or IP addresses) good for both server and client use, in
/// `dir`. Keys are written readable only by their owner. Existing files are kept, so a dev
/// cluster restarted on its data dir keeps its certificates.
pub fn generate(dir: &Path, nodes: usize, hosts: &[String]) -> anyhow::Result<DevCerts> {
    let ca = dir.join("ca.pem");
    let paths: Vec<(PathBuf, PathBuf)> = (1..=nodes)
        .map(|i| {
            (
                dir.join(format!("node-{i}.pem")),
                dir.join(format!("node-{i}.key")),
            )
        })
        .collect();
    if ca.exists() && paths.iter().all(|(c, k)| c.exists() && k.exists()) {
        return Ok(DevCerts { ca, nodes: paths });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let issuer = new_ca().context("make a CA")?;
    std::fs::write(&ca, issuer.pem()).with_context(|| format!("write {}", ca.display()))?;
    for (i, (cert, key)) in paths.iter().enumerate() {
        let (cert_pem, key_pem) =
            node_certificate(&issuer, i + 1, hosts).context("make a node certificate")?;
        std::fs::write(cert, cert_pem).with_context(|| format!("write {}", cert.display()))?;
        let _ = std::fs::remove_file(key);
        write_private(key, key_pem.as_bytes())?;
    }
    Ok(DevCerts { ca, nodes: paths })
}

fn new_ca() -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "arka cluster CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

fn node_certificate(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    node: usize,
    hosts: &[String],
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("arka node {node}"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::NodeTls;

    #[test]
    fn generated_files_load_as_a_node_and_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let certs = generate(dir.path(), 2, &hosts).expect("generate");
        let (cert, key) = &certs.nodes[1];
        NodeTls::load(&certs.ca, cert, key).expect("load");
        let ca = std::fs::read(&certs.ca).expect("read");
        generate(dir.path(), 2, &hosts).expect("again");
        assert_eq!(std::fs::read(&certs.ca).expect("read"), ca, "kept");
    }
}

//! Secrets that `arka dev` makes for its nodes, in files readable only by their owner.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use ring::rand::SecureRandom;

/// Random bytes of a generated cluster secret.
const SECRET_BYTES: usize = 32;

/// `path`, holding a new random secret (base64) unless it exists: a dev cluster restarted on
/// its data dir keeps its secret.
pub fn ensure_secret_file(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.exists() {
        let mut bytes = [0u8; SECRET_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no randomness for a cluster secret"))?;
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        write_private(path, format!("{text}\n").as_bytes())?;
    }
    Ok(path.to_path_buf())
}

/// Writes a new file of mode 0600 (refusing to replace one).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_secret_is_made_once_private_and_usable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.secret");
        ensure_secret_file(&path).expect("make");
        let first = std::fs::read(&path).expect("read");
        ensure_secret_file(&path).expect("keep");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            first,
            "kept across runs"
        );
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        arka_cluster::ClusterSecret::from_file(&path).expect("a valid secret");
    }
}

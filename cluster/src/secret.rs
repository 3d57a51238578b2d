//! The cluster secret: a key every member is configured with, so that only the cluster's own
//! nodes can speak on its node-to-node paths. Every Raft RPC and internal request (both
//! ways) carries an HMAC-SHA256 tag over its envelope, and every gossip datagram ends with
//! one; a message whose tag does not verify is refused before it is decoded.
//!
//! Tags bind the message's bytes, not the connection: a message seen on the wire can be
//! replayed but never altered. Raft tolerates duplicated and delayed messages by design, and
//! gossip states carry versions, so a replay changes nothing; TLS (which hides the messages)
//! is the answer to an eavesdropper.
//!
//! Two keys are derived from the secret, one per path, so that a tag made for one path is
//! never valid on the other.

use std::path::Path;

use ring::hmac;

/// Shortest secret accepted: 128 bits of a random secret; `arka dev` makes 256.
pub const SECRET_BYTES_MIN: usize = 16;
/// Bytes of an HMAC-SHA256 tag.
pub const TAG_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the cluster secret file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the cluster secret is {len} bytes; it must be at least {SECRET_BYTES_MIN} (e.g. `head -c 32 /dev/urandom | base64`)")]
    TooShort { len: usize },
}

/// The keys derived from the cluster secret. Cheap to clone; never printed.
#[derive(Clone)]
pub struct ClusterSecret {
    rpc: hmac::Key,
    gossip: hmac::Key,
    client_token: hmac::Key,
    /// The Raft port's gate key (hex), derived like the keys; see `network::gate`.
    gate: String,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The secret as written in its file: surrounding whitespace (a trailing newline) is
    /// not part of it.
    pub fn new(secret: &[u8]) -> Result<Self, SecretError> {
        let secret = secret.trim_ascii();
        if secret.len() < SECRET_BYTES_MIN {
            return Err(SecretError::TooShort { len: secret.len() });
        }
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive =
            |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        let gate = hmac::sign(&root, b"arka raft port gate v1")
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            rpc: derive(b"arka node-to-node rpc v1"),
            gossip: derive(b"arka gossip datagram v1"),
            client_token: derive(b"arka client bearer token v1"),
            gate,
        })
    }

    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::new(&bytes)
    }

    /// The tag of an RPC envelope: its wire version, the sender's cluster id and its data.
    pub fn rpc_tag(&self, version: u32, cluster_id: &str, data: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.rpc);
        envelope(&mut ctx, version, cluster_id, data);
        ctx.sign().as_ref().to_vec()
    }

    /// Whether `tag` is the tag of this envelope (compared in constant time).
    pub fn rpc_tag_matches(&self, version: u32, cluster_id: &str, data: &[u8], tag: &[u8]) -> bool {
        let mut ctx = hmac::Context::with_key(&self.rpc);
        envelope(&mut ctx, version, cluster_id, data);
        equal_in_constant_time(ctx.sign().as_ref(), tag)
    }

    /// `datagram` followed by its tag.
    pub fn seal_datagram(&self, datagram: &[u8]) -> Vec<u8> {
        let tag = hmac::sign(&self.gossip, datagram);
        let mut sealed = Vec::with_capacity(datagram.len() + TAG_BYTES);
        sealed.extend_from_slice(datagram);
        sealed.extend_from_slice(tag.as_ref());
        sealed
    }

    /// The datagram inside `sealed`, or `None` when its tag does not verify.
    pub fn open_datagram<'a>(&self, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let split = sealed.len().checked_sub(TAG_BYTES)?;
        let (datagram, tag) = sealed.split_at(split);
        hmac::verify(&self.gossip, datagram, tag).ok()?;
        Some(datagram)
    }
}

impl ClusterSecret {
    /// The tag of a client bearer token's claims: every member can check a token that any
    /// member issued.
    pub fn token_tag(&self, claims: &[u8]) -> Vec<u8> {
        hmac::sign(&self.client_token, claims).as_ref().to_vec()
    }

    pub fn token_tag_matches(&self, claims: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.client_token, claims, tag).is_ok()
    }

    /// The key every call to the Raft port presents in a header (hex).
    pub fn gate_key(&self) -> String {
        self.gate.clone()
    }
}

/// Compares every byte whatever the first difference, so that timing tells an attacker
/// nothing about how much of a forged tag was right.
pub(crate) fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Feeds an envelope to `ctx` with lengths first, so that no two envelopes share an input.
fn envelope(ctx: &mut hmac::Context, version: u32, cluster_id: &str, data: &[u8]) {
    ctx.update(&version.to_le_bytes());
    ctx.update(&(cluster_id.len() as u64).to_le_bytes());
    ctx.update(cluster_id.as_bytes());
    ctx.update(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s.as_bytes()).expect("secret")
    }

    #[test]
    fn a_short_secret_is_refused_and_whitespace_is_not_part_of_it() {
        let err = ClusterSecret::new(b"  short\n").expect_err("short");
        assert!(err.to_string().contains("5 bytes"), "{err}");
        let a = secret("0123456789abcdef\n");
        let b = secret("0123456789abcdef");
        let tag = a.rpc_tag(1, "c", b"data");
        assert!(b.rpc_tag_matches(1, "c", b"data", &tag));
    }

    #[test]
    fn rpc_tags_bind_version_cluster_and_data() {
        let s = secret("0123456789abcdef");
        let tag = s.rpc_tag(1, "c1", b"data");
        assert!(s.rpc_tag_matches(1, "c1", b"data", &tag));
        assert!(!s.rpc_tag_matches(2, "c1", b"data", &tag));
        assert!(!s.rpc_tag_matches(1, "c2", b"data", &tag));
        assert!(!s.rpc_tag_matches(1, "c1", b"date", &tag));
        assert!(
            !s.rpc_tag_matches(1, "c1d", b"ata", &tag),
            "lengths are bound"
        );
        assert!(!s.rpc_tag_matches(1, "c1", b"data", &[]));
        let other = secret("another secret of 32 bytes......");
        assert!(!other.rpc_tag_matches(1, "c1", b"data", &tag));
    }

    #[test]
    fn datagrams_open_only_with_the_same_secret_and_unchanged() {
        let s = secret("0123456789abcdef");
        let sealed = s.seal_datagram(b"hello");
        assert_eq!(s.open_datagram(&sealed), Some(&b"hello"[..]));
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert_eq!(s.open_datagram(&flipped), None);
        assert_eq!(s.open_datagram(b"short"), None);
        assert_eq!(secret("fedcba9876543210").open_datagram(&sealed), None);
        let tag = s.rpc_tag(1, "", b"hello");
        let mut rpc_sealed = b"hello".to_vec();
        rpc_sealed.extend_from_slice(&tag);
        assert_eq!(s.open_datagram(&rpc_sealed), None, "keys differ per path");
    }
}

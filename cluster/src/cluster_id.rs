//! The cluster's identity: its id and the secret its members prove membership with. A new
//! cluster gets a random id when it is bootstrapped; a node learns it from the first
//! authenticated Raft message it accepts and keeps it. Every node-to-node message carries the
//! sender's id and a tag made with the cluster secret ([`ClusterSecret`]): a node refuses a
//! message whose tag does not verify (a stranger on the network), and once it has an id,
//! every message that does not name that id (another cluster, a peer that reached the wrong
//! address, or a message with no id at all).

use std::sync::{Arc, Mutex};

use arka_proto::raft::RaftPayload;
use tonic::Status;

use crate::codec::{CodecError, WIRE_VERSION};
use crate::secret::ClusterSecret;

/// Makes a learned or new id durable before it is used.
pub type Persist = Arc<dyn Fn(&str) -> Result<(), PersistFailed> + Send + Sync>;

/// The cluster id could not be stored: the node must not use it (it would forget it).
#[derive(Debug, thiserror::Error)]
#[error("cannot store the cluster id: {0}")]
pub struct PersistFailed(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Why a message's cluster id is refused, or a new one not taken.
#[derive(Debug, thiserror::Error)]
pub enum ClusterIdError {
    #[error("this node belongs to cluster {ours}; the message names no cluster")]
    Unnamed { ours: String },
    #[error("this node belongs to cluster {ours}; the message comes from cluster {theirs}")]
    Foreign { ours: String, theirs: String },
    #[error(transparent)]
    Persist(#[from] PersistFailed),
}

#[derive(Clone)]
pub struct ClusterId {
    id: Arc<Mutex<Option<String>>>,
    persist: Persist,
    secret: ClusterSecret,
}

impl std::fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClusterId").field(&self.get()).finish()
    }
}

impl ClusterId {
    /// `known`: the id stored by an earlier run, if any.
    pub fn new(known: Option<String>, persist: Persist, secret: ClusterSecret) -> Self {
        Self {
            id: Arc::new(Mutex::new(known.filter(|id| !id.is_empty()))),
            persist,
            secret,
        }
    }

    pub fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    /// A message carrying `data`, with this node's cluster id (empty before it has one) and
    /// its tag.
    pub fn seal(&self, data: Vec<u8>) -> RaftPayload {
        let cluster_id = self.get().unwrap_or_default();
        let auth = self.secret.rpc_tag(WIRE_VERSION, &cluster_id, &data);
        RaftPayload {
            version: WIRE_VERSION,
            data,
            cluster_id,
            auth,
        }
    }

    /// Checks that a message was made by a holder of the cluster secret (before anything of
    /// it is decoded) and speaks this node's wire version. Answers are checked with this.
    pub fn authenticate(&self, message: &RaftPayload) -> Result<(), Status> {
        let genuine = self.secret.rpc_tag_matches(
            message.version,
            &message.cluster_id,
            &message.data,
            &message.auth,
        );
        if !genuine {
            return Err(Status::unauthenticated(
                "node-to-node message refused: it is not signed with this cluster's secret",
            ));
        }
        if message.version != WIRE_VERSION {
            return Err(Status::invalid_argument(
                CodecError::Version(message.version).to_string(),
            ));
        }
        Ok(())
    }

    /// Admits a Raft message: authenticated, and of this node's cluster (a node without a
    /// cluster id yet adopts the sender's).
    pub fn admit(&self, message: &RaftPayload) -> Result<(), Status> {
        self.authenticate(message)?;
        self.adopt_or_match(&message.cluster_id)
            .map_err(|e| Status::failed_precondition(e.to_string()))
    }

    /// Admits a request served only between members (an internal request): authenticated
    /// and naming this node's cluster; it never makes a node adopt the sender's cluster id.
    pub fn admit_member(&self, message: &RaftPayload) -> Result<(), Status> {
        self.authenticate(message)?;
        match self.get() {
            Some(ours) if ours == message.cluster_id => Ok(()),
            ours => Err(Status::permission_denied(format!(
                "internal requests are served only within this node's cluster ({ours:?}); the request names {:?}",
                message.cluster_id
            ))),
        }
    }

    pub fn get(&self) -> Option<String> {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Gives a node that bootstraps a new cluster a fresh id (kept if it has one).
    pub fn create(&self, random: u64) -> Result<String, PersistFailed> {
        let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = id.as_ref() {
            return Ok(existing.clone());
        }
        let fresh = format!("{random:016x}");
        (self.persist)(&fresh)?;
        *id = Some(fresh.clone());
        Ok(fresh)
    }

    /// Checks the cluster id of a message: a node without an id adopts the sender's; a node
    /// with one refuses every other, the empty id included (only a node that has no id yet,
    /// a member of a cluster still being bootstrapped, sends none).
    fn adopt_or_match(&self, theirs: &str) -> Result<(), ClusterIdError> {
        let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
        match id.as_deref() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) if theirs.is_empty() => Err(ClusterIdError::Unnamed {
                ours: ours.to_string(),
            }),
            None if theirs.is_empty() => Ok(()),
            Some(ours) => Err(ClusterIdError::Foreign {
                ours: ours.to_string(),
                theirs: theirs.to_string(),
            }),
            None => {
                (self.persist)(theirs)?;
                tracing::info!(cluster_id = theirs, "joined cluster");
                *id = Some(theirs.to_string());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::new(b"0123456789abcdef").expect("secret")
    }

    /// A message from a member of cluster `id` (empty: no id yet).
    fn from_cluster(id: &str) -> RaftPayload {
        let sender = ClusterId::new(Some(id.to_string()), Arc::new(|_| Ok(())), secret());
        sender.seal(b"hello".to_vec())
    }

    fn recording() -> (Persist, Arc<Mutex<Vec<String>>>) {
        let saved = Arc::new(Mutex::new(Vec::new()));
        let log = saved.clone();
        let persist: Persist = Arc::new(move |id: &str| {
            log.lock().expect("lock").push(id.to_string());
            Ok(())
        });
        (persist, saved)
    }

    #[test]
    fn a_node_adopts_the_first_cluster_and_refuses_others() {
        let (persist, saved) = recording();
        let id = ClusterId::new(None, persist, secret());
        id.admit(&from_cluster("")).expect("no id on either side");
        assert_eq!(id.get(), None);
        id.admit(&from_cluster("aaaa")).expect("adopted");
        id.admit(&from_cluster("aaaa")).expect("same cluster");
        let refused = id
            .admit(&from_cluster("bbbb"))
            .expect_err("another cluster");
        assert!(
            refused.message().contains("belongs to cluster aaaa"),
            "{refused}"
        );
        let refused = id.admit(&from_cluster("")).expect_err("no cluster id");
        assert!(refused.message().contains("names no cluster"), "{refused}");
        assert_eq!(*saved.lock().expect("lock"), vec!["aaaa".to_string()]);
        assert_eq!(
            id.create(7).expect("create"),
            "aaaa",
            "an existing id is kept"
        );
    }

    #[test]
    fn bootstrapping_creates_and_persists_an_id() {
        let (persist, saved) = recording();
        let id = ClusterId::new(None, persist, secret());
        let created = id.create(0xabc).expect("create");
        assert_eq!(created, "0000000000000abc");
        assert_eq!(*saved.lock().expect("lock"), vec![created]);
    }

    #[test]
    fn messages_without_the_secret_are_refused_before_anything_else() {
        let (persist, saved) = recording();
        let id = ClusterId::new(None, persist, secret());
        let stranger = ClusterSecret::new(b"not this cluster's secret").expect("secret");
        let forged = ClusterId::new(None, Arc::new(|_| Ok(())), stranger).seal(b"x".to_vec());
        let refused = id.admit(&forged).expect_err("forged");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let mut altered = from_cluster("aaaa");
        altered.data.push(0);
        assert_eq!(
            id.admit(&altered).expect_err("altered").code(),
            tonic::Code::Unauthenticated
        );
        let mut unsigned = from_cluster("aaaa");
        unsigned.auth.clear();
        assert_eq!(
            id.admit(&unsigned).expect_err("unsigned").code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(id.get(), None, "no id is adopted from a refused message");
        assert!(saved.lock().expect("lock").is_empty());
    }

    #[test]
    fn members_only_requests_never_adopt_an_id() {
        let id = ClusterId::new(None, Arc::new(|_| Ok(())), secret());
        let refused = id
            .admit_member(&from_cluster("aaaa"))
            .expect_err("no id yet");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert_eq!(id.get(), None);
    }
}

//! The cluster's identity. A new cluster gets a random id when it is bootstrapped; a node
//! learns it from the first Raft message it accepts and keeps it. Every Raft message carries
//! the sender's id, and a node refuses messages of another cluster: a peer that reached the
//! wrong address (a reused port, a stale config) gets a clear error instead of rewriting the
//! log of a cluster it does not belong to.

use std::sync::{Arc, Mutex};

/// Makes a learned or new id durable before it is used.
pub type Persist = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
pub struct ClusterId {
    id: Arc<Mutex<Option<String>>>,
    persist: Persist,
}

impl std::fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClusterId").field(&self.get()).finish()
    }
}

impl ClusterId {
    /// `known`: the id stored by an earlier run, if any.
    pub fn new(known: Option<String>, persist: Persist) -> Self {
        Self {
            id: Arc::new(Mutex::new(known.filter(|id| !id.is_empty()))),
            persist,
        }
    }

    pub fn get(&self) -> Option<String> {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Gives a node that bootstraps a new cluster a fresh id (kept if it has one).
    pub fn create(&self, random: u64) -> Result<String, String> {
        let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = id.as_ref() {
            return Ok(existing.clone());
        }
        let fresh = format!("{random:016x}");
        (self.persist)(&fresh)?;
        *id = Some(fresh.clone());
        Ok(fresh)
    }

    /// Checks the cluster id of a message: a node without an id adopts the sender's; an
    /// empty id (a sender from before cluster ids, or without one) is let through.
    pub fn admit(&self, theirs: &str) -> Result<(), String> {
        if theirs.is_empty() {
            return Ok(());
        }
        let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
        match id.as_deref() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) => Err(format!(
                "this node belongs to cluster {ours}; the message comes from cluster {theirs}"
            )),
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
        let id = ClusterId::new(None, persist);
        id.admit("").expect("an empty id passes");
        assert_eq!(id.get(), None);
        id.admit("aaaa").expect("adopted");
        id.admit("aaaa").expect("same cluster");
        let refused = id.admit("bbbb").expect_err("another cluster");
        assert!(refused.contains("belongs to cluster aaaa"), "{refused}");
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
        let id = ClusterId::new(None, persist);
        let created = id.create(0xabc).expect("create");
        assert_eq!(created, "0000000000000abc");
        assert_eq!(*saved.lock().expect("lock"), vec![created]);
    }
}

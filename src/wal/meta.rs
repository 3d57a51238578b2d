//! Raft log metadata in sled: vote, committed and purged log ids, and how far the log was
//! known durable. Keys never change.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{WalError, WalResult};
use arka_cluster::types::{LogId, Vote};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
const DURABLE: &str = "durable";

#[derive(Clone)]
pub struct Meta {
    db: sled::Db,
    tree: sled::Tree,
}

impl Meta {
    pub fn open(db: sled::Db) -> WalResult<Self> {
        let tree = db.open_tree("raft_log")?;
        Ok(Self { db, tree })
    }

    fn get<T: DeserializeOwned>(&self, key: &'static str) -> WalResult<Option<T>> {
        let Some(bytes) = self.tree.get(key)? else {
            return Ok(None);
        };
        postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| WalError::MetaDecode {
                key,
                reason: e.to_string(),
            })
    }

    fn put<T: Serialize>(&self, key: &'static str, value: &T) -> WalResult<()> {
        let bytes = postcard::to_stdvec(value).map_err(|e| WalError::MetaDecode {
            key,
            reason: e.to_string(),
        })?;
        self.tree.insert(key, bytes)?;
        Ok(())
    }

    pub fn vote(&self) -> WalResult<Option<Vote>> {
        self.get(VOTE)
    }

    /// Saves the vote durably: a node must never vote twice in one term, even across a crash.
    pub async fn save_vote(&self, vote: &Vote) -> WalResult<()> {
        self.put(VOTE, vote)?;
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn committed(&self) -> WalResult<Option<LogId>> {
        self.get::<Option<LogId>>(COMMITTED).map(Option::flatten)
    }

    /// Not flushed: losing it only makes a restart re-apply from the state machine's position.
    pub fn save_committed(&self, committed: &Option<LogId>) -> WalResult<()> {
        self.put(COMMITTED, committed)
    }

    /// An index up to which the log was durable when it was saved (a lower bound of the
    /// durable end, saved now and then; lowered before a truncation cuts the log below it).
    pub fn durable(&self) -> WalResult<Option<u64>> {
        self.get(DURABLE)
    }

    /// Saves it durably: a restart that finds the log ending below it knows the disk lost
    /// what it had made durable.
    pub async fn save_durable(&self, index: u64) -> WalResult<()> {
        self.put(DURABLE, &index)?;
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn purged(&self) -> WalResult<Option<LogId>> {
        self.get(PURGED)
    }

    /// Saved durably before any segment is removed.
    pub async fn save_purged(&self, purged: &LogId) -> WalResult<()> {
        self.put(PURGED, purged)?;
        self.db.flush_async().await?;
        Ok(())
    }
}

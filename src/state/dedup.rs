//! The idempotency table: `(producer_id, seq) -> lsn`, bounded per producer.

use super::error::{decode, encode, StateResult};
use super::keys;

/// How many of a producer's most recent sequence numbers are remembered. A retry of a seq
/// older than the window is no longer recognised; producers retry far more recent writes.
pub const DEDUP_WINDOW: i64 = 100_000;

pub fn lookup(tree: &sled::Tree, producer_id: &str, seq: i64) -> StateResult<Option<u64>> {
    let key = keys::dedup(producer_id, seq);
    match tree.get(&key)? {
        Some(v) => Ok(Some(decode(&key, &v)?)),
        None => Ok(None),
    }
}

/// Records `(producer, seq) -> lsn` and forgets seqs that fell out of the window.
pub fn record(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    producer_id: &str,
    seq: i64,
    lsn: u64,
) -> StateResult<()> {
    batch.insert(keys::dedup(producer_id, seq), encode(&lsn)?);
    let oldest_kept = seq.saturating_sub(DEDUP_WINDOW);
    let start = keys::dedup_prefix(producer_id);
    let end = keys::dedup(producer_id, oldest_kept);
    for item in tree.range(start..end) {
        let (key, _) = item?;
        batch.remove(key);
    }
    Ok(())
}

//! The keys of the state machine's sled tree. Persisted ids never change: each kind has a
//! fixed prefix, and numbers are big-endian so that keys sort in numeric order.

use crate::table::TableName;

/// Last applied log id.
pub const APPLIED: &[u8] = b"m/applied";
/// Last applied membership.
pub const MEMBERSHIP: &[u8] = b"m/membership";
/// The tier worker, the OBJECT_STORAGE and COMMITTED watermarks and the WAL retention.
pub const TIER: &[u8] = b"m/tier";
/// Prefix of table catalog entries: `t/<name>`.
pub const TABLE_PREFIX: &[u8] = b"t/";

pub fn table(name: &TableName) -> Vec<u8> {
    [TABLE_PREFIX, name.as_str().as_bytes()].concat()
}

/// A table's running totals: `c/<name>`.
pub fn table_counts(name: &TableName) -> Vec<u8> {
    [b"c/", name.as_str().as_bytes()].concat()
}

pub fn table_name_of(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(TABLE_PREFIX)?).ok()
}

/// Prefix of one table's LSN index: `i/<name>/`. Table names hold no `/`.
pub fn index_prefix(name: &TableName) -> Vec<u8> {
    [b"i/", name.as_str().as_bytes(), b"/"].concat()
}

/// `i/<name>/<lsn, 8 bytes BE>`.
pub fn index(name: &TableName, lsn: u64) -> Vec<u8> {
    [index_prefix(name).as_slice(), &lsn.to_be_bytes()].concat()
}

pub fn lsn_of_index_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// Prefix of one table's tiered files: `f/<name>/`.
pub fn tiered_prefix(name: &TableName) -> Vec<u8> {
    [b"f/", name.as_str().as_bytes(), b"/"].concat()
}

/// `f/<name>/<max lsn, 8 bytes BE>`: a range scan from an LSN finds the file holding it.
pub fn tiered(name: &TableName, max_lsn: u64) -> Vec<u8> {
    [tiered_prefix(name).as_slice(), &max_lsn.to_be_bytes()].concat()
}

/// Prefix of one producer's idempotency entries: `d/<len, 2 bytes BE><producer id>`.
pub fn dedup_prefix(producer_id: &str) -> Vec<u8> {
    let len = u16::try_from(producer_id.len()).unwrap_or(u16::MAX);
    [b"d/".as_slice(), &len.to_be_bytes(), producer_id.as_bytes()].concat()
}

/// `d/<producer>/<seq, sign-flipped 8 bytes BE>` so that negative seqs sort first.
pub fn dedup(producer_id: &str, seq: i64) -> Vec<u8> {
    let ordered = (seq as u64) ^ (1 << 63);
    [dedup_prefix(producer_id).as_slice(), &ordered.to_be_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_lsn_and_round_trip() {
        let t = TableName::parse("t").unwrap();
        assert!(index(&t, 2) < index(&t, 256));
        assert_eq!(lsn_of_index_key(&index(&t, 77)), Some(77));
        assert!(index(&t, 5).starts_with(&index_prefix(&t)));
        let t2 = TableName::parse("t2").unwrap();
        assert!(!index(&t2, 5).starts_with(&index_prefix(&t)));
    }

    #[test]
    fn dedup_keys_sort_by_seq_including_negatives() {
        assert!(dedup("p", -1) < dedup("p", 0));
        assert!(dedup("p", 1) < dedup("p", 1 << 40));
        assert!(!dedup("pq", 1).starts_with(&dedup_prefix("p")));
    }
}

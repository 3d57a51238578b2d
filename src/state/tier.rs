//! The replicated tiering state: which node is the tier worker, the OBJECT_STORAGE and
//! COMMITTED watermarks and the WAL retention. The list of tiered files per table (so that
//! any node can read a range whose WAL it purged) is kept beside it in `StateData`.

use arka_cluster::{Lsn, NodeId};
use serde::{Deserialize, Serialize};

/// How much of the log a node keeps once it is in object storage: entries beyond the newest
/// `bytes` or older than `ms` are purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub bytes: u64,
    pub ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierState {
    pub worker: Option<NodeId>,
    /// Every entry up to here is in object storage.
    pub s3_lsn: Lsn,
    /// Every entry up to here is in a committed Iceberg snapshot.
    pub committed_lsn: Lsn,
    /// Set by `set_retention`; until then each node uses its configured retention.
    pub retention: Option<Retention>,
}

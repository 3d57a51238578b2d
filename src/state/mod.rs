//! The replicated state machine, in memory: table catalog and schemas, the index of the
//! writes still in the WAL, producer dedup state and sessions, tier watermarks, the tiered-file list and the
//! dropped tables whose lake data is still to delete,
//! membership and the applied position. Data itself stays in the WAL or object storage; the
//! state records where each table's batches are.
//!
//! Only the apply task changes the state. At start it is rebuilt from the newest snapshot
//! file plus the committed WAL entries above it; nothing on the per-write path writes to any
//! store but the WAL.

mod catalog;
mod chunk_map;
mod data;
mod dedup;
mod error;
mod lake_drops;
mod leaderships;
mod machine;
mod sessions;
mod snapshot;
mod table_commits;
mod tier;

pub use catalog::{IndexEntry, TableInfo};
pub use data::{StateData, TableGone};
pub use dedup::{DEDUP_AGE_MAX_LSNS, DEDUP_ENTRIES_MAX, DEDUP_WINDOW};
pub use error::{StateError, StateResult};
pub use lake_drops::{DroppedTable, LakeDrops};
pub use leaderships::LEADERSHIPS_MAX;
pub use machine::{ProducerWrites, SnapshotBuilder, StateMachine, StateMachineStore, StateSizes};
pub use sessions::{SessionRefused, SESSIONS_MAX};
pub use snapshot::Image;
pub use table_commits::{HeldBack, TableCommits};
pub use tier::{Retention, TierState};

//! The replicated state machine, kept in sled: table catalog, the LSN index of every table,
//! the idempotency table and the applied position. Data itself stays in the WAL; the state
//! machine records where each table's batches are.

mod apply;
mod catalog;
mod dedup;
mod error;
mod keys;
mod machine;
mod snapshot;
mod tier;

pub use catalog::{IndexEntry, TableInfo};
pub use dedup::DEDUP_WINDOW;
pub use error::{StateError, StateResult};
pub use machine::{StateMachine, StateMachineStore};
pub use tier::{Retention, TierState};

//! arka: a distributed, replicated log of Apache Arrow record batches.
//!
//! Nodes form one Raft group whose log is the write-ahead log ([`wal`]); the state machine
//! ([`state`]) indexes every table's batches by LSN; clients write and read over Arrow Flight
//! ([`flight`]).
//!
//! # Layers
//!
//! Each top-level module uses only modules of the layers below its own, lowest first as
//! listed here (`tests/t01_layers.rs` reads this list and fails on a use against it):
//!
//! 1. Leaves, the Flight wire format among them: `wire`, `disk`, `ipc`, `listener`,
//!    `low_priority`, `quote`, `tls`
//! 2. Durability levels, tables and the write-ahead log: `durability`, `table`, `wal`
//! 3. The state machine and the ack router over the WAL: `state`, `acks`
//! 4. Replication: `raft`
//! 5. The errors of the node's surface: `error`
//! 6. The lake's form of a table, node-to-node requests, client auth: `lake`, `internal`, `auth`
//! 7. Proposing commands as the leader: `propose`
//! 8. Tiering to object storage and Iceberg: `tier`
//! 9. Membership and the choice of the tier worker: `membership`
//! 10. The read and write services: `read`, `write`
//! 11. The Flight service, which also answers the node-to-node requests: `flight`
//! 12. Configuration: `config`
//! 13. The node (its components, started and stopped in order) and the client: `node`, `client`
//! 14. The command line: `cli`

pub mod acks;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod disk;
pub mod durability;
pub mod error;
pub mod flight;
pub mod internal;
pub mod ipc;
pub mod lake;
mod listener;
mod low_priority;
pub mod membership;
pub mod node;
pub mod propose;
pub mod quote;
pub mod raft;
pub mod read;
pub mod state;
pub mod table;
pub mod tier;
pub mod tls;
pub mod wal;
pub mod wire;
pub mod write;

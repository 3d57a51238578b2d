//! arka: a distributed, replicated log of Apache Arrow record batches.
//!
//! Nodes form one Raft group whose log is the write-ahead log ([`wal`]); the state machine
//! ([`state`]) indexes every table's batches by LSN; clients write and read over Arrow Flight
//! ([`flight`]).

pub mod acks;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod context;
pub mod disk;
pub mod durability;
pub mod error;
pub mod flight;
pub mod internal;
pub mod ipc;
mod listener;
mod low_priority;
pub mod membership;
pub mod node;
pub mod raft;
pub mod read;
pub mod state;
pub mod table;
pub mod tier;
pub mod tls;
pub mod wal;
pub mod write;

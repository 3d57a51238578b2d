//! arka: a distributed, replicated log of Apache Arrow record batches.

pub mod ipc;
pub mod state;
pub mod table;
pub mod wal;

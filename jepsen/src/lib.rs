//! Chaos tests for arka in the manner of Jepsen: a run against a real cluster on its own
//! network with a nemesis injecting faults, the history it records, the checker that names
//! every anomaly in it, and the report.

pub mod checker;
mod cluster;
mod connect;
mod consumers;
pub mod history;
mod lake;
mod nemesis;
mod net;
mod plots;
mod recorder;
mod remote_lake;
pub mod report;
pub mod run;
mod workload;

pub use nemesis::NAMES as NEMESES;

//! Chaos tests for arka in the manner of Jepsen: the history of a run, the checker that
//! names every anomaly in it, and the report.

pub mod checker;
pub mod history;
pub mod report;

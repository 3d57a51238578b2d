//! Cluster membership as the node runs it: the gossip agent, the member report of
//! `cluster_status`, and the apply history behind lag in seconds.

pub mod agent;
pub mod apply_clock;
pub mod report;

pub use apply_clock::ApplyClock;

//! Cluster membership as the node runs it: the gossip agent, the member report of
//! `cluster_status`, the apply history behind lag in seconds, and the leader's choice of the
//! tier worker among the live, caught-up members.

pub mod agent;
pub mod apply_clock;
pub mod report;
mod tier_worker;

pub use apply_clock::ApplyClock;

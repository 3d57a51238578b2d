//! The openraft configuration arka runs with.

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};

/// Raft timing and policy, as set by the node's configuration.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

/// Builds the validated openraft config.
///
/// Log purging is never automatic: the WAL holds the only copy of data until tiering puts it in
/// object storage, so `max_in_snapshot_log_to_keep` is unbounded and the node purges explicitly.
pub fn build(timing: &RaftTiming) -> Result<Arc<Config>, openraft::ConfigError> {
    let config = Config {
        cluster_name: "arka".to_string(),
        heartbeat_interval: timing.heartbeat_interval_ms,
        election_timeout_min: timing.election_timeout_min_ms,
        election_timeout_max: timing.election_timeout_max_ms,
        enable_pre_vote: Some(true),
        // The node triggers its own snapshots, at a phase of its own (arka's
        // `state::snapshot_schedule`), so that the members do not all snapshot at once.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        max_payload_entries: 1024,
        // Replicate what the leader has handed to its WAL without waiting for its own fsync
        // (the leader's copy counts towards the quorum only once durable), and let the core
        // read acknowledgements between client writes, not after a whole burst of them: a
        // burst used to hold back the acks that renew the leader's lease.
        broadcast_submitted_on_append: Some(true),
        // So a restarted leader does not take up its old term again: its followers may hold
        // entries it sent them before its own fsync, which the crash took from its log, and
        // leading again in the same term it would write other entries under those log ids.
        // It starts as a follower; a new election (a new term) settles whose log leads.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

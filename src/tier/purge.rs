//! WAL trimming on every node: the log is purged only below the OBJECT_STORAGE watermark
//! (never an entry that exists nowhere else) and only outside the retention window — the
//! newest `wal-retention-bytes` that are younger than `wal-retention-ms` stay.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Tiering;
use crate::raft::Raft;
use crate::state::{Retention, StateMachine};
use crate::wal::LogReader;

const TICK: Duration = Duration::from_secs(1);
/// One sample per tick, for a day: a longer `wal-retention-ms` keeps more than asked.
const CLOCK_SAMPLES_MAX: usize = 86_400;
/// A snapshot (which purging needs) is asked for at most this often.
const SNAPSHOT_EVERY_MIN: Duration = Duration::from_secs(5);

/// When this node had applied what, sampled once a tick, to tell which entries are older
/// than the retention time.
#[derive(Default)]
struct RetentionClock {
    samples: VecDeque<(Instant, u64)>,
}

impl RetentionClock {
    fn record(&mut self, at: Instant, applied: u64) {
        if self.samples.len() == CLOCK_SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back((at, applied));
    }

    /// The highest LSN known to be applied at or before `cutoff` (0: not known, so keep).
    fn applied_by(&self, cutoff: Instant) -> u64 {
        self.samples
            .iter()
            .take_while(|(at, _)| *at <= cutoff)
            .map(|(_, lsn)| *lsn)
            .max()
            .unwrap_or(0)
    }
}

/// The WAL trimming of one node: what it uses of the node.
pub struct Purge {
    pub state: StateMachine,
    pub log: LogReader,
    pub raft: Raft,
    pub tiering: Arc<Tiering>,
    /// The node's configured retention, until `set_retention` sets the cluster's.
    pub configured: Retention,
}

impl Purge {
    /// Trims once a tick until `shutdown`. Stopping between the calls is safe: Raft purges
    /// the log, and a purge it was asked for completes or is asked for again.
    pub async fn run(self, shutdown: CancellationToken) {
        let Purge {
            state,
            log,
            raft,
            tiering,
            configured,
        } = self;
        let trimming = run(&state, &log, &raft, &tiering, configured);
        let _ = shutdown.run_until_cancelled(trimming).await;
    }
}

async fn run(
    state: &StateMachine,
    log: &LogReader,
    raft: &Raft,
    tiering: &Tiering,
    configured: Retention,
) {
    let mut clock = RetentionClock::default();
    let mut last_snapshot: Option<Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        clock.record(now, state.applied_lsn().get());
        match log.disk_bytes() {
            Ok(bytes) => tiering.set_wal_bytes(bytes),
            Err(e) => tracing::warn!(error = %e, "measuring the wal failed"),
        }
        let retention = state.tier().retention.unwrap_or(configured);
        let target = match purge_target((state, log), &clock, retention, now) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "choosing what to purge failed");
                continue;
            }
        };
        if target < log.first_index().get() {
            continue;
        }
        let snapshot = crate::raft::metrics(raft)
            .snapshot
            .map(|l| l.index)
            .unwrap_or(0);
        if snapshot < target && last_snapshot.is_none_or(|at| at.elapsed() >= SNAPSHOT_EVERY_MIN) {
            last_snapshot = Some(now);
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "snapshot for purging failed");
            }
        }
        let upto = target.min(snapshot);
        if upto >= log.first_index().get() {
            tracing::debug!(upto, "purging the wal");
            if let Err(e) = raft.trigger().purge_log(upto).await {
                tracing::warn!(error = %e, upto, "purging the wal failed");
            }
        }
    }
}

/// The highest index that may go: in object storage, and beyond the retention bytes or
/// older than the retention time.
fn purge_target(
    (state, log): (&StateMachine, &LogReader),
    clock: &RetentionClock,
    retention: Retention,
    now: Instant,
) -> Result<u64, crate::wal::WalError> {
    let by_size = log.last_index_beyond_newest(retention.bytes)?.get();
    let by_age = now
        .checked_sub(Duration::from_millis(retention.ms))
        .map(|cutoff| clock.applied_by(cutoff))
        .unwrap_or(0);
    let tiered = state.tier().s3_lsn.min(state.applied_lsn()).get();
    Ok(by_size.max(by_age).min(tiered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_only_vouches_for_what_it_saw() {
        let start = Instant::now();
        let mut clock = RetentionClock::default();
        clock.record(start, 10);
        clock.record(start + Duration::from_secs(1), 20);
        clock.record(start + Duration::from_secs(2), 30);
        assert_eq!(clock.applied_by(start + Duration::from_millis(1500)), 20);
        assert_eq!(clock.applied_by(start - Duration::from_secs(1)), 0);
    }
}

//! When this node applied recent LSNs, so that a member's lag can be told in seconds: a member
//! that has applied up to `n` is as far behind as the time since this node applied `n + 1`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Samples kept; with one sample per `SAMPLE_EVERY` the last ~20 s of writes are exact and
/// older history is kept ever more coarsely.
const SAMPLES_MAX: usize = 4096;
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
pub struct ApplyClock {
    samples: Mutex<VecDeque<(u64, Instant)>>,
}

/// Drops every other sample of the older half: recent history stays exact and old history
/// gets coarser, so the clock always reaches back to its first sample (a tiering lag of
/// minutes is told as minutes, not as the span of the newest samples).
fn thin_older_half(samples: &mut VecDeque<(u64, Instant)>) {
    let half = samples.len() / 2;
    let mut position = 0;
    samples.retain(|_| {
        let keep = position >= half || position % 2 == 0;
        position += 1;
        keep
    });
}

impl ApplyClock {
    fn record(&self, lsn: u64, at: Instant) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, last)) = samples.back() {
            if at.duration_since(*last) < SAMPLE_EVERY {
                return;
            }
        }
        if samples.len() == SAMPLES_MAX {
            thin_older_half(&mut samples);
        }
        samples.push_back((lsn, at));
    }

    /// Seconds since this node applied the first LSN above `applied`; 0 when nothing this
    /// node applied is missing there.
    pub fn lag_seconds(&self, applied: u64, now: Instant) -> f64 {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .iter()
            .find(|(lsn, _)| *lsn > applied)
            .map(|(_, at)| now.saturating_duration_since(*at).as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Records every change of the applied LSN until `shutdown` (or until the state
    /// machine goes away).
    pub async fn follow(&self, applied: watch::Receiver<u64>, shutdown: CancellationToken) {
        // One wait for the stop signal for the whole run, not one per applied change.
        let _ = shutdown
            .run_until_cancelled(self.record_changes(applied))
            .await;
    }

    async fn record_changes(&self, mut applied: watch::Receiver<u64>) {
        loop {
            let lsn = *applied.borrow_and_update();
            self.record(lsn, Instant::now());
            if applied.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_first_missing_lsn() {
        let clock = ApplyClock::default();
        let t0 = Instant::now();
        clock.record(10, t0);
        clock.record(20, t0 + Duration::from_secs(1));
        clock.record(30, t0 + Duration::from_secs(2));
        let now = t0 + Duration::from_secs(5);
        assert_eq!(clock.lag_seconds(30, now), 0.0);
        assert_eq!(clock.lag_seconds(25, now), 3.0);
        assert_eq!(clock.lag_seconds(10, now), 4.0);
        assert_eq!(clock.lag_seconds(0, now), 5.0);
    }

    #[test]
    fn a_full_clock_still_reaches_back_to_its_first_sample() {
        let clock = ApplyClock::default();
        let t0 = Instant::now();
        for i in 0..(3 * SAMPLES_MAX as u64) {
            clock.record(i + 1, t0 + SAMPLE_EVERY * i as u32);
        }
        let newest = t0 + SAMPLE_EVERY * (3 * SAMPLES_MAX as u32 - 1);
        let len = clock.samples.lock().expect("lock").len();
        assert!(len <= SAMPLES_MAX, "bounded: {len}");
        let lag = clock.lag_seconds(0, newest);
        assert!(
            (lag - newest.duration_since(t0).as_secs_f64()).abs() < 1e-6,
            "lag {lag}"
        );
        // Recent history stays exact.
        let recent = 3 * SAMPLES_MAX as u64 - 10;
        let exact = (SAMPLE_EVERY * 9).as_secs_f64();
        assert!((clock.lag_seconds(recent, newest) - exact).abs() < 1e-9);
    }
}

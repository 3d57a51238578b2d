//! When this node applied recent LSNs, so that a member's lag can be told in seconds: a member
//! that has applied up to `n` is as far behind as the time since this node applied `n + 1`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Samples kept; with one sample per `SAMPLE_EVERY` this covers the last ~40 s of writes
/// exactly and anything older as "at least that old".
const SAMPLES_MAX: usize = 4096;
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
pub struct ApplyClock {
    samples: Mutex<VecDeque<(u64, Instant)>>,
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
            samples.pop_front();
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

    /// Records every change of the applied LSN until the state machine goes away.
    pub async fn follow(&self, mut applied: watch::Receiver<u64>) {
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
}

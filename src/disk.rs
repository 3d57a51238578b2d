//! The free-space floor of a node's data directory (`disk-free-bytes-min`), as Redpanda
//! keeps one: below it the node takes no new writes as leader (`RESOURCE_EXHAUSTED`, naming
//! the disk), while reads, tiering and the WAL's purge go on. Below half of it the node also
//! takes no new log entries as follower (its entry intake closes; the leader retries them):
//! the half between leaves room for what a leader took before its own disk reached the floor
//! (nodes that share a disk, or a race), so those writes still replicate. Once the disk has
//! room again the node takes writes and entries by itself, with no restart. A disk that fills
//! in spite of the floor is waited out by the WAL's flusher.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arka_cluster::network::EntryIntake;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// How often the free space is measured: a `statvfs`, microseconds; what a fast writer adds
/// between two looks is what the floor must leave room for.
const MEASURE_EVERY: Duration = Duration::from_millis(100);

/// Writes resume once the free space is this share of the floor above it, so that a disk
/// hovering at the floor does not flap between taking and refusing.
const RESUME_ABOVE_FLOOR_PERCENT: u64 = 5;

pub struct DiskFloor {
    dir: PathBuf,
    /// 0: no floor.
    free_min: u64,
    free: AtomicU64,
    /// Below `free_min`: writes are refused.
    below: AtomicBool,
    /// Below half of `free_min`: entries are refused.
    intake_closed: AtomicBool,
    intake: EntryIntake,
}

impl DiskFloor {
    /// The floor of `dir`'s filesystem, measured once now.
    pub fn new(dir: &Path, free_min: u64, intake: EntryIntake) -> Arc<Self> {
        let floor = Arc::new(Self {
            dir: dir.to_path_buf(),
            free_min,
            free: AtomicU64::new(u64::MAX),
            below: AtomicBool::new(false),
            intake_closed: AtomicBool::new(false),
            intake,
        });
        floor.measure();
        floor
    }

    /// Measures the free space every [`MEASURE_EVERY`], until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(MEASURE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while shutdown.run_until_cancelled(ticks.tick()).await.is_some() {
            self.measure();
        }
    }

    fn measure(&self) {
        let free = match free_bytes(&self.dir) {
            Ok(free) => free,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot measure the free space of the data dir");
                return;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        match crossed(&self.below, free, self.free_min) {
            Some(true) => tracing::warn!("{}", self.explain(free)),
            Some(false) => tracing::info!(
                dir = %self.dir.display(),
                free_bytes = free,
                "the data dir's disk has room again: writes resume"
            ),
            None => {}
        }
        match crossed(&self.intake_closed, free, self.free_min / 2) {
            Some(true) => {
                let why = format!(
                    "the disk of data dir {} has {free} bytes free, below half of disk-free-bytes-min {}: this node takes no new log entries until space is freed",
                    self.dir.display(),
                    self.free_min
                );
                tracing::warn!("{why}");
                self.intake.close(why);
            }
            Some(false) => self.intake.open(),
            None => {}
        }
    }

    fn explain(&self, free: u64) -> String {
        format!(
            "the disk of data dir {} has {free} bytes free, below disk-free-bytes-min {}: this node takes no new writes until space is freed (reads and tiering go on)",
            self.dir.display(),
            self.free_min
        )
    }

    /// The reason writes are refused, while the disk is below the floor.
    pub fn refusal(&self) -> Option<String> {
        self.below
            .load(Ordering::Relaxed)
            .then(|| self.explain(self.free.load(Ordering::Relaxed)))
    }

    /// `{dir, free_bytes, free_bytes_min, below_floor, taking_entries}` for `status`.
    pub fn status(&self) -> Value {
        json!({
            "dir": self.dir.display().to_string(),
            "free_bytes": self.free.load(Ordering::Relaxed),
            "free_bytes_min": self.free_min,
            "below_floor": self.below.load(Ordering::Relaxed),
            "taking_entries": !self.intake_closed.load(Ordering::Relaxed),
        })
    }
}

/// Moves `flag` (below `floor`) with the free space, and returns its new value when it
/// changed: it is set below the floor and cleared only [`RESUME_ABOVE_FLOOR_PERCENT`] above
/// it. A floor of 0 is never crossed.
fn crossed(flag: &AtomicBool, free: u64, floor: u64) -> Option<bool> {
    let below = flag.load(Ordering::Relaxed);
    let resume_at = (floor / 100 * RESUME_ABOVE_FLOOR_PERCENT).saturating_add(floor);
    let now = if below {
        free < resume_at
    } else {
        free < floor
    };
    (now != below).then(|| {
        flag.store(now, Ordering::Relaxed);
        now
    })
}

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
    // SAFETY: statvfs only writes to the struct passed in; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_refuses_writes_and_closes_the_intake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let intake = EntryIntake::default();
        let floor = DiskFloor::new(dir.path(), u64::MAX / 2, intake.clone());
        let why = floor.refusal().expect("below the floor");
        assert!(why.contains("disk-free-bytes-min"), "{why}");
        assert!(intake.admit(1).is_err());
        assert_eq!(floor.status()["below_floor"], true);

        let unbounded = DiskFloor::new(dir.path(), 0, EntryIntake::default());
        assert!(unbounded.refusal().is_none());
        assert!(unbounded.status()["free_bytes"].as_u64() > Some(0));
    }
}

//! One segment file of the WAL: `<wal-dir>/<segment id, 20 digits>.wal`, written with
//! positioned writes by the single writer and read with positioned reads by any reader.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{WalError, WalResult};
use super::record::{self, Header, HEADER_BYTES};

/// Identifies a segment; ids only grow, so their order is the log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

/// Where one record lives.
#[derive(Debug, Clone, Copy)]
pub struct RecordLoc {
    pub segment: SegmentId,
    /// Offset of the record's header in the segment file.
    pub offset: u64,
    pub payload_len: u32,
}

impl RecordLoc {
    pub fn end(&self) -> u64 {
        self.offset + HEADER_BYTES as u64 + u64::from(self.payload_len)
    }
}

#[derive(Debug)]
pub struct Segment {
    pub id: SegmentId,
    pub path: PathBuf,
    file: File,
    /// Length up to which an `fdatasync` has completed; records written now carry it, so
    /// recovery can tell durable bytes from a torn tail.
    synced_len: AtomicU64,
}

pub fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{:020}.wal", id.0))
}

fn pending_path(path: &Path) -> PathBuf {
    path.with_extension("wal.pending")
}

/// The segments in `dir`, in log order (a `….wal.pending` file, left by a crash before its
/// segment was published, is not one).
pub fn list_segments(dir: &Path) -> WalResult<Vec<(SegmentId, PathBuf)>> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| WalError::io(dir, e))?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().and_then(|e| e.to_str()) != Some("wal") {
            continue;
        }
        let id = stem.parse::<u64>().map_err(|_| WalError::Corrupt {
            path: path.clone(),
            offset: 0,
            reason: "segment file name is not a segment id".to_string(),
        })?;
        found.push((SegmentId(id), path));
    }
    found.sort_by_key(|(id, _)| *id);
    Ok(found)
}

/// Makes a directory entry (a created or removed file) durable.
pub fn sync_dir(dir: &Path) -> WalResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

impl Segment {
    pub fn create(dir: &Path, id: SegmentId) -> WalResult<Self> {
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| WalError::io(&path, e))?;
        sync_dir(dir)?;
        Ok(Self {
            id,
            path,
            file,
            synced_len: AtomicU64::new(0),
        })
    }

    /// Creates segment `id` under a name recovery does not read (`….wal.pending`), so that
    /// it becomes part of the log only once [`Segment::publish`] renames it, after the segment
    /// before it is durable: a segment other than the last is always whole.
    pub fn create_pending(dir: &Path, id: SegmentId) -> WalResult<Self> {
        let path = segment_path(dir, id);
        let pending = pending_path(&path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&pending)
            .map_err(|e| WalError::io(&pending, e))?;
        Ok(Self {
            id,
            path,
            file,
            synced_len: AtomicU64::new(0),
        })
    }

    /// Gives a segment made by [`Segment::create_pending`] its name, durably.
    /// Publishing again (a flush retried after the disk was full) finds it done.
    pub fn publish(&self) -> WalResult<()> {
        let pending = pending_path(&self.path);
        match std::fs::rename(&pending, &self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.path.exists() => {}
            Err(e) => return Err(WalError::io(&pending, e)),
        }
        match self.path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    pub fn open(id: SegmentId, path: PathBuf) -> WalResult<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| WalError::io(&path, e))?;
        Ok(Self {
            id,
            path,
            file,
            synced_len: AtomicU64::new(0),
        })
    }

    pub fn len(&self) -> WalResult<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| WalError::io(&self.path, e))
    }

    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> WalResult<()> {
        self.file.write_all_at(bytes, offset).map_err(|e| {
            let path = self.path.clone();
            match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => WalError::DiskFull { path, source: e },
                _ => WalError::Io { path, source: e },
            }
        })
    }

    /// `fdatasync`: the data written so far survives a crash.
    pub fn sync(&self) -> WalResult<()> {
        self.file
            .sync_data()
            .map_err(|e| WalError::io(&self.path, e))
    }

    /// `fdatasync`, then records that the first `written` bytes (everything written before
    /// the call) are durable.
    pub fn sync_up_to(&self, written: u64) -> WalResult<()> {
        self.sync()?;
        self.synced_len.fetch_max(written, Ordering::AcqRel);
        Ok(())
    }

    /// How much of the file is known to be durable.
    pub fn synced_len(&self) -> u64 {
        self.synced_len.load(Ordering::Acquire)
    }

    /// Cuts the file to `len` bytes, durably.
    pub fn truncate(&self, len: u64) -> WalResult<()> {
        self.file
            .set_len(len)
            .and_then(|_| self.file.sync_all())
            .map_err(|e| WalError::io(&self.path, e))?;
        self.synced_len.store(len, Ordering::Release);
        Ok(())
    }

    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Reads and verifies the record at `loc`, returning its payload. Damage is reported with
    /// file and offset: a record the index points at must be intact.
    pub fn read_payload(&self, loc: &RecordLoc) -> WalResult<Vec<u8>> {
        let corrupt = |reason: &dyn std::fmt::Display| WalError::Corrupt {
            path: self.path.clone(),
            offset: loc.offset,
            reason: reason.to_string(),
        };
        let mut head = [0u8; HEADER_BYTES];
        self.read_exact_at(loc.offset, &mut head)
            .map_err(|e| WalError::io(&self.path, e))?;
        let header = Header::parse(&head).map_err(|e| corrupt(&e))?;
        if header.payload_len != loc.payload_len {
            return Err(corrupt(&format!(
                "record length {} differs from the indexed {}",
                header.payload_len, loc.payload_len
            )));
        }
        let mut payload = vec![0u8; loc.payload_len as usize];
        self.read_exact_at(loc.offset + HEADER_BYTES as u64, &mut payload)
            .map_err(|e| WalError::io(&self.path, e))?;
        record::verify(&header, &payload).map_err(|e| corrupt(&e))?;
        Ok(payload)
    }
}

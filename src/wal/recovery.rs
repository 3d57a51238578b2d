//! Start-up scan of the WAL: rebuild the record index, repair a torn tail, refuse damage.
//!
//! A crash can leave the last segment with a partly written group of records at its end: that
//! torn tail is cut off at the first bad record. Only bytes that were not yet known durable may
//! be cut: every record carries the offset up to which its segment had been fsynced when it
//! was written, so an intact record after a bad one proves whether the bad bytes were durable.
//! Damage in durable bytes, or anywhere in a sealed segment, is corruption: the node refuses to
//! start and names the file and offset, because skipping it would silently lose or reorder
//! acknowledged data.
//!
//! Records at or below the purged index are dropped: purging deletes whole segments only, and
//! a snapshot install may purge past the end of the log, after which the log continues at the
//! purged index + 1.

use std::path::Path;
use std::sync::Arc;

use super::error::{WalError, WalResult};
use super::record::{self, Header, HEADER_BYTES};
use super::segment::{list_segments, RecordLoc, Segment};

/// What the scan found.
pub struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    /// Index of the first record kept (meaningful only when `locs` is not empty).
    pub first_index: u64,
    /// The records above the purged index, in log order.
    pub locs: Vec<RecordLoc>,
    /// Where the next record goes in the last segment.
    pub tail_offset: u64,
}

enum Scan {
    Record { index: u64, loc: RecordLoc },
    End,
    Bad { reason: String },
}

fn read_record(segment: &Segment, offset: u64, file_len: u64) -> WalResult<Scan> {
    if offset == file_len {
        return Ok(Scan::End);
    }
    if file_len - offset < HEADER_BYTES as u64 {
        return Ok(Scan::Bad {
            reason: "partial record header".to_string(),
        });
    }
    let mut head = [0u8; HEADER_BYTES];
    segment
        .read_exact_at(offset, &mut head)
        .map_err(|e| WalError::io(&segment.path, e))?;
    let header = match Header::parse(&head) {
        Ok(h) => h,
        Err(e) => {
            return Ok(Scan::Bad {
                reason: e.to_string(),
            })
        }
    };
    let loc = RecordLoc {
        segment: segment.id,
        offset,
        payload_len: header.payload_len,
    };
    if loc.end() > file_len {
        return Ok(Scan::Bad {
            reason: "record runs past the end of the file".to_string(),
        });
    }
    let mut payload = vec![0u8; header.payload_len as usize];
    segment
        .read_exact_at(offset + HEADER_BYTES as u64, &mut payload)
        .map_err(|e| WalError::io(&segment.path, e))?;
    match record::verify(&header, &payload) {
        Ok(index) => Ok(Scan::Record { index, loc }),
        Err(e) => Ok(Scan::Bad {
            reason: e.to_string(),
        }),
    }
}

/// The highest durable length that any intact record after `offset` vouches for: 0 when no
/// intact record follows. Searches byte by byte, since a damaged length cannot be trusted to
/// say where the next record starts.
fn durable_length_vouched_after(segment: &Segment, offset: u64, file_len: u64) -> WalResult<u64> {
    let mut rest = vec![0u8; (file_len - offset) as usize];
    segment
        .read_exact_at(offset, &mut rest)
        .map_err(|e| WalError::io(&segment.path, e))?;
    let mut at = 1;
    let mut vouched = 0;
    while at + HEADER_BYTES <= rest.len() {
        match record::intact_at(&rest, at) {
            Some((header, end)) => {
                vouched = vouched.max(header.synced_before);
                at = end;
            }
            None => at += 1,
        }
    }
    Ok(vouched)
}

/// Follows the log order across segments and drops what was purged.
struct Sequence {
    purged: Option<u64>,
    last_seen: Option<u64>,
    out: Recovered,
}

impl Sequence {
    fn push(&mut self, segment: &Segment, index: u64, loc: RecordLoc) -> WalResult<()> {
        if let Some(prev) = self.last_seen {
            let continues_past_purge = self.purged.is_some_and(|p| prev <= p && index == p + 1);
            if index != prev + 1 && !continues_past_purge {
                return Err(WalError::Corrupt {
                    path: segment.path.clone(),
                    offset: loc.offset,
                    reason: format!("record holds entry {index}, expected {}", prev + 1),
                });
            }
        }
        self.last_seen = Some(index);
        if self.purged.is_some_and(|p| index <= p) {
            return Ok(());
        }
        if self.out.locs.is_empty() {
            if let Some(p) = self.purged.filter(|p| index != p + 1) {
                return Err(WalError::Corrupt {
                    path: segment.path.clone(),
                    offset: loc.offset,
                    reason: format!(
                        "first entry after the purged index {p} is {index}: entries are missing"
                    ),
                });
            }
            self.out.first_index = index;
        }
        self.out.locs.push(loc);
        Ok(())
    }
}

/// Scans the segments in `dir`; `purged` is the last purged index, if any.
pub fn recover(dir: &Path, purged: Option<u64>) -> WalResult<Recovered> {
    let listed = list_segments(dir)?;
    let last_id = listed.last().map(|(id, _)| *id);
    let mut seq = Sequence {
        purged,
        last_seen: None,
        out: Recovered {
            segments: Vec::with_capacity(listed.len()),
            first_index: 0,
            locs: Vec::new(),
            tail_offset: 0,
        },
    };
    for (id, path) in listed {
        let segment = Segment::open(id, path)?;
        let file_len = segment.len()?;
        let mut offset = 0;
        loop {
            match read_record(&segment, offset, file_len)? {
                Scan::End => break,
                Scan::Record { index, loc } => {
                    seq.push(&segment, index, loc)?;
                    offset = loc.end();
                }
                Scan::Bad { reason } => {
                    if offset == 0 {
                        refuse_first_format(&segment, file_len)?;
                    }
                    cut_torn_tail(&segment, Some(id) == last_id, offset, file_len, reason)?;
                    break;
                }
            }
        }
        seq.out.tail_offset = offset;
        seq.out.segments.push(Arc::new(segment));
    }
    // What was read back may still be only in the page cache (the process died before its
    // flush): make it durable before anyone is told it is on disk. Sealed segments were
    // synced before the next one was published; syncing them again costs little, and it
    // lets each one know how much of it is durable.
    for segment in &seq.out.segments {
        let len = segment.len()?;
        segment.sync_up_to(len)?;
    }
    Ok(seq.out)
}

/// A segment whose first record is bad may be of the first WAL format; it is refused by name:
/// its records would all look damaged, and the last segment's could be taken for a torn tail.
fn refuse_first_format(segment: &Segment, file_len: u64) -> WalResult<()> {
    let read = |len: u64| -> WalResult<Vec<u8>> {
        let mut buf = vec![0u8; len.min(file_len) as usize];
        segment
            .read_exact_at(0, &mut buf)
            .map_err(|e| WalError::io(&segment.path, e))?;
        Ok(buf)
    };
    let head = read(8)?;
    if head.len() < 8 {
        return Ok(());
    }
    let claimed = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let record = read(8 + u64::from(claimed).min(record::PAYLOAD_BYTES_MAX as u64))?;
    if record::is_first_format(&record) {
        return Err(WalError::Corrupt {
            path: segment.path.clone(),
            offset: 0,
            reason: "the segment is in the first WAL format, written by an older arka, which this version does not read".into(),
        });
    }
    Ok(())
}

/// Cuts the last segment at the bad record at `offset`, or refuses when the bytes there are
/// known to have been durable.
fn cut_torn_tail(
    segment: &Segment,
    is_last: bool,
    offset: u64,
    file_len: u64,
    reason: String,
) -> WalResult<()> {
    let corrupt = |reason: String| WalError::Corrupt {
        path: segment.path.clone(),
        offset,
        reason,
    };
    if !is_last {
        return Err(corrupt(format!("{reason} (in a sealed segment)")));
    }
    let vouched = durable_length_vouched_after(segment, offset, file_len)?;
    if vouched > offset {
        return Err(corrupt(format!(
            "{reason}; a later record shows the first {vouched} bytes were fsynced, so this is damage, not a torn write"
        )));
    }
    tracing::warn!(
        path = %segment.path.display(),
        offset,
        cut_bytes = file_len - offset,
        %reason,
        "wal: torn tail after a crash (bytes never fsynced), truncating to the last valid record"
    );
    segment.truncate(offset)
}

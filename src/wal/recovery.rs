//! Start-up scan of the WAL: rebuild the record index, repair a torn tail, refuse corruption.
//!
//! A crash can leave the last segment with a partly written group of records at its end: that
//! torn tail is cut off at the last valid record. Damage anywhere else (a sealed segment, or a
//! bad record followed by a good one) is corruption: the node refuses to start and names the
//! file and offset, because skipping it would silently lose or reorder acknowledged data.

use std::path::Path;
use std::sync::Arc;

use super::error::{WalError, WalResult};
use super::record::{Header, HEADER_BYTES};
use super::segment::{list_segments, RecordLoc, Segment};

/// What the scan found.
pub struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    /// Index of the first record found (meaningful only when `locs` is not empty).
    pub first_index: u64,
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
        Err(reason) => return Ok(Scan::Bad { reason }),
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
    match super::record::verify(&header, &payload) {
        Ok(index) => Ok(Scan::Record { index, loc }),
        Err(reason) => Ok(Scan::Bad { reason }),
    }
}

/// True when a valid record starts right after the damaged one: the damage is not a torn
/// tail but a hole in the middle of the log.
fn valid_record_follows(segment: &Segment, offset: u64, file_len: u64) -> WalResult<bool> {
    let mut head = [0u8; HEADER_BYTES];
    if file_len - offset < HEADER_BYTES as u64 {
        return Ok(false);
    }
    segment
        .read_exact_at(offset, &mut head)
        .map_err(|e| WalError::io(&segment.path, e))?;
    let Ok(header) = Header::parse(&head) else {
        return Ok(false);
    };
    let next = offset + HEADER_BYTES as u64 + u64::from(header.payload_len);
    if next >= file_len {
        return Ok(false);
    }
    Ok(matches!(
        read_record(segment, next, file_len)?,
        Scan::Record { .. }
    ))
}

pub fn recover(dir: &Path) -> WalResult<Recovered> {
    let listed = list_segments(dir)?;
    let last_id = listed.last().map(|(id, _)| *id);
    let mut out = Recovered {
        segments: Vec::with_capacity(listed.len()),
        first_index: 0,
        locs: Vec::new(),
        tail_offset: 0,
    };
    for (id, path) in listed {
        let segment = Segment::open(id, path)?;
        let file_len = segment.len()?;
        let mut offset = 0;
        loop {
            match read_record(&segment, offset, file_len)? {
                Scan::End => break,
                Scan::Record { index, loc } => {
                    let expected = out.first_index + out.locs.len() as u64;
                    if out.locs.is_empty() {
                        out.first_index = index;
                    } else if index != expected {
                        return Err(WalError::Corrupt {
                            path: segment.path.clone(),
                            offset,
                            reason: format!("record holds entry {index}, expected {expected}"),
                        });
                    }
                    offset = loc.end();
                    out.locs.push(loc);
                }
                Scan::Bad { reason } => {
                    let is_last = Some(id) == last_id;
                    if !is_last || valid_record_follows(&segment, offset, file_len)? {
                        return Err(WalError::Corrupt {
                            path: segment.path.clone(),
                            offset,
                            reason,
                        });
                    }
                    tracing::warn!(
                        path = %segment.path.display(),
                        offset,
                        cut_bytes = file_len - offset,
                        %reason,
                        "wal: torn tail after a crash, truncating to the last valid record"
                    );
                    segment.truncate(offset)?;
                    break;
                }
            }
        }
        out.tail_offset = offset;
        out.segments.push(Arc::new(segment));
    }
    Ok(out)
}

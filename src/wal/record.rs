//! One WAL record:
//!
//! ```text
//! [payload_len: u32][payload_crc: u32][synced_before: u64][header_crc: u32][payload]
//! ```
//!
//! all little-endian, where the payload is `[index: u64][postcard-encoded Raft entry]`,
//! `header_crc` is the CRC32C of the 16 bytes before it and `payload_crc` that of the payload.
//!
//! The header checks itself, so a damaged length is never trusted to find the next record.
//! `synced_before` is the segment offset up to which an `fdatasync` had completed when the
//! record was written: a later intact record thereby vouches that the bytes before that offset
//! were durable, which is how recovery tells damage (refuse to start) from a torn tail (cut).

use arka_cluster::codec;
use arka_cluster::types::Entry;

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 20;
/// Largest payload a record may have; a length above it is damage, not data.
pub const PAYLOAD_BYTES_MAX: usize = codec::MESSAGE_BYTES_MAX;
/// The entry index at the start of every payload.
const INDEX_BYTES: usize = 8;

/// Why a record could not be framed, or is not intact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("record of {0} bytes is over the limit of {PAYLOAD_BYTES_MAX}")]
    TooLarge(usize),
    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("implausible record length {0}")]
    ImplausibleLength(usize),
    #[error("payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    PayloadChecksum { stored: u32, computed: u32 },
    #[error("cannot decode the entry: {0}")]
    Decode(String),
}

/// Appends the framed record of `entry` to `out`. `synced_before` is the segment's durable
/// length at the time of writing.
pub fn encode_into(
    entry: &Entry,
    synced_before: u64,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let start = out.len();
    out.reserve(HEADER_BYTES + INDEX_BYTES + codec::encoded_len("wal entry", entry).unwrap_or(0));
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    postcard::to_io(entry, &mut *out).map_err(|e| RecordError::Encode(e.to_string()))?;
    let payload_len = out.len() - start - HEADER_BYTES;
    if payload_len > PAYLOAD_BYTES_MAX {
        out.truncate(start);
        return Err(RecordError::TooLarge(payload_len));
    }
    let header = Header {
        payload_len: payload_len as u32,
        payload_crc: crc32c::crc32c(&out[start + HEADER_BYTES..]),
        synced_before,
    };
    out[start..start + HEADER_BYTES].copy_from_slice(&header.to_bytes());
    Ok(())
}

/// The header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub payload_len: u32,
    pub payload_crc: u32,
    pub synced_before: u64,
}

impl Header {
    fn to_bytes(self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        bytes[0..4].copy_from_slice(&self.payload_len.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.payload_crc.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.synced_before.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..16]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parses and checks a header: its own checksum first, then a plausible length.
    pub fn parse(bytes: &[u8; HEADER_BYTES]) -> Result<Self, RecordError> {
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let stored = u32_at(16);
        let computed = crc32c::crc32c(&bytes[..16]);
        if stored != computed {
            return Err(RecordError::HeaderChecksum { stored, computed });
        }
        let mut synced = [0u8; 8];
        synced.copy_from_slice(&bytes[8..16]);
        let header = Self {
            payload_len: u32_at(0),
            payload_crc: u32_at(4),
            synced_before: u64::from_le_bytes(synced),
        };
        let len = header.payload_len as usize;
        if !(INDEX_BYTES..=PAYLOAD_BYTES_MAX).contains(&len) {
            return Err(RecordError::ImplausibleLength(len));
        }
        Ok(header)
    }
}

/// Checks the payload against its header and returns the entry index it holds.
pub fn verify(header: &Header, payload: &[u8]) -> Result<u64, RecordError> {
    let crc = crc32c::crc32c(payload);
    if crc != header.payload_crc {
        return Err(RecordError::PayloadChecksum {
            stored: header.payload_crc,
            computed: crc,
        });
    }
    let mut index = [0u8; INDEX_BYTES];
    index.copy_from_slice(&payload[..INDEX_BYTES]);
    Ok(u64::from_le_bytes(index))
}

/// Decodes a verified payload into its entry.
pub fn decode(payload: &[u8]) -> Result<Entry, RecordError> {
    codec::decode::<Entry>("wal entry", &payload[INDEX_BYTES..])
        .map_err(|e| RecordError::Decode(e.to_string()))
}

/// The intact record starting at `at` in `bytes`: its header and where it ends.
pub fn intact_at(bytes: &[u8], at: usize) -> Option<(Header, usize)> {
    let head: &[u8; HEADER_BYTES] = bytes.get(at..at + HEADER_BYTES)?.try_into().ok()?;
    let header = Header::parse(head).ok()?;
    let end = at + HEADER_BYTES + header.payload_len as usize;
    let payload = bytes.get(at + HEADER_BYTES..end)?;
    verify(&header, payload).ok()?;
    Some((header, end))
}

/// True when `bytes` (the start of a segment) hold a record of the first WAL format
/// (`[len: u32][crc32c(payload): u32][payload]`, no header checksum), which this version does
/// not read: such a segment must be refused, never taken for a torn tail and cut.
pub fn is_first_format(bytes: &[u8]) -> bool {
    let (Some(len), Some(crc)) = (bytes.get(0..4), bytes.get(4..8)) else {
        return false;
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    len >= INDEX_BYTES
        && bytes
            .get(8..8 + len)
            .is_some_and(|p| crc32c::crc32c(p) == crc)
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::LogId;

    use super::*;

    fn record(index: u64, synced_before: u64) -> Vec<u8> {
        let entry = Entry::new_blank(LogId::new(
            LeaderId {
                term: 3,
                node_id: arka_cluster::NodeId(1),
            },
            index,
        ));
        let mut buf = Vec::new();
        encode_into(&entry, synced_before, &mut buf).expect("encode");
        buf
    }

    fn header_of(buf: &[u8]) -> Result<Header, RecordError> {
        let head: &[u8; HEADER_BYTES] = buf[..HEADER_BYTES].try_into().expect("header bytes");
        Header::parse(head)
    }

    #[test]
    fn record_round_trips_and_detects_a_flipped_payload_byte() {
        let buf = record(42, 77);
        let header = header_of(&buf).expect("header");
        assert_eq!(header.synced_before, 77);
        let payload = &buf[HEADER_BYTES..];
        assert_eq!(verify(&header, payload), Ok(42));
        assert_eq!(decode(payload).expect("decode").log_id.index, 42);

        let mut damaged = payload.to_vec();
        damaged[9] ^= 0x40;
        assert!(verify(&header, &damaged)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
    }

    #[test]
    fn every_flipped_header_bit_is_detected() {
        let buf = record(7, 0);
        for bit in 0..HEADER_BYTES * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(header_of(&damaged).is_err(), "bit {bit} of the header");
        }
    }

    #[test]
    fn intact_at_finds_records_and_only_them() {
        let mut bytes = record(1, 0);
        let second = bytes.len();
        bytes.extend(record(2, 5));
        assert_eq!(intact_at(&bytes, 0).map(|(_, end)| end), Some(second));
        assert_eq!(
            intact_at(&bytes, second).map(|(h, _)| h.synced_before),
            Some(5)
        );
        assert!((1..second).all(|at| intact_at(&bytes, at).is_none()));
    }
}

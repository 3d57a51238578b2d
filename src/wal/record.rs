//! One WAL record: `[len: u32 LE][crc32c(payload): u32 LE][payload]`, where the payload is
//! `[index: u64 LE][postcard-encoded Raft entry]`.

use arka_cluster::codec;
use arka_cluster::types::Entry;

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 8;
/// Largest payload a record may have; a length above it is damage, not data.
pub const PAYLOAD_BYTES_MAX: usize = codec::MESSAGE_BYTES_MAX;

/// Appends the framed record of `entry` to `out`.
pub fn encode_into(entry: &Entry, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    postcard::to_io(entry, &mut *out).map_err(|e| e.to_string())?;
    let payload_len = out.len() - start - HEADER_BYTES;
    if payload_len > PAYLOAD_BYTES_MAX {
        out.truncate(start);
        return Err(format!(
            "record of {payload_len} bytes is over the limit of {PAYLOAD_BYTES_MAX}"
        ));
    }
    let crc = crc32c::crc32c(&out[start + HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The header of a record: payload length and checksum.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub payload_len: u32,
    pub crc: u32,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_BYTES]) -> Result<Self, String> {
        let payload_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if (payload_len as usize) < 8 || payload_len as usize > PAYLOAD_BYTES_MAX {
            return Err(format!("implausible record length {payload_len}"));
        }
        Ok(Self { payload_len, crc })
    }
}

/// Checks the payload against its header and returns the entry index it holds.
pub fn verify(header: &Header, payload: &[u8]) -> Result<u64, String> {
    let crc = crc32c::crc32c(payload);
    if crc != header.crc {
        return Err(format!(
            "checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            header.crc
        ));
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&payload[..8]);
    Ok(u64::from_le_bytes(index))
}

/// Decodes a verified payload into its entry.
pub fn decode(payload: &[u8]) -> Result<Entry, String> {
    codec::decode::<Entry>("wal entry", &payload[8..]).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::LogId;

    use super::*;

    #[test]
    fn record_round_trips_and_detects_a_flipped_byte() {
        let entry = Entry::new_blank(LogId::new(
            LeaderId {
                term: 3,
                node_id: 1,
            },
            42,
        ));
        let mut buf = Vec::new();
        encode_into(&entry, &mut buf).expect("encode");
        let mut head = [0u8; HEADER_BYTES];
        head.copy_from_slice(&buf[..HEADER_BYTES]);
        let header = Header::parse(&head).expect("header");
        let payload = &buf[HEADER_BYTES..];
        assert_eq!(verify(&header, payload), Ok(42));
        assert_eq!(decode(payload).expect("decode").log_id, entry.log_id);

        let mut damaged = payload.to_vec();
        damaged[9] ^= 0x40;
        assert!(verify(&header, &damaged).unwrap_err().contains("checksum"));
    }
}

//! Binary encoding of Raft messages and log entries: postcard with a version tag and a bound
//! on size, so that a malformed or hostile message is an error, never an allocation bomb.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encoding version carried in every RPC envelope.
pub const WIRE_VERSION: u32 = 1;

/// Upper bound of one encoded Raft message (an AppendEntries batch or a snapshot).
pub const MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: postcard::Error,
    },
    #[error("cannot decode {what} ({len} bytes): {source}")]
    Decode {
        what: &'static str,
        len: usize,
        source: postcard::Error,
    },
    #[error("{what} is {len} bytes, over the limit of {MESSAGE_BYTES_MAX}")]
    TooLarge { what: &'static str, len: usize },
    #[error("unknown wire version {0} (this node speaks {WIRE_VERSION})")]
    Version(u32),
}

/// The encoded size of `value`, measured without writing it.
pub fn encoded_len<T: Serialize>(what: &'static str, value: &T) -> Result<usize, CodecError> {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_err(|source| CodecError::Encode { what, source })
}

pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    // Measured first, so that a message of many megabytes is written once into a buffer of
    // its size, not copied through every doubling of a growing one.
    let len = encoded_len(what, value)?;
    if len > MESSAGE_BYTES_MAX {
        return Err(CodecError::TooLarge { what, len });
    }
    postcard::to_extend(value, Vec::with_capacity(len))
        .map_err(|source| CodecError::Encode { what, source })
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(CodecError::TooLarge {
            what,
            len: bytes.len(),
        });
    }
    postcard::from_bytes(bytes).map_err(|source| CodecError::Decode {
        what,
        len: bytes.len(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::{Command, ProducerSeq, WriteCommand};
    use crate::types::{NodeId, RequestId};

    #[test]
    fn command_round_trips() {
        let cmd = Command::Write(WriteCommand {
            table: "t".into(),
            request: RequestId {
                origin: NodeId(1),
                seq: 7,
            },
            producer: Some(ProducerSeq {
                producer_id: "p".into(),
                seq: 3,
            }),
            rows: 2,
            ipc: Bytes::from_static(b"abc"),
        });
        let bytes = encode("command", &cmd).expect("encode");
        let back: Command = decode("command", &bytes).expect("decode");
        assert_eq!(cmd, back);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let cmd = Command::DropTable {
            name: "t".into(),
            request: RequestId {
                origin: NodeId(1),
                seq: 1,
            },
        };
        let bytes = encode("command", &cmd).expect("encode");
        let err = decode::<Command>("command", &bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("cannot decode command"), "{err}");
    }
}

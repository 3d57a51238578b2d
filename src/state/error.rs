//! Errors of the state machine.

use std::io;
use std::path::PathBuf;

pub type StateResult<T, E = StateError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state machine i/o on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("state machine value {key}: cannot decode: {reason}")]
    Decode { key: String, reason: String },
    #[error("cannot encode state machine value: {0}")]
    Encode(String),
    #[error("cannot start the snapshot thread: {0}")]
    Thread(io::Error),
}

impl From<StateError> for io::Error {
    fn from(e: StateError) -> Self {
        io::Error::other(e.to_string())
    }
}

pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StateResult<T> {
    postcard::from_bytes(bytes).map_err(|e| StateError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

pub fn encode<T: serde::Serialize>(value: &T) -> StateResult<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| StateError::Encode(e.to_string()))
}

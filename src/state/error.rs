//! Errors of the state machine.

use std::io;

pub type StateResult<T, E = StateError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state machine storage (sled): {0}")]
    Sled(#[from] sled::Error),
    #[error("state machine key {key}: cannot decode: {reason}")]
    Decode { key: String, reason: String },
    #[error("cannot encode state machine value: {0}")]
    Encode(String),
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

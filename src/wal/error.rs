//! Errors of the WAL.

use std::io;
use std::path::PathBuf;

pub type WalResult<T, E = WalError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal i/o on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A write found the disk full (ENOSPC, EDQUOT). Nothing reached the page cache that a
    /// later sync could lose, so the write can be made again once there is room.
    #[error("wal write to {path}: the disk is full: {source}")]
    DiskFull { path: PathBuf, source: io::Error },
    /// A record that is not at the tail of the last segment is damaged: the log cannot be
    /// trusted past it, so the node refuses to start.
    #[error("corrupt wal record in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The log ends below what it had made durable: the disk lost acknowledged entries
    /// (damaged, truncated, or restored from an older copy). A node that went on would count
    /// toward quorums on entries it no longer holds, so it refuses to start.
    #[error("the wal in {dir} ends at entry {end}, but entries up to {durable} had been made durable here: the disk lost the end of the log. Replace this node: remove it from the membership, wipe its data directory, start it again and add it back")]
    LostTail {
        dir: PathBuf,
        end: u64,
        durable: u64,
    },
    #[error("wal metadata (sled): {0}")]
    Meta(#[from] sled::Error),
    #[error("wal metadata key {key}: {reason}")]
    MetaDecode { key: &'static str, reason: String },
    #[error("cannot encode entry {index}: {reason}")]
    Encode { index: u64, reason: String },
    #[error("append of entry {got} would leave a hole after {last}")]
    Hole { last: u64, got: u64 },
    #[error("wal is shut down")]
    Shutdown,
    /// The flusher task panicked (a bug): what it had not made durable may be lost.
    #[error("the wal flusher task failed: {0}")]
    FlusherFailed(String),
}

impl WalError {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<WalError> for io::Error {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Io { source, path } | WalError::DiskFull { source, path } => {
                io::Error::new(source.kind(), format!("{}: {source}", path.display()))
            }
            other => io::Error::other(other.to_string()),
        }
    }
}

//! The errors of the node's public surface and their one mapping to gRPC status codes.

use tonic::metadata::MetadataValue;
use tonic::Status;

use crate::quote::bounded_message;
use crate::wire::LEADER_TRAILER;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad ticket, bad JSON, bad table name, schema mismatch, bad metadata.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown table or action.
    #[error("{0}")]
    NotFound(String),
    /// A batch over the size limit, or the node's memory bound.
    #[error("{0}")]
    ResourceExhausted(String),
    /// This node is not the leader; `leader` is its Flight location when known.
    #[error("not leader; leader is {}", leader.as_deref().unwrap_or("unknown (election in progress): retry"))]
    NotLeader { leader: Option<String> },
    /// No quorum, shutting down, or another transient condition.
    #[error("{0}")]
    Unavailable(String),
    /// A write acknowledged below REPLICATED was lost when the leader changed.
    #[error("write at lsn {first_lost_lsn} was lost before replication ({reason}); retry it with the same producer_id and seq")]
    Aborted { first_lost_lsn: u64, reason: String },
    /// `min_lsn` was not reached in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The request is valid but the state does not allow it: a write of a fenced producer
    /// session.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The node's configuration does not allow this request.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("node is shutting down")]
    Shutdown,
    /// This node is shutting down and takes no new call; `leader` is the Flight location of
    /// another node that leads, when one does.
    #[error("node {node_id} is shutting down; {}", leader.as_deref().map_or_else(|| "retry on another node".to_string(), |l| format!("leader is {l}")))]
    Stopping {
        node_id: u64,
        leader: Option<String>,
    },
}

impl Error {
    /// True when the same request may succeed if sent again (possibly elsewhere).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::Unavailable(_)
                | Error::Aborted { .. }
                | Error::Shutdown
                | Error::Stopping { .. }
                | Error::DeadlineExceeded(_)
        )
    }

    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{context}: {e}"))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = bounded_message(e.to_string());
        match e {
            Error::InvalidArgument(_) => Status::invalid_argument(message),
            Error::NotFound(_) => Status::not_found(message),
            Error::ResourceExhausted(_) => Status::resource_exhausted(message),
            Error::NotLeader { leader } | Error::Stopping { leader, .. } => {
                let mut status = Status::unavailable(message);
                let value = leader.unwrap_or_default();
                if let Ok(v) = MetadataValue::try_from(value.as_str()) {
                    status.metadata_mut().insert(LEADER_TRAILER, v);
                }
                status
            }
            Error::Unavailable(_) | Error::Shutdown => Status::unavailable(message),
            Error::Aborted { .. } => Status::aborted(message),
            Error::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::Internal(_) => Status::internal(message),
        }
    }
}

impl From<crate::table::TableError> for Error {
    fn from(e: crate::table::TableError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<crate::state::StateError> for Error {
    fn from(e: crate::state::StateError) -> Self {
        Error::internal("state machine", e)
    }
}

impl From<crate::wal::WalError> for Error {
    fn from(e: crate::wal::WalError) -> Self {
        Error::internal("wal", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::{quoted, QUOTED_BYTES_MAX, STATUS_MESSAGE_BYTES_MAX};

    #[test]
    fn errors_quote_a_short_prefix_and_stay_bounded() {
        assert_eq!(quoted("events"), "\"events\"");
        let long = "é".repeat(50_000);
        let q = quoted(&long);
        assert!(
            q.len() < 2 * QUOTED_BYTES_MAX && q.ends_with("(100000 bytes)"),
            "{q}"
        );
        let status = Status::from(Error::InvalidArgument("x".repeat(100_000)));
        assert!(status.message().len() <= STATUS_MESSAGE_BYTES_MAX + 64);
    }
}

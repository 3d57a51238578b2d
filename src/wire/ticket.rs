//! DoGet tickets: JSON `{"table": T, "from_lsn": N?, "to_lsn": N?, "follow": bool?,
//! "min_lsn": N?, "with_lsn": bool?}`, or a bare table name for the whole table.

use serde::{Deserialize, Serialize};

/// A read of a table, as a DoGet ticket carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadTicket {
    pub table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_lsn: Option<bool>,
}

/// The ticket of the node status (GetFlightInfo `["status"]`).
pub const STATUS_TICKET: &[u8] = br#"{"status": true}"#;

/// Largest ticket a node parses; a read ticket is a few hundred bytes.
pub const TICKET_BYTES_MAX: usize = 64 * 1024;

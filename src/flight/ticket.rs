//! Parsing DoGet tickets (their form is in [`crate::wire`]): JSON `{"table": T, "from_lsn": N?, "to_lsn": N?, "follow": bool?,
//! "min_lsn": N?, "with_lsn": bool?}`, or a bare table name for the whole table. A ticket that
//! starts with `{` must be valid JSON.

use crate::error::{Error, Result};
use crate::table::TableName;
use crate::wire::{ReadTicket, TICKET_BYTES_MAX};

/// What a ticket asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticket {
    Read {
        table: TableName,
        ticket: ReadTicket,
    },
    /// The node status as a one-row batch (the ticket of GetFlightInfo `["status"]`).
    Status,
}

pub fn parse(bytes: &[u8]) -> Result<Ticket> {
    if bytes.len() > TICKET_BYTES_MAX {
        return Err(Error::ResourceExhausted(format!(
            "a ticket of {} bytes is over the limit of {TICKET_BYTES_MAX}",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::InvalidArgument("bad ticket: not UTF-8".into()))?
        .trim();
    if !text.starts_with('{') {
        let table = TableName::parse(text)
            .map_err(|e| Error::InvalidArgument(format!("bad ticket: {e}")))?;
        let ticket = ReadTicket {
            table: text.to_string(),
            ..Default::default()
        };
        return Ok(Ticket::Read { table, ticket });
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Error::InvalidArgument(format!(
            "bad ticket: invalid JSON ({e}); expected {{\"table\": T, \"from_lsn\"?, \"to_lsn\"?, \"follow\"?, \"min_lsn\"?, \"with_lsn\"?}} or a bare table name"
        ))
    })?;
    if value.get("status").and_then(|v| v.as_bool()) == Some(true) {
        return Ok(Ticket::Status);
    }
    let ticket: ReadTicket = serde_json::from_value(value)
        .map_err(|e| Error::InvalidArgument(format!("bad ticket: {e}")))?;
    let table = TableName::parse(&ticket.table)
        .map_err(|e| Error::InvalidArgument(format!("bad ticket: {e}")))?;
    if let (Some(from), Some(to)) = (ticket.from_lsn, ticket.to_lsn) {
        if from > to {
            return Err(Error::InvalidArgument(format!(
                "bad ticket: from_lsn {from} is above to_lsn {to}"
            )));
        }
    }
    Ok(Ticket::Read { table, ticket })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_bare_and_status_tickets() {
        let Ticket::Read { ticket, .. } =
            parse(br#"{"table": "t", "from_lsn": 3, "follow": true}"#).unwrap()
        else {
            panic!("read ticket")
        };
        assert_eq!((ticket.from_lsn, ticket.follow), (Some(3), Some(true)));
        assert!(matches!(parse(b"events").unwrap(), Ticket::Read { .. }));
        assert_eq!(parse(crate::wire::STATUS_TICKET).unwrap(), Ticket::Status);
    }

    #[test]
    fn rejects_bad_tickets_with_a_reason() {
        for (bad, says) in [
            (&b"{not json"[..], "invalid JSON"),
            (b"Bad-Name", "invalid table name"),
            (br#"{"table": "t", "nope": 1}"#, "unknown field"),
            (br#"{"table": "t", "from_lsn": 5, "to_lsn": 2}"#, "above"),
            (b"\xff", "UTF-8"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("bad ticket") && err.contains(says), "{err}");
        }
    }
}

//! The idempotency metadata a client may attach to a batch:
//! `{"producer_id": str, "seq": int, "epoch"?: int}`.

use arka_cluster::ProducerSeq;

use crate::error::{Error, Result};

/// Longest producer id accepted.
pub const PRODUCER_ID_BYTES_MAX: usize = 256;

/// A batch's producer metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerMeta {
    pub producer: Option<ProducerSeq>,
    /// The producer session the write belongs to (from `register_producer`).
    pub epoch: Option<u64>,
}

fn bad(got: &[u8], why: &str) -> Error {
    let shown = String::from_utf8_lossy(&got[..got.len().min(200)]).into_owned();
    Error::InvalidArgument(format!(
        "bad producer metadata ({why}): expected app_metadata JSON {{\"producer_id\": string, \"seq\": integer, \"epoch\"?: integer}}, got {shown:?}"
    ))
}

/// Parses a batch's app_metadata. Empty metadata means a write without idempotency.
pub fn parse_producer(app_metadata: &[u8]) -> Result<ProducerMeta> {
    if app_metadata.iter().all(u8::is_ascii_whitespace) {
        return Ok(ProducerMeta::default());
    }
    let value: serde_json::Value =
        serde_json::from_slice(app_metadata).map_err(|e| bad(app_metadata, &e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad(app_metadata, "not a JSON object"))?;
    let producer_id = match object.get("producer_id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= PRODUCER_ID_BYTES_MAX => {
            s.clone()
        }
        Some(_) => {
            return Err(bad(
                app_metadata,
                "producer_id must be a non-empty string of at most 256 bytes",
            ))
        }
        None => return Err(bad(app_metadata, "producer_id is missing")),
    };
    let seq = object
        .get("seq")
        .ok_or_else(|| bad(app_metadata, "seq is missing"))?
        .as_i64()
        .ok_or_else(|| bad(app_metadata, "seq must be an integer"))?;
    let epoch = match object.get("epoch") {
        None | Some(serde_json::Value::Null) => None,
        Some(e) => Some(e.as_u64().ok_or_else(|| {
            bad(
                app_metadata,
                "epoch must be the non-negative integer register_producer returned",
            )
        })?),
    };
    Ok(ProducerMeta {
        producer: Some(ProducerSeq { producer_id, seq }),
        epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_bad_metadata() {
        assert_eq!(parse_producer(b"").unwrap(), ProducerMeta::default());
        let meta = parse_producer(br#"{"producer_id": "a", "seq": 5}"#).unwrap();
        let p = meta.producer.unwrap();
        assert_eq!((p.producer_id.as_str(), p.seq, meta.epoch), ("a", 5, None));
        let meta = parse_producer(br#"{"producer_id": "a", "seq": 5, "epoch": 9}"#).unwrap();
        assert_eq!(meta.epoch, Some(9));
        for bad in [
            &br#"{"producer_id": 5, "seq": 1}"#[..],
            br#"{"seq": 1}"#,
            br#"{"producer_id": "a"}"#,
            br#"{"producer_id": "a", "seq": "x"}"#,
            br#"{"producer_id": "a", "seq": 1, "epoch": -1}"#,
            br#"{"producer_id": "a", "seq": 1, "epoch": "x"}"#,
            b"[1]",
            b"{nope",
        ] {
            let err = parse_producer(bad).unwrap_err().to_string();
            assert!(err.contains("bad producer metadata"), "{err}");
        }
    }
}

//! The history of a run: every operation's invocation and completion, in the order the
//! harness saw them, as JSON lines (one [`Op`] per line). Like Jepsen's, a client operation
//! is an `invoke` followed by one `ok` (it happened), `fail` (it certainly did not) or `info`
//! (it may or may not have: a timeout, a broken stream) of the same process; the nemesis
//! records when each fault starts and stops.

use std::io::{BufRead, Write};

use arka::durability::Level;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    /// Append `value` to `table`; ok carries the acked `lsn`, `level` and `node`.
    Send,
    /// Read `table` during the run: a range with `min_lsn` from `node`, or a stretch of a
    /// `follow` tail (no `node`: the tail moves between nodes); ok carries `entries`, `from`
    /// and `upto`.
    Read,
    /// The read of `table` from `node` after healing, waiting (bounded) for the highest
    /// acked LSN; ok carries `entries` and `upto`.
    FinalRead,
    /// The Iceberg table `table` as a reader of the catalog sees it; `upto` is the snapshot's
    /// `arka.lsn`.
    IcebergRead,
    /// `flush` after healing, asked of `node`; ok carries `lsn`, the `flushed_lsn` it
    /// answered: every write up to there is in the Iceberg tables.
    Flush,
    /// `get_durability_status` of the write at `lsn`, asked of `node`; ok carries `level`
    /// (absent: not reached there).
    Level,
    /// The nemesis starts `fault` (process [`NEMESIS`]).
    StartFault,
    /// The nemesis ends `fault`.
    StopFault,
}

/// The process number of the nemesis.
pub const NEMESIS: u64 = u64::MAX;

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history.
    pub index: u64,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: Function,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The unique value a send appends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// The node that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// What a read returned, as `(lsn, value)` in the order it came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<(u64, i64)>>,
    /// The highest LSN a read covers: every write of the table at or below it (and at or
    /// above `from`) that the node holds is in `entries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<u64>,
    /// The lowest LSN a read covers (absent: the start of the table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    /// An operation with only its identity set; the builder methods fill in the rest.
    pub fn new(process: u64, kind: OpType, f: Function) -> Self {
        Op {
            index: 0,
            time_ns: 0,
            process,
            kind,
            f,
            table: None,
            value: None,
            lsn: None,
            level: None,
            node: None,
            entries: None,
            upto: None,
            from: None,
            fault: None,
            error: None,
        }
    }

    pub fn is_client(&self) -> bool {
        self.process != NEMESIS
    }
}

/// Writes the history as JSON lines.
pub fn write_jsonl(ops: &[Op], out: &mut impl Write) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut *out, op)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Reads a history written by [`write_jsonl`]; a line that does not parse is an error naming
/// its number.
pub fn read_jsonl(input: impl BufRead) -> anyhow::Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (no, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("history line {}: {e}", no + 1))?;
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reads_back_as_written() {
        let mut send = Op::new(3, OpType::Ok, Function::Send);
        send.table = Some("t".into());
        send.value = Some(7);
        send.lsn = Some(42);
        send.level = Some(Level::Replicated);
        let mut read = Op::new(1, OpType::Ok, Function::FinalRead);
        read.entries = Some(vec![(42, 7)]);
        read.upto = Some(50);
        let mut bytes = Vec::new();
        write_jsonl(&[send.clone(), read.clone()], &mut bytes).expect("write");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.contains(r#""type":"ok""#), "{text}");
        assert!(text.contains(r#""level":"REPLICATED""#), "{text}");
        let ops = read_jsonl(bytes.as_slice()).expect("read");
        assert_eq!(ops, vec![send, read]);
    }

    #[test]
    fn a_damaged_line_is_named() {
        let error = read_jsonl("{}\n".as_bytes()).expect_err("not an op");
        assert!(error.to_string().contains("history line 1"), "{error}");
    }
}

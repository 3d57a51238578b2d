//! What a history says, gathered once for the checks: each send with its outcome, each read,
//! each level a node reported.

use std::collections::HashMap;

use arka::durability::Level;

use super::Counts;
use crate::history::{Function, Op, OpType};

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Acked {
        lsn: u64,
        level: Level,
        node: Option<u64>,
    },
    /// It certainly did not happen.
    Failed,
    /// It may or may not have happened (`info`, or no completion at all).
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub process: u64,
    /// The history index of its invocation: a process's sends are ordered by it.
    pub invoked: u64,
    pub table: String,
    pub value: i64,
    pub outcome: Outcome,
}

impl Sent {
    /// The LSN it was acked at, when it was acked at REPLICATED or above: such a write must
    /// never be lost.
    pub fn durable_lsn(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Acked { lsn, level, .. } if level >= Level::Replicated => Some(lsn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Read<'a> {
    pub index: u64,
    pub node: Option<u64>,
    pub table: &'a str,
    pub entries: &'a [(u64, i64)],
    pub upto: Option<u64>,
    pub from: u64,
    pub is_final: bool,
}

impl Read<'_> {
    /// Whether every write of the table at `lsn` that the node holds is in this read.
    pub fn covers(&self, lsn: u64) -> bool {
        self.from <= lsn && self.upto.is_some_and(|upto| upto >= lsn)
    }

    /// Where the read came from, for messages.
    pub fn source(&self) -> String {
        let kind = if self.is_final { "final read" } else { "read" };
        match self.node {
            Some(node) => format!("{kind} {} of {} on node {node}", self.index, self.table),
            None => format!("{kind} {} of {}", self.index, self.table),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LevelSeen {
    pub index: u64,
    pub node: u64,
    pub lsn: u64,
    pub level: Option<Level>,
}

#[derive(Debug, Default)]
pub struct Facts<'a> {
    pub sends: Vec<Sent>,
    /// Ok reads of the log (during the run and final), in history order.
    pub reads: Vec<Read<'a>>,
    pub iceberg: Vec<Read<'a>>,
    /// The highest `flushed_lsn` a `flush` answered: the lake holds every write up to it.
    pub flushed: Option<u64>,
    /// Levels nodes reported: from acks (the node that acked) and from level checks.
    pub levels: Vec<LevelSeen>,
    level_checks: usize,
}

impl<'a> Facts<'a> {
    pub fn gather(ops: &'a [Op]) -> Self {
        let mut facts = Facts::default();
        let mut pending: HashMap<(u64, i64), usize> = HashMap::new();
        for op in ops.iter().filter(|op| op.is_client()) {
            match (op.f, op.kind) {
                (Function::Send, OpType::Invoke) => {
                    let (Some(table), Some(value)) = (&op.table, op.value) else {
                        continue;
                    };
                    pending.insert((op.process, value), facts.sends.len());
                    facts.sends.push(Sent {
                        process: op.process,
                        invoked: op.index,
                        table: table.clone(),
                        value,
                        outcome: Outcome::Unknown,
                    });
                }
                (Function::Send, kind) => {
                    let Some(at) = op.value.and_then(|v| pending.remove(&(op.process, v))) else {
                        continue;
                    };
                    facts.sends[at].outcome = outcome(op, kind);
                    if let Outcome::Acked {
                        lsn,
                        level,
                        node: Some(node),
                    } = facts.sends[at].outcome
                    {
                        let level = Some(level);
                        (facts.levels).push(LevelSeen {
                            index: op.index,
                            node,
                            lsn,
                            level,
                        });
                    }
                }
                (Function::Read | Function::FinalRead | Function::IcebergRead, OpType::Ok) => {
                    let read = Read {
                        index: op.index,
                        node: op.node,
                        table: op.table.as_deref().unwrap_or_default(),
                        entries: op.entries.as_deref().unwrap_or_default(),
                        upto: op.upto,
                        from: op.from.unwrap_or(0),
                        is_final: op.f == Function::FinalRead,
                    };
                    match op.f {
                        Function::IcebergRead => facts.iceberg.push(read),
                        _ => facts.reads.push(read),
                    }
                }
                (Function::Flush, OpType::Ok) => {
                    facts.flushed = facts.flushed.max(op.lsn);
                }
                (Function::Level, OpType::Ok) => {
                    facts.level_checks += 1;
                    if let (Some(node), Some(lsn)) = (op.node, op.lsn) {
                        let seen = LevelSeen {
                            index: op.index,
                            node,
                            lsn,
                            level: op.level,
                        };
                        facts.levels.push(seen);
                    }
                }
                _ => {}
            }
        }
        facts
    }

    pub fn final_reads(&self) -> impl Iterator<Item = &Read<'a>> {
        self.reads.iter().filter(|r| r.is_final)
    }

    pub fn counts(&self) -> Counts {
        let count = |f: fn(&Outcome) -> bool| self.sends.iter().filter(|s| f(&s.outcome)).count();
        Counts {
            sends: self.sends.len(),
            sends_ok: count(|o| matches!(o, Outcome::Acked { .. })),
            sends_failed: count(|o| matches!(o, Outcome::Failed)),
            sends_indeterminate: count(|o| matches!(o, Outcome::Unknown)),
            reads_ok: self.reads.iter().filter(|r| !r.is_final).count(),
            final_reads: self.final_reads().count(),
            iceberg_reads: self.iceberg.len(),
            flushed_lsn: self.flushed,
            level_checks: self.level_checks,
        }
    }
}

fn outcome(op: &Op, kind: OpType) -> Outcome {
    match (kind, op.lsn, op.level) {
        (OpType::Ok, Some(lsn), Some(level)) => Outcome::Acked {
            lsn,
            level,
            node: op.node,
        },
        (OpType::Fail, _, _) => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}

//! The checker: reads a history and names every anomaly it shows, by class, as Jepsen's
//! Kafka queue checker does. Safety (what was acknowledged and what can be read) is judged
//! apart from availability (how many operations failed while each fault was on).

mod availability;
mod facts;
#[cfg(test)]
mod fixtures;
mod iceberg;
mod levels;
mod log;
mod loss;

use std::collections::BTreeMap;

use serde::Serialize;

pub use availability::Window;
use facts::Facts;

use crate::history::Op;

/// The classes of safety anomaly, each with its own check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Acked at REPLICATED or above (or read once), and missing from a later read of a node
    /// that covers its LSN.
    Lost,
    /// One value at two LSNs.
    Duplicate,
    /// Two values at one LSN, on one node or across nodes (or a read disagreeing with the
    /// LSN a write was acked at).
    InconsistentLsn,
    /// A read's LSNs out of order, or one producer's acked LSNs out of its send order.
    NonMonotonic,
    /// Acked at REPLICATED or above, and in no read, none of which reached its LSN within
    /// the bound after healing.
    Unseen,
    /// A node reported a lower level for a write than it reported before.
    LevelRegression,
    /// The Iceberg table up to its COMMITTED LSN differs from the log.
    IcebergMismatch,
    /// Two nodes' final reads differ where both cover the LSNs.
    Divergence,
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::Lost,
        Class::Duplicate,
        Class::InconsistentLsn,
        Class::NonMonotonic,
        Class::Unseen,
        Class::LevelRegression,
        Class::IcebergMismatch,
        Class::Divergence,
    ];
}

/// What the checker found.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// No safety anomaly.
    pub valid: bool,
    /// Each class with how many anomalies of it were found and the first few, described.
    pub anomalies: BTreeMap<Class, Found>,
    pub counts: Counts,
    /// Client operations per fault window, and outside every fault.
    pub availability: Vec<Window>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub sends: usize,
    pub sends_ok: usize,
    pub sends_failed: usize,
    pub sends_indeterminate: usize,
    pub reads_ok: usize,
    pub final_reads: usize,
    pub iceberg_reads: usize,
    /// The `flushed_lsn` the flush after healing answered (absent: it did not answer).
    pub flushed_lsn: Option<u64>,
    pub level_checks: usize,
}

/// The anomalies of one class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Found {
    pub count: usize,
    /// The first [`EXAMPLES_MAX`], described.
    pub examples: Vec<String>,
}

/// Anomalies described per class; the rest are counted only, so a run gone badly wrong
/// still gives a readable verdict.
pub const EXAMPLES_MAX: usize = 20;

/// Where each check records what it finds.
#[derive(Debug, Default)]
pub(crate) struct Findings(BTreeMap<Class, Found>);

impl Findings {
    pub fn add(&mut self, class: Class, detail: String) {
        let found = self.0.entry(class).or_default();
        found.count += 1;
        if found.examples.len() < EXAMPLES_MAX {
            found.examples.push(detail);
        }
    }
}

/// Checks a history.
pub fn check(ops: &[Op]) -> Verdict {
    let facts = Facts::gather(ops);
    let mut findings = Findings::default();
    log::check(&facts, &mut findings);
    loss::check(&facts, &mut findings);
    levels::check(&facts, &mut findings);
    iceberg::check(&facts, &mut findings);
    let mut anomalies = findings.0;
    for class in Class::ALL {
        anomalies.entry(class).or_default();
    }
    Verdict {
        valid: anomalies.values().all(|found| found.count == 0),
        anomalies,
        counts: facts.counts(),
        availability: availability::windows(ops),
    }
}

impl Verdict {
    /// How many anomalies of `class` were found.
    pub fn count(&self, class: Class) -> usize {
        self.anomalies.get(&class).map_or(0, |found| found.count)
    }
}

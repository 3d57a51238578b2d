//! The log's shape: each value at one LSN, each LSN holding one value, reads in LSN order,
//! and each producer's writes acked in the order it sent them.

use std::collections::{BTreeMap, BTreeSet};

use super::facts::{Facts, Outcome, Sent};
use super::{Class, Findings};

/// A value of a table.
type Value<'a> = (&'a str, i64);

/// Where each value was seen, and what each LSN was seen to hold (with where, for messages).
#[derive(Default)]
struct Observed<'a> {
    at_lsn: BTreeMap<u64, BTreeMap<Value<'a>, String>>,
    lsns_of: BTreeMap<Value<'a>, BTreeSet<u64>>,
}

impl<'a> Observed<'a> {
    fn observe(&mut self, lsn: u64, value: Value<'a>, source: impl FnOnce() -> String) {
        (self.at_lsn.entry(lsn).or_default())
            .entry(value)
            .or_insert_with(source);
        self.lsns_of.entry(value).or_default().insert(lsn);
    }
}

pub fn check(facts: &Facts, findings: &mut Findings) {
    let mut observed = Observed::default();
    for sent in &facts.sends {
        let Some(lsn) = acked_lsn(sent) else { continue };
        let source = || format!("the ack of process {}", sent.process);
        observed.observe(lsn, (sent.table.as_str(), sent.value), source);
    }
    for read in &facts.reads {
        let mut previous: Option<u64> = None;
        for &(lsn, value) in read.entries {
            observed.observe(lsn, (read.table, value), || read.source());
            if let Some(before) = previous.filter(|p| *p >= lsn) {
                let detail = format!("{} returned LSN {lsn} after LSN {before}", read.source());
                findings.add(Class::NonMonotonic, detail);
            }
            previous = Some(lsn);
        }
    }
    for ((table, value), lsns) in &observed.lsns_of {
        if lsns.len() > 1 {
            let detail = format!("value {value} of {table} is at LSNs {lsns:?}");
            findings.add(Class::Duplicate, detail);
        }
    }
    for (lsn, values) in &observed.at_lsn {
        if values.len() > 1 {
            let seen: Vec<String> = (values.iter())
                .map(|((table, value), source)| format!("{value} of {table} ({source})"))
                .collect();
            let detail = format!("LSN {lsn} holds {}", seen.join(", "));
            findings.add(Class::InconsistentLsn, detail);
        }
    }
    check_producers(facts, findings);
}

/// The LSN of any ack, at whatever level.
fn acked_lsn(sent: &Sent) -> Option<u64> {
    match sent.outcome {
        Outcome::Acked { lsn, .. } => Some(lsn),
        _ => None,
    }
}

/// One process's acked LSNs rise in the order it sent the writes (a stream is ordered).
fn check_producers(facts: &Facts, findings: &mut Findings) {
    let mut by_process: BTreeMap<u64, Vec<&Sent>> = BTreeMap::new();
    for sent in &facts.sends {
        by_process.entry(sent.process).or_default().push(sent);
    }
    for (process, mut sends) in by_process {
        sends.sort_by_key(|s| s.invoked);
        let mut previous: Option<(u64, i64)> = None;
        for sent in sends {
            let Some(lsn) = acked_lsn(sent) else { continue };
            if let Some((before, value)) = previous.filter(|(before, _)| *before >= lsn) {
                findings.add(
                    Class::NonMonotonic,
                    format!(
                        "process {process} sent {value} (acked at LSN {before}) before {} (acked at LSN {lsn})",
                        sent.value
                    ),
                );
            }
            previous = Some((lsn, sent.value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::History;
    use super::super::{check, Class};

    #[test]
    fn a_value_at_two_lsns_is_a_duplicate() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 5);
        h.final_read(1, "t", &[(5, 10), (6, 10)], 6);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::Duplicate), 1, "{verdict:#?}");
        assert!(!verdict.valid);
    }

    #[test]
    fn two_values_at_one_lsn_across_nodes_is_inconsistent() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 5);
        h.final_read(1, "t", &[(5, 10)], 5);
        h.final_read(2, "t", &[(5, 11)], 5);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::InconsistentLsn), 1, "{verdict:#?}");
    }

    #[test]
    fn a_read_out_of_lsn_order_and_a_producer_acked_out_of_order_are_non_monotonic() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 7);
        h.send_ok(1, "t", 11, 6);
        h.final_read(1, "t", &[(7, 10), (6, 11)], 7);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::NonMonotonic), 2, "{verdict:#?}");
    }

    #[test]
    fn a_clean_history_is_valid() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 5);
        h.send_ok(1, "t", 11, 6);
        h.send_failed(2, "t", 12);
        h.final_read(1, "t", &[(5, 10), (6, 11)], 6);
        h.final_read(2, "t", &[(5, 10), (6, 11)], 6);
        let verdict = check(&h.ops);
        assert!(verdict.valid, "{verdict:#?}");
        assert_eq!(verdict.counts.sends_ok, 2);
        assert_eq!(verdict.counts.sends_failed, 1);
    }
}

//! What must be readable: every write acked at REPLICATED or above, and every write any read
//! returned (reads return committed data only), in every read whose range holds its LSN (a
//! read during the run, with `min_lsn`, or a final read after healing); and the nodes' final
//! reads agree.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::facts::{Facts, Read};
use super::{Class, Findings};

/// A value of a table.
type Value<'a> = (&'a str, i64);

pub fn check(facts: &Facts, findings: &mut Findings) {
    let known = known_values(facts);
    let reads = &facts.reads;
    let held: Vec<HashSet<i64>> = (reads.iter())
        .map(|r| r.entries.iter().map(|(_, v)| *v).collect())
        .collect();
    for (&(table, value), &(lsn, acked)) in &known {
        let covering: Vec<usize> = (0..reads.len())
            .filter(|&i| reads[i].table == table && reads[i].covers(lsn))
            .collect();
        let missing: Vec<String> = (covering.iter())
            .filter(|&&i| !held[i].contains(&value))
            .map(|&i| reads[i].source())
            .collect();
        if !missing.is_empty() {
            let how = if acked { "acked" } else { "read" };
            let detail = format!(
                "value {value} of {table} ({how} at LSN {lsn}) is missing from {}",
                missing.join(", ")
            );
            findings.add(Class::Lost, detail);
        } else if covering.is_empty() && acked && !seen_anywhere(facts, table, value) {
            let detail = format!(
                "value {value} of {table}, acked at LSN {lsn}, was never read: no read reached it"
            );
            findings.add(Class::Unseen, detail);
        }
    }
    let finals: Vec<&Read> = facts.final_reads().collect();
    check_divergence(&finals, findings);
}

/// Each value that must persist, with its LSN and whether an ack (rather than a read) says so.
fn known_values<'a>(facts: &'a Facts) -> BTreeMap<Value<'a>, (u64, bool)> {
    let mut known = BTreeMap::new();
    for sent in &facts.sends {
        if let Some(lsn) = sent.durable_lsn() {
            known.insert((sent.table.as_str(), sent.value), (lsn, true));
        }
    }
    for read in &facts.reads {
        for &(lsn, value) in read.entries {
            known.entry((read.table, value)).or_insert((lsn, false));
        }
    }
    known
}

fn seen_anywhere(facts: &Facts, table: &str, value: i64) -> bool {
    (facts.reads.iter())
        .filter(|r| r.table == table)
        .any(|r| r.entries.iter().any(|(_, v)| *v == value))
}

/// Two nodes' final reads of a table hold the same writes up to the lower of their reaches.
fn check_divergence(finals: &[&Read], findings: &mut Findings) {
    let mut reported = BTreeSet::new();
    for (i, a) in finals.iter().enumerate() {
        for b in &finals[i + 1..] {
            if a.table != b.table || a.node == b.node {
                continue;
            }
            let (Some(ua), Some(ub)) = (a.upto, b.upto) else {
                continue;
            };
            let upto = ua.min(ub);
            let upto_of = |r: &Read| -> Vec<(u64, i64)> {
                r.entries
                    .iter()
                    .copied()
                    .filter(|(l, _)| *l <= upto)
                    .collect()
            };
            let (ea, eb) = (upto_of(a), upto_of(b));
            if ea == eb || !reported.insert((a.table, a.node, b.node)) {
                continue;
            }
            let first = (ea.iter().zip(&eb))
                .find(|(x, y)| x != y)
                .map(|(x, y)| format!("{x:?} against {y:?}"))
                .unwrap_or_else(|| format!("{} writes against {}", ea.len(), eb.len()));
            let detail = format!(
                "{} and {} differ up to LSN {upto}: first {first}",
                a.source(),
                b.source()
            );
            findings.add(Class::Divergence, detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use arka::durability::Level;

    use super::super::fixtures::History;
    use super::super::{check, Class};

    #[test]
    fn a_replicated_write_missing_from_a_read_that_reaches_it_is_lost() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 5);
        h.send_ok(1, "t", 11, 6);
        h.final_read(1, "t", &[(6, 11)], 6);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::Lost), 1, "{verdict:#?}");
    }

    #[test]
    fn a_read_during_the_run_must_hold_every_acked_write_in_its_range() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 5);
        h.send_ok(1, "t", 11, 6);
        h.read_range(2, "t", &[(6, 11)], 6, 6);
        h.final_read(1, "t", &[(5, 10), (6, 11)], 6);
        assert!(check(&h.ops).valid, "LSN 5 is below the read's range");
        h.read_range(3, "t", &[(6, 11)], 4, 6);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::Lost), 1, "{verdict:#?}");
    }

    #[test]
    fn a_write_acked_below_replicated_may_be_lost() {
        let mut h = History::default();
        h.send_acked(1, "t", 10, 5, Level::LocalDisk);
        h.final_read(1, "t", &[], 6);
        assert!(check(&h.ops).valid);
    }

    #[test]
    fn a_write_read_once_and_gone_later_is_lost() {
        let mut h = History::default();
        h.read(2, "t", &[(5, 10)], 5);
        h.final_read(2, "t", &[], 5);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::Lost), 1, "{verdict:#?}");
    }

    #[test]
    fn a_write_no_final_read_reached_is_unseen() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 9);
        h.final_read(1, "t", &[], 5);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::Unseen), 1, "{verdict:#?}");
        assert_eq!(verdict.count(Class::Lost), 0);
    }

    #[test]
    fn nodes_whose_final_reads_differ_diverge() {
        let mut h = History::default();
        h.final_read(1, "t", &[(5, 10), (6, 11)], 6);
        h.final_read(2, "t", &[(5, 10), (6, 12)], 7);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::Divergence), 1, "{verdict:#?}");
    }
}

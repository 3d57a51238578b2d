//! The lake agrees with the log: an Iceberg table read up to its snapshot's `arka.lsn` (the
//! COMMITTED position) holds exactly the writes the log holds up to there, each once; and
//! after a `flush` answered, it holds every acked write up to the LSN that flush named.

use super::facts::{Facts, Read};
use super::{Class, Findings};

pub fn check(facts: &Facts, findings: &mut Findings) {
    agrees_with_the_log(facts, findings);
    holds_what_was_flushed(facts, findings);
}

fn agrees_with_the_log(facts: &Facts, findings: &mut Findings) {
    for lake in &facts.iceberg {
        let Some(upto) = lake.upto else { continue };
        let log = facts
            .final_reads()
            .find(|r| r.table == lake.table && r.upto.is_some_and(|u| u >= upto));
        let Some(log) = log else { continue };
        let expected = up_to(log, upto);
        let mut got = up_to(lake, upto);
        got.sort_unstable();
        if got == expected {
            continue;
        }
        let missing = expected.iter().filter(|e| !got.contains(e)).count();
        let extra = got.iter().filter(|g| !expected.contains(g)).count();
        let detail = format!(
            "Iceberg table {} up to LSN {upto} has {} writes against {} in {}: {missing} missing, {extra} not in the log or repeated",
            lake.table,
            got.len(),
            expected.len(),
            log.source()
        );
        findings.add(Class::IcebergMismatch, detail);
    }
}

/// The lake may lag the log, but not behind a `flush` that answered: each write acked at
/// REPLICATED or above at an LSN up to its `flushed_lsn` is in the table's Iceberg read.
fn holds_what_was_flushed(facts: &Facts, findings: &mut Findings) {
    let Some(flushed) = facts.flushed else { return };
    for lake in &facts.iceberg {
        let missing: Vec<u64> = (facts.sends.iter())
            .filter(|s| s.table == lake.table)
            .filter_map(|s| {
                s.durable_lsn()
                    .filter(|lsn| *lsn <= flushed)
                    .map(|lsn| (lsn, s.value))
            })
            .filter(|write| !lake.entries.contains(write))
            .map(|(lsn, _)| lsn)
            .collect();
        if let Some(first) = missing.first() {
            let detail = format!(
                "Iceberg table {} lacks {} acked writes at or below the flushed LSN {flushed} (the first at LSN {first})",
                lake.table,
                missing.len()
            );
            findings.add(Class::IcebergMismatch, detail);
        }
    }
}

fn up_to(read: &Read, upto: u64) -> Vec<(u64, i64)> {
    (read.entries.iter().copied())
        .filter(|(lsn, _)| *lsn <= upto)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::History;
    use super::super::{check, Class};

    #[test]
    fn an_iceberg_table_missing_or_repeating_a_committed_write_mismatches() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 5);
        h.send_ok(1, "t", 11, 6);
        h.final_read(1, "t", &[(5, 10), (6, 11)], 6);
        h.iceberg_read("t", &[(5, 10)], 6);
        h.iceberg_read("t", &[(5, 10), (5, 10), (6, 11)], 6);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::IcebergMismatch), 2, "{verdict:#?}");
    }

    /// Three writes at LSNs 5 to 7, a flush that answered 6, and the lake as `lake` has it.
    fn flushed_up_to_6(lake: &[(u64, i64)], lake_upto: u64) -> History {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 5);
        h.send_ok(1, "t", 11, 6);
        h.send_ok(1, "t", 12, 7);
        h.final_read(1, "t", &[(5, 10), (6, 11), (7, 12)], 7);
        h.flush_ok(6);
        h.iceberg_read("t", lake, lake_upto);
        h
    }

    #[test]
    fn an_iceberg_table_without_a_flushed_write_mismatches() {
        let verdict = check(&flushed_up_to_6(&[(5, 10)], 5).ops);
        assert_eq!(verdict.count(Class::IcebergMismatch), 1, "{verdict:#?}");

        let h = flushed_up_to_6(&[(5, 10), (6, 11)], 6);
        assert!(check(&h.ops).valid, "the write above the flush may lag");
    }

    #[test]
    fn the_lake_may_lag_the_log() {
        let mut h = History::default();
        h.send_ok(1, "t", 10, 5);
        h.send_ok(1, "t", 11, 6);
        h.final_read(1, "t", &[(5, 10), (6, 11)], 6);
        h.iceberg_read("t", &[(5, 10)], 5);
        assert!(check(&h.ops).valid);
    }
}

//! Durability levels only rise: once a node said a write reached a level (in an ack or a
//! `get_durability_status` answer), it never later reports that write lower. Nodes are
//! judged one by one: a lagging follower may know less than the leader that acked.

use std::collections::BTreeMap;

use arka::durability::Level;

use super::facts::{Facts, LevelSeen};
use super::{Class, Findings};

pub fn check(facts: &Facts, findings: &mut Findings) {
    let mut by_write: BTreeMap<(u64, u64), Vec<&LevelSeen>> = BTreeMap::new();
    for seen in &facts.levels {
        by_write
            .entry((seen.node, seen.lsn))
            .or_default()
            .push(seen);
    }
    for ((node, lsn), mut seen) in by_write {
        seen.sort_by_key(|s| s.index);
        let mut highest: Option<Level> = None;
        for s in seen {
            if highest.is_some_and(|h| s.level < Some(h)) {
                let detail = format!(
                    "node {node} said the write at LSN {lsn} reached {}, then (op {}) {}",
                    name(highest),
                    s.index,
                    name(s.level)
                );
                findings.add(Class::LevelRegression, detail);
            }
            highest = highest.max(s.level);
        }
    }
}

fn name(level: Option<Level>) -> &'static str {
    level.map_or("no level", Level::as_str)
}

#[cfg(test)]
mod tests {
    use arka::durability::Level;

    use super::super::fixtures::History;
    use super::super::{check, Class};

    #[test]
    fn a_node_reporting_a_lower_level_than_before_regresses() {
        let mut h = History::default();
        h.send_acked(1, "t", 10, 5, Level::Committed);
        h.final_read(1, "t", &[(5, 10)], 5);
        h.level(1, 5, Some(Level::ObjectStorage));
        h.level(1, 5, None);
        let verdict = check(&h.ops);
        assert_eq!(verdict.count(Class::LevelRegression), 2, "{verdict:#?}");
    }

    #[test]
    fn another_node_may_know_less() {
        let mut h = History::default();
        h.send_acked(1, "t", 10, 5, Level::Committed);
        h.final_read(1, "t", &[(5, 10)], 5);
        h.level(2, 5, Some(Level::Replicated));
        h.level(2, 5, Some(Level::Committed));
        assert!(check(&h.ops).valid);
    }
}

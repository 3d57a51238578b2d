//! Producer sessions: the current epoch of each registered producer. An epoch is the LSN of
//! the entry that registered it, so a producer's epochs only grow, even when it was forgotten
//! and registered again: an instance of an older epoch (a zombie) stays fenced for good.
//! Sessions are bounded in number and by age in log positions, like the idempotency table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dedup::DEDUP_AGE_MAX_LSNS;

/// Sessions remembered; past it the least recently active producer is forgotten first.
pub const SESSIONS_MAX: usize = 100_000;

/// Why a write of a producer is not taken: its session says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error("producer {producer:?} has a session (epoch {current}): its writes must carry \"epoch\": {current} in their metadata")]
    EpochMissing { producer: String, current: u64 },
    #[error("producer {producer:?} epoch {epoch} is fenced: a newer instance registered epoch {current}; this instance must stop writing")]
    Fenced {
        producer: String,
        epoch: u64,
        current: u64,
    },
    #[error("producer {producer:?} has no session with epoch {epoch}: it was never registered, or was forgotten (after {DEDUP_AGE_MAX_LSNS} log entries without a write, or past {SESSIONS_MAX} sessions); call register_producer again")]
    Unknown { producer: String, epoch: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    epoch: u64,
    /// One above the highest seq the producer wrote.
    next_seq: i64,
    /// The LSN of its registration or its last write, whichever is later.
    last_lsn: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    by_id: BTreeMap<String, Session>,
    /// Each producer by its `last_lsn`: the least recently active comes first.
    by_age: BTreeMap<u64, String>,
}

impl Sessions {
    /// Starts the epoch of `producer_id` registered at `lsn` and returns it with the seq the
    /// producer goes on from: one above the highest it wrote, in this session's history or
    /// (`written_next`) in the idempotency table.
    pub fn register(&mut self, producer_id: &str, lsn: u64, written_next: i64) -> (u64, i64) {
        let next_seq = self
            .by_id
            .get(producer_id)
            .map_or(written_next, |s| s.next_seq.max(written_next));
        self.touch(producer_id, lsn);
        if let Some(session) = self.by_id.get_mut(producer_id) {
            session.epoch = lsn;
            session.next_seq = next_seq;
        }
        self.evict(lsn);
        (lsn, next_seq)
    }

    /// Why a write of `producer_id` carrying `epoch` must not be applied, if it must not.
    pub fn check(&self, producer_id: &str, epoch: Option<u64>) -> Result<(), SessionRefused> {
        let producer = || producer_id.to_string();
        let current = self.by_id.get(producer_id).map(|s| s.epoch);
        match (current, epoch) {
            (None, None) => Ok(()),
            (Some(current), Some(epoch)) if current == epoch => Ok(()),
            (Some(current), None) => Err(SessionRefused::EpochMissing {
                producer: producer(),
                current,
            }),
            (Some(current), Some(epoch)) if epoch < current => Err(SessionRefused::Fenced {
                producer: producer(),
                epoch,
                current,
            }),
            (_, Some(epoch)) => Err(SessionRefused::Unknown {
                producer: producer(),
                epoch,
            }),
        }
    }

    /// Records that the current session of `producer_id`, if it has one, wrote `seq` at `lsn`.
    pub fn wrote(&mut self, producer_id: &str, seq: i64, lsn: u64) {
        if !self.by_id.contains_key(producer_id) {
            return;
        }
        self.touch(producer_id, lsn);
        if let Some(session) = self.by_id.get_mut(producer_id) {
            session.next_seq = session.next_seq.max(seq.saturating_add(1));
        }
        self.evict(lsn);
    }

    /// Moves `producer_id` (inserting it if new) to the most recent position, `lsn`.
    fn touch(&mut self, producer_id: &str, lsn: u64) {
        let session = self.by_id.entry(producer_id.to_string()).or_default();
        let id = self
            .by_age
            .remove(&session.last_lsn)
            .unwrap_or_else(|| producer_id.to_string());
        session.last_lsn = lsn;
        self.by_age.insert(lsn, id);
    }

    fn evict(&mut self, now: u64) {
        while let Some((&last_lsn, _)) = self.by_age.first_key_value() {
            let too_old = now.saturating_sub(last_lsn) > DEDUP_AGE_MAX_LSNS;
            if !too_old && self.by_id.len() <= SESSIONS_MAX {
                break;
            }
            if let Some((_, id)) = self.by_age.pop_first() {
                self.by_id.remove(&id);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_registration_fences_the_older_epoch() {
        let mut sessions = Sessions::default();
        assert_eq!(
            sessions.check("p", None),
            Ok(()),
            "no session: plain idempotency"
        );
        assert_eq!(sessions.register("p", 10, 0), (10, 0));
        sessions.wrote("p", 4, 11);
        assert_eq!(sessions.check("p", Some(10)), Ok(()));
        assert_eq!(
            sessions.register("p", 20, 0),
            (20, 5),
            "resumes above seq 4"
        );
        let fenced = sessions.check("p", Some(10)).unwrap_err().to_string();
        assert!(fenced.contains("fenced"), "{fenced}");
        assert!(
            sessions.check("p", None).is_err(),
            "a session's writes carry it"
        );
        assert!(
            sessions.check("p", Some(30)).is_err(),
            "an epoch never given"
        );
        assert!(
            sessions.check("q", Some(20)).is_err(),
            "another producer's epoch"
        );
    }

    #[test]
    fn resumes_above_what_the_idempotency_table_holds() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.register("p", 5, 100), (5, 100));
    }

    #[test]
    fn forgets_idle_sessions_and_keeps_the_count_bounded() {
        let mut sessions = Sessions::default();
        sessions.register("idle", 1, 0);
        sessions.register("busy", 2, 0);
        sessions.wrote("busy", 0, 3 + DEDUP_AGE_MAX_LSNS);
        assert!(sessions.check("idle", Some(1)).is_err());
        assert_eq!(sessions.check("busy", Some(2)), Ok(()));
        for i in 0..SESSIONS_MAX as u64 + 10 {
            sessions.register(&format!("p{i}"), 10 + DEDUP_AGE_MAX_LSNS + i, 0);
        }
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert!(
            sessions.check("busy", Some(2)).is_err(),
            "least recent went first"
        );
    }
}

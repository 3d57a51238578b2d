//! Whether this node takes new log entries from the leader. A follower whose disk is below
//! its free-space floor refuses AppendEntries that carry entries (the leader retries them
//! with backoff, as for a peer that is down) and keeps answering heartbeats, so it neither
//! fills its disk nor starts elections; once it takes entries again the leader catches it
//! up. The node decides when to close and open it (`arka::disk`).

use std::sync::{Arc, RwLock};

use tonic::Status;

#[derive(Clone, Default)]
pub struct EntryIntake(Arc<RwLock<Option<String>>>);

impl EntryIntake {
    /// Refuses entries from now on, saying `why`.
    pub fn close(&self, why: String) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub fn open(&self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `UNAVAILABLE` with the reason while closed, for a request carrying `entries`.
    pub fn admit(&self, entries: usize) -> Result<(), Status> {
        if entries == 0 {
            return Ok(());
        }
        match &*self.0.read().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(Status::unavailable(why.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_intake_refuses_entries_but_not_heartbeats() {
        let intake = EntryIntake::default();
        assert!(intake.admit(3).is_ok());
        intake.close("disk below its floor".into());
        assert!(intake.admit(0).is_ok(), "a heartbeat carries no entries");
        let refused = intake.admit(1).expect_err("entries are refused");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused.message().contains("disk below its floor"));
        intake.open();
        assert!(intake.admit(1).is_ok());
    }
}

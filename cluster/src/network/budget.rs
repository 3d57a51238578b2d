//! The byte budget of one AppendEntries message. openraft bounds a message by entry count
//! only; entries of up to a batch each could add up past what one gRPC message may carry, and
//! a refused message is resent as it was, forever. So the sender cuts a request at the budget
//! and reports the part it sent as a partial success: openraft sends the rest next.

use openraft::raft::AppendEntriesRequest;
use openraft::EntryPayload;

use crate::command::Command;
use crate::types::{Entry, LogId, TypeConfig};

/// Default bytes of entries in one AppendEntries message. A follower answers every
/// AppendEntries, heartbeats included, only once all it accepted is on disk, and the leader
/// counts its lease from when the acknowledged message was sent: a message must be small
/// enough to be written and fsynced well within the lease (the maximum election timeout)
/// on a busy disk.
pub const APPEND_BYTES_MAX: usize = 4 * 1024 * 1024;

/// About how many bytes `entry` takes on the wire (its payload dominates).
pub fn entry_bytes(entry: &Entry) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match &entry.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Membership(_) => 1024,
            EntryPayload::Normal(Command::Write(w) | Command::SessionWrite { write: w, .. }) => {
                w.ipc.len() + w.table.len() + w.producer.as_ref().map_or(0, |p| p.producer_id.len())
            }
            EntryPayload::Normal(Command::TierUploaded { files, .. }) => files
                .iter()
                .map(|f| f.path.len() + f.table.len() + 48)
                .sum(),
            EntryPayload::Normal(Command::CreateTable { schema_ipc, .. }) => schema_ipc.len(),
            EntryPayload::Normal(_) => 64,
        }
}

/// Cuts `rpc` to the entries that fit in `bytes_max` (always at least one) and returns the
/// log id of the last entry kept when it cut any.
pub fn cut_to_budget(
    rpc: &mut AppendEntriesRequest<TypeConfig>,
    bytes_max: usize,
) -> Option<LogId> {
    let mut total = 0;
    let keep = rpc
        .entries
        .iter()
        .position(|entry| {
            total += entry_bytes(entry);
            total > bytes_max
        })
        .map(|over| over.max(1))?;
    if keep >= rpc.entries.len() {
        return None;
    }
    rpc.entries.truncate(keep);
    rpc.entries.last().map(|e| e.log_id)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;
    use crate::command::WriteCommand;
    use crate::types::{NodeId, RequestId};

    fn write(index: u64, bytes: usize) -> Entry {
        let log_id = LogId::new(
            LeaderId {
                term: 1,
                node_id: NodeId(1),
            },
            index,
        );
        let cmd = Command::Write(WriteCommand {
            table: "t".into(),
            request: RequestId {
                origin: NodeId(1),
                seq: index,
            },
            producer: None,
            rows: 1,
            ipc: Bytes::from(vec![0u8; bytes]),
        });
        Entry {
            log_id,
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn request(sizes: &[usize]) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: crate::types::Vote::new(1, NodeId(1)),
            prev_log_id: None,
            leader_commit: None,
            entries: sizes
                .iter()
                .enumerate()
                .map(|(i, b)| write(i as u64 + 1, *b))
                .collect(),
        }
    }

    #[test]
    fn a_request_within_the_budget_is_sent_whole() {
        let mut rpc = request(&[1000; 10]);
        assert_eq!(cut_to_budget(&mut rpc, 1 << 20), None);
        assert_eq!(rpc.entries.len(), 10);
    }

    #[test]
    fn a_request_over_the_budget_is_cut_after_the_last_entry_that_fits() {
        let mut rpc = request(&[400_000; 10]);
        let last = cut_to_budget(&mut rpc, 1 << 20).expect("cut");
        assert_eq!(rpc.entries.len(), 2);
        assert_eq!(last.index, 2);
    }

    #[test]
    fn one_entry_larger_than_the_budget_still_goes_alone() {
        let mut rpc = request(&[5 << 20, 10, 10]);
        let last = cut_to_budget(&mut rpc, 1 << 20).expect("cut");
        assert_eq!(rpc.entries.len(), 1);
        assert_eq!(last.index, 1);
    }
}

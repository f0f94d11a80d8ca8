//! What a restarting member does to its WAL's contents before rebuilding the Raft log from them:
//! shared by the server's bootstrap and the deterministic simulation, so both restart the same
//! way.
//!
//! raft-rs starts from the configuration its storage reports and only re-applies conf changes
//! above the applied index, so a restart must hand it the configuration *at the applied index*:
//! the WAL snapshot's configuration with the conf changes between the snapshot and the applied
//! index replayed over it.

use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType};
use rampart_wal::WalContents;

/// Raises the recovered commit index to what is known committed: raft-rs reports commit
/// progress that needs no new entries (a lone member's own append, a leader's late acks) in its
/// light ready, which is not written to the WAL, so the last saved hard state can lag the WAL's
/// snapshot and the applied index. raft-rs refuses a commit index below its snapshot.
pub fn raise_commit_to_known(contents: &mut WalContents, applied: u64) {
    let snapshot_index = contents.snapshot.as_ref().map(|s| s.index).unwrap_or(0);
    let last_index = contents
        .entries
        .last()
        .map(|e| e.index)
        .unwrap_or(snapshot_index);
    let known = snapshot_index.max(applied.min(last_index));
    if contents.hard_state.commit < known {
        contents.hard_state.commit = known;
    }
}

/// The configuration once every conf change up to `applied` took effect, starting from the WAL
/// snapshot's configuration, or `base` (the saved member list) without a snapshot.
pub fn conf_at_applied(contents: &WalContents, base: ConfState, applied: u64) -> ConfState {
    let mut conf = match &contents.snapshot {
        Some(snapshot) => snapshot.get_conf_state().clone(),
        None => base,
    };
    for entry in contents.entries.iter().take_while(|e| e.index <= applied) {
        if let Some(change) = conf_change_of(entry) {
            apply_change(&mut conf, &change);
        }
    }
    conf
}

/// The v1 conf change an entry carries, if it is one.
pub fn conf_change_of(entry: &Entry) -> Option<ConfChange> {
    if entry.get_entry_type() != EntryType::EntryConfChange || entry.data.is_empty() {
        return None;
    }
    protobuf::Message::parse_from_bytes(&entry.data).ok()
}

/// What raft-rs does to a configuration for one v1 conf change.
fn apply_change(conf: &mut ConfState, change: &ConfChange) {
    let id = change.node_id;
    conf.voters.retain(|v| *v != id);
    conf.learners.retain(|l| *l != id);
    match change.get_change_type() {
        ConfChangeType::AddNode => conf.voters.push(id),
        ConfChangeType::AddLearnerNode => conf.learners.push(id),
        ConfChangeType::RemoveNode => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf_entry(index: u64, kind: ConfChangeType, id: u64) -> Entry {
        let mut change = ConfChange {
            node_id: id,
            ..Default::default()
        };
        change.set_change_type(kind);
        let mut e = Entry {
            index,
            term: 1,
            data: protobuf::Message::write_to_bytes(&change).unwrap().into(),
            ..Default::default()
        };
        e.set_entry_type(EntryType::EntryConfChange);
        e
    }

    #[test]
    fn replay_stops_at_the_applied_index() {
        let mut snapshot = raft::eraftpb::SnapshotMetadata {
            index: 10,
            ..Default::default()
        };
        snapshot.mut_conf_state().voters = vec![1, 2, 3];
        let contents = WalContents {
            snapshot: Some(snapshot),
            entries: vec![
                conf_entry(11, ConfChangeType::RemoveNode, 3),
                conf_entry(12, ConfChangeType::AddLearnerNode, 4),
                conf_entry(13, ConfChangeType::AddNode, 4),
            ],
            ..Default::default()
        };
        let conf = conf_at_applied(&contents, ConfState::default(), 12);
        assert_eq!(conf.voters, vec![1, 2]);
        assert_eq!(conf.learners, vec![4]);
        let conf = conf_at_applied(&contents, ConfState::default(), 13);
        assert_eq!(conf.voters, vec![1, 2, 4]);
        assert!(conf.learners.is_empty());
    }
}

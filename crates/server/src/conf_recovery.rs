//! Raft's member configuration on restart, and `--force-new-cluster`.
//!
//! The configuration at the applied index and the raised commit index come from
//! `rampart_raft_node::recovery` (the deterministic simulation restarts members with the same
//! code).
//!
//! `--force-new-cluster` (etcd's recovery from the loss of quorum, and how a `backup` is
//! started) keeps this member's data and drops every other member: uncommitted entries are
//! discarded, and conf changes that remove the others (and add this member when the log does not
//! know it, as after a backup) are appended and committed, so the WAL replays to the same
//! one-member configuration on every later restart.

use std::collections::BTreeSet;

use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState};
use rampart_proto::internal::ConfChangeContext;
use rampart_wal::{Wal, WalContents};

use crate::membership::{Member, Membership};

use crate::ServerError;
pub use rampart_raft_node::recovery::{conf_at_applied, conf_change_of, raise_commit_to_known};

/// Rewrites the recovered log so that `member_id` is the only member: drops entries past the
/// commit index, appends (and commits) the conf changes that remove the others and add this
/// member if needed, and makes the member list say the same. Returns the new configuration.
pub fn force_new_cluster(
    wal: &mut Wal,
    contents: &mut WalContents,
    conf: &ConfState,
    membership: &Membership,
    me: Member,
) -> Result<ConfState, ServerError> {
    let commit = contents.hard_state.commit;
    let discarded = contents.entries.iter().filter(|e| e.index > commit).count();
    contents.entries.retain(|e| e.index <= commit);
    if discarded > 0 {
        tracing::warn!(
            discarded,
            commit_index = commit,
            "forcing new cluster: discarding uncommitted WAL entries"
        );
    }

    // Everyone this log or the member list knows, including members a committed but unapplied
    // conf change would add.
    let mut known: BTreeSet<u64> = conf.voters.iter().chain(&conf.learners).copied().collect();
    known.extend(membership.ids());
    for entry in &contents.entries {
        if let Some(change) = conf_change_of(entry) {
            known.insert(change.node_id);
        }
    }
    let mut changes: Vec<(ConfChangeType, u64, Option<&Member>)> = known
        .iter()
        .filter(|id| **id != me.id)
        .map(|id| (ConfChangeType::RemoveNode, *id, None))
        .collect();
    let is_voter = conf.voters.contains(&me.id);
    if !is_voter {
        changes.push((ConfChangeType::AddNode, me.id, Some(&me)));
    }

    let snapshot_index = contents.snapshot.as_ref().map(|s| s.index).unwrap_or(0);
    let last_index = contents
        .entries
        .last()
        .map(|e| e.index)
        .unwrap_or(snapshot_index)
        .max(commit);
    let term = contents.hard_state.term;
    let appended: Vec<Entry> = changes
        .iter()
        .enumerate()
        .map(|(i, (kind, id, member))| {
            let mut change = ConfChange::default();
            change.set_change_type(*kind);
            change.node_id = *id;
            change.context = ConfChangeContext {
                member: member.map(Member::to_proto),
                request_id: 0,
            }
            .encode_to_vec()
            .into();
            let mut entry = Entry::default();
            entry.set_entry_type(EntryType::EntryConfChange);
            entry.term = term;
            entry.index = last_index + 1 + i as u64;
            entry.data = protobuf::Message::write_to_bytes(&change)
                .expect("conf change encodes")
                .into();
            entry
        })
        .collect();
    let mut hard_state: HardState = contents.hard_state.clone();
    hard_state.commit = last_index + appended.len() as u64;
    // Written even when nothing is appended: it overwrites a discarded uncommitted tail.
    wal.save(Some(&hard_state), &appended)?;
    contents.entries.extend(appended);
    contents.hard_state = hard_state;

    for id in membership.ids() {
        if id != me.id {
            membership.remove(id)?;
        }
    }
    if membership.get(me.id).is_none() {
        membership.add(me.clone())?;
    }
    tracing::warn!(
        member_id = format!("{:x}", me.id),
        cluster_id = format!("{:x}", membership.cluster_id()),
        removed = known.iter().filter(|id| **id != me.id).count(),
        commit_index = contents.hard_state.commit,
        "forcing restart of member as a one-member cluster (--force-new-cluster)"
    );
    Ok(ConfState {
        voters: vec![me.id],
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_new_cluster_removes_the_others_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let mut wal = Wal::create(&wal_dir, b"meta").unwrap();
        let mut entries = Vec::new();
        for index in 1..=5 {
            entries.push(Entry {
                index,
                term: 2,
                ..Default::default()
            });
        }
        let hs = HardState {
            term: 2,
            commit: 4,
            ..Default::default()
        };
        wal.save(Some(&hs), &entries).unwrap();
        drop(wal);

        let (mut wal, mut contents) = Wal::open(&wal_dir).unwrap();
        let member = |id: u64| Member {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://127.0.0.1:{id}")],
            client_urls: vec![],
            is_learner: false,
        };
        let membership = Membership::new(
            7,
            vec![member(1), member(2), member(3)],
            dir.path().join("cluster.json"),
        );
        let base = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let conf =
            force_new_cluster(&mut wal, &mut contents, &base, &membership, member(1)).unwrap();
        assert_eq!(conf.voters, vec![1]);
        assert_eq!(membership.ids(), vec![1]);
        drop(wal);

        // The uncommitted entry 5 is gone; entries 5 and 6 now remove members 2 and 3.
        let (_, reopened) = Wal::open(&wal_dir).unwrap();
        assert_eq!(reopened.hard_state.commit, 6);
        let removed: Vec<u64> = reopened
            .entries
            .iter()
            .filter_map(conf_change_of)
            .map(|c| c.node_id)
            .collect();
        assert_eq!(removed, vec![2, 3]);
        assert_eq!(conf_at_applied(&reopened, base, 6).voters, vec![1]);
    }
}

//! The simulated members' state machine, in the part the server's apply loop plays around the
//! Raft loop: it applies committed entries past its consistent index, asks the Raft loop for a
//! snapshot every [`SNAPSHOT_COUNT`] applied indexes (after making what it applied durable, as
//! the server's store does), and replaces its state with a leader's snapshot when told to.
//!
//! Its "state" is the list of normal entries it applied, so the checks can compare members, and
//! the member list (the server's saved member list, which a restart starts Raft's configuration
//! from), changed by the conf-change entries it applies.
//! What survives a crash is the state as of its last durable point: the entries applied since are
//! applied again after the restart, as on a server whose store had not flushed them.

use raft::eraftpb::{ConfChangeType, Entry, EntryType};
use rampart_raft_node::recovery::conf_change_of;

/// Applied indexes between two snapshots the state machine asks for (the server's
/// `--snapshot-count`, small so that compaction and snapshot sends happen in short runs).
pub const SNAPSHOT_COUNT: u64 = 20;

/// A committed entry as a member applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct StateMachine {
    /// The normal entries applied, in index order.
    pub applied: Vec<Applied>,
    /// The index of the last entry applied, of any type (the store's consistent index).
    pub applied_index: u64,
    /// The voters, in the order they joined.
    pub members: Vec<u64>,
    /// How much of the state a crash keeps: (entries, consistent index, members).
    durable: (usize, u64, Vec<u64>),
    /// Where the last snapshot was asked for (or installed).
    last_snapshot: u64,
    /// Counts the times the state was replaced or cut back rather than applied to (installs,
    /// crashes, wipes), so the checks know to look at all of it again.
    pub resets: u64,
}

impl StateMachine {
    pub fn new(members: Vec<u64>) -> StateMachine {
        StateMachine {
            durable: (0, 0, members.clone()),
            members,
            ..StateMachine::default()
        }
    }

    /// Applies committed entries; returns the index to snapshot at when one is due.
    pub fn apply(&mut self, entries: &[Entry]) -> Option<u64> {
        for e in entries {
            // Below the consistent index: already in the state (from a snapshot, or applied
            // and kept before a restart).
            if e.index <= self.applied_index {
                continue;
            }
            if e.get_entry_type() == EntryType::EntryNormal {
                self.applied.push(Applied {
                    index: e.index,
                    term: e.term,
                    data: e.data.to_vec(),
                });
            }
            if let Some(change) = conf_change_of(e) {
                let id = change.node_id;
                self.members.retain(|m| *m != id);
                if change.get_change_type() == ConfChangeType::AddNode {
                    self.members.push(id);
                }
            }
            self.applied_index = e.index;
        }
        if self.applied_index.saturating_sub(self.last_snapshot) < SNAPSHOT_COUNT {
            return None;
        }
        // The store commits before the Raft loop may drop the log below this index.
        self.durable = (self.applied.len(), self.applied_index, self.members.clone());
        self.last_snapshot = self.applied_index;
        Some(self.applied_index)
    }

    /// Replaces the state with a leader's snapshot data (see [`StateMachine::snapshot_data`]).
    pub fn install(&mut self, data: &[u8], snapshot_index: u64) -> Result<(), String> {
        let (applied_index, members, applied) = decode(data)?;
        if applied_index < snapshot_index {
            return Err(format!(
                "snapshot data at {applied_index} is older than the snapshot ({snapshot_index})"
            ));
        }
        self.applied = applied;
        self.applied_index = applied_index;
        self.members = members;
        self.durable = (self.applied.len(), applied_index, self.members.clone());
        self.last_snapshot = snapshot_index;
        self.resets += 1;
        Ok(())
    }

    /// A crash: the state goes back to its last durable point.
    pub fn crash(&mut self) {
        self.applied.truncate(self.durable.0);
        self.applied_index = self.durable.1;
        self.members = self.durable.2.clone();
        self.last_snapshot = self.last_snapshot.min(self.applied_index);
        self.resets += 1;
    }

    /// A lost disk: nothing is left but the member list it was started with.
    pub fn wipe(&mut self, members: Vec<u64>) {
        *self = StateMachine {
            resets: self.resets + 1,
            ..StateMachine::new(members)
        };
    }

    /// The whole state, as the transport attaches it to a snapshot sent to a follower.
    pub fn snapshot_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.applied_index.to_be_bytes());
        out.extend_from_slice(&(self.members.len() as u64).to_be_bytes());
        for m in &self.members {
            out.extend_from_slice(&m.to_be_bytes());
        }
        out.extend_from_slice(&(self.applied.len() as u64).to_be_bytes());
        for a in &self.applied {
            out.extend_from_slice(&a.index.to_be_bytes());
            out.extend_from_slice(&a.term.to_be_bytes());
            out.extend_from_slice(&(a.data.len() as u64).to_be_bytes());
            out.extend_from_slice(&a.data);
        }
        out
    }
}

type Decoded = (u64, Vec<u64>, Vec<Applied>);

fn decode(mut data: &[u8]) -> Result<Decoded, String> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if data.len() < n {
            return Err("truncated snapshot data".into());
        }
        let (head, rest) = data.split_at(n);
        *data = rest;
        Ok(head)
    }
    fn number(data: &mut &[u8]) -> Result<u64, String> {
        let bytes = take(data, 8)?;
        Ok(u64::from_be_bytes(bytes.try_into().expect("8 bytes")))
    }
    let applied_index = number(&mut data)?;
    let members = (0..number(&mut data)?)
        .map(|_| number(&mut data))
        .collect::<Result<_, _>>()?;
    let count = number(&mut data)?;
    let mut applied = Vec::new();
    for _ in 0..count {
        let index = number(&mut data)?;
        let term = number(&mut data)?;
        let len = number(&mut data)? as usize;
        applied.push(Applied {
            index,
            term,
            data: take(&mut data, len)?.to_vec(),
        });
    }
    Ok((applied_index, members, applied))
}

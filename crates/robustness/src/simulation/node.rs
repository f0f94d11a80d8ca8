//! One simulated member: raft-rs's `RawNode` over Rampart's `RaftStorage`, persisted in
//! Rampart's WAL, handling each `Ready` the way `rampart_raft_node::node` does (messages to
//! followers before the local fsync, committed entries before new ones are appended). The real
//! loop owns a thread and a wall clock, so the simulation drives this copy of its `Ready`
//! handling step by step instead.

use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message};
use raft::{RawNode, StateRole};
use rampart_raft_node::RaftStorage;
use rampart_wal::Wal;

use super::SimError;

/// Election timeout in ticks; the randomized part comes from the simulation's seeded tick
/// jitter, since raft-rs draws its own from an unseeded thread RNG (pinned here to one value).
pub const ELECTION_TICKS: usize = 10;

/// A committed entry as a member applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

pub struct SimNode {
    pub id: u64,
    dir: PathBuf,
    voters: Vec<u64>,
    /// None while crashed.
    raft: Option<(RawNode<RaftStorage>, Wal)>,
    /// What this incarnation applied, in order (a restart applies the log again from 1).
    pub applied: Vec<Applied>,
}

fn raft_err(e: impl std::fmt::Display) -> SimError {
    SimError::Raft(e.to_string())
}

impl SimNode {
    pub fn create(id: u64, dir: &Path, voters: Vec<u64>) -> Result<SimNode, SimError> {
        Wal::create(dir, b"").map_err(raft_err)?;
        let mut node = SimNode {
            id,
            dir: dir.to_path_buf(),
            voters,
            raft: None,
            applied: Vec::new(),
        };
        node.start(false)?;
        Ok(node)
    }

    pub fn is_up(&self) -> bool {
        self.raft.is_some()
    }

    /// Starts from what the WAL holds, as a member does after a crash. With `forget`, the WAL
    /// is wiped first: a disk that lost acknowledged writes (the bug the checks must catch).
    pub fn start(&mut self, forget: bool) -> Result<(), SimError> {
        if forget {
            std::fs::remove_dir_all(&self.dir).map_err(raft_err)?;
            Wal::create(&self.dir, b"").map_err(raft_err)?;
        }
        let (wal, contents) = Wal::open(&self.dir).map_err(raft_err)?;
        let mut conf = ConfState::default();
        conf.set_voters(self.voters.clone());
        let storage = RaftStorage::recover(
            contents.snapshot,
            contents.hard_state,
            &contents.entries,
            Some(conf),
        )
        .map_err(raft_err)?;
        let config = raft::Config {
            id: self.id,
            election_tick: ELECTION_TICKS,
            min_election_tick: ELECTION_TICKS,
            max_election_tick: ELECTION_TICKS + 1,
            heartbeat_tick: 1,
            applied: 0,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let logger = rampart_raft_node::logger::raft_logger(self.id);
        let raw = RawNode::new(&config, storage, &logger).map_err(raft_err)?;
        self.raft = Some((raw, wal));
        self.applied.clear();
        Ok(())
    }

    /// A crash: whatever was not in the WAL is gone.
    pub fn crash(&mut self) {
        self.raft = None;
    }

    pub fn is_leader(&self) -> bool {
        matches!(&self.raft, Some((r, _)) if r.raft.state == StateRole::Leader)
    }

    pub fn term(&self) -> u64 {
        self.raft.as_ref().map(|(r, _)| r.raft.term).unwrap_or(0)
    }

    pub fn tick(&mut self) {
        if let Some((raw, _)) = &mut self.raft {
            raw.tick();
        }
    }

    pub fn step(&mut self, message: Message) {
        if let Some((raw, _)) = &mut self.raft {
            // Messages from old terms or unknown peers are refused; a real member drops them too.
            let _ = raw.step(message);
        }
    }

    /// Proposes `data`; false if this member cannot take proposals now (no leader known).
    pub fn propose(&mut self, data: Vec<u8>) -> bool {
        match &mut self.raft {
            Some((raw, _)) => raw.propose(vec![], data).is_ok(),
            None => false,
        }
    }

    /// Handles one `Ready`. Returns the messages to send. With `crash_before_persist`, the
    /// member crashes after sending its unpersisted messages and applying, before its fsync.
    pub fn handle_ready(&mut self, crash_before_persist: bool) -> Result<Vec<Message>, SimError> {
        let Some((raw, wal)) = &mut self.raft else {
            return Ok(Vec::new());
        };
        if !raw.has_ready() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut ready = raw.ready();
        out.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            return Err(SimError::Raft(
                "a snapshot in the simulation, which never compacts".into(),
            ));
        }
        let committed = ready.take_committed_entries();
        apply(&mut self.applied, &committed);
        if crash_before_persist {
            self.raft = None;
            return Ok(out);
        }
        let entries = ready.take_entries();
        let hard_state: Option<HardState> = ready.hs().cloned();
        if !entries.is_empty() || hard_state.is_some() {
            wal.save(hard_state.as_ref(), &entries).map_err(raft_err)?;
        }
        let storage = raw.store().clone();
        if !entries.is_empty() {
            storage.mem().wl().append(&entries).map_err(raft_err)?;
        }
        if let Some(hs) = hard_state {
            storage.mem().wl().set_hardstate(hs);
        }
        out.extend(ready.take_persisted_messages());
        let mut light = raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            storage.mem().wl().mut_hard_state().set_commit(commit);
        }
        out.extend(light.take_messages());
        apply(&mut self.applied, &light.take_committed_entries());
        raw.advance_apply();
        Ok(out)
    }
}

fn apply(applied: &mut Vec<Applied>, entries: &[Entry]) {
    for e in entries {
        if e.get_entry_type() == EntryType::EntryNormal {
            applied.push(Applied {
                index: e.index,
                term: e.term,
                data: e.data.to_vec(),
            });
        }
    }
}

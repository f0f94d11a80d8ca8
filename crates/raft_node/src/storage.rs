//! The Raft log as raft-rs sees it: an in-memory `MemStorage` rebuilt from our WAL on start, plus
//! the metadata of the node's latest local snapshot.
//!
//! Why not `MemStorage` alone: its `snapshot()` claims the *commit* index, but our state machine
//! (the MVCC store) may have applied less than that. A snapshot sent to a follower must describe a
//! point the store has certainly reached, so we answer with the last snapshot we took ourselves:
//! the store's copy that travels with it is always at or past that index, and the follower skips
//! re-applied entries by its consistent index.

use std::sync::{Arc, Mutex};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::{MemStorage, Storage};
use raft::{GetEntriesContext, RaftState};

/// Entries kept in memory below a snapshot, so a follower that is only a little behind catches up
/// from the log instead of receiving a whole snapshot (etcd's `SnapshotCatchUpEntries`).
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5_000;

/// The catch-up window in force: `RAMPART_SNAPSHOT_CATCH_UP_ENTRIES` overrides it so tests can
/// make a follower fall behind the log with a few writes.
fn catch_up_entries() -> u64 {
    static VALUE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *VALUE.get_or_init(|| {
        std::env::var("RAMPART_SNAPSHOT_CATCH_UP_ENTRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(SNAPSHOT_CATCH_UP_ENTRIES)
    })
}

#[derive(Clone)]
pub struct RaftStorage {
    mem: MemStorage,
    last_snapshot: Arc<Mutex<SnapshotMetadata>>,
    /// Entries kept below a local snapshot (see [`SNAPSHOT_CATCH_UP_ENTRIES`]).
    catch_up_entries: u64,
}

impl RaftStorage {
    /// Rebuilds the log from what the WAL held.
    pub fn recover(
        snapshot: Option<SnapshotMetadata>,
        hard_state: HardState,
        entries: &[Entry],
        conf_state: Option<ConfState>,
    ) -> raft::Result<RaftStorage> {
        let mem = MemStorage::new();
        let mut last = SnapshotMetadata::default();
        {
            let mut core = mem.wl();
            if let Some(meta) = snapshot {
                let mut snap = Snapshot::default();
                snap.set_metadata(meta.clone());
                core.apply_snapshot(snap)?;
                last = meta;
            }
            // The configuration at the applied index, which can be newer than the snapshot's.
            if let Some(cs) = conf_state {
                core.set_conf_state(cs.clone());
                if last.index == 0 {
                    last.set_conf_state(cs);
                }
            }
            if !entries.is_empty() {
                core.append(entries)?;
            }
            if hard_state != HardState::default() {
                core.set_hardstate(hard_state);
            }
        }
        Ok(RaftStorage {
            mem,
            last_snapshot: Arc::new(Mutex::new(last)),
            catch_up_entries: catch_up_entries(),
        })
    }

    /// Keeps `entries` log entries below each local snapshot instead of the configured window,
    /// so a test can make followers fall behind the log (and need a snapshot) with few writes.
    /// Set it before the storage is handed to the Raft loop: clones made earlier keep the old one.
    pub fn with_catch_up_entries(mut self, entries: u64) -> RaftStorage {
        self.catch_up_entries = entries;
        self
    }

    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    /// Index of the latest local snapshot (0 before the first one).
    pub fn last_snapshot_index(&self) -> u64 {
        self.last_snapshot.lock().expect("snapshot lock").index
    }

    /// Records a local snapshot at `index` (the store has durably applied it) and drops log entries
    /// older than the catch-up window.
    pub fn create_snapshot(&self, index: u64) -> raft::Result<SnapshotMetadata> {
        let term = self.mem.term(index)?;
        let conf_state = self.mem.initial_state()?.conf_state;
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(conf_state);
        *self.last_snapshot.lock().expect("snapshot lock") = meta.clone();
        let compact_to = index.saturating_sub(self.catch_up_entries);
        if compact_to > 0 {
            self.mem.wl().compact(compact_to)?;
        }
        Ok(meta)
    }

    /// Installs a snapshot received from the leader.
    pub fn apply_snapshot(&self, snapshot: &Snapshot) -> raft::Result<()> {
        let mut snap = snapshot.clone();
        snap.data = Default::default();
        self.mem.wl().apply_snapshot(snap)?;
        *self.last_snapshot.lock().expect("snapshot lock") = snapshot.get_metadata().clone();
        Ok(())
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let meta = self.last_snapshot.lock().expect("snapshot lock").clone();
        if meta.index < request_index || meta.index == 0 {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        snap.set_metadata(meta);
        Ok(snap)
    }
}

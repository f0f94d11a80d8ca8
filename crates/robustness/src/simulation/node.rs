//! One simulated member: the real Raft loop of `rampart_raft_node` ([`RaftCore`]: message
//! handling, ticks, ReadIndex batching, `Ready` handling, WAL writes, snapshots), driven turn by
//! turn on the simulation's thread with a virtual clock instead of on its own thread.
//!
//! The simulation only plays what surrounds the loop on a server: the peer transport (a
//! [`MessageSink`] that queues messages for the seeded bus), the apply loop (it takes
//! [`Committed`] batches off the real channel and answers snapshots), the callers (proposals and
//! reads go through the real [`RaftHandle`]), and the process (a crash drops the core, possibly
//! in the middle of a `Ready`; a restart rebuilds it from the WAL with the server's recovery code).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Message};
use rampart_raft_node::{
    recovery, Committed, ElectionTimeout, MessageSink, NodeConfig, NodeError, RaftCore, RaftHandle,
    RaftStorage,
};
use rampart_wal::Wal;

use super::state_machine::StateMachine;
use super::SimError;

/// Election timeout in ticks. raft-rs would draw a random one from its own unseeded generator;
/// the core is built with [`ElectionTimeout::Fixed`] and the simulation's seeded tick jitter
/// stands in for the randomness.
pub const ELECTION_TICKS: usize = 10;

/// Virtual time per Raft tick: the core's ReadIndex retry and give-up delays count in it.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// Log entries kept below a local snapshot: small, so that a member that was down for a while
/// needs a snapshot to catch up.
pub const CATCH_UP_ENTRIES: u64 = 10;

/// A reply from the Raft loop that has not come yet: a proposal's acceptance or a read's index.
pub type Pending = Pin<Box<dyn Future<Output = Result<u64, NodeError>> + Send>>;

/// Messages the core sent during a turn, for the bus to carry.
#[derive(Default)]
struct Outbox {
    messages: Vec<Message>,
    /// Set to crash the member at the next send: the send that takes a `Ready`'s messages
    /// happens before the WAL write of the same `Ready`.
    crash_at_send: bool,
}

/// The peer transport, as the simulation plays it.
struct BusSink(Arc<Mutex<Outbox>>);

/// The payload of the unwinding that crashes a member in the middle of a turn.
struct CrashInTurn;

impl MessageSink for BusSink {
    fn send(&self, messages: Vec<Message>) {
        let crash = {
            let mut outbox = self.0.lock().expect("outbox");
            outbox.messages.extend(messages);
            std::mem::take(&mut outbox.crash_at_send)
        };
        if crash {
            // Unwinds out of the core's `Ready` handling without running the panic hook: the
            // process died right after these messages left.
            std::panic::resume_unwind(Box::new(CrashInTurn));
        }
    }
}

struct Running {
    core: RaftCore,
    handle: RaftHandle,
    committed: Receiver<Committed>,
}

/// How a member's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEnd {
    Down,
    Done,
    /// The member applied its own removal and stopped.
    Removed,
    /// The member crashed in the middle of the turn (inside the core's `Ready` handling).
    CrashedInTurn,
}

pub struct SimNode {
    pub id: u64,
    dir: PathBuf,
    /// The member list it started with (the state machine keeps the current one).
    voters: Vec<u64>,
    /// None while crashed or removed.
    running: Option<Running>,
    /// Removed from the cluster and stopped for good, as the server exits when it applies its
    /// own removal.
    pub removed: bool,
    boots: u64,
    reuse_read_numbers: bool,
    outbox: Arc<Mutex<Outbox>>,
    pub state: StateMachine,
    /// Snapshots from a leader this member installed.
    pub snapshots_installed: u64,
    /// Local snapshots (log compactions) this member asked for.
    pub snapshots_taken: u64,
}

fn raft_err(e: impl std::fmt::Display) -> SimError {
    SimError::Raft(e.to_string())
}

impl SimNode {
    /// A member of the brand-new cluster `members`, or (not `fresh_cluster`) a member joining
    /// the running cluster whose member list, including it, is `members`.
    /// With `reuse_read_numbers`, every start numbers its reads from 1 again, as the Raft loop
    /// did before it numbered them from its start time: the bug the read check must catch.
    pub fn create(
        id: u64,
        dir: &Path,
        members: Vec<u64>,
        fresh_cluster: bool,
        reuse_read_numbers: bool,
    ) -> Result<SimNode, SimError> {
        Wal::create(dir, b"").map_err(raft_err)?;
        let mut node = SimNode {
            id,
            dir: dir.to_path_buf(),
            state: StateMachine::new(members.clone()),
            voters: members,
            running: None,
            removed: false,
            boots: 0,
            reuse_read_numbers,
            outbox: Arc::default(),
            snapshots_installed: 0,
            snapshots_taken: 0,
        };
        node.boot(fresh_cluster)?;
        Ok(node)
    }

    fn removed_itself(&self) -> bool {
        !self.state.members.contains(&self.id)
    }

    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    /// Starts from what the WAL holds, as a member does after a crash. With `forget`, the WAL
    /// and the state machine are wiped first: a disk that lost acknowledged writes (the bug the
    /// checks must catch).
    pub fn restart(&mut self, forget: bool) -> Result<(), SimError> {
        if forget {
            std::fs::remove_dir_all(&self.dir).map_err(raft_err)?;
            Wal::create(&self.dir, b"").map_err(raft_err)?;
            self.state.wipe(self.voters.clone());
        }
        self.boot(false)
    }

    /// The server's restart: open the WAL, bring the commit index and the configuration to the
    /// state machine's applied index (`rampart_raft_node::recovery`, as the server's bootstrap
    /// does), rebuild the log, and build the Raft loop over it.
    fn boot(&mut self, fresh_cluster: bool) -> Result<(), SimError> {
        let (wal, mut contents) = Wal::open(&self.dir).map_err(raft_err)?;
        let applied = self.state.applied_index;
        recovery::raise_commit_to_known(&mut contents, applied);
        let mut base = ConfState::default();
        base.set_voters(self.state.members.clone());
        let conf = recovery::conf_at_applied(&contents, base, applied);
        let storage = RaftStorage::recover(
            contents.snapshot,
            contents.hard_state,
            &contents.entries,
            Some(conf),
        )
        .map_err(raft_err)?
        .with_catch_up_entries(CATCH_UP_ENTRIES);
        *self.outbox.lock().expect("outbox") = Outbox::default();
        let (core, handle, committed) = RaftCore::new(
            NodeConfig {
                id: self.id,
                heartbeat_interval: HEARTBEAT,
                election_ticks: ELECTION_TICKS,
                applied_index: applied,
                fresh_cluster,
            },
            storage,
            wal,
            Arc::new(BusSink(self.outbox.clone())),
            ElectionTimeout::Fixed,
        )
        .map_err(raft_err)?;
        // Each start its own range, as the start time gives a server's loop.
        self.boots += 1;
        let mut core = core;
        core.number_reads_from(if self.reuse_read_numbers {
            1
        } else {
            self.boots << 40
        });
        self.running = Some(Running {
            core,
            handle,
            committed,
        });
        Ok(())
    }

    /// A crash: the Raft loop and everything it had not written to the WAL are gone, and the
    /// state machine keeps what it had made durable.
    pub fn crash(&mut self) {
        self.running = None;
        self.state.crash();
    }

    pub fn handle(&self) -> Option<&RaftHandle> {
        self.running.as_ref().map(|r| &r.handle)
    }

    pub fn is_leader(&self) -> bool {
        self.handle().is_some_and(|h| h.status().is_leader())
    }

    pub fn term(&self) -> u64 {
        self.handle().map(|h| h.status().term()).unwrap_or(0)
    }

    /// Proposes `data` through the handle, as a gRPC handler does; the reply comes after a turn.
    pub fn propose(&self, data: Vec<u8>) -> Option<Pending> {
        let handle = self.handle()?.clone();
        Some(sent(Box::pin(async move {
            handle.propose(data).await.map(|()| 0)
        })))
    }

    /// Proposes adding (`add`) or removing member `id`, as `member add`/`member remove` do.
    pub fn propose_membership(&self, id: u64, add: bool) -> Option<Pending> {
        let handle = self.handle()?.clone();
        let mut change = ConfChange {
            node_id: id,
            ..Default::default()
        };
        change.set_change_type(if add {
            ConfChangeType::AddNode
        } else {
            ConfChangeType::RemoveNode
        });
        Some(sent(Box::pin(async move {
            handle.propose_conf_change(change).await.map(|()| 0)
        })))
    }

    /// Asks for a linearizable read's index through the handle (Raft ReadIndex).
    pub fn read_index(&self) -> Option<Pending> {
        let handle = self.handle()?.clone();
        Some(sent(Box::pin(async move { handle.read_index().await })))
    }

    /// One turn of the real Raft loop at virtual time `now`: the waiting messages, a tick if
    /// `tick`, then the `Ready`. With `crash`, the member dies at the first message send of the
    /// `Ready` (before that `Ready`'s WAL write when the `Ready` has messages for followers), or
    /// after the turn if nothing was sent. Returns the messages sent, for the bus.
    pub fn turn(
        &mut self,
        now: Instant,
        tick: bool,
        crash: bool,
    ) -> Result<(TurnEnd, Vec<Message>), SimError> {
        let Some(running) = &mut self.running else {
            return Ok((TurnEnd::Down, Vec::new()));
        };
        if !running.core.receive() {
            return Err(SimError::Raft("the raft loop stopped".into()));
        }
        if tick {
            running.core.tick(now);
        }
        let serve_snapshot = running.core.will_install_snapshot();
        self.outbox.lock().expect("outbox").crash_at_send = crash;
        let finished = if serve_snapshot {
            self.finish_serving_snapshot(now)
        } else {
            let core = &mut self.running.as_mut().expect("up").core;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.finish_turn(now)))
        };
        let (messages, crash_left) = {
            let mut outbox = self.outbox.lock().expect("outbox");
            let crash_left = std::mem::take(&mut outbox.crash_at_send);
            (std::mem::take(&mut outbox.messages), crash_left)
        };
        // What the core forwarded before the end (or the crash) reaches the apply loop either
        // way; a crash then keeps only the durable part of it.
        self.apply_committed()?;
        let end = match finished {
            Ok(Ok(())) => TurnEnd::Done,
            Ok(Err(e)) => return Err(SimError::Raft(format!("member {}: {e}", self.id))),
            Err(payload) if payload.is::<CrashInTurn>() => TurnEnd::CrashedInTurn,
            // raft-rs 0.7 panics in a leader that goes on after applying its own removal (it
            // looks up its own progress); the server is exiting by then, and so is this member.
            Err(_) if self.removed_itself() => TurnEnd::Removed,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        if end == TurnEnd::CrashedInTurn || crash_left {
            self.crash();
        }
        if end == TurnEnd::Removed || (self.is_up() && self.removed_itself()) {
            self.running = None;
            self.removed = true;
            return Ok((TurnEnd::Removed, messages));
        }
        Ok((end, messages))
    }

    /// Finishes a turn in which the core hands a leader's snapshot to the apply loop and waits
    /// for its answer: the core runs on a helper thread for this turn while this thread answers,
    /// as the server's apply loop would. Whatever else arrives meanwhile is applied in order.
    fn finish_serving_snapshot(
        &mut self,
        now: Instant,
    ) -> std::thread::Result<Result<(), NodeError>> {
        let Some(Running {
            core, committed, ..
        }) = &mut self.running
        else {
            return Ok(Ok(()));
        };
        let mut snapshot_at = Vec::new();
        let mut failed = None;
        let (state, installed) = (&mut self.state, &mut self.snapshots_installed);
        let finished = std::thread::scope(|scope| {
            let turn = scope.spawn(|| core.finish_turn(now));
            loop {
                match committed.recv_timeout(Duration::from_millis(1)) {
                    Ok(c) => match apply(state, c, installed) {
                        Ok(Some(index)) => snapshot_at.push(index),
                        Ok(None) => {}
                        Err(e) => failed = Some(e),
                    },
                    Err(_) if turn.is_finished() => break,
                    Err(_) => {}
                }
            }
            turn.join()
        });
        for index in snapshot_at {
            self.snapshots_taken += 1;
            if let Some(h) = self.handle() {
                h.create_snapshot(index);
            }
        }
        match failed {
            Some(e) => Ok(Err(NodeError::StateMachine(e.to_string()))),
            None => finished,
        }
    }

    /// Plays the apply loop: takes what the core forwarded, in order.
    fn apply_committed(&mut self) -> Result<(), SimError> {
        let Some(running) = &self.running else {
            return Ok(());
        };
        while let Ok(c) = running.committed.try_recv() {
            if let Some(index) = apply(&mut self.state, c, &mut self.snapshots_installed)? {
                self.snapshots_taken += 1;
                running.handle.create_snapshot(index);
            }
        }
        Ok(())
    }
}

/// Polls once, which sends the request to the Raft loop (an `async fn` does nothing before).
fn sent(mut pending: Pending) -> Pending {
    let early = (&mut pending).now_or_never();
    assert!(early.is_none(), "the Raft loop answered before it ran");
    pending
}

/// The reply, if the Raft loop has given it.
pub fn poll(pending: &mut Pending) -> Option<Result<u64, NodeError>> {
    pending.now_or_never()
}

/// The apply loop's handling of one batch; returns an index to snapshot at.
fn apply(
    state: &mut StateMachine,
    committed: Committed,
    installed: &mut u64,
) -> Result<Option<u64>, SimError> {
    match committed {
        Committed::Entries(entries) => Ok(state.apply(&entries)),
        Committed::Snapshot { snapshot, done } => {
            let result = state.install(&snapshot.data, snapshot.get_metadata().index);
            *installed += 1;
            let failed = result.clone().err();
            let _ = done.send(result);
            match failed {
                Some(e) => Err(SimError::Raft(format!("snapshot install: {e}"))),
                None => Ok(None),
            }
        }
    }
}

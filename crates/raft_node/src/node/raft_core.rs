//! One member's Raft state and what a loop turn does with it, apart from the thread and the clock.
//!
//! A turn: take the waiting [`NodeMsg`]s (up to [`MAX_MESSAGES_PER_TURN`]), tick Raft if a
//! heartbeat interval has passed, ask the leader once for the reads that arrived, and handle one
//! `Ready` (send, persist, forward committed entries). [`RaftCore::run`] does turns on the Raft
//! thread with the wall clock; a deterministic test does them itself with [`RaftCore::receive`],
//! [`RaftCore::tick`] and [`RaftCore::finish_turn`], deciding when ticks happen and what time it is.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, ReadOnlyOption, SnapshotStatus, StateRole};
use rampart_wal::Wal;

use super::coalesce::coalesce_appends;
use super::reads::Reads;
use super::{
    Committed, MessageSink, NodeConfig, NodeMsg, NodeStatus, ProposalReply, RaftHandle,
    COMMITTED_QUEUE_BATCHES, MAX_MESSAGES_PER_TURN,
};
use crate::storage::RaftStorage;
use crate::NodeError;

/// How raft-rs picks a member's election timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionTimeout {
    /// Anew after every term change, between the election ticks and twice that, from raft-rs's
    /// own (unseeded) random generator: what a server does.
    Randomized,
    /// Always the configured election ticks, so that a seeded test decides the timing alone
    /// (by when it ticks each member).
    Fixed,
}

/// A member's Raft node, log and WAL, and the channels of a Raft loop. See the module docs.
pub struct RaftCore {
    node: RawNode<RaftStorage>,
    storage: RaftStorage,
    wal: Wal,
    sink: Arc<dyn MessageSink>,
    committed: SyncSender<Committed>,
    status: Arc<NodeStatus>,
    rx: Receiver<NodeMsg>,
    heartbeat: Duration,
    reads: Reads,
}

impl RaftCore {
    /// Builds the Raft node over `storage` (rebuilt from `wal`), with the handle that sends it
    /// messages and the channel of committed entries for the apply loop. Nothing runs until
    /// [`RaftCore::run`] or the step-by-step calls; [`super::start`] is what a server uses.
    pub fn new(
        config: NodeConfig,
        storage: RaftStorage,
        wal: Wal,
        sink: Arc<dyn MessageSink>,
        election: ElectionTimeout,
    ) -> Result<(RaftCore, RaftHandle, Receiver<Committed>), NodeError> {
        let hard_state = raft::Storage::initial_state(&storage)?.hard_state;
        let mut raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: 1,
            // Never claim more than is committed: raft-rs requires applied <= commit.
            applied: config.applied_index.min(hard_state.commit),
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            // Not `batch_append`: raft-rs 0.7 can add entries to a queued `MsgAppend` whose
            // previous index does not precede them (after an empty one), which a follower then
            // rejects with a panic (found by the simulation). Proposals are batched before Raft
            // instead (`propose_all`).
            ..Default::default()
        };
        if election == ElectionTimeout::Fixed {
            // raft-rs draws from [min, max): one value only.
            raft_config.min_election_tick = config.election_ticks;
            raft_config.max_election_tick = config.election_ticks + 1;
        }
        raft_config.validate()?;
        let logger = crate::logger::raft_logger(config.id);
        let mut node = RawNode::new(&raft_config, storage.clone(), &logger)?;
        let voters = node.raft.prs().conf().voters().ids().len();
        if voters == 1 && node.raft.prs().conf().voters().contains(config.id) {
            // Alone: nobody to wait for.
            node.campaign()?;
        } else if config.fresh_cluster {
            for _ in 1..config.election_ticks {
                node.tick();
            }
        }
        let (tx, rx) = mpsc::channel();
        let (committed_tx, committed_rx) = mpsc::sync_channel(COMMITTED_QUEUE_BATCHES);
        let status = Arc::new(NodeStatus::default());
        status.term.store(hard_state.term, Ordering::Release);
        status
            .commit_index
            .store(hard_state.commit, Ordering::Release);
        let core = RaftCore {
            node,
            storage,
            wal,
            sink,
            committed: committed_tx,
            status: status.clone(),
            rx,
            heartbeat: config.heartbeat_interval,
            reads: Reads::new(super::reads::first_read_context()),
        };
        let handle = RaftHandle {
            tx,
            status,
            id: config.id,
        };
        Ok((core, handle, committed_rx))
    }

    /// The Raft thread: turns driven by arriving messages and the heartbeat clock, until the
    /// handle says stop (or every handle is gone).
    pub(super) fn run(mut self) {
        let mut next_tick = Instant::now() + self.heartbeat;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(msg) => {
                    if !self.handle_batch(msg) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + self.heartbeat;
                self.tick(now);
            }
            if let Err(e) = self.finish_turn(now) {
                // A member that cannot persist its log must not go on acknowledging writes.
                tracing::error!(error = %e, "raft: cannot persist the log; stopping this member");
                std::process::exit(1);
            }
        }
    }

    /// Without waiting: handles the messages sent through the handle so far, at most
    /// [`MAX_MESSAGES_PER_TURN`] as one loop turn would. False when the loop must stop (asked
    /// to, or every handle is gone). For deterministic tests; the thread uses [`RaftCore::run`].
    pub fn receive(&mut self) -> bool {
        match self.rx.try_recv() {
            Ok(msg) => self.handle_batch(msg),
            Err(TryRecvError::Empty) => true,
            Err(TryRecvError::Disconnected) => false,
        }
    }

    /// One heartbeat interval has passed at `now`: Raft's logical clock advances, and reads that
    /// waited long are asked again (or given up).
    pub fn tick(&mut self, now: Instant) {
        self.node.tick();
        self.reads.retry(&mut self.node, now);
    }

    /// The end of a turn at `now`: asks the leader once for the reads that arrived, then handles
    /// Raft's `Ready` (messages out, WAL fsync, committed entries to the apply loop). An error
    /// means the log could not be persisted: the member must stop.
    pub fn finish_turn(&mut self, now: Instant) -> Result<(), NodeError> {
        self.reads.issue(&mut self.node, now);
        self.on_ready()
    }

    /// Numbers this loop's ReadIndex requests from `first` on instead of from its start time
    /// (which no seeded test can reproduce). Each start of a member must use numbers the
    /// member's earlier runs did not: see `first_read_context`. For deterministic tests.
    pub fn number_reads_from(&mut self, first: u64) {
        self.reads.renumber(first);
    }

    /// True when the next [`RaftCore::finish_turn`] hands a snapshot from the leader to the apply
    /// loop and blocks until the apply loop answers: whoever drives the core step by step must
    /// then answer from another thread.
    pub fn will_install_snapshot(&self) -> bool {
        self.node.raft.raft_log.unstable_snapshot().is_some()
    }

    /// Handles `first` and then whatever else is waiting, up to [`MAX_MESSAGES_PER_TURN`] in
    /// all, so a burst of proposals ends in one `Ready` and one fsync. False when the loop must
    /// stop.
    fn handle_batch(&mut self, first: NodeMsg) -> bool {
        let mut proposals = Proposals::default();
        let mut next = Some(first);
        let mut taken = 1;
        while let Some(msg) = next.take() {
            match msg {
                NodeMsg::Propose { data, reply } => {
                    if proposals.bytes + data.len() > MAX_PROPOSAL_BATCH_BYTES {
                        self.propose_all(&mut proposals);
                    }
                    proposals.push(data, reply)
                }
                other => {
                    // Other messages keep their order relative to the proposals before them.
                    self.propose_all(&mut proposals);
                    if !self.handle(other) {
                        return false;
                    }
                }
            }
            if taken < MAX_MESSAGES_PER_TURN {
                next = self.rx.try_recv().ok();
                taken += 1;
            }
        }
        self.propose_all(&mut proposals);
        true
    }

    /// Hands the waiting proposals to Raft as one `MsgProp` with all their entries: the leader
    /// appends them in one go and sends each follower one `MsgAppend` for all of them, and a
    /// follower forwards them to the leader in one message. Proposed one by one, each entry
    /// would cost its own `MsgAppend` per follower, and its own acknowledgement back.
    fn propose_all(&mut self, proposals: &mut Proposals) {
        if proposals.replies.is_empty() {
            return;
        }
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.node.raft.id;
        message.set_entries(std::mem::take(&mut proposals.entries).into());
        proposals.bytes = 0;
        let result = self.node.step(message).map_err(NodeError::from);
        for reply in proposals.replies.drain(..) {
            reply.send(result.clone());
        }
    }

    /// Handles one message; false when the loop must stop.
    fn handle(&mut self, msg: NodeMsg) -> bool {
        match msg {
            NodeMsg::Propose { data, reply } => {
                let mut proposals = Proposals::default();
                proposals.push(data, reply);
                self.propose_all(&mut proposals);
            }
            NodeMsg::ProposeConfChange { change, accepted } => {
                let context = change.context.to_vec();
                let result = self
                    .node
                    .propose_conf_change(context, change)
                    .map_err(NodeError::from);
                let _ = accepted.send(result);
            }
            NodeMsg::ReadIndex { index } => self.reads.wait(index),
            NodeMsg::Step(m) => {
                if let Err(e) = self.node.step(*m) {
                    tracing::debug!(error = %e, "raft: step failed");
                }
            }
            NodeMsg::Unreachable(peer) => self.node.report_unreachable(peer),
            NodeMsg::SnapshotReport { peer, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.node.report_snapshot(peer, status);
            }
            NodeMsg::CreateSnapshot { index } => {
                if let Err(e) = self.create_snapshot(index) {
                    tracing::warn!(error = %e, index, "raft: snapshot failed");
                }
            }
            NodeMsg::TransferLeader(to) => self.node.transfer_leader(to),
            NodeMsg::Stop => {
                self.reads.fail_all(NodeError::Stopped);
                return false;
            }
        }
        true
    }

    fn create_snapshot(&mut self, index: u64) -> Result<(), NodeError> {
        if index <= self.storage.last_snapshot_index() {
            return Ok(());
        }
        let meta = self.storage.create_snapshot(index)?;
        self.wal.save_snapshot(&meta)?;
        self.wal.release_to(meta.index)?;
        tracing::info!(
            index = meta.index,
            term = meta.term,
            "saved snapshot and compacted the raft log"
        );
        Ok(())
    }

    fn on_ready(&mut self) -> Result<(), NodeError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        if !ready.messages().is_empty() {
            self.sink.send(coalesce_appends(ready.take_messages()));
        }
        if let Some(ss) = ready.ss() {
            self.status.leader.store(ss.leader_id, Ordering::Release);
            self.status
                .is_leader
                .store(ss.raft_state == StateRole::Leader, Ordering::Release);
            if ss.leader_id == raft::INVALID_ID {
                // No leader to answer: let them retry when one appears.
                tracing::debug!("raft: no leader");
            }
        }
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(snapshot)?;
        }
        for rs in ready.take_read_states() {
            self.reads.answer(&rs.request_ctx, rs.index);
        }
        self.forward_committed(ready.take_committed_entries())?;

        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        if ready.must_sync() {
            self.wal.save(hard_state.as_ref(), &entries)?;
        } else if let Some(hs) = &hard_state {
            // Only the commit index moved (etcd's MustSync is false too): a commit index is a
            // hint Raft can rebuild from the log and the leader, so it needs no fsync of its own.
            // Followers would otherwise sync twice per append: once for the entries, once for
            // the commit that the next message brings.
            self.wal.record_commit(hs)?;
        }
        if !entries.is_empty() {
            self.storage.mem().wl().append(&entries)?;
            if let Some(last) = entries.last() {
                self.status.last_index.store(last.index, Ordering::Release);
            }
        }
        if let Some(hs) = hard_state {
            self.status.term.store(hs.term, Ordering::Release);
            self.status.commit_index.store(hs.commit, Ordering::Release);
            self.storage.mem().wl().set_hardstate(hs);
        }
        if !ready.persisted_messages().is_empty() {
            self.sink.send(ready.take_persisted_messages());
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            let hard_state = {
                let mut core = self.storage.mem().wl();
                core.mut_hard_state().set_commit(commit);
                core.hard_state().clone()
            };
            self.wal.record_commit(&hard_state)?;
            self.status.commit_index.store(commit, Ordering::Release);
        }
        if !light.messages().is_empty() {
            self.sink.send(coalesce_appends(light.take_messages()));
        }
        self.forward_committed(light.take_committed_entries())?;
        self.node.advance_apply();
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let meta = snapshot.get_metadata().clone();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            "raft: installing snapshot from leader"
        );
        let (done, wait) = mpsc::sync_channel(1);
        self.committed
            .send(Committed::Snapshot {
                snapshot: snapshot.clone(),
                done,
            })
            .map_err(|_| NodeError::Stopped)?;
        wait.recv()
            .map_err(|_| NodeError::Stopped)?
            .map_err(NodeError::StateMachine)?;
        self.storage.apply_snapshot(&snapshot)?;
        self.wal.save_snapshot(&meta)?;
        self.status.last_index.store(meta.index, Ordering::Release);
        Ok(())
    }

    fn forward_committed(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        if entries.is_empty() {
            return Ok(());
        }
        for entry in &entries {
            match entry.get_entry_type() {
                EntryType::EntryConfChange => {
                    let cc: ConfChange = protobuf::Message::parse_from_bytes(&entry.data)
                        .map_err(|e| NodeError::Decode(e.to_string()))?;
                    let cs = self.node.apply_conf_change(&cc)?;
                    self.storage.mem().wl().set_conf_state(cs);
                }
                EntryType::EntryConfChangeV2 => {
                    let cc: ConfChangeV2 = protobuf::Message::parse_from_bytes(&entry.data)
                        .map_err(|e| NodeError::Decode(e.to_string()))?;
                    let cs = self.node.apply_conf_change(&cc)?;
                    self.storage.mem().wl().set_conf_state(cs);
                }
                EntryType::EntryNormal => {}
            }
        }
        self.committed
            .send(Committed::Entries(entries))
            .map_err(|_| NodeError::Stopped)
    }
}

/// A batch of proposals goes to Raft once it holds this many bytes: a follower forwards the
/// whole batch in one message, which the peer transport cannot split.
const MAX_PROPOSAL_BATCH_BYTES: usize = 1024 * 1024;

/// Proposals taken in one loop turn, waiting to go to Raft together.
#[derive(Default)]
struct Proposals {
    entries: Vec<Entry>,
    replies: Vec<ProposalReply>,
    bytes: usize,
}

impl Proposals {
    fn push(&mut self, data: Vec<u8>, reply: ProposalReply) {
        self.bytes += data.len();
        self.entries.push(Entry {
            data: data.into(),
            ..Default::default()
        });
        self.replies.push(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{ElectionTimeout, NodeConfig};
    use raft::eraftpb::{ConfState, HardState};
    use std::sync::Mutex;

    /// Keeps what the node sends to its peers.
    #[derive(Default)]
    struct Outbox(Mutex<Vec<Message>>);
    impl MessageSink for Outbox {
        fn send(&self, messages: Vec<Message>) {
            self.0.lock().unwrap().extend(messages);
        }
    }

    #[test]
    fn a_follower_forwards_a_turns_proposals_in_batches_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), b"test").unwrap();
        let mut conf = ConfState::default();
        conf.set_voters(vec![1, 2]);
        let storage = RaftStorage::recover(None, HardState::default(), &[], Some(conf)).unwrap();
        let config = NodeConfig {
            id: 1,
            heartbeat_interval: Duration::from_millis(100),
            election_ticks: 10,
            applied_index: 0,
            fresh_cluster: false,
        };
        let outbox = Arc::new(Outbox::default());
        let (mut core, handle, _committed) =
            RaftCore::new(config, storage, wal, outbox.clone(), ElectionTimeout::Fixed).unwrap();
        // Member 2 leads term 1.
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        heartbeat.from = 2;
        heartbeat.to = 1;
        heartbeat.term = 1;
        handle.step(heartbeat);
        assert!(core.receive());
        core.finish_turn(Instant::now()).unwrap();
        assert_eq!(handle.status().leader(), 2);
        outbox.0.lock().unwrap().clear();

        // Five proposals of 0.3 of a batch each, taken in one turn: forwarded as a batch of
        // three (a fourth would pass the limit) and a batch of two, in order.
        let size = MAX_PROPOSAL_BATCH_BYTES * 3 / 10;
        for i in 0..5u8 {
            handle
                .propose_detached(vec![i; size], |e| panic!("refused: {e}"))
                .unwrap();
        }
        assert!(core.receive());
        core.finish_turn(Instant::now()).unwrap();
        let sent = outbox.0.lock().unwrap();
        let forwarded: Vec<Vec<u8>> = sent
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgPropose && m.to == 2)
            .map(|m| m.entries.iter().map(|e| e.data[0]).collect())
            .collect();
        assert_eq!(forwarded, vec![vec![0, 1, 2], vec![3, 4]]);
    }
}

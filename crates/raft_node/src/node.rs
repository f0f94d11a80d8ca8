//! The Raft loop: one thread that owns raft-rs's `RawNode` and the WAL.
//!
//! Everything that talks to Raft (gRPC handlers proposing, the peer transport delivering
//! messages, the apply loop asking for a snapshot) sends a [`NodeMsg`] to this thread. The loop
//! drains every waiting message before it asks Raft for a `Ready`, so many proposals end up in one
//! append and one WAL fsync ("one fsync per ready"). Messages to followers go out before the
//! leader's own fsync, as Raft allows. Committed entries go to the apply loop over a channel, so a
//! slow apply never delays heartbeats.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, ReadOnlyOption, SnapshotStatus, StateRole};
use rampart_wal::Wal;
use tokio::sync::oneshot;

use crate::storage::RaftStorage;
use crate::NodeError;

/// At most this many queued messages are taken in one loop turn before Raft is asked for a
/// `Ready`; bounds the latency one turn can add while still batching a burst of proposals.
pub const MAX_MESSAGES_PER_TURN: usize = 4096;

/// A linearizable read that has not heard back from the leader after this long is asked again
/// (the leader may have changed, or the request was dropped while there was none).
pub const READ_INDEX_RETRY: Duration = Duration::from_millis(500);

/// Pending linearizable reads are failed after this long; the caller reports a timeout.
pub const READ_INDEX_GIVE_UP: Duration = Duration::from_secs(10);

/// Committed batches waiting for the apply loop; when it falls this far behind, Raft waits.
pub const COMMITTED_QUEUE_BATCHES: usize = 1024;

/// What the Raft loop hands to the apply loop, in log order.
pub enum Committed {
    /// Committed entries (normal and conf-change), in index order.
    Entries(Vec<Entry>),
    /// A snapshot from the leader: the state machine must replace its state with
    /// `snapshot.data` and then answer on `done` (the WAL records the snapshot only after that).
    Snapshot {
        snapshot: Snapshot,
        done: SyncSender<Result<(), String>>,
    },
}

/// Messages for peers leave through this; the peer transport implements it.
pub trait MessageSink: Send + Sync + 'static {
    fn send(&self, messages: Vec<Message>);
}

/// Settings of the Raft loop.
pub struct NodeConfig {
    pub id: u64,
    /// Raft ticks every heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Election timeout in ticks (election timeout / heartbeat interval).
    pub election_ticks: usize,
    /// Index the state machine has already applied (from its consistent index).
    pub applied_index: u64,
    /// True for a member of a brand-new cluster: its first election is hurried along as etcd
    /// does, by advancing the election clock to one tick before it fires.
    pub fresh_cluster: bool,
}

/// Raft facts shared with the rest of the server without going through the loop.
#[derive(Default)]
pub struct NodeStatus {
    leader: AtomicU64,
    term: AtomicU64,
    commit_index: AtomicU64,
    last_index: AtomicU64,
    is_leader: AtomicBool,
}

impl NodeStatus {
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Acquire)
    }
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Acquire)
    }
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }
}

enum NodeMsg {
    Propose {
        data: Vec<u8>,
        accepted: oneshot::Sender<Result<(), NodeError>>,
    },
    ProposeConfChange {
        change: ConfChange,
        accepted: oneshot::Sender<Result<(), NodeError>>,
    },
    ReadIndex {
        index: oneshot::Sender<Result<u64, NodeError>>,
    },
    Step(Box<Message>),
    Unreachable(u64),
    SnapshotReport {
        peer: u64,
        ok: bool,
    },
    CreateSnapshot {
        index: u64,
    },
    TransferLeader(u64),
    Stop,
}

/// A cheap, cloneable handle to the Raft loop.
#[derive(Clone)]
pub struct RaftHandle {
    tx: Sender<NodeMsg>,
    status: Arc<NodeStatus>,
    id: u64,
}

impl RaftHandle {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    /// Appends `data` to the Raft log. Resolves when Raft accepted (or refused) the proposal —
    /// not when it is committed: the caller waits for the apply loop for that.
    pub async fn propose(&self, data: Vec<u8>) -> Result<(), NodeError> {
        let (accepted, rx) = oneshot::channel();
        self.send(NodeMsg::Propose { data, accepted })?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Proposes a membership change (its context tells the state machine who joins or leaves).
    pub async fn propose_conf_change(&self, change: ConfChange) -> Result<(), NodeError> {
        let (accepted, rx) = oneshot::channel();
        self.send(NodeMsg::ProposeConfChange { change, accepted })?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Asks the leader for the commit index a linearizable read must wait for (Raft ReadIndex).
    /// Concurrent callers share one round trip.
    pub async fn read_index(&self) -> Result<u64, NodeError> {
        let (index, rx) = oneshot::channel();
        self.send(NodeMsg::ReadIndex { index })?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Delivers a message from a peer.
    pub fn step(&self, message: Message) {
        let _ = self.tx.send(NodeMsg::Step(Box::new(message)));
    }

    pub fn report_unreachable(&self, peer: u64) {
        let _ = self.tx.send(NodeMsg::Unreachable(peer));
    }

    pub fn report_snapshot(&self, peer: u64, ok: bool) {
        let _ = self.tx.send(NodeMsg::SnapshotReport { peer, ok });
    }

    /// The state machine has durably applied everything up to `index`: take a snapshot there and
    /// compact the log.
    pub fn create_snapshot(&self, index: u64) {
        let _ = self.tx.send(NodeMsg::CreateSnapshot { index });
    }

    pub fn transfer_leader(&self, to: u64) {
        let _ = self.tx.send(NodeMsg::TransferLeader(to));
    }

    /// Stops the loop; pending requests fail.
    pub fn stop(&self) {
        let _ = self.tx.send(NodeMsg::Stop);
    }

    fn send(&self, msg: NodeMsg) -> Result<(), NodeError> {
        self.tx.send(msg).map_err(|_| NodeError::Stopped)
    }
}

/// Reads waiting for one ReadIndex round trip.
struct ReadBatch {
    waiters: Vec<oneshot::Sender<Result<u64, NodeError>>>,
    first_asked: Instant,
    last_asked: Instant,
}

struct RaftLoop {
    node: RawNode<RaftStorage>,
    storage: RaftStorage,
    wal: Wal,
    sink: Arc<dyn MessageSink>,
    committed: SyncSender<Committed>,
    status: Arc<NodeStatus>,
    rx: Receiver<NodeMsg>,
    heartbeat: Duration,
    pending_reads: Vec<oneshot::Sender<Result<u64, NodeError>>>,
    inflight_reads: HashMap<u64, ReadBatch>,
    next_read_ctx: u64,
}

/// Starts the Raft loop on its own thread.
pub fn start(
    config: NodeConfig,
    storage: RaftStorage,
    wal: Wal,
    sink: Arc<dyn MessageSink>,
) -> Result<(RaftHandle, Receiver<Committed>, JoinHandle<()>), NodeError> {
    let hard_state = raft::Storage::initial_state(&storage)?.hard_state;
    let raft_config = raft::Config {
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
        ..Default::default()
    };
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
    let mut raft_loop = RaftLoop {
        node,
        storage,
        wal,
        sink,
        committed: committed_tx,
        status: status.clone(),
        rx,
        heartbeat: config.heartbeat_interval,
        pending_reads: Vec::new(),
        inflight_reads: HashMap::new(),
        next_read_ctx: 1,
    };
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || raft_loop.run())
        .map_err(NodeError::from)?;
    Ok((
        RaftHandle {
            tx,
            status,
            id: config.id,
        },
        committed_rx,
        thread,
    ))
}

impl RaftLoop {
    fn run(&mut self) {
        let mut next_tick = Instant::now() + self.heartbeat;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(msg) => {
                    if !self.handle(msg) {
                        return;
                    }
                    for _ in 1..MAX_MESSAGES_PER_TURN {
                        match self.rx.try_recv() {
                            Ok(msg) => {
                                if !self.handle(msg) {
                                    return;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.node.tick();
                next_tick = now + self.heartbeat;
                self.retry_reads(now);
            }
            self.issue_reads();
            if let Err(e) = self.on_ready() {
                // A member that cannot persist its log must not go on acknowledging writes.
                tracing::error!(error = %e, "raft: cannot persist the log; stopping this member");
                std::process::exit(1);
            }
        }
    }

    /// Handles one message; false when the loop must stop.
    fn handle(&mut self, msg: NodeMsg) -> bool {
        match msg {
            NodeMsg::Propose { data, accepted } => {
                let result = self.node.propose(vec![], data).map_err(NodeError::from);
                let _ = accepted.send(result);
            }
            NodeMsg::ProposeConfChange { change, accepted } => {
                let context = change.context.to_vec();
                let result = self
                    .node
                    .propose_conf_change(context, change)
                    .map_err(NodeError::from);
                let _ = accepted.send(result);
            }
            NodeMsg::ReadIndex { index } => self.pending_reads.push(index),
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
                self.fail_reads(NodeError::Stopped);
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

    fn issue_reads(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let now = Instant::now();
        self.inflight_reads.insert(
            ctx,
            ReadBatch {
                waiters: std::mem::take(&mut self.pending_reads),
                first_asked: now,
                last_asked: now,
            },
        );
        self.node.read_index(ctx.to_be_bytes().to_vec());
    }

    fn retry_reads(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (ctx, batch) in self.inflight_reads.iter_mut() {
            if now.duration_since(batch.first_asked) >= READ_INDEX_GIVE_UP {
                expired.push(*ctx);
            } else if now.duration_since(batch.last_asked) >= READ_INDEX_RETRY {
                batch.last_asked = now;
                self.node.read_index(ctx.to_be_bytes().to_vec());
            }
        }
        for ctx in expired {
            if let Some(batch) = self.inflight_reads.remove(&ctx) {
                for w in batch.waiters {
                    let _ = w.send(Err(NodeError::Timeout));
                }
            }
        }
    }

    fn fail_reads(&mut self, err: NodeError) {
        for w in self.pending_reads.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
        for (_, batch) in self.inflight_reads.drain() {
            for w in batch.waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), NodeError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        if !ready.messages().is_empty() {
            self.sink.send(ready.take_messages());
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
            self.answer_read(&rs.request_ctx, rs.index);
        }
        self.forward_committed(ready.take_committed_entries())?;

        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        if !entries.is_empty() || hard_state.is_some() {
            self.wal.save(hard_state.as_ref(), &entries)?;
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
            self.sink.send(light.take_messages());
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

    fn answer_read(&mut self, ctx: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        if let Some(batch) = self.inflight_reads.remove(&u64::from_be_bytes(bytes)) {
            for w in batch.waiters {
                let _ = w.send(Ok(index));
            }
        }
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

/// True for the messages that carry a snapshot (sent by the transport on their own stream).
pub fn is_snapshot(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgSnapshot
}

//! The Raft loop: one thread that owns raft-rs's `RawNode` and the WAL.
//!
//! Everything that talks to Raft (gRPC handlers proposing, the peer transport delivering
//! messages, the apply loop asking for a snapshot) sends a [`NodeMsg`] to this thread. The loop
//! drains every waiting message before it asks Raft for a `Ready`, so many proposals end up in one
//! append and one WAL fsync ("one fsync per ready"). Messages to followers go out before the
//! leader's own fsync, as Raft allows. Committed entries go to the apply loop over a channel, so a
//! slow apply never delays heartbeats.
//!
//! The thread and its wall clock are a thin shell ([`RaftCore::run`]) around [`RaftCore`], whose
//! turn (take the waiting messages, maybe tick, ask Raft for a `Ready` and persist it) can also
//! be driven step by step with a virtual clock: the deterministic simulation in
//! `rampart-robustness` runs exactly this code.

mod coalesce;
mod raft_core;
mod reads;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use raft::eraftpb::{ConfChange, Entry, Message, MessageType, Snapshot};
use rampart_wal::Wal;
use tokio::sync::oneshot;

use crate::storage::RaftStorage;
use crate::NodeError;

pub use raft_core::{ElectionTimeout, RaftCore};

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

/// Who hears whether Raft took a proposal.
pub(crate) enum ProposalReply {
    /// Told either way.
    Wait(oneshot::Sender<Result<(), NodeError>>),
    /// Told only if Raft refused it: a caller that waits for the entry's apply anyway saves a
    /// thread wake-up per request.
    OnRefusal(RefusalHook),
}

impl ProposalReply {
    pub(crate) fn send(self, result: Result<(), NodeError>) {
        match (self, result) {
            (ProposalReply::Wait(tx), result) => {
                let _ = tx.send(result);
            }
            (ProposalReply::OnRefusal(mut hook), Ok(())) => hook.0 = None,
            (ProposalReply::OnRefusal(mut hook), Err(e)) => hook.refuse(e),
        }
    }
}

/// Called if a proposal is refused, including when the loop stops before it got to it (then
/// with [`NodeError::Stopped`], as a dropped oneshot would tell a waiting caller).
pub(crate) struct RefusalHook(Option<Box<dyn FnOnce(NodeError) + Send>>);

impl RefusalHook {
    fn refuse(&mut self, e: NodeError) {
        if let Some(refused) = self.0.take() {
            refused(e);
        }
    }
}

impl Drop for RefusalHook {
    fn drop(&mut self) {
        self.refuse(NodeError::Stopped);
    }
}

pub(crate) enum NodeMsg {
    Propose {
        data: Vec<u8>,
        reply: ProposalReply,
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
        self.send(NodeMsg::Propose {
            data,
            reply: ProposalReply::Wait(accepted),
        })?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Appends `data` to the Raft log without waiting to hear that Raft took it: `refused` is
    /// called (on the Raft thread) only if it did not. For a caller that learns the outcome from
    /// the apply loop anyway.
    pub fn propose_detached(
        &self,
        data: Vec<u8>,
        refused: impl FnOnce(NodeError) + Send + 'static,
    ) -> Result<(), NodeError> {
        self.send(NodeMsg::Propose {
            data,
            reply: ProposalReply::OnRefusal(RefusalHook(Some(Box::new(refused)))),
        })
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

#[cfg(test)]
impl RaftHandle {
    /// A handle whose messages land in the returned queue instead of a Raft loop.
    pub(crate) fn detached(id: u64) -> (RaftHandle, Receiver<NodeMsg>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = RaftHandle {
            tx,
            status: Arc::new(NodeStatus::default()),
            id,
        };
        (handle, rx)
    }
}

/// Starts the Raft loop on its own thread.
pub fn start(
    config: NodeConfig,
    storage: RaftStorage,
    wal: Wal,
    sink: Arc<dyn MessageSink>,
) -> Result<(RaftHandle, Receiver<Committed>, JoinHandle<()>), NodeError> {
    let (core, handle, committed) =
        RaftCore::new(config, storage, wal, sink, ElectionTimeout::Randomized)?;
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || core.run())
        .map_err(NodeError::from)?;
    Ok((handle, committed, thread))
}

/// True for the messages that carry a snapshot (sent by the transport on their own stream).
pub fn is_snapshot(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgSnapshot
}

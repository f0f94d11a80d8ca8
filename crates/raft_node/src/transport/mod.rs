//! Member-to-member (peer) traffic on the peer port, under the peer TLS settings: Raft messages
//! on a stream of their own ([`wire`]), snapshots over gRPC.
//!
//! Each peer gets one long-lived stream fed from a bounded queue; a full queue or a broken
//! stream is reported to Raft as "unreachable" (Raft resends, so dropping is safe and keeps the
//! Raft loop from ever blocking on the network). Snapshots travel on their own call, in chunks,
//! with the state machine's data read at send time.

mod receive;
mod send;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use raft::eraftpb::Message;
use tokio::sync::mpsc;

pub use receive::PeerService;

use crate::node::{is_snapshot, MessageSink, RaftHandle};

/// Raft messages queued for one peer before further ones are dropped (and the peer reported
/// unreachable).
pub const PEER_QUEUE_MESSAGES: usize = 4096;

/// Raft messages packed into one gRPC frame at most.
pub const MAX_MESSAGES_PER_BATCH: usize = 512;

/// Largest peer gRPC message accepted: a batch of appends (raft caps each at 1 MiB).
pub const MAX_PEER_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Snapshot data is streamed in pieces of this size.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Produces the state machine's data for a snapshot being sent to a follower.
pub type SnapshotSource = Arc<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>;

/// Opens a (lazy) gRPC channel to a peer URL with the peer TLS settings.
pub type PeerConnector =
    Arc<dyn Fn(&str) -> Result<tonic::transport::Channel, String> + Send + Sync>;

/// Dials a peer URL with the peer TLS settings, offering the Raft message stream's protocol
/// ([`wire::RAFT_ALPN`]).
pub type PeerDialer = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<rampart_tls::ClientConn>> + Send>>
        + Send
        + Sync,
>;

/// A peer connection that stays idle this long is probed; after a few unanswered probes, or
/// data unacknowledged for [`UNACKED_TIMEOUT`], it is closed (a member that vanished without
/// closing its connections, as a host that lost power does).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 2;
const UNACKED_TIMEOUT: Duration = Duration::from_secs(20);

/// Turns on TCP keepalive and the unacknowledged-data timeout on a peer connection.
pub(crate) fn keep_alive(tcp: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = tcp.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `fd` is an open socket for the duration of the call and `value` outlives it.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "peer: cannot set a socket option");
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPIDLE,
        KEEPALIVE_IDLE.as_secs() as libc::c_int,
    );
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        KEEPALIVE_INTERVAL.as_secs() as libc::c_int,
    );
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPCNT,
        KEEPALIVE_PROBES as libc::c_int,
    );
    set(
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        UNACKED_TIMEOUT.as_millis() as libc::c_int,
    );
}

pub(crate) struct Shared {
    pub cluster_id: u64,
    pub local_id: u64,
    pub handle: OnceLock<RaftHandle>,
    pub connect: PeerConnector,
    pub dial: PeerDialer,
    pub snapshot_source: SnapshotSource,
}

impl Shared {
    pub fn report_unreachable(&self, peer: u64) {
        if let Some(h) = self.handle.get() {
            h.report_unreachable(peer);
        }
    }
}

/// Sends Raft messages to the other members.
pub struct PeerTransport {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    peers: RwLock<HashMap<u64, Peer>>,
}

struct Peer {
    queue: mpsc::Sender<Message>,
    urls: Vec<String>,
}

impl PeerTransport {
    /// `peers` maps member id → peer URLs (the first reachable one is used).
    pub fn new(
        cluster_id: u64,
        local_id: u64,
        peers: &HashMap<u64, Vec<String>>,
        connect: PeerConnector,
        dial: PeerDialer,
        snapshot_source: SnapshotSource,
        runtime: tokio::runtime::Handle,
    ) -> Arc<PeerTransport> {
        let shared = Arc::new(Shared {
            cluster_id,
            local_id,
            handle: OnceLock::new(),
            connect,
            dial,
            snapshot_source,
        });
        let transport = Arc::new(PeerTransport {
            shared,
            runtime,
            peers: RwLock::new(HashMap::new()),
        });
        for (id, urls) in peers {
            if *id != local_id {
                transport.add_peer(*id, urls.clone());
            }
        }
        transport
    }

    /// Gives the transport the Raft handle it reports unreachable peers and snapshot results to.
    pub fn attach(&self, handle: RaftHandle) {
        let _ = self.shared.handle.set(handle);
    }

    /// Starts sending to a (new) member.
    pub fn add_peer(&self, id: u64, urls: Vec<String>) {
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES);
        let shared = self.shared.clone();
        self.runtime
            .spawn(send::run_peer_stream(id, urls.clone(), rx, shared));
        self.peers
            .write()
            .expect("peers")
            .insert(id, Peer { queue: tx, urls });
    }

    /// Stops sending to a removed member (its task ends when the queue closes).
    pub fn remove_peer(&self, id: u64) {
        self.peers.write().expect("peers").remove(&id);
    }
}

impl MessageSink for PeerTransport {
    fn send(&self, messages: Vec<Message>) {
        let peers = self.peers.read().expect("peers");
        for m in messages {
            let to = m.to;
            let Some(peer) = peers.get(&to) else {
                tracing::debug!(
                    to = format!("{to:x}"),
                    "raft: message to unknown member dropped"
                );
                continue;
            };
            if is_snapshot(&m) {
                self.runtime.spawn(send::send_snapshot(
                    m,
                    peer.urls.clone(),
                    self.shared.clone(),
                ));
                continue;
            }
            if peer.queue.try_send(m).is_err() {
                self.shared.report_unreachable(to);
            }
        }
    }
}

#[cfg(test)]
mod tests;

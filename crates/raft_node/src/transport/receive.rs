//! The receiving half on the peer port: the Raft message stream, and the gRPC service (snapshots,
//! and the message stream of members that lack the other one).

use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use rampart_proto::peer::raft_transport_server::{RaftTransport, RaftTransportServer};
use rampart_proto::peer::{MessageBatch, SnapshotChunk, StreamAck};
use tonic::{Request, Response, Status, Streaming};

use rampart_tls::{Conn, Divert};
use tokio::io::BufReader;

use super::wire::{self, Hello, PREFACE, RAFT_ALPN};
use super::MAX_PEER_MESSAGE_BYTES;
use crate::node::RaftHandle;

/// A connection that does not say hello within this is closed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Read buffer of one incoming Raft message stream.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Largest snapshot accepted from a leader, as a guard against a runaway sender.
pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024 * 1024;

pub struct PeerService {
    cluster_id: u64,
    handle: RaftHandle,
}

impl PeerService {
    pub fn new(cluster_id: u64, handle: RaftHandle) -> PeerService {
        PeerService { cluster_id, handle }
    }

    /// The tonic service to mount on the peer listener.
    pub fn into_server(self) -> RaftTransportServer<PeerService> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
    }

    /// Hands the peer port's Raft message streams to this member's Raft loop.
    pub fn divert(&self) -> Divert {
        let cluster_id = self.cluster_id;
        let handle = self.handle.clone();
        Divert {
            alpn: RAFT_ALPN,
            preface: PREFACE,
            to: Arc::new(move |conn| {
                tokio::spawn(serve_stream(conn, cluster_id, handle.clone()));
            }),
        }
    }

    fn check_cluster(&self, cluster_id: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "request cluster ID mismatch (got {cluster_id:x} want {:x}): the sender belongs to another cluster",
                self.cluster_id
            )));
        }
        Ok(())
    }
}

/// Why a hello is refused, if it is.
fn refusal(hello: &Hello, cluster_id: u64, local_id: u64) -> Option<String> {
    if hello.cluster_id != cluster_id {
        return Some(format!(
            "request cluster ID mismatch (got {:x} want {cluster_id:x}): the sender belongs to another cluster",
            hello.cluster_id
        ));
    }
    if hello.to != local_id {
        return Some(format!(
            "stream for member {:x} reached member {local_id:x}",
            hello.to
        ));
    }
    None
}

/// Reads one member's Raft message stream and steps each message into Raft.
async fn serve_stream(conn: Conn, cluster_id: u64, handle: RaftHandle) {
    super::keep_alive(conn.tcp());
    let remote = conn.tcp().peer_addr().ok();
    let mut conn = BufReader::with_capacity(READ_BUFFER_BYTES, conn);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, wire::read_hello(&mut conn)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => {
            tracing::debug!(remote = ?remote, error = %e, "peer: bad stream hello");
            return;
        }
        Err(_) => {
            tracing::debug!(remote = ?remote, "peer: no stream hello");
            return;
        }
    };
    if let Some(reason) = refusal(&hello, cluster_id, handle.id()) {
        tracing::warn!(from = format!("{:x}", hello.from), remote = ?remote, reason = %reason, "peer: refused a stream");
        let _ = wire::write_reply(conn.get_mut(), Err(&reason)).await;
        return;
    }
    if let Err(e) = wire::write_reply(conn.get_mut(), Ok(())).await {
        tracing::debug!(remote = ?remote, error = %e, "peer: stream closed during hello");
        return;
    }
    let mut buf = Vec::new();
    loop {
        match wire::read_message(&mut conn, &mut buf).await {
            Ok(Some(message)) => handle.step(message),
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(from = format!("{:x}", hello.from), error = %e, "peer: stream ended");
                return;
            }
        }
        if buf.capacity() > READ_BUFFER_BYTES * 64 {
            buf = Vec::new();
        }
    }
}

fn decode(bytes: &[u8]) -> Result<Message, Status> {
    Message::parse_from_bytes(bytes)
        .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

#[tonic::async_trait]
impl RaftTransport for PeerService {
    async fn stream(
        &self,
        request: Request<Streaming<MessageBatch>>,
    ) -> Result<Response<StreamAck>, Status> {
        let mut incoming = request.into_inner();
        while let Some(batch) = incoming.message().await? {
            self.check_cluster(batch.cluster_id)?;
            for bytes in &batch.messages {
                self.handle.step(decode(bytes)?);
            }
        }
        Ok(Response::new(StreamAck {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<StreamAck>, Status> {
        let mut incoming = request.into_inner();
        let mut message: Option<Message> = None;
        let mut data = Vec::new();
        while let Some(chunk) = incoming.message().await? {
            self.check_cluster(chunk.cluster_id)?;
            if message.is_none() {
                message = Some(decode(&chunk.message)?);
            }
            if data.len() + chunk.data.len() > MAX_SNAPSHOT_BYTES {
                return Err(Status::resource_exhausted("snapshot larger than the limit"));
            }
            data.extend_from_slice(&chunk.data);
        }
        let Some(mut message) = message else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        message.mut_snapshot().data = data.into();
        self.handle.step(message);
        Ok(Response::new(StreamAck {}))
    }
}

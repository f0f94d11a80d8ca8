//! The receiving half: the gRPC service on the peer port that hands messages to Raft.

use protobuf::Message as _;
use raft::eraftpb::Message;
use rampart_proto::peer::raft_transport_server::{RaftTransport, RaftTransportServer};
use rampart_proto::peer::{MessageBatch, SnapshotChunk, StreamAck};
use tonic::{Request, Response, Status, Streaming};

use super::MAX_PEER_MESSAGE_BYTES;
use crate::node::RaftHandle;

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
